"""Standing: established members are never evicted for newcomers and lead the fan-out."""

from __future__ import annotations

from collections.abc import Callable

from fednode_proto.v1 import gossip_pb2 as pb
from node.base.identity import Identity
from node.gossip import GossipConfig, Membership, MemberState, Reply, Send
from node.gossip.records import sign_record

CFG = GossipConfig.profile("lan", max_members=12, promotion_min_age=10.0)


def _gossip(sender: Membership, updates: list[pb.Update] | None = None) -> bytes:
    msg = pb.GossipMessage(sender=sender.record.to_pb())
    msg.gossip.SetInParent()
    msg.updates.extend(updates or [])
    return msg.SerializeToString()


def _answer(a: Membership, peer: Membership, now: float) -> None:
    """a sends peer a gossip request and peer answers: a has heard from it directly."""
    msg = pb.GossipMessage(sender=a.record.to_pb())
    msg.gossip.SetInParent()
    send = a._send(now, "gossip", peer.node_id, peer.address, msg.SerializeToString(), 1.0)
    assert isinstance(send, Send)
    replies = peer.receive(now, a.node_id, send.body, token=7)
    reply = next(r for r in replies if isinstance(r, Reply))
    a.on_reply(now, send.request_id, reply.body)


def _fresh(ident: Callable[..., Identity], start: int, n: int, net: bytes) -> list[pb.Update]:
    return [
        pb.Update(
            alive=sign_record(
                ident(i),
                address=f"10.7.0.{i % 250}:1",
                incarnation=0,
                network_id=net,
                timestamp_ms=0,
            ).to_pb()
        )
        for i in range(start, start + n)
    ]


def test_promotion_needs_an_answer_and_the_minimum_age(
    make_core: Callable[..., Membership],
) -> None:
    a, b, c = make_core(1, config=CFG), make_core(2), make_core(3)
    a.receive(0.0, b.node_id, _gossip(b), token=1)
    a.receive(0.0, c.node_id, _gossip(c), token=1)
    _answer(a, b, 5.0)  # answered, but too young
    assert not a.get(b.node_id).established  # type: ignore[union-attr]
    a.receive(11.0, b.node_id, _gossip(b), token=3)  # old enough now, and it had answered
    m = a.get(b.node_id)
    assert m is not None and m.established and m.first_seen == 0.0
    a.receive(20.0, c.node_id, _gossip(c), token=2)  # old enough, but never answered us
    assert not a.get(c.node_id).established  # type: ignore[union-attr]
    _answer(a, c, 21.0)
    assert a.get(c.node_id).established  # type: ignore[union-attr]


def test_a_flood_into_a_full_table_never_evicts_established_members(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a = make_core(1, config=CFG)
    honest = [make_core(i) for i in range(2, 8)]  # 6 members
    for h in honest:
        a.receive(0.0, h.node_id, _gossip(h), token=1)
    for h in honest:
        _answer(a, h, 15.0)
    assert all(m.established for m in a.members())
    # 200 fresh identities arrive over 100 s through one of the members (within budgets;
    # no tick: unanswered probes would make the members suspect, a different matter).
    relay = honest[0]
    for k in range(20):
        flood = _gossip(relay, _fresh(ident, 100 + 10 * k, 10, network_id))
        a.receive(20.0 + 5 * k, relay.node_id, flood, 2 + k)
    assert a.pending_introductions() == 0
    view = {m.node_id for m in a.members()}
    assert len(view) == CFG.max_members
    assert {h.node_id for h in honest} <= view  # every established member is still there
    assert a.stats["evicted"] >= 190
    assert a.rejected["table_full"] == 0


def test_sample_prefers_established_members(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a = make_core(1, config=GossipConfig.profile("lan", promotion_min_age=10.0))
    honest = [make_core(i) for i in range(2, 6)]  # 4 established
    for h in honest:
        a.receive(0.0, h.node_id, _gossip(h), token=1)
    for h in honest:
        _answer(a, h, 15.0)
    # A burst of 100 fresh identities (a Sybil's) arrives later.
    a.receive(30.0, honest[0].node_id, _gossip(honest[0], _fresh(ident, 100, 100, network_id)), 2)
    assert a.num_live() == 104
    ids = {h.node_id for h in honest}
    for _ in range(50):
        picked = a.sample(3)
        assert len(picked) == 3 and {m.node_id for m in picked} <= ids
    # Asked for more than the established members: the rest are the oldest others.
    six = a.sample(6)
    assert {m.node_id for m in six} >= ids and len(six) == 6
    # The old behaviour is still available, and it is captured by the burst.
    uniform = [m.node_id in ids for _ in range(50) for m in a.sample(3, prefer_established=False)]
    assert sum(uniform) / len(uniform) < 0.2
    assert all(m.state is MemberState.ALIVE for m in six)


def test_established_members_are_drawn_in_proportion_to_their_age(
    make_core: Callable[..., Membership],
) -> None:
    a = make_core(1, config=GossipConfig.profile("lan", promotion_min_age=10.0))
    old = [make_core(i) for i in range(2, 6)]  # in the view since t=0
    young = [make_core(i) for i in range(6, 10)]  # since t=90
    for h in old:
        a.receive(0.0, h.node_id, _gossip(h), token=1)
    for y in young:
        a.receive(90.0, y.node_id, _gossip(y), token=1)
    for m in old + young:
        _answer(a, m, 100.0)
    assert sum(m.established for m in a.members()) == 8
    # At t=100 the old are 100 s old, the young 10 s: weights 10:1.
    young_ids = {y.node_id for y in young}
    picks = [m.node_id in young_ids for _ in range(400) for m in a.sample(1)]
    share = sum(picks) / len(picks)
    assert 0.04 < share < 0.16  # expected 4*10 / (4*10 + 4*100) = 0.09
