"""SPSA scalar log and signed batches: idempotent on seed id, catch-up queries, digest."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from node.base.seed_digest import SeedSetDigest
from node.storage.core import StoreCore, check_hex, chunks, is_finite, now_or
from node.storage.models import SpsaBatchRow, SpsaRow
from node.storage.records import SpsaAppendResult, SpsaBatchRecord, SpsaEntry
from node.storage.spsa_batches import batch_record, insert_batches, validate_batch

__all__ = ["SpsaStore"]


class SpsaStore(StoreCore):
    """The SPSA (seed id, scalar) log and the signed batches that carried it."""

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
        self, entries: Iterable[SpsaEntry], *, batches: Iterable[SpsaBatchRecord] = ()
    ) -> SpsaAppendResult:
        """Append SPSA entries to the log, idempotently on ``seed_id``, with their batches.

        Ids already in the log, and repeats within the call after their first occurrence,
        are not inserted and are reported in ``duplicates``. The signed batches that
        carried the entries are stored in the same transaction, so a crash never keeps
        entries whose batch cannot be served to peers (nor the reverse).

        Parameters
        ----------
        entries : iterable of SpsaEntry
        batches : iterable of SpsaBatchRecord, default ()
            Signed batches to keep; one whose (round, origin) is already stored is
            skipped (the first stored batch stays).

        Raises
        ------
        ValueError
            On an empty seed id, a non-finite scalar or scale, a malformed sender, or a
            malformed batch; nothing is stored.
        """
        batch = list(entries)
        signed = list(batches)
        for e in batch:
            if not isinstance(e.seed_id, str) or not e.seed_id or len(e.seed_id) > 128:
                raise ValueError(f"SPSA seed_id must be a 1..128 character str, got {e.seed_id!r}")
            check_hex("SPSA sender", e.sender)
            if not (is_finite(e.scalar) and is_finite(e.scale)):
                raise ValueError(f"SPSA entry {e.seed_id}: scalar and scale must be finite")
        for b in signed:
            validate_batch(b)

        def work(s: Session) -> SpsaAppendResult:
            insert_batches(s, signed)
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

    def spsa_batches(self, *, round: int | None = None) -> list[SpsaBatchRecord]:
        """Stored signed batches, ordered by (round, origin).

        Parameters
        ----------
        round : int or None, default None
            Only batches of rounds ``>= round``.
        """
        stmt = select(SpsaBatchRow).order_by(SpsaBatchRow.round, SpsaBatchRow.origin)
        if round is not None:
            stmt = stmt.where(SpsaBatchRow.round >= round)
        with self._read() as s:
            return [batch_record(r) for r in s.scalars(stmt)]

    def spsa_batch_count(self) -> int:
        """Number of stored signed batches."""
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(SpsaBatchRow)) or 0)

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
