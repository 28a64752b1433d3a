"""Catch-up of a node many rounds behind: the evidence rule, and real daemons.

The network test starts two ``sgd`` daemons, lets them train several rounds, then starts
a third one at round 0: every peer update is beyond its ``max_future`` window and its
own are stale for the peers, so without catch-up it would train alone for the whole run.
It must adopt its peers' checkpoints, jump to their round and finish with them.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from node.daemon.catchup import (
    Adoption,
    LagEvidence,
    PulledCheckpoint,
    VoucherPolicy,
    adopt_checkpoints,
    catchup_quorum,
    combine_checkpoints,
)
from node.storage import DB_FILENAME
from node.testnet.local import FixedLoopbackPorts, Testnet
from node.training import policy
from node.training.engine import Aggregate, Received
from node.training.genesis import Genesis

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
    assert lag.vouchers(12, 0.0) == ["honest", "liar"]  # the inflated claim last
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


# --- who may vouch, and how many (the catch-up hijack of issue 12) ---------------------------


class _View:
    """Membership as catch-up sees it: ids with their standing in seconds."""

    def __init__(self, standing: dict[str, float]) -> None:
        self.standing = standing

    def is_member(self, node_id: bytes) -> bool:
        return node_id.hex() in self.standing

    def standing_s(self, node_id: bytes) -> float | None:
        return self.standing.get(node_id.hex())


def _id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_fresh_keys_and_non_members_cannot_vouch() -> None:
    view = _View({_id("a"): 100.0, _id("b"): 1.0, _id("c"): 100.0})
    policy = VoucherPolicy(view, min_standing_s=5.0, excluded=lambda n: n.hex() == _id("c"))
    assert policy(_id("a"))
    assert policy.refusal(_id("b")) == "catchup_no_standing"
    assert policy.refusal(_id("c")) == "catchup_excluded"
    assert policy.refusal(_id("d")) == "catchup_not_member"
    assert policy.refusal("zz") == "catchup_bad_id"


def test_two_free_keys_cannot_make_an_in_step_node_jump() -> None:
    # The reported attack: a node at round 10 hears its honest peer in its window; two
    # keys that just joined (no standing) claim round 10**6.
    f, quorum = catchup_quorum(1, num_nodes=3)
    assert (f, quorum) == (1, 2)
    view = _View({_id("h"): 60.0, _id("x"): 0.5, _id("y"): 0.5})
    admit = VoucherPolicy(view, min_standing_s=5.0, excluded=lambda n: False)
    lag = LagEvidence(max_future=1, quorum=quorum, max_rounds=50)
    lag.observe(_id("h"), 10, 0.0)
    lag.observe(_id("x"), 10**6, 0.0)
    lag.observe(_id("y"), 10**6, 0.0)
    assert lag.target(10, 0.0, admit) is None
    # Without the standing filter the old rule would have jumped (to the round cap).
    assert lag.target(10, 0.0) == 49


def test_f_standing_liars_at_the_limit_are_refused() -> None:
    # f = 1 standing liar plus one honest member ahead: 2 vouchers, but the liar's claim
    # cannot set the target beyond the honest one, and the liar cannot vouch alone.
    view = _View({_id("h"): 60.0, _id("x"): 60.0, _id("g"): 60.0})
    admit = VoucherPolicy(view, min_standing_s=5.0, excluded=lambda n: False)
    lag = LagEvidence(max_future=1, quorum=2)
    lag.observe(_id("x"), 10**6, 0.0)
    assert lag.target(10, 0.0, admit) is None  # alone: below quorum
    lag.observe(_id("g"), 10, 0.0)  # an honest member in step with us
    lag.observe(_id("h"), 10, 0.0)
    assert lag.target(10, 0.0, admit) is None  # outvoted by the members in our window
    # A node that is really behind: honest members ahead; the liar does not move the target.
    lag2 = LagEvidence(max_future=1, quorum=2)
    for sender, r in ((_id("x"), 10**6), (_id("h"), 40), (_id("g"), 41)):
        lag2.observe(sender, r, 0.0)
    assert lag2.target(10, 0.0, admit) == 41
    assert set(lag2.vouchers(41, 0.0, admit)) == {_id("x"), _id("g")}


def test_f_plus_one_standing_liars_beyond_the_bound() -> None:
    # Documented (docs/faults.md): 2 = f + 1 standing liars that outnumber the members the
    # node hears in its window do make it catch up; the rule then sees 2 forged rows of 3.
    view = _View({_id("h"): 60.0, _id("x"): 60.0, _id("y"): 60.0})
    admit = VoucherPolicy(view, min_standing_s=5.0, excluded=lambda n: False)
    lag = LagEvidence(max_future=1, quorum=2, max_rounds=100)
    lag.observe(_id("h"), 10, 0.0)
    lag.observe(_id("x"), 10**6, 0.0)
    lag.observe(_id("y"), 10**6, 0.0)
    assert lag.target(10, 0.0, admit) == 99
    # ...but not when the node hears as many honest members in its window as liars.
    view.standing[_id("k")] = 60.0
    lag.observe(_id("k"), 10, 0.0)
    assert lag.target(10, 0.0, admit) is None


def _ckpt(sender: str, value: float, n: int = 6) -> PulledCheckpoint:
    return PulledCheckpoint(sender, 40, torch.full((n,), value), "")


def test_adopted_model_is_the_robust_rule_over_checkpoints_and_own() -> None:
    own = torch.zeros(6)
    honest, forged = _ckpt("h", 1.0), _ckpt("x", 500.0)
    got = adopt_checkpoints(
        own, [honest, forged], rule="mean", f=1, params={}, max_norm=1e4, min_rows=2
    )
    assert isinstance(got, Adoption)
    assert got.rule == "median" and got.rows == 3  # the plain mean is never used here
    assert torch.equal(got.vector, torch.full((6,), 1.0))  # within the honest rows
    # trimmed_mean with f = 1 over 3 rows: same guarantee, the configured rule is used.
    got = adopt_checkpoints(
        own, [honest, forged], rule="trimmed_mean", f=1, params={}, max_norm=1e4, min_rows=2
    )
    assert isinstance(got, Adoption) and got.rule == "trimmed_mean"
    assert float(got.vector.max()) <= 1.0
    # krum cannot take 3 rows with f = 1: the median stands in rather than no rule at all.
    got = adopt_checkpoints(
        own, [honest, forged], rule="krum", f=1, params={}, max_norm=1e4, min_rows=2
    )
    assert isinstance(got, Adoption) and float(got.vector.max()) <= 1.0


def test_checkpoint_hygiene_and_quorum() -> None:
    own = torch.zeros(6)
    far = _ckpt("x", 1e4)  # 2.4e4 from our model
    got = adopt_checkpoints(
        own, [_ckpt("h", 1.0), far], rule="median", f=1, params={}, max_norm=1e4, min_rows=2
    )
    assert isinstance(got, str) and "1 usable checkpoints, 2 needed" in got
    got = adopt_checkpoints(
        own,
        [_ckpt("h", 1.0), _ckpt("g", 1.2), far],
        rule="median",
        f=1,
        params={},
        max_norm=1e4,
        min_rows=2,
    )
    assert isinstance(got, Adoption) and [s for s, _ in got.refused] == ["x"]
    assert torch.all((got.vector >= 1.0) & (got.vector <= 1.2))
    assert catchup_quorum(1, num_nodes=2) == (0, 1)  # one peer is the whole network
    assert catchup_quorum(2, num_nodes=10) == (2, 4)


def test_claims_are_bounded() -> None:
    lag = LagEvidence(max_future=1, quorum=2, max_senders=3)
    for i in range(10):
        lag.observe(str(i), 5, float(i))
    assert len(lag._fresh(10.0)) == 3
    assert lag.claim("9") == 5 and lag.claim("0") is None


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
    placement = FixedLoopbackPorts(3)
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
    merged, _ = policy.aggregate_within_f(_agg(2, f=2))
    assert torch.equal(merged, torch.full((4,), 1.0))
    # 2 rows: even f = 1 is refused; the node keeps its own vector, unprotected mean never.
    alone, _ = policy.aggregate_within_f(_agg(1, f=2))
    assert torch.equal(alone, torch.zeros(4))
