"""Prometheus metrics of one daemon (documented in docs/operations.md).

Each daemon owns a :class:`Metrics` with its own registry, so tests can run several
nodes in one process without their counters mixing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

__all__ = ["OPERATOR_REJECT_REASONS", "Metrics"]

#: ``fednode_messages_rejected_total`` reasons of requests to the operator API and the
#: dashboard (a bad or missing token): not peers' messages, so kept out of the "rejected"
#: count that status and the testnet table show for peer traffic.
OPERATOR_REJECT_REASONS = frozenset({"admin_token", "dashboard_token"})


class Metrics:
    """All metrics of a node, registered in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Info("fednode", "Node identity and network", registry=r)
        self.messages_received = Counter(
            "fednode_messages_received_total",
            "Peer messages accepted, by kind",
            ["kind"],
            registry=r,
        )
        self.messages_rejected = Counter(
            "fednode_messages_rejected_total",
            "Peer messages refused, by reason (bad_signature, wrong_network, replay, ...)",
            ["reason"],
            registry=r,
        )
        self.admission_refused = Counter(
            "fednode_admission_refused_total",
            "Authenticated requests refused by admission (node/wire/admission.py), by reason "
            "(not_member, banned, quarantined, no_standing, not_ready) and message kind",
            ["reason", "kind"],
            registry=r,
        )
        self.bytes = Counter(
            "fednode_bytes_total",
            "Bytes of peer traffic, by direction (in/out) and message kind",
            ["direction", "kind"],
            registry=r,
        )
        self.peers = Gauge(
            "fednode_peers", "Members in the local view, by state", ["state"], registry=r
        )
        self.round = Gauge("fednode_round", "Current training round", registry=r)
        self.accuracy = Gauge(
            "fednode_accuracy", "Last accuracy on the local test split", registry=r
        )
        self.loss = Gauge("fednode_loss", "Last loss on the local test split", registry=r)
        self.epsilon_spent = Gauge(
            "fednode_epsilon_spent",
            "Node-level differential-privacy epsilon spent so far",
            registry=r,
        )
        self.privacy_epsilon_spent = Gauge(
            "fednode_privacy_epsilon_spent",
            "Differential-privacy epsilon spent, by level (node: everything sent; record: "
            "one training example, DP-SGD/DP-ZO)",
            ["level"],
            registry=r,
        )
        self.privacy_epsilon_remaining = Gauge(
            "fednode_privacy_epsilon_remaining",
            "Budget minus spent epsilon, by level (0 when that level has no budget)",
            ["level"],
            registry=r,
        )
        self.privacy_active = Gauge(
            "fednode_privacy_active",
            "1 while the level's budget allows more (node: releasing; record: training)",
            ["level"],
            registry=r,
        )
        self.aggregation_seconds = Histogram(
            "fednode_aggregation_seconds",
            "Time spent in the aggregation rule per round",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10),
        )
        self.gossip_rejected = Counter(
            "fednode_gossip_rejected_total",
            "Membership records/messages the gossip core refused or ignored, by reason "
            "(bad_signature, bad_pow, wrong_network, stale_incarnation, join_flood, ...)",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "fednode_rate_limited_total", "Requests refused by per-peer rate limits", registry=r
        )
        self.training_catchups = Counter(
            "fednode_training_catchups",
            "Times this node adopted peers' checkpoints to rejoin rounds it was too far behind",
            registry=r,
        )
        self.history_reports = Counter(
            "fednode_history_reports",
            "Sybil-weighting history reports, by outcome (sent, merged, stale, "
            "unknown_reporter, future)",
            ["outcome"],
            registry=r,
        )
        self.history_records = Gauge(
            "fednode_history_records",
            "Per-peer histories held, by source (direct, gossip)",
            ["source"],
            registry=r,
        )
