"""Real daemons that train: the `testnet up` command end to end, as the README runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

Cli = Callable[..., Any]


def _up(cli: Cli, tmp_path: Path, *args: str) -> dict[str, Any]:
    plot = tmp_path / "acc.png"
    out = cli(
        "testnet",
        "up",
        "--task",
        "digits",
        "--format",
        "json",
        "--plot",
        str(plot),
        "--workdir",
        str(tmp_path / "net"),
        *args,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert plot.exists() and plot.stat().st_size > 1000
    return summary


def test_sgd_testnet_trains_and_a_byzantine_node_is_contained(cli: Cli, tmp_path: Path) -> None:
    summary = _up(
        cli,
        tmp_path,
        "--nodes",
        "4",
        "--rounds",
        "4",
        "--rule",
        "median",
        "--byzantine",
        "1",
        "--attack",
        "sign_flip",
    )
    honest = [r for r in summary["per_node"] if not r["byzantine"]]
    assert len(honest) == 3
    assert all(r["round"] == 4 for r in summary["per_node"])
    # Digits has 10 classes: chance is 0.1. Coordinate-wise median of 4 with one attacker.
    assert summary["honest_mean_accuracy"] > 0.6
    assert all(r["bytes_sent"] > 0 and r["bytes_received"] > 0 for r in honest)


def test_unmodified_flower_client_as_learner(cli: Cli, tmp_path: Path) -> None:
    summary = _up(
        cli,
        tmp_path,
        "--nodes",
        "3",
        "--rounds",
        "2",
        "--learner",
        "flower",
        "--flower-client",
        "node.training.examples.digits_client:client_fn",
    )
    assert summary["learner"] == "flower"
    assert summary["honest_mean_accuracy"] > 0.5
