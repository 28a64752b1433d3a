"""Faces: every sub-package of ``node`` has a docstring and an ``__all__`` that resolves.

A face (``__init__.py``) is what other layers import. Importing one alone must work in a
fresh interpreter (no import-time circle, whatever was imported before) and, for the
faces a membership-only daemon or ``fednode status`` loads, must not load torch.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from node.base.lazy_face import lazy_face

ROOT = Path(__file__).resolve().parents[1]
FACES = sorted(
    ".".join(init.parent.relative_to(ROOT).parts)
    for init in (ROOT / "node").rglob("__init__.py")
    if "__pycache__" not in init.parts
)
# Loaded by `python -m node start --no-train` and by the operator commands.
TORCH_FREE = [
    "node",
    "node.base",
    "node.cli",
    "node.daemon",
    "node.dashboard",
    "node.gossip",
    "node.storage",
    "node.training",
    "node.training.hf",
    "node.wire",
]


def _tree(face: str) -> ast.Module:
    return ast.parse((ROOT / face.replace(".", "/") / "__init__.py").read_text())


def _declared_all(tree: ast.Module) -> list[str] | None:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(value, ast.List | ast.Tuple), "__all__ must be a literal list"
            return [ast.literal_eval(e) for e in value.elts]
    return None


def test_faces_are_found() -> None:
    assert {"node.base", "node.wire", "node.daemon", "node.cli", "node.training"} <= set(FACES)


@pytest.mark.parametrize("face", FACES)
def test_every_face_has_a_docstring_and_a_literal_all(face: str) -> None:
    tree = _tree(face)
    assert ast.get_docstring(tree), f"{face}/__init__.py has no docstring"
    exported = _declared_all(tree)
    assert exported is not None, f"{face} has no __all__"
    assert len(exported) == len(set(exported)), f"{face}.__all__ repeats a name"


@pytest.mark.parametrize("face", FACES)
def test_every_exported_name_resolves(face: str) -> None:
    module = importlib.import_module(face)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{face}.{name}"
        assert name in dir(module), f"{face}.{name} is missing from dir()"


@pytest.mark.parametrize("face", FACES)
def test_lazy_faces_type_check_what_they_export(face: str) -> None:
    # mypy sees the TYPE_CHECKING imports; the lazy map serves the same names at run time.
    tree = _tree(face)
    checked: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "TYPE_CHECKING":
            for inner in stmt.body:
                if isinstance(inner, ast.ImportFrom):
                    checked |= {alias.asname or alias.name for alias in inner.names}
    if not checked:
        return
    assert checked == set(_declared_all(tree) or [])


def test_each_face_imports_alone_in_a_fresh_interpreter() -> None:
    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {
        face: subprocess.Popen(
            [sys.executable, "-c", code, face],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for face in FACES
    }
    for face, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"import {face} failed alone:\n{err[-2000:]}"
        if face in TORCH_FREE:
            assert out.strip() == "False", f"import {face} loads torch"


def test_the_gossip_simulator_does_not_load_torch() -> None:
    # bench_gossip_sybil.py reports the simulator's max RSS: torch would add ~340 MB to it.
    code = "import sys, node.sim.gossip; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False", "import node.sim.gossip loads torch"


def test_lazy_face_imports_on_first_use_and_caches() -> None:
    package = types.ModuleType("fake_face")
    sys.modules["fake_face"] = package
    try:
        getattr_, dir_ = lazy_face("fake_face", {"fake_face.json": ("dumps",)})
        with pytest.raises(ValueError, match="not inside"):
            lazy_face("fake_face", {"json": ("dumps",)})
        with pytest.raises(ValueError, match="both"):
            lazy_face("fake_face", {"fake_face.a": ("x",), "fake_face.b": ("x",)})
        with pytest.raises(AttributeError, match="no attribute 'loads'"):
            getattr_("loads")
        assert "dumps" in dir_()
        sys.modules["fake_face.json"] = importlib.import_module("json")
        assert getattr_("dumps") is importlib.import_module("json").dumps
        assert package.dumps is importlib.import_module("json").dumps  # cached
    finally:
        sys.modules.pop("fake_face", None)
        sys.modules.pop("fake_face.json", None)
