"""The import graph of ``node`` (grimp, TYPE_CHECKING imports included) has no circle.

``lint-imports`` checks the layer contracts in pyproject.toml; this test checks what
contracts cannot say: that no two sub-packages of ``node`` import each other, and that
no group of modules imports itself round in a circle (hidden or not behind
``TYPE_CHECKING`` or a function-local import), except the circles named in
``ALLOWED_MODULE_CYCLES`` while they are being removed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]

ALLOWED_MODULE_CYCLES: dict[frozenset[str], str] = {
    frozenset(
        {
            "node.daemon.core",
            "node.daemon.evidence_gossip",
            "node.daemon.history_gossip",
            "node.daemon.membership",
            "node.daemon.runtime",
            "node.daemon.spsa_runtime",
            "node.daemon.training_runtime",
            "node.dashboard",
            "node.dashboard.state",
        }
    ): "components receive the whole Daemon; removed by NodeContext and narrow Protocols",
}
"""Each circle still present, and why. A circle found inside one of these sets passes (a
circle may shrink on its way out); an entry that no longer holds any circle fails the test,
so the list only shrinks, and is empty once the daemon's circle is gone."""


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("node", exclude_type_checking_imports=False, cache_dir=None)


def _edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _cycles(edges: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _layer_ignores() -> set[tuple[str, str]]:
    """The imports the layers contract ignores for now (pyproject.toml, one place)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ignored: set[tuple[str, str]] = set()
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            for line in contract.get("ignore_imports", []):
                importer, imported = (part.strip() for part in line.split("->"))
                ignored.add((importer, imported))
    return ignored


def _subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e", "d"}}
    assert _cycles(edges) == [frozenset({"a", "b", "c"})]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_the_subpackages_of_node() -> None:
    ignored = _layer_ignores()
    packages: dict[str, set[str]] = {}
    for importer, imported_set in _edges(_graph()).items():
        for imported in imported_set:
            if (importer, imported) in ignored:
                continue
            a, b = _subpackage(importer), _subpackage(imported)
            if a != b:
                packages.setdefault(a, set()).add(b)
    assert _cycles(packages) == [], (
        "sub-packages of node import each other; the import that goes up is the one to "
        "remove (docs/architecture.md)"
    )


def test_module_cycles_are_only_the_allowed_ones() -> None:
    found = _cycles(_edges(_graph()))
    for cycle in found:
        assert any(cycle <= allowed for allowed in ALLOWED_MODULE_CYCLES), (
            f"new import circle: {sorted(cycle)}"
        )
    for allowed, why in ALLOWED_MODULE_CYCLES.items():
        assert any(cycle <= allowed for cycle in found), (
            f"the circle {sorted(allowed)} ({why}) is gone: remove it from ALLOWED_MODULE_CYCLES"
        )
