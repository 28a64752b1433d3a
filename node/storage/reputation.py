"""Per-peer reputation counters and quarantine deadlines."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from node.storage.core import StoreCore, check_hex, is_finite, now_or
from node.storage.models import ReputationRow
from node.storage.records import ReputationRecord

__all__ = ["ReputationStore"]


class ReputationStore(StoreCore):
    """Reputation and quarantine."""

    @staticmethod
    def _reputation_record(row: ReputationRow) -> ReputationRecord:
        return ReputationRecord(
            node_id=row.node_id,
            score=row.score,
            accepted=row.accepted,
            rejected=row.rejected,
            quarantined_until=row.quarantined_until,
            updated_at=row.updated_at,
        )

    def _reputation_row(self, s: Session, node_id: str, now: float) -> ReputationRow:
        row = s.get(ReputationRow, node_id)
        if row is None:
            row = ReputationRow(node_id=node_id, score=0.0, accepted=0, rejected=0, updated_at=now)
            s.add(row)
        return row

    def reputation_adjust(
        self,
        node_id: str,
        *,
        delta: float = 0.0,
        accepted: int = 0,
        rejected: int = 0,
        now: float | None = None,
    ) -> ReputationRecord:
        """Add ``delta`` to a peer's score and count accepted/rejected messages atomically.

        A peer without a row starts at score 0. Returns the updated record.
        """
        check_hex("reputation node_id", node_id)
        if accepted < 0 or rejected < 0:
            raise ValueError("accepted and rejected increments must be >= 0")
        if not is_finite(delta):
            raise ValueError(f"reputation delta must be finite, got {delta}")
        ts = now_or(now)

        def work(s: Session) -> ReputationRecord:
            row = self._reputation_row(s, node_id, ts)
            row.score = row.score + float(delta)
            row.accepted = row.accepted + accepted
            row.rejected = row.rejected + rejected
            row.updated_at = ts
            s.flush()
            return self._reputation_record(row)

        return self._write(work)

    def reputation_get(self, node_id: str) -> ReputationRecord | None:
        """A peer's reputation, or None when nothing was recorded."""
        with self._read() as s:
            row = s.get(ReputationRow, node_id)
            return None if row is None else self._reputation_record(row)

    def reputation_all(self) -> list[ReputationRecord]:
        """Every reputation record, by node id."""
        with self._read() as s:
            rows = s.scalars(select(ReputationRow).order_by(ReputationRow.node_id))
            return [self._reputation_record(r) for r in rows]

    def reputation_count(self) -> int:
        """Number of reputation rows."""
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(ReputationRow)) or 0)

    def reputation_prune(self, keep: int, *, now: float | None = None) -> int:
        """Keep at most ``keep`` rows; return how many were deleted.

        Rows under an active quarantine go last; among the others, the least recently
        updated go first (a peer that keeps misbehaving keeps its row).
        """
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        ts = now_or(now)

        def work(s: Session) -> int:
            active = ReputationRow.quarantined_until.is_not(None) & (
                ReputationRow.quarantined_until > ts
            )
            order = (
                select(ReputationRow.node_id)
                .order_by(active.desc(), ReputationRow.updated_at.desc(), ReputationRow.node_id)
                .offset(keep)
            )
            doomed = list(s.scalars(order))
            for start in range(0, len(doomed), 500):
                s.execute(
                    delete(ReputationRow).where(
                        ReputationRow.node_id.in_(doomed[start : start + 500])
                    )
                )
            return len(doomed)

        return self._write(work)

    def quarantine(
        self, node_id: str, until: float | None, *, now: float | None = None
    ) -> ReputationRecord:
        """Quarantine a peer until Unix time ``until`` (None lifts the quarantine)."""
        check_hex("reputation node_id", node_id)
        ts = now_or(now)

        def work(s: Session) -> ReputationRecord:
            row = self._reputation_row(s, node_id, ts)
            row.quarantined_until = None if until is None else float(until)
            row.updated_at = ts
            s.flush()
            return self._reputation_record(row)

        return self._write(work)

    def is_quarantined(self, node_id: str, *, now: float | None = None) -> bool:
        """True while ``now`` (default: the current time) is before the quarantine end."""
        rec = self.reputation_get(node_id)
        return bool(
            rec is not None
            and rec.quarantined_until is not None
            and now_or(now) < rec.quarantined_until
        )
