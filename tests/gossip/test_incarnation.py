"""Incarnations are bounded: a statement nobody can outbid must not silence a member.

Issue 12: a member that signs ``dead`` about a victim at incarnation 2**64-1 made the
victim's refutation overflow (``struct.error`` while re-signing) and every other node
kept the victim dead for good. Incarnations now live in ``[0, MAX_INCARNATION]`` (a signed
64-bit integer, what the peer table stores), a statement may claim at most
``max_incarnation_step`` above the incarnation the receiver knows, and a refutation is
clamped so it always fits.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fednode_proto.v1 import gossip_pb2 as pb
from node.gossip import (
    MAX_INCARNATION,
    GossipConfig,
    Membership,
    MemberState,
    RecordError,
    StatementKind,
    sign_record,
    sign_statement,
)
from node.sim.gossip import SimNetwork

U64_MAX = 2**64 - 1


def _gossip(sender: Membership, updates: list[pb.Update]) -> bytes:
    msg = pb.GossipMessage(sender=sender.record.to_pb())
    msg.gossip.SetInParent()
    msg.updates.extend(updates)
    return msg.SerializeToString()


def _dead(reporter: Membership, target: bytes, inc: int) -> pb.Update:
    st = sign_statement(
        reporter.signer,
        StatementKind.DEAD,
        target_id=target,
        incarnation=inc,
        network_id=reporter.network_id,
        timestamp_ms=0,
    )
    return pb.Update(statement=st.to_pb())


def _meet(*cores: Membership) -> None:
    for x in cores:
        for y in cores:
            if x is not y:
                x.receive(0.0, y.node_id, _gossip(y, []), token=1)


@pytest.mark.parametrize("inc", [U64_MAX, MAX_INCARNATION, 2**40])
def test_a_dead_claim_far_above_the_known_incarnation_changes_nothing(
    make_core: Callable[..., Membership], inc: int
) -> None:
    victim, other, liar = make_core(1), make_core(2), make_core(3)
    _meet(victim, other, liar)
    # The victim itself: no exception (was struct.error), no refutation, counted.
    victim.receive(1.0, liar.node_id, _gossip(liar, [_dead(liar, victim.node_id, inc)]), 2)
    assert victim.incarnation == 0 and victim.stats["refuted"] == 0
    # Any other node keeps the victim alive.
    other.receive(1.0, liar.node_id, _gossip(liar, [_dead(liar, victim.node_id, inc)]), 2)
    m = other.get(victim.node_id)
    assert m is not None and (m.state, m.incarnation) == (MemberState.ALIVE, 0)
    reason = "bad_incarnation" if inc > MAX_INCARNATION else "incarnation_jump"
    assert victim.rejected[reason] == 1 and other.rejected[reason] == 1


def test_a_dead_claim_within_the_step_is_refuted_and_the_refutation_fits(
    make_core: Callable[..., Membership],
) -> None:
    step = GossipConfig.profile("lan").max_incarnation_step
    victim, other, liar = make_core(1), make_core(2), make_core(3)
    _meet(victim, other, liar)
    claim = _dead(liar, victim.node_id, step)
    other.receive(1.0, liar.node_id, _gossip(liar, [claim]), 2)
    assert other.get(victim.node_id).state is MemberState.DEAD  # type: ignore[union-attr]
    victim.receive(1.0, liar.node_id, _gossip(liar, [claim]), 2)
    assert victim.incarnation == step + 1
    # The refutation (one above the claim) is taken by a node that never saw the claim.
    fresh = make_core(4)
    _meet(fresh, victim)
    assert fresh.get(victim.node_id).incarnation == step + 1  # type: ignore[union-attr]
    other.receive(1.1, victim.node_id, _gossip(victim, []), 3)
    m = other.get(victim.node_id)
    assert m is not None and (m.state, m.incarnation) == (MemberState.ALIVE, step + 1)


def test_refutation_is_clamped_at_the_ceiling(make_core: Callable[..., Membership]) -> None:
    # A member already at the ceiling (it can only get there by its own records) refutes
    # at the ceiling instead of overflowing.
    victim = make_core(1, incarnation=MAX_INCARNATION - 1)
    liar = make_core(3)
    _meet(victim, liar)
    victim.receive(
        1.0, liar.node_id, _gossip(liar, [_dead(liar, victim.node_id, MAX_INCARNATION)]), 2
    )
    assert victim.incarnation == MAX_INCARNATION
    victim.receive(
        1.0, liar.node_id, _gossip(liar, [_dead(liar, victim.node_id, MAX_INCARNATION)]), 3
    )
    assert victim.incarnation == MAX_INCARNATION  # no overflow, no exception


def test_records_and_statements_above_the_ceiling_are_malformed(
    make_core: Callable[..., Membership],
) -> None:
    a = make_core(1)
    rec = sign_record(
        a.signer,
        address="10.0.0.1:7000",
        incarnation=U64_MAX,
        network_id=a.network_id,
        timestamp_ms=0,
    )
    with pytest.raises(RecordError) as exc:
        a.verifier.parse_record(rec.to_pb())
    assert exc.value.reason == "bad_incarnation"
    with pytest.raises(ValueError, match="incarnation"):
        make_core(2, incarnation=MAX_INCARNATION + 1)


def test_victim_of_a_dead_claim_is_alive_in_every_view_within_5s() -> None:
    """Done-when of issue 12 on the simulator (real Ed25519): 16 nodes, liar inside."""
    net = SimNetwork(12, GossipConfig.profile("lan"))
    boot = net.add_node()
    nodes = [boot] + [net.add_node(join=[boot.address]) for _ in range(15)]
    net.run_until(5.0)
    assert net.full_view()
    victim, liar = nodes[3], nodes[7]
    step = liar.core.config.max_incarnation_step
    t0 = net.now
    for target in nodes:
        if target is liar:
            continue
        for inc in (U64_MAX, MAX_INCARNATION, step):
            msg = _gossip(liar.core, [_dead(liar.core, victim.node_id, inc)])
            net._apply(target, target.core.receive(net.now, liar.node_id, msg, 0))
            net._schedule(target)
    others = [n for n in nodes if n is not victim]

    def victim_alive_everywhere() -> bool:
        views = [n.core.get(victim.node_id) for n in others]
        return all(m is not None and m.state is MemberState.ALIVE for m in views)

    t = net.run_until_true(victim_alive_everywhere, step=0.05, limit=5.0)
    assert t is not None and t - t0 <= 5.0
    assert victim.core.incarnation == step + 1
