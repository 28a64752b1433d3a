"""Admission: one contact may introduce only so many new identities per minute."""

from __future__ import annotations

from collections.abc import Callable

from fednode_proto.v1 import gossip_pb2 as pb
from node.gossip import GossipConfig, Membership, sign_record
from node.identity import Identity


def _gossip(sender: Membership, records: list[pb.Update]) -> bytes:
    msg = pb.GossipMessage(sender=sender.record.to_pb())
    msg.gossip.SetInParent()
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


def test_a_contact_flooding_new_identities_is_throttled_and_counted(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    cfg = GossipConfig.profile(
        "lan", new_identities_per_contact=6.0, new_identities_burst_per_contact=10
    )
    a, b, c = make_core(1, config=cfg), make_core(2), make_core(3)
    # b floods 50 identities it minted in one message: a takes the burst (10), counts the rest.
    a.receive(0.0, b.node_id, _gossip(b, _fresh(ident, 100, 50, network_id)), token=1)
    assert a.num_live() == 1 + 10  # b itself (a direct sender, not introduced) + the burst
    assert a.rejected["new_identity_rate_limited"] == 40
    # Another contact is not affected by b's budget.
    a.receive(0.1, c.node_id, _gossip(c, _fresh(ident, 200, 5, network_id)), token=2)
    assert a.num_live() == 2 + 10 + 5
    # One minute later b's bucket holds 6 more: the rate is per minute.
    a.receive(60.0, b.node_id, _gossip(b, _fresh(ident, 300, 20, network_id)), token=3)
    assert a.num_live() == 2 + 10 + 5 + 6
    assert a.rejected["new_identity_rate_limited"] == 40 + 14
    # Records of members already known are not new identities and are never throttled.
    known = _fresh(ident, 100, 10, network_id)
    a.receive(61.0, b.node_id, _gossip(b, known), token=4)
    assert a.rejected["new_identity_rate_limited"] == 54


def test_default_budget_does_not_slow_a_normal_join(
    make_core: Callable[..., Membership], ident: Callable[..., Identity], network_id: bytes
) -> None:
    a, b = make_core(1), make_core(2)
    a.receive(0.0, b.node_id, _gossip(b, _fresh(ident, 100, 100, network_id)), token=1)
    assert a.num_live() == 101 and a.rejected["new_identity_rate_limited"] == 0
