"""The dashboard's snapshot without processes: built from an Operator, JSON without NaN."""

from __future__ import annotations

import json
import math
import time

from fednode_proto.v1 import admin_pb2
from node.daemon.context import NodeContext, NodeInfo
from node.daemon.operator import Operator
from node.daemon.peer_policy import PeerPolicy
from node.daemon.privacy_guard import ReleaseGuard
from node.dashboard import SCHEMA_VERSION, StatusSource, TrafficHistory, build_state
from node.storage import Store

from .conftest import FakeMembership, member
from .test_operator import PEERS


class NanLearner:
    """A learner whose last evaluation diverged (NaN loss, infinite accuracy)."""

    def __init__(self, guard: ReleaseGuard) -> None:
        self.guard = guard
        self.last_loss = math.nan

    def fill_status(self, reply: admin_pb2.StatusReply) -> None:
        reply.learner = "sgd"
        reply.round = 3
        reply.last_accuracy = 0.75
        reply.history.append(
            admin_pb2.Evaluation(round=2, accuracy=math.inf, loss=0.5, unix_time=1.0)
        )

    def export(self) -> admin_pb2.ExportReply:
        raise LookupError("not in this test")

    async def stop(self) -> None:
        return None


def test_snapshot_follows_the_schema_and_has_no_nan(ctx: NodeContext, store: Store) -> None:
    op = Operator(ctx, PeerPolicy(store), NodeInfo(started_at=time.time()), lambda: None)
    source: StatusSource = op
    empty = build_state(source)
    assert empty["schema"] == SCHEMA_VERSION and empty["peers"]["rows"] == []
    assert empty["node"]["state"] == "starting" and empty["throughput"] == []
    guard = ReleaseGuard(ctx.genesis.privacy, store, ctx.metrics)
    view = FakeMembership([member(PEERS[0]), member(PEERS[1], releasing=False)])
    op.attach(view, guard, NanLearner(guard))
    ctx.metrics.bytes.labels(direction="in", kind="update").inc(1000)
    ctx.metrics.messages_rejected.labels(reason="nonfinite").inc(2)
    ctx.metrics.aggregation_seconds.observe(0.5)
    ctx.metrics.aggregation_seconds.observe(1.5)
    history = TrafficHistory()
    history.samples.append((time.time() - 2.0, 0, 0))
    history.sample(ctx.metrics.registry)
    state = build_state(op, history)
    json.dumps(state, allow_nan=False)  # browsers' JSON.parse refuses NaN and Infinity
    node = state["node"]
    assert (node["learner"], node["round"], node["last_accuracy"]) == ("sgd", 3, 0.75)
    assert node["last_loss"] is None and node["max_rounds"] == ctx.genesis.rounds.max_rounds
    assert state["evaluations"] == [{"round": 2, "accuracy": None, "loss": 0.5, "unix_time": 1.0}]
    assert state["peers"]["counts"]["alive"] == 2
    assert {r["node_id"]: r["no_release"] for r in state["peers"]["rows"]} == {
        PEERS[0].node_id_hex: False,
        PEERS[1].node_id_hex: True,
    }
    assert state["traffic"]["bytes_in"] == 1000
    assert state["rejected"]["messages"] == {"nonfinite": 2} and state["rejected"]["total"] == 2
    assert state["aggregation"] == {"count": 2, "mean_s": 1.0}
    assert state["privacy"]["enabled"] is ctx.genesis.privacy.enabled
    [rate] = state["throughput"]
    assert 400 < rate["in_bps"] <= 1000
