"""``testnet up --compare-rule``: the mean and a robust rule on one network, side by side.

Issue 15: the README's Byzantine example took two commands, and a reader compared two
final tables by eye. One command now runs the same network (seed, shards, attackers)
under both rules and prints them together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Cli = Callable[..., Any]


def test_compare_rule_is_refused_with_a_genesis_file(cli: Cli, tmp_path: Path) -> None:
    out = cli("genesis", "new", str(tmp_path / "net.toml"), "--task", "digits")
    assert out.returncode == 0, out.stderr
    out = cli("testnet", "up", "--genesis", str(tmp_path / "net.toml"), "--compare-rule", "median")
    assert out.returncode != 0 and "--compare-rule" in out.stderr


# One round is enough to tell the rules apart (below); each round costs both runs about
# 12 s at load 6, most of the rest is starting and stopping 2 x 3 daemons. Measured on the
# shared 2-core machine, the whole command (/usr/bin/time): 3 rounds 125 s at load 5-8,
# 1 round 64-70 s at load 5-7 (176 s once at load 8-12: the daemons' start dominates).
ROUNDS = 1


@pytest.mark.slow
def test_one_command_shows_what_the_robust_rule_is_for(cli: Cli, tmp_path: Path) -> None:
    out = cli(
        "testnet", "up", "--nodes", "3", "--task", "digits", "--rounds", str(ROUNDS),
        "--byzantine", "1", "--attack", "ipm:eps=100", "--rule", "mean",
        "--compare-rule", "median", "--plot", str(tmp_path / "acc.png"), "--format", "json",
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout)["runs"]  # one JSON document for both runs
    assert [r["rule"] for r in runs] == ["mean", "median"]
    for run in runs:
        assert run["nodes"] == 3 and run["byzantine"] == 1 and run["rounds"] == ROUNDS
        assert [n["byzantine"] for n in run["per_node"]] == [False, False, True]
        assert Path(run["plot"]).name == f"acc-{run['rule']}.png"
        assert (tmp_path / f"acc-{run['rule']}.png").is_file()
    mean, median = (r["honest_mean_accuracy"] for r in runs)
    # Inner-product manipulation wrecks the mean in its first round: honest accuracy 0.0,
    # 0.0 and 0.008 in three 1-round runs by hand, the last with --local-steps 180 (0.014
    # after 3 rounds, but 0.66 once after 2, which is why the test does not run 2). The
    # median ignores the attacker: 0.77, 0.67 and 0.64 after one round (0.96 after 3),
    # chance being 0.1.
    assert median > 0.5 and median - mean > 0.4, (mean, median)
