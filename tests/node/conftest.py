"""Fixtures that run real daemons as separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.testnet.local import Testnet
from node.training.genesis import Genesis

FAST_GENESIS = {
    "network": {"name": "test-net", "seed": 7, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 3},
}


def fednode(
    *args: str, cwd: Path | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (``python -m node``)."""
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture
def cli() -> object:
    """The ``fednode`` CLI as a function of its arguments."""
    return fednode


@pytest.fixture
def genesis() -> Genesis:
    return Genesis.model_validate(FAST_GENESIS)


@pytest.fixture
def testnet_factory(tmp_path: Path) -> Iterator[list[Testnet]]:
    made: list[Testnet] = []
    yield made
    for net in made:
        net.stop(timeout=10)
