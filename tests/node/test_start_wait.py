"""The first node of a network does not train alone while the others are still starting.

Real daemons: node 0 starts, nodes 1 and 2 start several ``round_timeout`` later (a loaded
machine, or operators starting their nodes by hand). Node 0 used to wait one
``round_timeout`` for a peer, then trained its first rounds alone and the others caught up
in one step, so every multi-node figure mixed one node's solo training into the network's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from node.testnet.local import FixedLoopbackPorts, Testnet
from node.training.genesis import Genesis

pytestmark = pytest.mark.slow

ROUND_TIMEOUT = 3.0
#: Nodes 1-2 start this long after node 0 is up: well beyond one round_timeout.
LATE_S = 4 * ROUND_TIMEOUT
ROUNDS = 4

GENESIS = {
    "network": {"name": "late-start", "seed": 5, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 3, "partition": "iid"},
    "aggregation": {"rule": "mean"},
    "rounds": {
        "peers_per_round": 2,
        "min_updates": 1,
        "round_timeout": ROUND_TIMEOUT,
        "max_rounds": ROUNDS,
        "eval_every": 1,
    },
}


def _wait_done(net: Testnet, timeout: float) -> dict[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    st: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        st = net.statuses()
        if len(st) == 3 and all(int(s.get("round", 0)) >= ROUNDS for s in st.values()):
            return st
        time.sleep(0.5)
    raise AssertionError(f"rounds not reached: { {i: s.get('round') for i, s in st.items()} }")


def test_first_node_waits_for_late_peers(tmp_path: Path) -> None:
    net = Testnet(
        tmp_path / "net", Genesis.model_validate(GENESIS), 3, placement=FixedLoopbackPorts(3)
    )
    try:
        net.prepare()
        net.start_node(net.nodes[0], None, timeout=120)
        time.sleep(LATE_S)
        alone_rounds = int(net.statuses()[0].get("round", -1))
        for node in net.nodes[1:]:
            net.spawn_node(node, net.nodes[0].address)
        net.wait_started(net.nodes[1:], timeout=120)
        statuses = _wait_done(net, timeout=300)
    finally:
        net.stop()
    assert alone_rounds == 0, f"node 0 closed {alone_rounds} rounds before its peers started"
    log0 = net.nodes[0].log_path.read_text(errors="replace")
    assert "fewer peers than wanted" not in log0, "node 0 trained its first rounds alone"
    assert "waiting for 2 peers, 0 seen, training alone in" in log0, "node 0 did not say so"
    # Node 0 trained from round 1 on with its peers (a node alone evaluates its solo rounds
    # too, so this holds only together with the two asserts above).
    rounds0 = sorted(int(e.get("round", 0)) for e in statuses[0].get("history", []))
    assert rounds0[:ROUNDS] == list(range(1, ROUNDS + 1)), f"node 0 evaluated {rounds0}"
