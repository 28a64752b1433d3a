"""The data behind the dashboard: one JSON-ready snapshot of a running daemon.

Everything comes from what an operator can already read: the admin replies
(:func:`node.daemon.runtime.status_reply`, :func:`~node.daemon.runtime.peers_reply`,
:func:`~node.daemon.runtime.privacy_reply`) and the node's Prometheus registry. The snapshot must
be built on the daemon's event loop: membership and training state are asyncio-owned.

Schema (``SCHEMA_VERSION`` 1) of :func:`build_state`'s result::

    schema        1
    generated_at  unix time of the snapshot
    node          node_id, network_id, network_name, listen, version, pid, state,
                  uptime_s, task, learner, round, max_rounds, last_accuracy, last_loss,
                  model_hash
    peers         counts {alive, suspect, dead, left}; rows [{node_id, address, state,
                  incarnation, last_seen_s (-1 never), rtt_ms (-1 unknown), banned,
                  no_release (it announced it releases no more updates)}]
    evaluations   [{round, accuracy, loss, unix_time}]  (oldest first)
    privacy       enabled, epsilon_spent, epsilon_budget, delta, releasing, reason,
                  releases [{seq, created_at, kind, epsilon_after}]  (node level),
                  node / record {enabled, mechanism, epsilon_spent, epsilon_budget (null
                  without a budget), epsilon_remaining, delta, active, reason, steps},
                  record_releases [{seq, created_at, kind, epsilon_after}]
    traffic       bytes [{direction, kind, bytes}], bytes_in, bytes_out,
                  messages_received {kind: n}
    rejected      messages {reason: n}, gossip {reason: n}, rate_limited, total
    aggregation   count, mean_s
    throughput    [{t, in_bps, out_bps}]  bytes/s between samples taken every two seconds
                  on the loop by :func:`sample_traffic` (last five minutes, oldest first)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from node.daemon import runtime

if TYPE_CHECKING:
    from node.daemon.core import Daemon

__all__ = ["SCHEMA_VERSION", "TrafficHistory", "build_state", "sample_traffic"]

SCHEMA_VERSION = 1


class TrafficHistory:
    """Total bytes in and out sampled over time, so a freshly opened page has a history.

    Parameters
    ----------
    size : int, default 151
        Samples kept (151 samples two seconds apart: five minutes of rates).
    """

    def __init__(self, size: int = 151) -> None:
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=size)

    def sample(self, daemon: Daemon) -> None:
        """Record the daemon's byte counters now (call on the loop)."""
        totals = {"in": 0, "out": 0}
        for family in daemon.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "fednode_bytes_total":
                    totals[sample.labels["direction"]] += int(sample.value)
        self.samples.append((time.time(), totals["in"], totals["out"]))

    def rates(self) -> list[dict[str, float]]:
        """Bytes per second between consecutive samples, oldest first."""
        out: list[dict[str, float]] = []
        for (t0, in0, out0), (t1, in1, out1) in pairwise(list(self.samples)):
            dt = t1 - t0
            if dt > 0:
                out.append(
                    {
                        "t": round(t1, 3),
                        "in_bps": max(0, in1 - in0) / dt,
                        "out_bps": max(0, out1 - out0) / dt,
                    }
                )
        return out


async def sample_traffic(daemon: Daemon, history: TrafficHistory, interval: float = 2.0) -> None:
    """Sample ``daemon``'s traffic into ``history`` every ``interval`` seconds, forever."""
    while True:
        history.sample(daemon)
        await asyncio.sleep(interval)


def _finite(value: float) -> float | None:
    # JSON has no NaN/Infinity; browsers' JSON.parse would reject them.
    return float(value) if math.isfinite(value) else None


def _node(daemon: Daemon) -> dict[str, Any]:
    s = runtime.status_reply(daemon)
    training = daemon.training
    last_loss = getattr(training, "last_loss", float("nan")) if training is not None else math.nan
    max_rounds = daemon.genesis.rounds.max_rounds
    return {
        "node_id": s.node_id,
        "network_id": s.network_id,
        "network_name": s.network_name,
        "listen": s.listen,
        "version": s.version,
        "pid": s.pid,
        "state": s.state,
        "uptime_s": round(s.uptime_s, 1),
        "task": s.task,
        "learner": s.learner,
        "round": s.round,
        "max_rounds": max_rounds,
        "last_accuracy": s.last_accuracy if len(s.history) else None,
        "last_loss": _finite(float(last_loss)),
        "model_hash": s.model_hash,
        "_history": [
            {
                "round": int(h.round),
                "accuracy": _finite(h.accuracy),
                "loss": _finite(h.loss),
                "unix_time": h.unix_time,
            }
            for h in s.history
        ],
    }


def _peers(daemon: Daemon) -> dict[str, Any]:
    rows = [
        {
            "node_id": p.node_id,
            "address": p.address,
            "state": p.state,
            "incarnation": int(p.incarnation),
            "last_seen_s": round(p.last_seen_s, 2),
            "rtt_ms": round(p.rtt_ms, 2),
            "banned": p.banned,
            "no_release": p.no_release,
        }
        for p in runtime.peers_reply(daemon).peers
    ]
    counts = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return {"counts": counts, "rows": rows}


def _privacy(daemon: Daemon) -> dict[str, Any]:
    p = runtime.privacy_reply(daemon)

    def rows(scope: str) -> list[dict[str, Any]]:
        return [
            {
                "seq": int(r.seq),
                "created_at": r.created_at,
                "kind": r.kind,
                "epsilon_after": _finite(r.epsilon_after),
            }
            for r in p.releases
            if (r.scope or "node") == scope
        ]

    def level(lv: Any) -> dict[str, Any]:
        return {
            "enabled": lv.enabled,
            "mechanism": lv.mechanism,
            "epsilon_spent": _finite(lv.epsilon_spent),
            "epsilon_budget": _finite(lv.epsilon_budget) if lv.has_budget else None,
            "epsilon_remaining": _finite(lv.epsilon_remaining) if lv.has_budget else None,
            "delta": lv.delta,
            "active": lv.active,
            "reason": lv.reason,
            "steps": int(lv.steps),
        }

    return {
        "enabled": daemon.genesis.privacy.enabled,
        "epsilon_spent": _finite(p.epsilon_spent),
        "epsilon_budget": _finite(p.epsilon_budget),
        "delta": p.delta,
        "releasing": p.releasing,
        "reason": p.reason,
        "releases": rows("node"),
        "node": level(p.node),
        "record": level(p.record),
        "record_releases": rows("record"),
    }


def _from_registry(daemon: Daemon) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    traffic: list[dict[str, Any]] = []
    received: dict[str, int] = {}
    rejected: dict[str, int] = {}
    gossip: dict[str, int] = {}
    rate_limited = 0
    agg_count = 0.0
    agg_sum = 0.0
    for family in daemon.metrics.registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "fednode_bytes_total":
                traffic.append(
                    {"direction": labels["direction"], "kind": labels["kind"], "bytes": int(value)}
                )
            elif name == "fednode_messages_received_total":
                received[labels["kind"]] = int(value)
            elif name == "fednode_messages_rejected_total":
                rejected[labels["reason"]] = int(value)
            elif name == "fednode_gossip_rejected_total":
                gossip[labels["reason"]] = int(value)
            elif name == "fednode_rate_limited_total":
                rate_limited = int(value)
            elif name == "fednode_aggregation_seconds_count":
                agg_count = value
            elif name == "fednode_aggregation_seconds_sum":
                agg_sum = value
    traffic.sort(key=lambda t: (t["kind"], t["direction"]))
    return (
        {
            "bytes": traffic,
            "bytes_in": sum(t["bytes"] for t in traffic if t["direction"] == "in"),
            "bytes_out": sum(t["bytes"] for t in traffic if t["direction"] == "out"),
            "messages_received": received,
        },
        {
            "messages": rejected,
            "gossip": gossip,
            "rate_limited": rate_limited,
            "total": sum(rejected.values()) + sum(gossip.values()) + rate_limited,
        },
        {"count": int(agg_count), "mean_s": agg_sum / agg_count if agg_count else None},
    )


def build_state(daemon: Daemon, history: TrafficHistory | None = None) -> dict[str, Any]:
    """Snapshot the daemon for ``/api/state`` (call on the daemon's event loop).

    Parameters
    ----------
    daemon : Daemon
        A daemon whose identity is loaded (its servers are starting or running).
    history : TrafficHistory, optional
        Source of ``throughput``; default none (``throughput`` is then empty).

    Returns
    -------
    dict
        JSON-serialisable, no NaN or infinity (those become ``null``); see the module
        docstring for the schema.
    """
    node = _node(daemon)
    evaluations = node.pop("_history")
    traffic, rejected, aggregation = _from_registry(daemon)
    return {
        "schema": SCHEMA_VERSION,
        "generated_at": time.time(),
        "node": node,
        "peers": _peers(daemon),
        "evaluations": evaluations,
        "privacy": _privacy(daemon),
        "traffic": traffic,
        "rejected": rejected,
        "aggregation": aggregation,
        "throughput": history.rates() if history is not None else [],
    }
