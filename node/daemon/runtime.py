"""What the daemon runs on top of its servers, and what it tells the operator.

The daemon (``node.daemon.core``) owns the servers and the lifecycle; this module wires the
protocol cores into it (membership now, training when a learner is configured) and
builds the admin replies from their state.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from fednode_proto.v1 import admin_pb2
from node import __version__
from node.base.logs import log
from node.base.metrics import OPERATOR_REJECT_REASONS
from node.daemon.participation import releases

if TYPE_CHECKING:
    from node.daemon.core import Daemon

__all__ = [
    "ban",
    "default_shard",
    "export_model",
    "is_banned",
    "peers_reply",
    "privacy_levels",
    "privacy_reply",
    "start_components",
    "status_reply",
    "stop_components",
]


async def start_components(daemon: Daemon) -> None:
    """Start membership (joining through the bootstrap addresses and stored peers)."""
    from node.daemon.membership import start_membership
    from node.daemon.privacy_guard import ReleaseGuard
    from node.training.genesis import record_mechanism

    assert daemon.store is not None
    # One guard per node: every release path of every learner goes through it.
    record = record_mechanism(daemon.genesis.learner)
    daemon.guard = ReleaseGuard(
        daemon.genesis.privacy,
        daemon.store,
        daemon.metrics,
        record_kind=None if record is None or record[1] == 0 else record[0],
    )
    membership = await start_membership(daemon)
    # Admission (node/wire/admission.py) of every non-gossip request asks this view.
    assert daemon.service is not None
    daemon.service.membership = membership
    daemon._tasks.append(asyncio.create_task(_gauges(daemon, membership), name="gauges"))
    from node.daemon.evidence_gossip import start_evidence

    start_evidence(daemon)
    if not daemon.train:
        return
    from node.training.usercode import TaskSetupError

    shard = daemon.shard
    if shard is None:
        assert daemon.identity is not None
        shard = default_shard(daemon.identity.node_id_hex, daemon.genesis.task.num_nodes)
        log.info(
            "data shard derived from the node id (fednode start --shard N chooses it)",
            extra={"fields": {"shard": shard, "shards": daemon.genesis.task.num_nodes}},
        )
    try:
        if daemon.genesis.learner.kind in {"sgd", "flower"}:
            from node.daemon.training_runtime import start_training

            await start_training(daemon, shard, daemon.attack)
        elif daemon.genesis.learner.kind == "spsa":
            from node.daemon.spsa_runtime import start_spsa

            await start_spsa(daemon, shard)
    except TaskSetupError as exc:
        # The operator's to fix (user code, model folder, data file): one line, and the
        # node keeps serving membership.
        log.error("training not started: %s", exc)


def default_shard(node_id_hex: str, shards: int) -> int:
    """The shard a node takes when the operator names none: its node id modulo ``shards``.

    Node ids are uniform hashes, so two nodes share a shard with probability ``1/shards``;
    operators who must rule that out pass ``--shard``.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return int(node_id_hex, 16) % shards


async def _gauges(daemon: Daemon, membership: Any) -> None:
    while True:
        membership.update_gauges()
        await asyncio.sleep(1.0)


async def stop_components(daemon: Daemon) -> None:
    """Stop training, then leave the membership gracefully."""
    if daemon.training is not None:
        try:
            await daemon.training.stop()
        except Exception:  # a failing learner must not block the shutdown
            log.exception("training did not stop cleanly")
    if daemon.membership is not None:
        await daemon.membership.stop()


def is_banned(daemon: Daemon, node_id: bytes) -> bool:
    """True when the operator banned ``node_id`` or it is quarantined for misbehaving."""
    key = node_id.hex()
    if key in daemon.banned:
        return True
    return daemon.reputation is not None and daemon.reputation.is_quarantined(key)


def _peer_states(daemon: Daemon) -> dict[str, int]:
    counts = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
    if daemon.membership is not None:
        for member in daemon.membership.members():
            counts[member.state] = counts.get(member.state, 0) + 1
    return counts


def status_reply(daemon: Daemon) -> admin_pb2.StatusReply:
    assert daemon.identity is not None
    counts = _peer_states(daemon)
    metrics = daemon.metrics
    sent = received = rejected = 0.0
    by_kind: dict[str, dict[str, int]] = {"out": {}, "in": {}}
    for family in metrics.registry.collect():
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
    reply = admin_pb2.StatusReply(
        node_id=daemon.identity.node_id_hex,
        network_id=daemon.genesis.network_id_hex,
        network_name=daemon.genesis.network.name,
        listen=daemon.address,
        version=__version__,
        uptime_s=time.time() - daemon.started_at,
        peers_alive=counts["alive"],
        peers_suspect=counts["suspect"],
        peers_dead=counts["dead"],
        state=daemon._state,
        bytes_sent=int(sent),
        bytes_received=int(received),
        messages_rejected=int(rejected),
        pid=__import__("os").getpid(),
        task=daemon.genesis.task.name,
        epsilon_budget=daemon.genesis.privacy.epsilon_budget,
        releasing=True,
        metrics=daemon.metrics_address or "",
        dashboard=daemon.dashboard_address or "",
        bytes_sent_by_kind=by_kind["out"],
        bytes_received_by_kind=by_kind["in"],
    )
    if daemon.training is not None:
        daemon.training.fill_status(reply)
    guard = daemon.guard
    if guard is not None:
        if guard.enabled:
            reply.epsilon_spent = guard.spent()
        reply.releasing = guard.releasing or not guard.private
        node, record = privacy_levels(daemon)
        reply.node_privacy.CopyFrom(node)
        reply.record_privacy.CopyFrom(record)
    return reply


def peers_reply(daemon: Daemon) -> admin_pb2.PeersReply:
    now = time.monotonic()
    out = admin_pb2.PeersReply()
    if daemon.membership is None:
        return out
    for m in sorted(daemon.membership.members(), key=lambda m: m.address):
        out.peers.append(
            admin_pb2.PeerInfo(
                node_id=m.node_id.hex(),
                address=m.address,
                state=m.state,
                incarnation=m.incarnation,
                last_seen_s=-1.0 if m.last_seen is None else max(0.0, now - m.last_seen),
                rtt_ms=-1.0 if m.rtt_ms is None else m.rtt_ms,
                banned=is_banned(daemon, m.node_id),
                no_release=not releases(m.capabilities),
            )
        )
    return out


def ban(daemon: Daemon, prefix: str, unban: bool) -> admin_pb2.BanReply:
    prefix = prefix.lower().strip()
    if len(prefix) < 4:
        raise LookupError("give at least 4 hex characters of the node id")
    known: set[str] = set(daemon.banned)
    if daemon.membership is not None:
        known |= {m.node_id.hex() for m in daemon.membership.members()}
    assert daemon.store is not None
    known |= {p.node_id for p in daemon.store.list_peers()}
    matches = sorted(k for k in known if k.startswith(prefix))
    if not matches and len(prefix) == 64:
        matches = [prefix]
    if len(matches) != 1:
        raise LookupError(
            f"no known node id starts with {prefix}"
            if not matches
            else f"{prefix} is ambiguous ({len(matches)} node ids match)"
        )
    node_id = matches[0]
    if unban:
        daemon.banned.discard(node_id)
    else:
        daemon.banned.add(node_id)
    daemon.store.set_state("banned", sorted(daemon.banned))
    daemon.store.set_banned(node_id, not unban)
    daemon.store.log_event("unban" if unban else "ban", {"node_id": node_id})
    log.info(
        "operator %s a peer",
        "unbanned" if unban else "banned",
        extra={"fields": {"node_id": node_id[:16]}},
    )
    return admin_pb2.BanReply(node_id=node_id, banned=not unban)


def export_model(daemon: Daemon) -> admin_pb2.ExportReply:
    if daemon.training is None:
        raise LookupError("this node runs no learner, so it has no model to export")
    result: admin_pb2.ExportReply = daemon.training.export()
    return result


def privacy_levels(daemon: Daemon) -> tuple[admin_pb2.PrivacyLevel, admin_pb2.PrivacyLevel]:
    """The node-level and record-level guarantees as the operator sees them."""
    spec = daemon.genesis.privacy
    guard = daemon.guard
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


def privacy_reply(daemon: Daemon) -> admin_pb2.PrivacyReply:
    spec = daemon.genesis.privacy
    reply = admin_pb2.PrivacyReply(
        epsilon_budget=spec.epsilon_budget, delta=spec.delta, releasing=True
    )
    guard = daemon.guard
    if guard is None:
        return reply
    node, record = privacy_levels(daemon)
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


def run_blocking(daemon: Daemon, fn: Any, *args: Any) -> asyncio.Future[Any]:
    """Run blocking work (SQL, torch) in the default executor."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)
