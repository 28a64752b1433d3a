"""Colluding Byzantine daemons (node/testnet/collusion.py) against real honest daemons.

One run of ``fednode testnet up``: 4 honest digits daemons under plain ``mean`` and 2
attackers colluding through the testnet's rendezvous (the strongest IPM that passes the
receivers' norm check). The honest nodes must end far below what digits reaches in 5 rounds
without an attacker (0.86-0.90 per node with the same two attackers not colluding, about 0.9
clean), and no honest node may have refused anything the attackers sent as malformed: every
Byzantine vector passed every check an honest node makes. One run, not a side-by-side with
``--no-collude``, because each testnet of 6 processes costs about a minute of the CI's 2 cores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

Cli = Callable[..., Any]

#: Refusal reasons that say a message itself was bad (as opposed to late, early or a replay).
MALFORMED = {
    "norm_exceeded",
    "bad_shape",
    "nonfinite",
    "bad_signature",
    "bad_round",
    "bad_header",
    "too_large",
    "malformed",
    "wrong_network",
}
_REASON = re.compile(r"refused (?:peer )?message .*?reason=(\w+)")


def _up(cli: Cli, work: Path, *args: str) -> dict[str, Any]:
    out = cli(
        "testnet",
        "up",
        "--task",
        "digits",
        "--nodes",
        "6",
        "--byzantine",
        "2",
        "--rounds",
        "5",
        "--rule",
        "mean",
        "--attack",
        "ipm",
        "--format",
        "json",
        "--plot",
        str(work / "acc.png"),
        "--workdir",
        str(work / "net"),
        *args,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary: dict[str, Any] = json.loads(out.stdout)
    return summary


def _refusals(work: Path, honest: int) -> list[str]:
    found: list[str] = []
    for i in range(honest):
        text = (work / "net" / f"node-{i}" / "daemon.log").read_text(errors="replace")
        found += _REASON.findall(text)
    return found


@pytest.mark.timeout(900)  # a testnet of 6 processes on 2 shared cores
def test_colluding_ipm_breaks_mean_and_honest_nodes_see_nothing_malformed(
    cli: Cli, tmp_path: Path
) -> None:
    colluding = _up(cli, tmp_path / "colluding")
    members = list((tmp_path / "colluding" / "net" / "collusion" / "members").iterdir())
    byzantine_ids = {r["node_id"] for r in colluding["per_node"] if r["byzantine"]}
    assert {m.name for m in members} == byzantine_ids  # only the attackers joined
    assert all(r["round"] == 5 for r in colluding["per_node"] if not r["byzantine"])
    # Digits has 10 classes: 0.5 is far below every run without colluders and far above chance.
    assert colluding["honest_mean_accuracy"] < 0.5, colluding["honest_mean_accuracy"]
    bad = [r for r in _refusals(tmp_path / "colluding", honest=4) if r in MALFORMED]
    assert bad == []
