"""Equivocation on real daemons: a member that signs two updates per round is quarantined.

Three honest ``sgd`` daemons train; a fourth member (``tests/node/attacker.py --mode
equivocate``, built from fednode's signing modules) signs, for each round, two different
updates and sends the first to nodes 0 and 2, the second to node 1. No node receives both.
Each honest node relays the signed headers it receives (sightings), so the contradiction
surfaces; the node that finds it gossips the pair, and every honest node verifies it and
quarantines the attacker within seconds, after which its messages are refused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.base.identity import Identity
from node.testnet.local import Testnet
from node.training.genesis import Genesis

ATTACKER = Path(__file__).with_name("attacker.py")


def _proven_at(log: str, accused: str) -> float | None:
    m = re.search(rf"^(\S+) WARNING\s+equivocation proven node_id={accused[:16]}", log, re.M)
    if m is None:
        return None
    return dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.slow
def test_equivocating_member_is_quarantined_everywhere(tmp_path: Path) -> None:
    genesis = Genesis.model_validate(
        {
            "network": {"name": "equiv", "seed": 7, "pow_difficulty": 4, "gossip_profile": "lan"},
            "task": {"name": "digits", "num_nodes": 3},
            "rounds": {"max_rounds": 1000, "round_timeout": 5.0, "peers_per_round": 3},
        }
    )
    net = Testnet(tmp_path, genesis, 4)
    honest = [0, 1, 2]
    net.prepare()
    ids = [Identity.load(n.data_dir.identity).node_id_hex for n in net.nodes]
    attacker = net.nodes[3]
    out = attacker.data_dir.root / "attack"
    try:
        net.start_node(net.nodes[0], None, timeout=150)
        bootstrap = net.nodes[0].address
        for i in (1, 2):
            net.spawn_node(net.nodes[i], bootstrap)
        cmd = [
            sys.executable,
            str(ATTACKER),
            "--data-dir",
            str(attacker.data_dir.root),
            "--genesis",
            str(net.genesis_path),
            "--bootstrap",
            bootstrap,
            "--out",
            str(out),
            "--mode",
            "equivocate",
            "--to-a",
            f"{ids[0]},{ids[2]}",
            "--to-b",
            ids[1],
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(attacker.log_path, "ab") as log:
            attacker.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        net.wait_started([net.nodes[i] for i in (1, 2, 3)], timeout=150)
        deadline = time.monotonic() + 180
        proven: dict[int, float | None] = {}
        while time.monotonic() < deadline:
            proven = {
                i: _proven_at(net.nodes[i].log_path.read_text(errors="replace"), ids[3])
                for i in honest
            }
            if all(t is not None for t in proven.values()):
                break
            time.sleep(0.5)
        time.sleep(3.0)  # the attacker keeps pushing: those pushes must now be refused
    finally:
        net.stop()
    rows = [json.loads(line) for line in (out / "attacks.jsonl").read_text().splitlines() if line]
    sent = [r for r in rows if r["kind"] == "equivocation"]
    assert sent, "the attacker never equivocated"
    # No honest node was sent both updates of a round.
    for r in {s["round"] for s in sent}:
        for i in honest:
            sides = {s["side"] for s in sent if s["round"] == r and s["to"] == ids[i]}
            assert len(sides) <= 1
    assert all(t is not None for t in proven.values()), (proven, net.tail(net.nodes[0], 40))
    first = min(s["t"] for s in sent)
    # Log timestamps have 1 s resolution.
    delays = {i: t - first for i, t in proven.items() if t is not None}
    assert max(delays.values()) <= 10.0, delays
    # After the proof its messages (membership pings, pushes) are refused as banned.
    for i in honest:
        log = net.nodes[i].log_path.read_text(errors="replace")
        assert "refused peer message reason=banned" in log, net.tail(net.nodes[i], 30)
