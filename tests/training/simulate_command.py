"""``fednode simulate`` run as the real command: a fresh interpreter on a genesis file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from node.training.genesis import Genesis, render_genesis

__all__ = ["REPO", "fednode", "write"]

REPO = Path(__file__).resolve().parents[2]


def fednode(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m node simulate ARGS`` in ``cwd``; output captured, 600 s at most.

    A ``RAY_ADDRESS`` of the caller's environment is dropped: ``--ray`` says where Ray is.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "node", "simulate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def write(gen: Genesis, path: Path) -> Path:
    """Write ``gen`` as a genesis TOML file at ``path``."""
    path.write_text(render_genesis(gen), encoding="utf-8")
    return path
