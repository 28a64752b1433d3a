"""Sybil-weighting histories on the wire: signed history reports, pushed and merged.

SybilWall scores a node's neighbours against the update histories of non-neighbours
too, learned through gossip whose forwarding probability decays with hop distance
(:func:`aggregation.sybil.forward_probability`). This module carries those histories
between daemons:

* :func:`sign_report` / :func:`check_report` -- a :class:`HistoryReport` is a statement
  *by* a reporter *about* a subject: "the updates I received from the subject sum to
  this (sketched) vector, up to this round". Only the reporter signs it, over the
  network id, both ids, the round and the vector's hash; relays forward it unchanged
  (only the unsigned hop count grows).
* :class:`HistoryExchange` -- per daemon: after each aggregation it pushes a few reports
  to a few sampled peers (``SimilarityHistory.select_for_gossip``: its own direct
  observations, which it signs, and verified reports of others, forwarded as received),
  and it checks and merges the reports it is pushed (``SimilarityHistory.merge_gossip``).

Trust model (also in docs/privacy.md):

* A relay cannot forge or alter a report: the reporter's signature covers everything
  but ``hops``. A report that fails verification is refused whole, counted under
  ``history_bad_signature`` and charged to the relay's reputation -- an honest relay
  verified it before storing it, so only a faulty or malicious relay forwards one.
* A reporter must be a member of our view (its identity carries the network's PoW), may
  not report about itself, and its round may not run ahead of ours by more than
  :attr:`HistoryExchange.max_round_lead`; so a minted Sybil identity must at least be
  admitted to membership before its reports count, and cannot win freshness forever.
* A reporter *can* lie about what it observed (the signature proves who said it, not
  that it is true). What a node observes itself always wins: a report never replaces a
  direct record, so a lie only matters about peers the holder never heard from. A liar
  can frame an honest non-neighbour or make its own Sybils' twins look dissimilar; the
  damage is bounded to one record per subject per holder and attributable (the
  reporter id is kept with the record) -- there is no proof of observation.
* ``hops`` is not signed: a relay can shorten it, which only raises the record's
  forwarding probability and wins same-round freshness ties.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import torch

from aggregation.sybil import HistoryRecord, SimilarityHistory
from fednode_proto.v1.training_pb2 import HistoryGossip, HistoryReport
from node.base.identity import Identity, node_id_for, verify_signature
from node.base.logs import log
from node.base.signing import SigningEncoder
from node.wire.envelope import SeqCounter, Verified, seal
from node.wire.service import Rejected

if TYPE_CHECKING:
    from node.daemon.core import Daemon

__all__ = [
    "HISTORY_DOMAIN",
    "MAX_HOPS",
    "MAX_REPORTS",
    "CheckedReport",
    "HistoryExchange",
    "check_report",
    "report_signing_bytes",
    "sign_report",
]

HISTORY_DOMAIN = b"fednode/v1/history\x00"
#: Reports per pushed message; more is refused as ``oversized``.
MAX_REPORTS = 64
#: Largest hop count accepted on the wire (forwarding probability is ~e^-13 there).
MAX_HOPS = 16


def report_signing_bytes(network_id: bytes, report: HistoryReport) -> bytes:
    """The exact bytes a reporter signs (everything but ``hops`` and the signature).

    ``HISTORY_DOMAIN || lp(network_id) || lp(reporter_id) || lp(subject_id) ||
    u64 round || sha256(vector)``, little-endian, ``lp`` = u32 length prefix.
    """
    return (
        SigningEncoder(HISTORY_DOMAIN)
        .field(network_id)
        .field(report.reporter_id)
        .field(report.subject_id)
        .pack("Q", report.round)
        .digest(report.vector)
        .finish()
    )


def sign_report(
    identity: Identity,
    network_id: bytes,
    subject_id: bytes,
    vector: torch.Tensor,
    round_: int,
    *,
    hops: int = 1,
) -> HistoryReport:
    """A report by ``identity`` about ``subject_id``, signed for ``network_id``."""
    flat = vector.detach().to(torch.float32).reshape(-1).contiguous().numpy()
    report = HistoryReport(
        reporter_id=identity.node_id,
        reporter_public_key=identity.public_key,
        subject_id=subject_id,
        round=round_,
        vector=flat.astype("<f4", copy=False).tobytes(),
        hops=hops,
    )
    report.reporter_signature = identity.sign(report_signing_bytes(network_id, report))
    return report


@dataclass(frozen=True)
class CheckedReport:
    """A report that passed :func:`check_report`."""

    reporter: str
    subject: str
    round: int
    hops: int
    vector: torch.Tensor


def check_report(report: HistoryReport, *, network_id: bytes, vector_dim: int) -> CheckedReport:
    """Check one report completely; raise :class:`~node.wire.service.Rejected` if it is bad.

    Checks, cheapest first: key and id lengths, ``reporter_id = sha256(key)``, reporter
    differs from subject, hops in ``[1, MAX_HOPS]``, vector length ``vector_dim`` float32
    values, all finite, then the reporter's signature. Membership and freshness are the
    caller's (:class:`HistoryExchange`) business.
    """
    if len(report.reporter_public_key) != 32 or len(report.reporter_signature) != 64:
        raise Rejected("history_malformed", "reporter key or signature has the wrong length")
    if len(report.reporter_id) != 32 or len(report.subject_id) != 32:
        raise Rejected("history_malformed", "reporter and subject ids must be 32 bytes")
    if node_id_for(report.reporter_public_key) != report.reporter_id:
        raise Rejected("history_bad_reporter", "reporter id is not the hash of its key")
    if report.reporter_id == report.subject_id:
        raise Rejected("history_bad_reporter", "a node may not report its own history")
    if not 1 <= report.hops <= MAX_HOPS:
        raise Rejected("history_malformed", f"hops must be in [1, {MAX_HOPS}], got {report.hops}")
    if len(report.vector) != 4 * vector_dim:
        raise Rejected(
            "history_bad_shape",
            f"history of {len(report.vector)} bytes, this network's is {vector_dim} float32",
        )
    array = np.frombuffer(report.vector, dtype="<f4").astype(np.float32)
    if not bool(np.isfinite(array).all()):
        raise Rejected("nonfinite", "history contains NaN or Inf")
    if not verify_signature(
        report.reporter_public_key,
        report.reporter_signature,
        report_signing_bytes(network_id, report),
    ):
        raise Rejected("history_bad_signature", "reporter signature does not verify")
    return CheckedReport(
        reporter=report.reporter_id.hex(),
        subject=report.subject_id.hex(),
        round=int(report.round),
        hops=int(report.hops),
        vector=torch.from_numpy(array.copy()),
    )


class HistoryExchange:
    """Pushes and merges signed history reports for one daemon's :class:`SimilarityHistory`.

    Parameters
    ----------
    daemon : Daemon
        Identity, genesis (network id), membership, channels, metrics.
    history : SimilarityHistory
        The training runtime's histories (``TrainingRuntime.history``).
    current_round : callable
        ``current_round() -> int``: the holder's round (freshness bound).
    fanout : int, default 2
        Peers pushed to after each round.
    reports_per_push : int, default 4
        Reports drawn per peer (``select_for_gossip(count=...)``, hop-decayed weights).
    max_round_lead : int, default 16
        Reports whose round is further than this ahead of ours are ignored (counted
        ``future``): a reporter cannot make its report win freshness for long.
    """

    def __init__(
        self,
        daemon: Daemon,
        history: SimilarityHistory,
        current_round: Any,
        *,
        fanout: int = 2,
        reports_per_push: int = 4,
        max_round_lead: int = 16,
    ) -> None:
        assert daemon.identity is not None
        self.daemon = daemon
        self.identity = daemon.identity
        self.network_id = daemon.genesis.network_id
        self.history = history
        self.current_round = current_round
        self.fanout = fanout
        self.reports_per_push = reports_per_push
        self.max_round_lead = max_round_lead
        self.seq = SeqCounter()
        # Verified reports of others as received, keyed by subject, to forward unchanged.
        self._signed: dict[str, HistoryReport] = {}
        self._generator = torch.Generator().manual_seed(
            int.from_bytes(self.identity.node_id[:8], "little") & 0x7FFFFFFFFFFFFFFF
        )
        self.reports = daemon.metrics.history_reports
        self.records = daemon.metrics.history_records

    # --- outbound ------------------------------------------------------------------------

    def _report_for(self, rec: HistoryRecord) -> HistoryReport | None:
        if rec.direct:
            return sign_report(
                self.identity, self.network_id, bytes.fromhex(rec.peer), rec.vector, rec.round
            )
        stored = self._signed.get(rec.peer)
        if stored is None or stored.round != rec.round:
            return None
        out = HistoryReport()
        out.CopyFrom(stored)
        out.hops = min(rec.hops, MAX_HOPS)
        return out

    def build(self, recipient: str) -> HistoryGossip:
        """The reports to push to ``recipient`` (hex id): a hop-decayed random draw."""
        picked = self.history.select_for_gossip(
            recipient, count=self.reports_per_push, generator=self._generator
        )
        batch = HistoryGossip()
        for rec in picked:
            report = self._report_for(rec)
            if report is not None:
                batch.reports.append(report)
        return batch

    async def after_round(self, round_idx: int) -> int:
        """Push reports to ``fanout`` sampled members (banned ones are never sampled)."""
        membership = self.daemon.membership
        if membership is None or self.fanout == 0:
            return 0
        self._update_gauges()
        peers = [m.node_id.hex() for m in membership.sample(self.fanout)]
        return await self.push_round(round_idx, peers)

    async def push_round(self, round_idx: int, peers: list[str]) -> int:
        """Push reports to ``peers`` (hex ids, normally ``fanout`` sampled members).

        Returns the number of reports accepted by their recipients.
        """
        loop = asyncio.get_running_loop()
        sent = 0
        for peer in peers:
            member = (
                None
                if self.daemon.membership is None
                else self.daemon.membership.get(bytes.fromhex(peer))
            )
            if member is None:
                continue
            batch = await loop.run_in_executor(None, self.build, peer)
            if not batch.reports:
                continue
            env = seal(
                self.identity,
                self.network_id,
                "history",
                batch.SerializeToString(),
                seq=self.seq.next("history"),
                round=round_idx,
            )
            try:
                receipt = await self.daemon.channels.stub(member.address).PushHistory(
                    env, timeout=10.0
                )
            except grpc.aio.AioRpcError as exc:
                log.debug(
                    "history push failed",
                    extra={"fields": {"peer": peer[:12], "code": exc.code().name}},
                )
                continue
            self.daemon.metrics.bytes.labels(direction="out", kind="history").inc(env.ByteSize())
            if receipt.accepted:
                sent += len(batch.reports)
                self.reports.labels(outcome="sent").inc(len(batch.reports))
            else:
                log.debug(
                    "peer refused history",
                    extra={"fields": {"peer": peer[:12], "reason": receipt.reason}},
                )
        return sent

    # --- inbound -------------------------------------------------------------------------

    async def on_history(self, msg: Verified, batch: HistoryGossip) -> None:
        """Check every report of ``batch`` (from relay ``msg.sender_id``), then merge.

        One bad report refuses the whole batch (:class:`~node.wire.service.Rejected`), so a
        relay is charged once per bad message; nothing of a refused batch is merged.
        """
        if len(batch.reports) > MAX_REPORTS:
            raise Rejected("oversized", f"{len(batch.reports)} reports, at most {MAX_REPORTS}")
        loop = asyncio.get_running_loop()
        checked = await loop.run_in_executor(
            None,
            lambda: [
                check_report(r, network_id=self.network_id, vector_dim=self.history.vector_dim)
                for r in batch.reports
            ],
        )
        via = msg.sender_id.hex()
        horizon = int(self.current_round()) + self.max_round_lead
        for report, rec in zip(batch.reports, checked, strict=True):
            self._merge(via, report, rec, horizon)
        self._update_gauges()

    def _merge(self, via: str, report: HistoryReport, rec: CheckedReport, horizon: int) -> None:
        membership = self.daemon.membership
        if membership is None or membership.get(bytes.fromhex(rec.reporter)) is None:
            # Views differ for a while after a join: not the relay's fault, just unusable.
            self.reports.labels(outcome="unknown_reporter").inc()
            return
        if rec.reporter == self.identity.node_id_hex:
            self.reports.labels(outcome="own").inc()
            return
        if rec.round > horizon:
            self.reports.labels(outcome="future").inc()
            return
        record = HistoryRecord(rec.subject, rec.vector, rec.round, rec.hops, None)
        if self.history.merge_gossip(record, via=via):
            stored = HistoryReport()
            stored.CopyFrom(report)
            self._signed[rec.subject] = stored
            self.reports.labels(outcome="merged").inc()
            if len(self._signed) > 2 * max(1, len(self.history)):
                self._prune()
            log.debug(
                "merged history report",
                extra={
                    "fields": {
                        "subject": rec.subject[:12],
                        "reporter": rec.reporter[:12],
                        "via": via[:12],
                        "hops": rec.hops + 1,
                    }
                },
            )
        else:
            self.reports.labels(outcome="stale").inc()

    def _prune(self) -> None:
        for subject in [s for s in self._signed if s not in self.history]:
            del self._signed[subject]

    def _update_gauges(self) -> None:
        direct = sum(1 for r in self.history if r.direct)
        self.records.labels(source="direct").set(direct)
        self.records.labels(source="gossip").set(len(self.history) - direct)

    def stats(self) -> dict[str, float]:
        """Counter values by outcome (for status and tests)."""
        out: dict[str, float] = {}
        for metric in self.reports.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["outcome"]] = sample.value
        return out
