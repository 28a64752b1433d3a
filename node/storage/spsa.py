"""SPSA scalar log: idempotent on seed id, catch-up queries, order-independent digest."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from node.base.seed_digest import SeedSetDigest
from node.storage.core import check_hex, chunks, is_finite, now_or
from node.storage.messages import MessageStore
from node.storage.models import SpsaRow
from node.storage.records import MessageRecord, SpsaAppendResult, SpsaEntry

__all__ = ["SpsaStore"]


class SpsaStore(MessageStore):
    """The SPSA (seed id, scalar) log."""

    @staticmethod
    def _spsa_entry(row: SpsaRow) -> SpsaEntry:
        return SpsaEntry(
            seed_id=row.seed_id,
            round=row.round,
            sender=row.sender,
            step=row.step,
            scalar=row.scalar,
            scale=row.scale,
            applied_at=row.applied_at,
            seq=row.seq,
        )

    def append_spsa(
        self, entries: Iterable[SpsaEntry], *, message: MessageRecord | None = None
    ) -> SpsaAppendResult:
        """Append a batch of SPSA entries to the log, idempotently on ``seed_id``.

        Ids already in the log, and repeats within the batch after their first occurrence,
        are not inserted and are reported in ``duplicates``. The whole batch is one
        transaction.

        Parameters
        ----------
        entries : iterable of SpsaEntry
        message : MessageRecord or None, default None
            The envelope that carried the batch, recorded in the same transaction; when it
            is a replay nothing is inserted and every id is reported as a duplicate.

        Raises
        ------
        ValueError
            On an empty seed id, a non-finite scalar or scale, or a malformed sender.
        """
        batch = list(entries)
        for e in batch:
            if not isinstance(e.seed_id, str) or not e.seed_id or len(e.seed_id) > 128:
                raise ValueError(f"SPSA seed_id must be a 1..128 character str, got {e.seed_id!r}")
            check_hex("SPSA sender", e.sender)
            if not (is_finite(e.scalar) and is_finite(e.scale)):
                raise ValueError(f"SPSA entry {e.seed_id}: scalar and scale must be finite")
        if message is not None:
            self._validate_message(message)

        def work(s: Session) -> SpsaAppendResult:
            if message is not None and self._insert_message(s, message) is None:
                return SpsaAppendResult((), tuple(e.seed_id for e in batch), None)
            ids = list(dict.fromkeys(e.seed_id for e in batch))
            existing: set[str] = set()
            for chunk in chunks(ids):
                existing.update(
                    s.scalars(select(SpsaRow.seed_id).where(SpsaRow.seed_id.in_(chunk)))
                )
            inserted: list[str] = []
            duplicates: list[str] = []
            seen: set[str] = set()
            last: SpsaRow | None = None
            for e in batch:
                if e.seed_id in existing or e.seed_id in seen:
                    duplicates.append(e.seed_id)
                    continue
                seen.add(e.seed_id)
                last = SpsaRow(
                    seed_id=e.seed_id,
                    round=e.round,
                    sender=e.sender,
                    step=e.step,
                    scalar=float(e.scalar),
                    scale=float(e.scale),
                    applied_at=now_or(e.applied_at),
                )
                s.add(last)
                inserted.append(e.seed_id)
            s.flush()
            return SpsaAppendResult(
                tuple(inserted), tuple(duplicates), None if last is None else last.seq
            )

        return self._write(work)

    def spsa_since(
        self,
        *,
        round: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SpsaEntry]:
        """Log entries in log order (``seq``), for catch-up.

        Parameters
        ----------
        round : int or None, default None
            Only entries of rounds ``>= round``.
        after_seq : int or None, default None
            Only entries with ``seq > after_seq`` (e.g. a checkpoint's ``spsa_seq``).
        limit : int or None, default None
            At most this many entries (page with ``after_seq``).
        """
        stmt = select(SpsaRow).order_by(SpsaRow.seq)
        if round is not None:
            stmt = stmt.where(SpsaRow.round >= round)
        if after_seq is not None:
            stmt = stmt.where(SpsaRow.seq > after_seq)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as s:
            return [self._spsa_entry(r) for r in s.scalars(stmt)]

    def spsa_has(self, seed_ids: Iterable[str]) -> set[str]:
        """The subset of ``seed_ids`` already in the log."""
        ids = list(dict.fromkeys(seed_ids))
        found: set[str] = set()
        with self._read() as s:
            for chunk in chunks(ids):
                found.update(s.scalars(select(SpsaRow.seed_id).where(SpsaRow.seed_id.in_(chunk))))
        return found

    def spsa_count(self) -> int:
        """Number of entries in the SPSA log."""
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(SpsaRow)) or 0)

    def spsa_last_seq(self) -> int | None:
        """Highest log position (``seq``), None for an empty log."""
        with self._read() as s:
            return s.scalar(select(func.max(SpsaRow.seq)))

    def spsa_digest(self, *, up_to_seq: int | None = None) -> str:
        """Order-independent digest of the logged seed ids (see ``node.base.seed_digest``).

        Parameters
        ----------
        up_to_seq : int or None, default None
            Only entries with ``seq <= up_to_seq`` (the digest a checkpoint was taken at).
        """
        stmt = select(SpsaRow.seed_id)
        if up_to_seq is not None:
            stmt = stmt.where(SpsaRow.seq <= up_to_seq)
        digest = SeedSetDigest()
        with self._read() as s:
            for seed_id in s.scalars(stmt.execution_options(yield_per=5000)):
                digest.add(seed_id)
        return digest.hexdigest()
