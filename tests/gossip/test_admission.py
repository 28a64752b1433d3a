"""Introductions: a global and a per-introducer budget, deferred records come back later."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fednode_proto.v1 import gossip_pb2 as pb
from node.base.identity import Identity
from node.gossip import GossipConfig, GossipRejected, Membership
from node.gossip.admission import IntroductionQueue, TokenBucket, Verdict
from node.gossip.records import sign_record


def _queue(**kw: float) -> IntroductionQueue[str]:
    args = dict(
        rate_global=10.0,
        burst_global=5.0,
        rate_per_introducer=2.0,
        burst_per_introducer=3.0,
        max_pending=100,
        max_introducers=16,
    )
    args.update(kw)
    return IntroductionQueue(**args)  # type: ignore[arg-type]


def _id(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_token_bucket_refills_with_the_clock() -> None:
    b = TokenBucket(2.0, 3.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)  # one token per 0.5 s
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1.0)


def test_per_introducer_budget_defers_and_other_introducers_are_unaffected() -> None:
    q = _queue()
    verdicts = [q.offer(0.0, "flooder", _id(i), f"r{i}") for i in range(10)]
    assert verdicts[:3] == [Verdict.ADMIT] * 3 and set(verdicts[3:]) == {Verdict.DEFERRED}
    assert len(q) == 7
    # An honest introducer still gets its records through at once (global budget left: 2).
    assert q.offer(0.0, "honest", _id(100), "h") is Verdict.ADMIT


def test_global_budget_bounds_every_path_together() -> None:
    # Many introducers with one record each (every fake "its own contact").
    q = _queue()
    verdicts = [q.offer(0.0, f"fake{i}", _id(i), "x") for i in range(20)]
    assert verdicts.count(Verdict.ADMIT) == 5 and verdicts.count(Verdict.DEFERRED) == 15


def test_deferred_records_come_back_in_fair_order_as_budgets_refill() -> None:
    q = _queue(burst_global=1.0, rate_global=4.0, burst_per_introducer=1.0, rate_per_introducer=1.0)
    assert q.offer(0.0, "a", _id(0), "a0") is Verdict.ADMIT
    for i in range(1, 6):
        q.offer(0.0, "a", _id(i), f"a{i}")
    for i in range(3):
        q.offer(0.0, "b", _id(10 + i), f"b{i}")
    assert q.drain(0.0) == []  # global bucket empty
    got: list[str] = []
    t = 0.0
    while len(q):
        t += 0.25
        got += [item for _, item in q.drain(t)]
    # Round-robin: b is not stuck behind a's longer queue; every record comes back.
    assert got[:4] == ["b0", "a1", "b1", "a2"]
    assert sorted(got) == sorted([f"a{i}" for i in range(1, 6)] + ["b0", "b1", "b2"])


def test_a_pending_record_is_refreshed_not_duplicated() -> None:
    q = _queue(burst_global=1.0)
    q.offer(0.0, "a", _id(0), "first")
    assert q.offer(0.0, "a", _id(1), "old") is Verdict.DEFERRED
    assert q.offer(0.0, "b", _id(1), "new") is Verdict.DEFERRED
    assert len(q) == 1 and q.get(_id(1)) == "new"
    q.discard(_id(1))
    assert len(q) == 0 and q.drain(100.0) == []


def test_full_queue_drops_from_the_longest_fifo() -> None:
    q = _queue(burst_global=1.0, max_pending=6)
    q.offer(0.0, "x", _id(999), "admitted")
    for i in range(6):
        q.offer(0.0, "flooder", _id(i), f"f{i}")
    assert len(q) == 6
    # An honest record displaces the flooder's newest one ...
    assert q.offer(0.0, "honest", _id(50), "h") is Verdict.DEFERRED
    assert _id(5) not in q and _id(50) in q and q.dropped == 1
    # ... but the flooder cannot displace anybody by offering more.
    assert q.offer(0.0, "flooder", _id(60), "f60") is Verdict.DROPPED
    assert _id(50) in q and q.dropped == 2


# --- in the core ---------------------------------------------------------------------------


def _gossip(sender: Membership, records: list[pb.Update], kind: str = "gossip") -> bytes:
    msg = pb.GossipMessage(sender=sender.record.to_pb())
    getattr(msg, kind).SetInParent()
    msg.updates.extend(records)
    return msg.SerializeToString()


def _fresh(ident: Callable[..., Identity], start: int, n: int, network: bytes) -> list[pb.Update]:
    return [
        pb.Update(
            alive=sign_record(
                ident(i),
                address=f"10.9.{i // 250}.{i % 250}:1",
                incarnation=0,
                network_id=network,
                timestamp_ms=0,
            ).to_pb()
        )
        for i in range(start, start + n)
    ]


def test_a_relayed_flood_is_slowed_per_introducer_and_comes_back_later(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    cfg = GossipConfig.profile(
        "lan",
        introductions_rate_per_introducer=5.0,
        introductions_burst_per_introducer=10,
        introductions_rate_global=1000.0,
        introductions_burst_global=1000,
    )
    a, b, c = make_core(1, config=cfg), make_core(2), make_core(3)
    a.receive(0.0, b.node_id, _gossip(b, _fresh(ident, 100, 50, network_id)), token=1)
    # b itself (a direct sender introduces itself: 1 of its 10) + 9 relayed now, 41 deferred.
    assert a.num_live() == 10 and a.pending_introductions() == 41
    assert a.stats["introduction_deferred"] == 41 and a.rejected["introduction_dropped"] == 0
    # Another introducer is not held up by b's queue.
    a.receive(0.1, c.node_id, _gossip(c, _fresh(ident, 200, 5, network_id)), token=2)
    assert a.num_live() == 10 + 1 + 5
    # Deferred records enter as b's budget refills (5/s), without anybody re-sending them.
    t = 0.2
    while a.pending_introductions() and t < 20:
        a.tick(t)
        t += 0.2
    assert a.pending_introductions() == 0 and a.num_live() == 16 + 41
    assert 7.0 <= t <= 9.5  # 41 records at 5/s


def test_direct_senders_over_the_global_budget_are_answered_and_admitted_later(
    make_core: Callable[..., Membership],
) -> None:
    cfg = GossipConfig.profile("lan", introductions_rate_global=2.0, introductions_burst_global=5)
    a = make_core(1, config=cfg)
    joiners = [make_core(i) for i in range(100, 120)]
    for j in joiners:
        out = a.receive(0.0, j.node_id, _gossip(j, [], kind="join"), token=1)
        assert out  # every join is answered (with a's state) ...
    assert a.num_live() == 5 and a.pending_introductions() == 15  # ... 5 enter now
    t = 0.0
    while a.pending_introductions():
        t += 0.2
        a.tick(t)
    assert a.num_live() == 20 and 7.0 <= t <= 8.0  # 15 more at 2/s


def test_stampless_identities_never_reach_the_budgets(make_core: Callable[..., Membership]) -> None:
    cfg = GossipConfig.profile("lan", introductions_burst_global=1)
    a = make_core(1, config=cfg, difficulty=8)
    for i in range(200, 230):
        c = make_core(i, difficulty=0)
        with pytest.raises(GossipRejected) as err:
            a.receive(0.0, c.node_id, _gossip(c, [], kind="join"), token=i)
        assert err.value.reason == "bad_pow"
    legit = make_core(2, difficulty=8)
    a.receive(0.0, legit.node_id, _gossip(legit, [], kind="join"), token=1)
    assert [m.node_id for m in a.members()] == [legit.node_id]
    assert a.pending_introductions() == 0 and a.rejected == {"bad_pow": 30}


def test_default_budget_does_not_slow_a_normal_join(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a, b = make_core(1), make_core(2)
    a.receive(0.0, b.node_id, _gossip(b, _fresh(ident, 100, 100, network_id)), token=1)
    assert a.num_live() == 101 and a.pending_introductions() == 0


@pytest.mark.parametrize("state_cap", [64, 8])
def test_tight_budgets_delay_an_honest_join_but_it_converges(state_cap: int) -> None:
    """With budgets far below the join rate, deferred records still all come back.

    64 nodes join through one bootstrap at t=0 with a global budget of 16 + 32/s: every
    node must defer most introductions. The view is full within the goal plus the
    admission delay of docs/gossip.md (``(n - 1 - burst) / rate`` with W = 0).
    """
    import math

    from node.sim.gossip import SimNetwork

    cfg = GossipConfig.profile(
        "lan",
        introductions_burst_global=16,
        introductions_rate_global=32.0,
        unadmitted_state_members=state_cap,  # 8: joiners over budget get a cut state
    )
    n = 64
    net = SimNetwork(64, cfg)
    boot = net.add_node()
    for _ in range(n - 1):
        net.add_node(join=[boot.address])
    gi = cfg.gossip_interval
    delay = (n - 1 - cfg.introductions_burst_global) / cfg.introductions_rate_global
    goal = 2 * math.log2(n) + 4 + delay / gi
    t = net.run_until_true(net.full_view, step=gi, limit=goal * gi + 1e-9)
    deferred = sum(x.core.stats["introduction_deferred"] for x in net.nodes.values())
    assert deferred > 0, "the budgets did not bind: the test would prove nothing"
    cut = sum(x.core.stats["state_cut_unadmitted"] for x in net.nodes.values())
    assert cut > 0
    assert t is not None, f"not converged within {goal:.1f} gossip intervals"
    assert sum(x.core.rejected["introduction_dropped"] for x in net.nodes.values()) == 0


def test_a_sender_waiting_for_admission_gets_a_bounded_state(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    # Answering every fresh identity of a flood with the whole table would amplify it.
    cfg = GossipConfig.profile(
        "lan",
        introductions_burst_global=101,
        introductions_rate_global=1.0,
        unadmitted_state_members=8,
    )
    a, b = make_core(1, config=cfg), make_core(2)
    a.receive(0.0, b.node_id, _gossip(b, _fresh(ident, 100, 100, network_id)), token=1)
    assert a.num_live() == 101  # the global burst is now spent
    late = make_core(3)
    out = a.receive(0.1, late.node_id, _gossip(late, [], kind="join"), token=2)
    assert a.pending_introductions() == 1
    reply = pb.GossipMessage.FromString(next(r.body for r in out if r.token == 2))  # type: ignore[union-attr]
    assert reply.push_pull.join and len(reply.push_pull.states) == 1 + 8
    # Once admitted, the same request gets everything.
    t = 0.1
    while a.pending_introductions():
        t += 0.2
        a.tick(t)
    out = a.receive(t, late.node_id, _gossip(late, [], kind="join"), token=3)
    reply = pb.GossipMessage.FromString(next(r.body for r in out if r.token == 3))  # type: ignore[union-attr]
    assert len(reply.push_pull.states) == 1 + 102
