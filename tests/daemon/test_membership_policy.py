"""Membership sampling under the peer policy, on real gossip cores (in-memory network).

Five cores find each other on :class:`node.sim.gossip.SimNetwork`; the daemon's
:class:`DaemonMembership` wraps one of them. Operator bans and quarantines must keep a
peer out of every sample, and withdrawing from releases must be announced and persisted.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from node.base.identity import Identity
from node.daemon.membership import STATE_INCARNATION, DaemonMembership
from node.daemon.peer_policy import PeerPolicy
from node.daemon.reputation import ReputationBook
from node.gossip import GossipConfig
from node.sim.gossip import SimNetwork
from node.storage import Store

from .conftest import make_context


def _view(identity: Identity, store: Store) -> tuple[DaemonMembership, PeerPolicy, list[bytes]]:
    net = SimNetwork(7, GossipConfig.profile("lan"))
    boot = net.add_node()
    others = [net.add_node(join=[boot.address]) for _ in range(4)]
    assert net.run_until_true(net.full_view, step=0.5, limit=120.0) is not None
    policy = PeerPolicy(store, ReputationBook(store, threshold=1, window_s=60, quarantine_s=600))
    # The driver is only asked for its clock here; the core needs no sockets.
    driver: Any = SimpleNamespace(clock=lambda: net.now)
    membership = DaemonMembership(make_context(identity, store), policy, boot.core, driver)
    return membership, policy, [n.node_id for n in others]


def test_banned_and_quarantined_members_are_never_sampled(identity: Identity, store: Store) -> None:
    membership, policy, ids = _view(identity, store)
    assert sorted(m.node_id for m in membership.sample(10)) == sorted(ids)
    policy.ban(ids[0].hex()[:8], unban=False, known=[i.hex() for i in ids])
    policy.fault(ids[1].hex(), "nonfinite")  # threshold 1: quarantined at once
    for _ in range(20):
        picked = {m.node_id for m in membership.sample(10)}
        assert picked == set(ids[2:])
    # Still members (admission decides per request); just never chosen to train with.
    assert membership.is_member(ids[0]) and membership.is_member(ids[1])


def test_withdrawing_is_announced_once_and_survives_a_restart(
    identity: Identity, store: Store
) -> None:
    membership, _, _ = _view(identity, store)
    assert membership.releasing
    before = membership.core.incarnation
    membership.set_releasing(False)
    assert not membership.releasing
    assert membership.core.incarnation == before + 1
    assert store.get_state(STATE_INCARNATION) == before + 1  # a restart starts above it
    membership.set_releasing(False)  # no change, no new record
    assert membership.core.incarnation == before + 1
