"""The operator replies without processes: one Operator over a real store and a fixed view."""

from __future__ import annotations

import math
import os
import time

import pytest

from fednode_proto.v1 import admin_pb2
from node.base.identity import Identity
from node.daemon.context import NodeContext, NodeInfo
from node.daemon.operator import Operator
from node.daemon.peer_policy import PeerPolicy
from node.daemon.privacy_guard import ReleaseGuard
from node.gossip import MemberState
from node.storage import Store
from node.training.genesis import Genesis
from node.wire.admin_server import AdminBackend

from .conftest import FakeMembership, make_context, member

PEERS = [Identity.generate(0) for _ in range(4)]


class FakeLearner:
    """A learner that reports one round and one evaluation."""

    def __init__(self, guard: ReleaseGuard) -> None:
        self.guard = guard
        self.last_loss = 0.25
        self.stopped = False

    def fill_status(self, reply: admin_pb2.StatusReply) -> None:
        reply.learner = "sgd"
        reply.round = 7
        reply.last_accuracy = 0.5
        reply.history.append(admin_pb2.Evaluation(round=6, accuracy=0.5, loss=0.25))

    def export(self) -> admin_pb2.ExportReply:
        return admin_pb2.ExportReply(round=7, model_hash="abc")

    async def stop(self) -> None:
        self.stopped = True


def _operator(ctx: NodeContext, store: Store) -> tuple[Operator, list[str]]:
    stops: list[str] = []
    info = NodeInfo(started_at=time.time() - 5.0, address=ctx.address)
    return Operator(ctx, PeerPolicy(store), info, lambda: stops.append("stop")), stops


def _view() -> FakeMembership:
    return FakeMembership(
        [
            member(PEERS[0]),
            member(PEERS[1], MemberState.SUSPECT),
            member(PEERS[2], MemberState.DEAD),
            member(PEERS[3], releasing=False),
        ]
    )


def test_while_starting_replies_say_so_and_change_nothing(ctx: NodeContext, store: Store) -> None:
    op, stops = _operator(ctx, store)
    backend: AdminBackend = op  # the admin server's Protocol
    status = backend.status()
    assert status.state == "starting" and status.node_id == ctx.identity.node_id_hex
    assert status.peers_alive == 0 and status.pid == os.getpid()
    assert status.uptime_s >= 5.0 and status.listen == "127.0.0.1:7000"
    assert status.releasing and not status.HasField("node_privacy")
    assert list(backend.peers().peers) == []
    with pytest.raises(LookupError, match="no learner"):
        backend.export()
    privacy = backend.privacy()
    assert privacy.releasing and list(privacy.releases) == []
    backend.request_stop()
    assert stops == ["stop"]


def test_status_counts_members_and_hides_operator_rejections(
    ctx: NodeContext, store: Store
) -> None:
    op, _ = _operator(ctx, store)
    guard = ReleaseGuard(ctx.genesis.privacy, store, ctx.metrics)
    op.attach(_view(), guard, FakeLearner(guard))
    op.info.state = "running"
    ctx.metrics.messages_rejected.labels(reason="nonfinite").inc(3)
    ctx.metrics.messages_rejected.labels(reason="admin_token").inc(5)  # the operator's own
    ctx.metrics.bytes.labels(direction="out", kind="update").inc(100)
    ctx.metrics.bytes.labels(direction="in", kind="gossip").inc(40)
    s = op.status()
    assert (s.state, s.peers_alive, s.peers_suspect, s.peers_dead) == ("running", 2, 1, 1)
    assert s.messages_rejected == 3
    assert (s.bytes_sent, s.bytes_received) == (100, 40)
    assert dict(s.bytes_sent_by_kind) == {"update": 100}
    # The learner fills its part; the guard its privacy levels.
    assert (s.learner, s.round, s.last_accuracy) == ("sgd", 7, 0.5)
    assert s.node_privacy.level == "node" and s.record_privacy.level == "record"
    assert op.export().model_hash == "abc"
    assert op.last_loss() == 0.25


def test_peers_reply_marks_banned_and_withdrawn_members(ctx: NodeContext, store: Store) -> None:
    op, _ = _operator(ctx, store)
    op.attach(_view(), ReleaseGuard(ctx.genesis.privacy, store, ctx.metrics))
    banned = PEERS[1].node_id_hex
    # The member is known from the view only (not yet in the peer table): a prefix names it.
    reply = op.ban(banned[:10], unban=False)
    assert reply.node_id == banned and reply.banned
    rows = {p.node_id: p for p in op.peers().peers}
    assert set(rows) == {p.node_id_hex for p in PEERS}
    assert rows[banned].banned and not rows[PEERS[0].node_id_hex].banned
    assert rows[PEERS[3].node_id_hex].no_release
    assert rows[PEERS[0].node_id_hex].rtt_ms == 3.5
    assert 1.5 < rows[PEERS[0].node_id_hex].last_seen_s < 60.0
    assert store.get_state("banned") == [banned]
    assert not op.ban(banned, unban=True).banned
    assert not any(p.banned for p in op.peers().peers)
    with pytest.raises(LookupError):
        op.ban("0000", unban=False)


def test_privacy_reply_lists_releases_and_budget_left(identity: Identity, store: Store) -> None:
    genesis = Genesis.model_validate(
        {"privacy": {"enabled": True, "epsilon_budget": 8.0, "noise_multiplier": 1.0, "clip": 1.0}}
    )
    ctx = make_context(identity, store, genesis)
    op, _ = _operator(ctx, store)
    guard = ReleaseGuard(genesis.privacy, store, ctx.metrics)
    ticket = guard.open("update", steps=1)
    guard.commit(ticket, "d1" * 32)
    op.attach(_view(), guard)
    p = op.privacy()
    assert [(r.seq, r.kind, r.scope) for r in p.releases] == [(1, "update", "node")]
    assert p.node.enabled and p.node.releases == 1 and p.node.active
    assert 0 < p.epsilon_spent == pytest.approx(p.node.epsilon_spent)
    assert p.node.epsilon_remaining == pytest.approx(8.0 - p.epsilon_spent)
    assert not p.record.enabled and p.record.mechanism == ""
    s = op.status()
    assert s.epsilon_spent == pytest.approx(p.epsilon_spent) and s.releasing
    assert math.isclose(s.node_privacy.epsilon_budget, 8.0)
