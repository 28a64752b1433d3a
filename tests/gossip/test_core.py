"""The sans-I/O core: bad input, incarnation rules, refutation, Lifeguard, limits."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable

import pytest

from fednode_proto.v1 import gossip_pb2 as pb
from node.base.identity import Identity
from node.gossip import (
    GossipConfig,
    GossipRejected,
    MemberRecord,
    Membership,
    MemberState,
    Reply,
    Ring,
    Send,
    StatementKind,
    sign_record,
    sign_statement,
)

LAN = GossipConfig.profile("lan")


def body(
    sender: Membership,
    kind: str = "gossip",
    updates: list[pb.Update] | None = None,
    record: MemberRecord | None = None,
) -> bytes:
    msg = pb.GossipMessage(sender=(record or sender.record).to_pb())
    getattr(msg, kind).SetInParent()
    msg.updates.extend(updates or [])
    return msg.SerializeToString()


def alive(rec: MemberRecord) -> pb.Update:
    return pb.Update(alive=rec.to_pb())


def rec_of(
    ident: Identity, network: bytes, incarnation: int = 0, address: str = "10.9.9.9:1"
) -> MemberRecord:
    return sign_record(
        ident, address=address, incarnation=incarnation, network_id=network, timestamp_ms=0
    )


def stmt(
    reporter: Identity, kind: StatementKind, target: bytes, inc: int, network: bytes
) -> pb.Update:
    st = sign_statement(
        reporter, kind, target_id=target, incarnation=inc, network_id=network, timestamp_ms=0
    )
    return pb.Update(statement=st.to_pb())


def reply_of(actions: list, token: int) -> pb.GossipMessage:
    for a in actions:
        if isinstance(a, Reply) and a.token == token:
            return pb.GossipMessage.FromString(a.body)
    raise AssertionError("no reply")


def test_ping_is_acked_and_sender_learned(make_core: Callable[..., Membership]) -> None:
    a, b = make_core(1), make_core(2)
    msg = pb.GossipMessage(sender=b.record.to_pb(), ping=pb.Ping(seq=7, target_id=a.node_id))
    out = a.receive(0.0, b.node_id, msg.SerializeToString(), token=1)
    ack = reply_of(out, 1)
    assert ack.ack.seq == 7 and not ack.ack.nack
    assert ack.sender.node_id == a.node_id
    m = a.get(b.node_id)
    assert m is not None and m.state is MemberState.ALIVE and m.last_seen == 0.0
    # A ping meant for someone else is refused.
    wrong = pb.GossipMessage(sender=b.record.to_pb(), ping=pb.Ping(seq=8, target_id=bytes(32)))
    with pytest.raises(GossipRejected, match="another node"):
        a.receive(0.1, b.node_id, wrong.SerializeToString(), token=2)
    assert a.rejected["wrong_target"] == 1


def test_forged_foreign_and_unstamped_updates_leave_view_unpolluted(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a = make_core(1, difficulty=6)
    b = make_core(2, difficulty=6)
    good = rec_of(ident(10, 6), network_id)
    forged = dataclasses.replace(rec_of(ident(11, 6), network_id), address="6.6.6.6:66")
    foreign = rec_of(ident(12, 6), hashlib.sha256(b"elsewhere").digest())
    unstamped = rec_of(ident(13, 0), network_id)
    assert not unstamped.pow_nonce  # difficulty 0 minted nonce 0, below 6 bits here
    # A suspicion about b "signed" by an attacker pretending to be good's owner.
    fake_stmt = stmt(ident(14, 6), StatementKind.DEAD, b.node_id, 0, network_id)
    fake_stmt.statement.reporter_id = good.node_id
    updates = [alive(good), alive(forged), alive(foreign), alive(unstamped), fake_stmt]
    a.receive(0.0, b.node_id, body(b, updates=updates), token=1)
    known = {m.node_id: m.state for m in a.members()}
    assert known == {b.node_id: MemberState.ALIVE, good.node_id: MemberState.ALIVE}
    assert a.rejected["bad_signature"] == 2  # forged record + fake statement
    assert a.rejected["wrong_network"] == 1
    assert a.rejected["bad_pow"] == 1


def test_sender_record_must_be_the_senders_and_of_this_network(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a, b, c = make_core(1), make_core(2), make_core(3)
    with pytest.raises(GossipRejected) as err:
        a.receive(0.0, c.node_id, body(b), token=1)  # b's record, c's envelope
    assert err.value.reason == "sender_mismatch"
    other = make_core(4, network=hashlib.sha256(b"other").digest())
    with pytest.raises(GossipRejected) as err:
        a.receive(0.0, other.node_id, body(other), token=2)
    assert err.value.reason == "wrong_network"
    with pytest.raises(GossipRejected) as err:
        a.receive(0.0, b.node_id, b"\x0a\xff\xff\xff", token=3)
    assert err.value.reason == "malformed"
    assert a.members() == []
    assert a.rejected == {"sender_mismatch": 1, "wrong_network": 1, "malformed": 1}


def test_replayed_and_older_incarnations_change_nothing(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a, b = make_core(1), make_core(2)
    c = ident(3)
    old, new = rec_of(c, network_id, 1, "10.0.0.3:1"), rec_of(c, network_id, 2, "10.0.0.3:2")
    a.receive(0.0, b.node_id, body(b, updates=[alive(new)]), token=1)
    a.receive(0.1, b.node_id, body(b, updates=[alive(new)]), token=2)  # replay
    a.receive(0.2, b.node_id, body(b, updates=[alive(old)]), token=3)  # older
    m = a.get(c.node_id)
    assert m is not None and (m.incarnation, m.address) == (2, "10.0.0.3:2")
    assert a.rejected["stale_incarnation"] == 1
    assert a.stats["duplicate"] >= 1
    # A suspicion about an older incarnation is stale too.
    a.receive(
        0.3,
        b.node_id,
        body(
            b,
            updates=[
                stmt(
                    b.signer,
                    StatementKind.SUSPECT,  # type: ignore[arg-type]
                    c.node_id,
                    1,
                    network_id,
                )
            ],
        ),
        token=4,
    )
    assert a.get(c.node_id).state is MemberState.ALIVE  # type: ignore[union-attr]
    assert a.rejected["stale_incarnation"] == 2


def test_refutation_by_higher_incarnation(
    make_core: Callable[..., Membership], network_id: bytes, wire: type
) -> None:
    a, b = make_core(1), make_core(2)
    w = wire(a, b)
    w.run(0.0, b, b.join(0.0, [a.address]))
    assert a.get(b.node_id) is not None and b.get(a.node_id) is not None
    # b hears that a is suspect (b itself reports it) ...
    b.receive(0.1, a.node_id, body(a, updates=[]), token=99)
    sus = sign_statement(
        b.signer,
        StatementKind.SUSPECT,
        target_id=a.node_id,  # type: ignore[arg-type]
        incarnation=0,
        network_id=network_id,
        timestamp_ms=0,
    )
    b._apply_statement(0.1, sus)
    assert b.get(a.node_id).state is MemberState.SUSPECT  # type: ignore[union-attr]
    # ... and tells a; a refutes with incarnation 1, which b accepts on the ack.
    ping = pb.GossipMessage(
        sender=b.record.to_pb(),
        ping=pb.Ping(seq=1, target_id=a.node_id),
        updates=[pb.Update(statement=sus.to_pb())],
    )
    out = a.receive(0.2, b.node_id, ping.SerializeToString(), token=5)
    assert a.incarnation == 1 and a.stats["refuted"] == 1
    assert a.awareness == 1  # Lifeguard: being suspected hints at our own slowness
    ack = reply_of(out, 5)
    assert ack.sender.incarnation == 1
    # The new record spreads by gossip; b (still suspecting) takes it on first contact.
    w.advance(0.3, 1.5, 0.05)
    m = b.get(a.node_id)
    assert m is not None and (m.state, m.incarnation) == (MemberState.ALIVE, 1)


def test_suspicion_timeline_with_independent_confirmations(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a, b = make_core(1), make_core(2)
    others = [ident(i) for i in range(10, 15)]
    x = others[0]
    recs = [alive(rec_of(o, network_id, 0, f"10.1.0.{i}:1")) for i, o in enumerate(others)]
    a.receive(0.0, b.node_id, body(b, updates=recs), token=1)
    n = a.num_live() + 1
    assert n == 7
    lo, hi = LAN.suspicion_min(n), LAN.suspicion_max(n)
    t0 = 1.0
    a.receive(
        t0,
        b.node_id,
        body(
            b,
            updates=[
                stmt(
                    b.signer,
                    StatementKind.SUSPECT,  # type: ignore[arg-type]
                    x.node_id,
                    0,
                    network_id,
                )
            ],
        ),
        token=2,
    )
    assert a.get(x.node_id).state is MemberState.SUSPECT  # type: ignore[union-attr]
    assert a.next_deadline() <= t0 + hi + 1e-9
    assert a._suspects[x.node_id].suspicion.deadline == pytest.approx(t0 + hi)  # type: ignore[union-attr]
    # The same reporter again is not a confirmation; two others are.
    a.receive(
        t0 + 0.1,
        b.node_id,
        body(
            b,
            updates=[
                stmt(
                    b.signer,
                    StatementKind.SUSPECT,  # type: ignore[arg-type]
                    x.node_id,
                    0,
                    network_id,
                )
            ],
        ),
        token=3,
    )
    assert a.stats["confirmations"] == 0
    a.receive(
        t0 + 0.2,
        b.node_id,
        body(b, updates=[stmt(others[1], StatementKind.SUSPECT, x.node_id, 0, network_id)]),
        token=4,
    )
    d1 = a._suspects[x.node_id].suspicion.deadline  # type: ignore[union-attr]
    assert d1 == pytest.approx(t0 + LAN.suspicion_timeout(n, 1))
    assert t0 + lo < d1 < t0 + hi
    a.receive(
        t0 + 0.3,
        b.node_id,
        body(b, updates=[stmt(others[2], StatementKind.SUSPECT, x.node_id, 0, network_id)]),
        token=5,
    )
    assert a._suspects[x.node_id].suspicion.deadline == pytest.approx(t0 + lo)  # type: ignore[union-attr]
    a.tick(t0 + lo - 0.01)
    assert a.get(x.node_id).state is MemberState.SUSPECT  # type: ignore[union-attr]
    a.tick(t0 + lo + 0.01)
    m = a.get(x.node_id)
    assert m is not None and m.state is MemberState.DEAD and a.stats["declared_dead"] == 1
    # The dead statement a gossips is signed by a itself.
    q = pb.GossipMessage.FromString(a._queue[x.node_id].wire).updates[0]
    assert q.statement.kind == pb.Statement.DEAD and q.statement.reporter_id == a.node_id
    # A refutation (higher incarnation, owner-signed) revives x.
    a.receive(t0 + lo + 1, b.node_id, body(b, updates=[alive(rec_of(x, network_id, 1))]), token=6)
    assert a.get(x.node_id).state is MemberState.ALIVE  # type: ignore[union-attr]


def test_local_health_stretches_probing_and_recovers(
    make_core: Callable[..., Membership], wire: type
) -> None:
    cores = [make_core(i) for i in range(1, 5)]
    a = cores[0]
    w = wire(*cores)
    for c in cores[1:]:
        w.run(0.0, c, c.join(0.0, [a.address]))
    w.advance(0.0, 3.0, 0.05)
    assert a.awareness == 0 and a.num_live() == 3
    # Everyone else goes silent: probes and indirect probes fail, nacks never come.
    w.down = {c.address for c in cores[1:]}
    w.sent.clear()
    w.advance(3.05, 12.0, 0.05)
    assert a.awareness >= 3  # each failed probe adds its missed nacks
    pings = [t for (t, src, _, kind) in w.sent if src == a.address and kind == "ping"]
    gaps = [round(y - x, 2) for x, y in itertools.pairwise(pings)]
    assert gaps and max(gaps) > 2 * LAN.probe_interval  # the probe period stretched
    # They come back: direct acks bring the score down one step per probe.
    w.down = set()
    before = a.awareness
    w.advance(12.05, 60.0, 0.05)
    assert a.awareness < before


def test_join_flood_is_throttled(make_core: Callable[..., Membership]) -> None:
    cfg = GossipConfig.profile(
        "lan",
        introductions_rate_global=1.0,
        introductions_burst_global=5,
        join_rate_per_peer=0.1,
        join_burst_per_peer=2,
    )
    a = make_core(1, config=cfg)
    for i in range(100, 150):
        c = make_core(i)
        a.receive(0.0, c.node_id, body(c, "join"), token=i)
    # Five enter the table now; the other 45 wait for the global budget (1/s).
    assert a.num_live() == 5 and a.pending_introductions() == 45
    assert a.stats["introduction_deferred"] == 45
    # One member re-joining in a loop is limited per peer as well.
    c = make_core(100)
    outcomes = []
    for k in range(5):
        try:
            a.receive(0.01 * k, c.node_id, body(c, "join"), token=1000 + k)
            outcomes.append(True)
        except GossipRejected:
            outcomes.append(False)
    assert outcomes == [True, False, False, False, False]  # burst 2: one used by the flood
    # The node stays healthy: its own members still get answers.
    ping = pb.GossipMessage(sender=c.record.to_pb(), ping=pb.Ping(seq=3, target_id=a.node_id))
    assert reply_of(a.receive(1.0, c.node_id, ping.SerializeToString(), token=9), 9).ack.seq == 3


def test_inbound_rate_limit_per_peer(make_core: Callable[..., Membership]) -> None:
    a = make_core(1, config=GossipConfig.profile("lan", inbound_rate=1.0, inbound_burst=5))
    b = make_core(2)
    ok = 0
    for k in range(8):
        try:
            a.receive(0.0, b.node_id, body(b), token=k)
            ok += 1
        except GossipRejected as exc:
            assert exc.reason == "rate_limited"
    assert ok == 5 and a.rejected["rate_limited"] == 3
    a.receive(2.0, b.node_id, body(b), token=99)  # refilled with time


def test_member_table_is_bounded_and_evicts_dead_first(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a = make_core(1, config=GossipConfig.profile("lan", max_members=10))
    b = make_core(2)
    recs = [rec_of(ident(i), network_id, 0, f"10.2.0.{i}:1") for i in range(10, 40)]
    a.receive(0.0, b.node_id, body(b, updates=[alive(r) for r in recs[:20]]), token=1)
    # b + 9 fit; each further newcomer displaces the youngest member that is not
    # established (issue 12: the table stays bounded, newcomers churn among themselves).
    assert len(a.members()) == 10 and a.stats["evicted"] == 11
    victim = next(m for m in a.members() if m.node_id != b.node_id)
    a.receive(
        0.1,
        b.node_id,
        body(b, updates=[stmt(b.signer, StatementKind.DEAD, victim.node_id, 0, network_id)]),
        token=2,
    )  # type: ignore[arg-type]
    assert a.get(victim.node_id).state is MemberState.DEAD  # type: ignore[union-attr]
    a.receive(0.2, b.node_id, body(b, updates=[alive(recs[25])]), token=3)
    assert len(a.members()) == 10
    assert a.get(victim.node_id) is None and a.get(recs[25].node_id) is not None
    assert a.stats["evicted"] == 12  # the dead member went first


def test_sample_excludes_suspects_and_respects_topology(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a, b = make_core(1), make_core(2)
    recs = [rec_of(ident(i), network_id, 0, f"10.3.0.{i}:1") for i in range(10, 20)]
    a.receive(0.0, b.node_id, body(b, updates=[alive(r) for r in recs]), token=1)
    a.receive(
        0.1,
        b.node_id,
        body(b, updates=[stmt(b.signer, StatementKind.SUSPECT, recs[0].node_id, 0, network_id)]),
        token=2,
    )  # type: ignore[arg-type]
    for _ in range(20):
        s = a.sample(4)
        assert len(s) == 4 and len({m.node_id for m in s}) == 4
        assert recs[0].node_id not in {m.node_id for m in s}
    assert len(a.sample(100)) == 10
    assert len(a.sample(100, exclude_suspect=False)) == 11
    ring = a.sample(100, topology=Ring(2))
    assert 1 <= len(ring) <= 2
    assert {m.node_id for m in ring} <= Ring(2).neighbors(
        a.node_id, [m.node_id for m in a.members(states=[MemberState.ALIVE])]
    )
    with pytest.raises(ValueError, match="sample size"):
        a.sample(-1)


def test_restore_seeds_join_candidates_and_rejects_tampered(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a = make_core(1)
    good = rec_of(ident(5), network_id, 3, "10.4.0.5:1")
    bad = dataclasses.replace(rec_of(ident(6), network_id, 0, "10.4.0.6:1"), address="10.6.6.6:1")
    own_old = sign_record(
        a.signer, address=a.address, incarnation=7, network_id=network_id, timestamp_ms=0
    )
    assert a.restore([good, bad, own_old]) == 1
    assert a.incarnation == 8  # outbids its own previous life
    sends = [x for x in a.join(0.0, []) if isinstance(x, Send)]
    assert [s.address for s in sends] == ["10.4.0.5:1"] and sends[0].kind == "join"
    # Unanswered: retried after join_retry_interval.
    a.on_failure(0.1, sends[0].request_id)
    again = [
        x
        for x in a.tick(LAN.join_retry_interval + 0.01)
        if isinstance(x, Send) and x.kind == "join"
    ]
    assert [s.address for s in again] == ["10.4.0.5:1"]


def test_updates_are_not_echoed_to_their_source_or_subject(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a, b, d = make_core(1), make_core(2), make_core(4)
    c = rec_of(ident(3), network_id, 0, "10.5.0.3:1")
    a.receive(0.0, d.node_id, body(d), token=1)
    out = a.receive(0.1, b.node_id, body(b, updates=[alive(c)]), token=2)

    def alive_ids(msg: pb.GossipMessage) -> set[bytes]:
        return {bytes(u.alive.node_id) for u in msg.updates if u.HasField("alive")}

    to_b = reply_of(out, 2)  # the reply to b, who told us about c
    assert c.node_id not in alive_ids(to_b) and b.node_id not in alive_ids(to_b)
    assert a.record_of(c.node_id) == c
    ping_d = pb.GossipMessage.FromString(
        a._message(ping=pb.Ping(seq=1, target_id=d.node_id), to=d.node_id)
    )
    assert {c.node_id, b.node_id} <= alive_ids(ping_d)
    assert d.node_id not in alive_ids(ping_d)


def test_first_seen_is_kept_across_later_messages(make_core: Callable[..., Membership]) -> None:
    # Standing (age in the view) is what admission and catch-up trust; a member's later
    # messages or refutations must not reset it, or an old identity would look fresh.
    a, b = make_core(1), make_core(2)
    ping = pb.GossipMessage(sender=b.record.to_pb(), ping=pb.Ping(seq=1, target_id=a.node_id))
    a.receive(5.0, b.node_id, ping.SerializeToString(), token=1)
    again = pb.GossipMessage(sender=b.record.to_pb(), ping=pb.Ping(seq=2, target_id=a.node_id))
    a.receive(40.0, b.node_id, again.SerializeToString(), token=2)
    m = a.get(b.node_id)
    assert m is not None and m.first_seen == 5.0 and m.last_seen == 40.0


def test_new_capabilities_spread_at_a_higher_incarnation(
    make_core: Callable[..., Membership], wire: type
) -> None:
    # A node whose privacy budget is spent re-announces itself without taking part
    # (node/daemon/participation.py): every member must take the new record.
    a, b, c = make_core(1, capabilities=("sgd",)), make_core(2), make_core(3)
    w = wire(a, b, c)
    w.run(0.0, b, b.join(0.0, [a.address]))
    w.run(0.0, c, c.join(0.0, [a.address]))
    w.advance(0.1, 2.0, 0.05)
    assert c.get(a.node_id).capabilities == ("sgd",)  # type: ignore[union-attr]
    assert a.set_capabilities(2.0, ("sgd", "no-release")) is True
    assert a.set_capabilities(2.0, ("sgd", "no-release")) is False  # unchanged: no bump
    assert a.incarnation == 1 and a.record.capabilities == ("sgd", "no-release")
    w.advance(2.05, 4.0, 0.05)
    for peer in (b, c):
        m = peer.get(a.node_id)
        assert m is not None and m.state is MemberState.ALIVE and m.incarnation == 1
        assert m.capabilities == ("sgd", "no-release")
