"""Catch-up of a node many rounds behind: the evidence rule, and real daemons.

The network test starts two ``sgd`` daemons, lets them train several rounds, then starts
a third one at round 0: every peer update is beyond its ``max_future`` window and its
own are stale for the peers, so without catch-up it would train alone for the whole run.
It must adopt its peers' checkpoints, jump to their round and finish with them.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from node.catchup import LagEvidence, combine_checkpoints
from node.genesis import Genesis
from node.storage import DB_FILENAME
from node.testnet import Testnet
from node.training.engine import Aggregate, Received
from node.training_runtime import TrainingRuntime

# --- the evidence rule --------------------------------------------------------------------


def test_no_target_within_the_engine_window_or_below_quorum() -> None:
    lag = LagEvidence(max_future=1, quorum=2)
    lag.observe("a", 6, 0.0)
    assert lag.target(0, 0.0) is None  # one peer is not a quorum
    lag.observe("b", 1, 0.0)
    assert lag.target(0, 0.0) is None  # the second is within max_future
    lag.observe("b", 7, 0.0)
    assert lag.target(0, 0.0) == 6  # both are at 6 or beyond
    assert lag.target(5, 0.0) is None  # 6 <= 5 + max_future: the engine handles it


def test_one_byzantine_claim_cannot_move_the_target() -> None:
    lag = LagEvidence(max_future=1, quorum=2, max_rounds=50)
    lag.observe("liar", 10**9, 0.0)
    assert lag.target(0, 0.0) is None
    lag.observe("honest", 12, 0.0)
    assert lag.target(0, 0.0) == 12
    assert lag.vouchers(12, 0.0) == ["liar", "honest"]
    assert lag.claim("liar") == 10**9
    lag.forget("liar")
    assert lag.claim("liar") is None
    assert lag.target(0, 0.0) is None


def test_target_capped_at_the_last_round_and_claims_expire() -> None:
    lag = LagEvidence(max_future=1, quorum=2, max_rounds=20, window_s=10.0)
    lag.observe("a", 500, 0.0)
    lag.observe("b", 400, 0.0)
    assert lag.target(0, 5.0) == 19
    assert lag.target(0, 11.0) is None  # both claims are older than the window
    with pytest.raises(ValueError, match="quorum"):
        LagEvidence(max_future=1, quorum=0)


def test_combined_checkpoints_resist_one_forged_vector() -> None:
    honest = [torch.full((5,), 1.0), torch.full((5,), 1.2)]
    forged = torch.full((5,), 1e6)
    out = combine_checkpoints([*honest, forged])
    assert torch.all((out >= 1.0) & (out <= 1.2))
    assert torch.equal(combine_checkpoints([honest[0]]), honest[0])
    with pytest.raises(ValueError, match="different lengths"):
        combine_checkpoints([torch.zeros(3), torch.zeros(4)])
    with pytest.raises(ValueError, match="no checkpoint"):
        combine_checkpoints([])


# --- real daemons -------------------------------------------------------------------------

ROUNDS = 30


class _FixedPorts:
    """Loopback placement with ports chosen up front, so every node starts at once."""

    def __init__(self, n: int) -> None:
        self.ports = []
        for _ in range(n):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.ports.append(s.getsockname()[1])

    def command_prefix(self, index: int) -> list[str]:
        return []

    def listen(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"

    def advertise(self, index: int) -> str | None:
        return None


def _rounds(net: Testnet) -> dict[int, int]:
    return {i: int(s.get("round", 0)) for i, s in net.statuses().items()}


@pytest.mark.slow
def test_late_node_catches_up_with_its_peers(tmp_path: Path) -> None:
    genesis = Genesis.model_validate(
        {
            "network": {
                "name": "catchup",
                "seed": 7,
                "pow_difficulty": 4,
                "gossip_profile": "test",
            },
            "task": {"name": "digits", "num_nodes": 3},
            "rounds": {
                "max_rounds": ROUNDS,
                "round_timeout": 2.0,
                "eval_every": 4,
                "peers_per_round": 3,
            },
        }
    )
    placement = _FixedPorts(3)
    net = Testnet(tmp_path, genesis, 3, placement=placement)
    bootstrap = placement.listen(0)
    late = net.nodes[2]
    try:
        net.prepare()
        for node in net.nodes[:2]:
            net.spawn_node(node, None if node.index == 0 else bootstrap)
        # Generous: on 2 shared cores at load 20+ a daemon takes up to a minute to start.
        net.wait_started(net.nodes[:2], timeout=150)
        deadline = time.monotonic() + 60
        # Started now, it is ready only several rounds later: its first round is 0 while
        # the others are far beyond its max_future window.
        while min(_rounds(net).values(), default=0) < 2:
            assert time.monotonic() < deadline, f"first nodes too slow: {_rounds(net)}"
            time.sleep(0.3)
        net.spawn_node(late, bootstrap)
        net.wait_started([late], timeout=150)
        deadline = time.monotonic() + 90
        while True:
            rounds = _rounds(net)
            if len(rounds) == 3 and all(r >= ROUNDS for r in rounds.values()):
                break
            assert time.monotonic() < deadline, f"not all finished: {rounds}\n{net.tail(late)}"
            time.sleep(0.3)
        statuses = net.statuses()
    finally:
        net.stop()
    log = late.log_path.read_text(errors="replace")
    assert "start_round=0" in log
    m = re.search(r"caught up.*?from_round=(\d+).*?to_round=(\d+)", log)
    assert m is not None, log[-3000:]
    assert int(m.group(2)) - int(m.group(1)) >= 6
    # The jump is durable: the event and the checkpoints it trained from are in SQL.
    con = sqlite3.connect(str(late.data_dir.root / DB_FILENAME))
    try:
        kinds = [r[0] for r in con.execute("SELECT kind FROM events")]
        rounds_stored = [r[0] for r in con.execute("SELECT round FROM checkpoints")]
        state = con.execute("SELECT value FROM node_state WHERE key = 'training.round'").fetchone()
    finally:
        con.close()
    assert "catchup" in kinds
    assert max(rounds_stored) == ROUNDS
    assert int(state[0]) == ROUNDS
    # It learned with the others: its final accuracy is in their band.
    acc = {i: float(s["last_accuracy"]) for i, s in statuses.items()}
    others = [acc[i] for i in range(2)]
    assert acc[2] > 0.6
    assert acc[2] >= min(others) - 0.1, acc


# --- aggregation with fewer rows than the rule's f needs ----------------------------------


def _agg(n_received: int, f: int) -> Aggregate:
    own = torch.zeros(4)
    received = tuple(
        Received(f"p{i}", 0, torch.full((4,), float(i + 1)), 1.0) for i in range(n_received)
    )
    return Aggregate(0, own, received, "median", f, {}, "model")


def test_a_round_with_too_few_rows_lowers_f_instead_of_stalling() -> None:
    # median with f = 2 needs 5 rows; 3 rows run it with f = 1 (still robust to one).
    merged = TrainingRuntime._aggregate_within_f(None, _agg(2, f=2))  # type: ignore[arg-type]
    assert torch.equal(merged, torch.full((4,), 1.0))
    # 2 rows: even f = 1 is refused; the node keeps its own vector, unprotected mean never.
    alone = TrainingRuntime._aggregate_within_f(None, _agg(1, f=2))  # type: ignore[arg-type]
    assert torch.equal(alone, torch.zeros(4))
