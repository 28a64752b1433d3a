"""The operator's replies: one object behind the admin API and the dashboard.

:class:`Operator` implements :class:`node.wire.admin_server.AdminBackend` (status, peers,
ban, export, privacy, stop) and :class:`node.dashboard.StatusSource`. It is built when
the admin server starts, before membership and the learner exist, because the admin API
answers from the moment it listens ("starting"); :meth:`Operator.attach` hands it the
components once the daemon has built them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from fednode_proto.v1 import admin_pb2
from node import __version__
from node.base.metrics import OPERATOR_REJECT_REASONS
from node.daemon.context import LearnerRuntime, MembershipView, NodeContext, NodeInfo, ReleaseState
from node.daemon.participation import releases
from node.daemon.peer_policy import PeerPolicy

__all__ = ["Operator", "privacy_levels"]


class Operator:
    """Builds every admin reply from the daemon's components.

    Parameters
    ----------
    ctx : NodeContext
        Identity, genesis, metrics and store of the node.
    policy : PeerPolicy
        Bans and quarantines (``ban`` changes it).
    info : NodeInfo
        Lifecycle state and listening addresses, kept current by the daemon.
    request_stop : callable
        Asks the daemon to stop (the admin ``Stop`` call).
    """

    def __init__(
        self,
        ctx: NodeContext,
        policy: PeerPolicy,
        info: NodeInfo,
        request_stop: Callable[[], None],
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        self.info = info
        self._request_stop = request_stop
        # Optional only while the daemon is starting: the admin API already answers then.
        self.membership: MembershipView | None = None
        self.guard: ReleaseState | None = None
        self.learner: LearnerRuntime | None = None

    def attach(
        self,
        membership: MembershipView,
        guard: ReleaseState,
        learner: LearnerRuntime | None = None,
    ) -> None:
        """The components, once built (``learner`` None: this node trains nothing)."""
        self.membership = membership
        self.guard = guard
        self.learner = learner

    # --- AdminBackend ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._request_stop()

    def status(self) -> admin_pb2.StatusReply:
        counts = self._peer_states()
        sent = received = rejected = 0.0
        by_kind: dict[str, dict[str, int]] = {"out": {}, "in": {}}
        for family in self.ctx.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "fednode_bytes_total":
                    direction = "out" if sample.labels.get("direction") == "out" else "in"
                    kind = sample.labels.get("kind", "")
                    by_kind[direction][kind] = by_kind[direction].get(kind, 0) + int(sample.value)
                    if direction == "out":
                        sent += sample.value
                    else:
                        received += sample.value
                elif (
                    sample.name == "fednode_messages_rejected_total"
                    and sample.labels.get("reason") not in OPERATOR_REJECT_REASONS
                ):
                    rejected += sample.value
        g = self.ctx.genesis
        reply = admin_pb2.StatusReply(
            node_id=self.ctx.identity.node_id_hex,
            network_id=g.network_id_hex,
            network_name=g.network.name,
            listen=self.info.address,
            version=__version__,
            uptime_s=time.time() - self.info.started_at,
            peers_alive=counts["alive"],
            peers_suspect=counts["suspect"],
            peers_dead=counts["dead"],
            state=self.info.state,
            bytes_sent=int(sent),
            bytes_received=int(received),
            messages_rejected=int(rejected),
            pid=os.getpid(),
            task=g.task.name,
            epsilon_budget=g.privacy.epsilon_budget,
            releasing=True,
            metrics=self.info.metrics_address,
            dashboard=self.info.dashboard_address,
            bytes_sent_by_kind=by_kind["out"],
            bytes_received_by_kind=by_kind["in"],
            learner_state=self.info.learner_state,
        )
        if self.learner is not None:
            self.learner.fill_status(reply)
        guard = self.guard
        if guard is not None:
            if guard.enabled:
                reply.epsilon_spent = guard.spent()
            reply.releasing = guard.releasing or not guard.private
            node, record = privacy_levels(self.ctx, guard)
            reply.node_privacy.CopyFrom(node)
            reply.record_privacy.CopyFrom(record)
        return reply

    def peers(self) -> admin_pb2.PeersReply:
        now = time.monotonic()
        out = admin_pb2.PeersReply()
        if self.membership is None:
            return out
        for m in sorted(self.membership.members(), key=lambda m: m.address):
            out.peers.append(
                admin_pb2.PeerInfo(
                    node_id=m.node_id.hex(),
                    address=m.address,
                    state=m.state,
                    incarnation=m.incarnation,
                    last_seen_s=-1.0 if m.last_seen is None else max(0.0, now - m.last_seen),
                    rtt_ms=-1.0 if m.rtt_ms is None else m.rtt_ms,
                    banned=self.policy.is_banned(m.node_id),
                    no_release=not releases(m.capabilities),
                )
            )
        return out

    def ban(self, node_id_prefix: str, unban: bool) -> admin_pb2.BanReply:
        known = (
            [] if self.membership is None else [m.node_id.hex() for m in self.membership.members()]
        )
        node_id = self.policy.ban(node_id_prefix, unban, known)
        return admin_pb2.BanReply(node_id=node_id, banned=not unban)

    def export(self) -> admin_pb2.ExportReply:
        if self.learner is None:
            raise LookupError("this node runs no learner, so it has no model to export")
        return self.learner.export()

    def privacy(self) -> admin_pb2.PrivacyReply:
        spec = self.ctx.genesis.privacy
        reply = admin_pb2.PrivacyReply(
            epsilon_budget=spec.epsilon_budget, delta=spec.delta, releasing=True
        )
        guard = self.guard
        if guard is None:
            return reply
        node, record = privacy_levels(self.ctx, guard)
        reply.node.CopyFrom(node)
        reply.record.CopyFrom(record)
        reply.epsilon_spent = guard.spent()
        reply.releasing = guard.releasing or not guard.private
        reply.reason = guard.reason if guard.private else "privacy is disabled"
        for row in guard.rows:
            reply.releases.append(
                admin_pb2.Release(
                    seq=row.seq,
                    created_at=row.created_at,
                    kind=row.release_kind,
                    noise_multiplier=row.noise_multiplier,
                    sample_rate=row.sample_rate,
                    steps=row.steps,
                    epsilon_after=row.epsilon_after,
                    scope=row.scope,
                )
            )
        return reply

    # --- StatusSource (the dashboard) ------------------------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        return self.ctx.metrics.registry

    @property
    def max_rounds(self) -> int | None:
        return self.ctx.genesis.rounds.max_rounds

    @property
    def privacy_enabled(self) -> bool:
        return self.ctx.genesis.privacy.enabled

    def last_loss(self) -> float:
        return self.learner.last_loss if self.learner is not None else math.nan

    # --- helpers ---------------------------------------------------------------------------

    def _peer_states(self) -> dict[str, int]:
        counts = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
        if self.membership is not None:
            for member in self.membership.members():
                counts[member.state] = counts.get(member.state, 0) + 1
        return counts


def privacy_levels(
    ctx: NodeContext, guard: ReleaseState | None
) -> tuple[admin_pb2.PrivacyLevel, admin_pb2.PrivacyLevel]:
    """The node-level and record-level guarantees as the operator sees them.

    Parameters
    ----------
    ctx : NodeContext
        Source of the genesis privacy settings.
    guard : ReleaseState or None
        The node's release guard (None while the daemon starts: settings only).
    """
    spec = ctx.genesis.privacy
    node = admin_pb2.PrivacyLevel(
        level="node",
        enabled=spec.enabled,
        mechanism="gaussian",
        epsilon_budget=spec.epsilon_budget,
        delta=spec.delta,
        has_budget=True,
        active=True,
    )
    record = admin_pb2.PrivacyLevel(
        level="record",
        delta=spec.sample_delta,
        has_budget=spec.sample_epsilon is not None,
        epsilon_budget=spec.sample_epsilon or 0.0,
        active=True,
    )
    if guard is None:
        return node, record
    record.enabled = guard.record_kind is not None
    record.mechanism = guard.record_kind or ""
    for level, account in ((node, guard.node), (record, guard.record)):
        level.epsilon_spent = account.spent()
        level.steps = account.steps
        level.releases = len(account.rows)
        level.active = account.active
        level.reason = account.reason
        if level.has_budget and level.enabled:
            level.epsilon_remaining = max(0.0, level.epsilon_budget - level.epsilon_spent)
    if not node.enabled:
        node.reason = node.reason or "node-level privacy is disabled"
    return node, record
