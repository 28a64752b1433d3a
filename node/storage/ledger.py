"""Privacy ledger operations: debit-before-send in one transaction, hash-chain checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from node.storage import ledger_chain
from node.storage.core import StoreCore, check_hex, is_finite, now_or
from node.storage.errors import LedgerConflict, LedgerCorrupted
from node.storage.models import EventRow, LedgerEntryRow, NodeStateRow
from node.storage.records import LedgerRelease, LedgerRow

__all__ = ["BudgetCheck", "LedgerStore"]

BudgetCheck = Callable[[LedgerRow | None, LedgerRelease], None]
"""Called inside the ledger transaction with the current tip row (None when empty) and the
release about to be debited; raise to refuse the release (nothing is stored)."""

LEDGER_TIP_KEY = "storage.ledger_tip"
_PG_LEDGER_LOCK = 7241982302


class LedgerStore(StoreCore):
    """The privacy ledger."""

    @staticmethod
    def _ledger_row(row: LedgerEntryRow) -> LedgerRow:
        return LedgerRow(
            seq=row.seq,
            created_at=row.created_at,
            epsilon_after=row.epsilon_after,
            delta=row.delta,
            noise_multiplier=row.noise_multiplier,
            sample_rate=row.sample_rate,
            steps=row.steps,
            release_kind=row.release_kind,
            release_digest=row.release_digest,
            prev_hash=row.prev_hash,
            row_hash=row.row_hash,
            scope=row.scope,
        )

    @staticmethod
    def _ledger_tip_state(s: Session) -> tuple[int, str] | None:
        value = s.scalar(select(NodeStateRow.value).where(NodeStateRow.key == LEDGER_TIP_KEY))
        if value is None:
            return None
        try:
            return int(value["seq"]), str(value["row_hash"])
        except (TypeError, KeyError, ValueError):
            raise LedgerCorrupted(f"privacy ledger tip record is malformed: {value!r}") from None

    def ledger_append(
        self,
        release: LedgerRelease,
        *,
        budget_check: BudgetCheck | None = None,
        expected_prev_seq: int | None = None,
        event_detail: Mapping[str, Any] | None = None,
        created_at: float | None = None,
    ) -> LedgerRow:
        """Debit a privacy release durably; call this *before* the release leaves the node.

        In one transaction: verify the hash chain (every row on this store's first append,
        afterwards the last row it verified and everything after it), run ``budget_check``
        (which may raise to refuse the release), insert the chained row, move the recorded
        tip, and optionally log a ``privacy.release`` event. After this returns the debit is on
        disk; a crash before the send over-counts, a refused or failed call stores nothing,
        so the ledger never under-counts.

        Parameters
        ----------
        release : LedgerRelease
        budget_check : callable or None, default None
            ``budget_check(tip, release)``; raise (e.g. a budget-exceeded error) to refuse.
            It may run more than once if a concurrent writer forces a retry.
        expected_prev_seq : int or None, default None
            The ``seq`` of the newest row the caller computed ``epsilon_after`` from (0 for
            an empty ledger). When another release was recorded meanwhile, ``LedgerConflict``
            is raised and nothing is stored, so a stale cumulative epsilon is never written;
            recompute and retry.
        event_detail : mapping or None, default None
            When given, an event with this detail is logged in the same transaction.
        created_at : float or None, default None (now)

        Raises
        ------
        LedgerCorrupted
            When the chain or its recorded tip does not verify (nothing is stored; every
            later call raises too until the ledger is repaired by an operator).
        ValueError
            On non-finite or negative numbers, or a malformed release digest.
        """
        (row,) = self.ledger_extend(
            [release],
            budget_check=budget_check,
            expected_prev_seq=expected_prev_seq,
            event_detail=event_detail,
            created_at=created_at,
        )
        return row

    def ledger_extend(
        self,
        releases: Sequence[LedgerRelease],
        *,
        budget_check: BudgetCheck | None = None,
        expected_prev_seq: int | None = None,
        event_detail: Mapping[str, Any] | None = None,
        created_at: float | None = None,
    ) -> list[LedgerRow]:
        """Debit several releases in one transaction (all stored, or none).

        Used when one outgoing message costs in several scopes, e.g. a vector update that
        is both a node-level release and the output of record-level DP-SGD steps. Same
        guarantees and parameters as :meth:`ledger_append`; ``budget_check(tip, release)``
        is called for every release with the tip as it was when the transaction began, and
        ``event_detail`` gives one ``privacy.release`` event per row.
        """
        if not releases:
            raise ValueError("ledger_extend needs at least one release")
        for release in releases:
            _validate_release(release)
        ts = now_or(created_at)

        def work(s: Session) -> list[LedgerRow]:
            if s.get_bind().dialect.name == "postgresql":
                # Serialise ledger writers up front (SQLite's BEGIN IMMEDIATE already does),
                # so two debits never race for the same seq and the budget check sees the tip.
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LEDGER_LOCK})
            tip = self._verified_ledger_tip(s)
            tip_seq = 0 if tip is None else tip.seq
            if expected_prev_seq is not None and expected_prev_seq != tip_seq:
                raise LedgerConflict(
                    f"privacy ledger moved on: expected the newest row to be {expected_prev_seq}, "
                    f"it is {tip_seq}; recompute epsilon_after and retry"
                )
            if budget_check is not None:
                for release in releases:
                    budget_check(tip, release)
            prev_hash = ledger_chain.GENESIS_HASH if tip is None else tip.row_hash
            out: list[LedgerRow] = []
            for i, release in enumerate(releases):
                new = ledger_chain.make_row(tip_seq + 1 + i, ts, release, prev_hash)
                prev_hash = new.row_hash
                s.add(
                    LedgerEntryRow(
                        seq=new.seq,
                        created_at=new.created_at,
                        epsilon_after=new.epsilon_after,
                        delta=new.delta,
                        noise_multiplier=new.noise_multiplier,
                        sample_rate=new.sample_rate,
                        steps=new.steps,
                        release_kind=new.release_kind,
                        release_digest=new.release_digest,
                        prev_hash=new.prev_hash,
                        row_hash=new.row_hash,
                        scope=new.scope,
                    )
                )
                s.flush()
                if event_detail is not None:
                    detail = {
                        "seq": new.seq,
                        "scope": new.scope,
                        "epsilon_after": new.epsilon_after,
                        **event_detail,
                    }
                    s.add(EventRow(ts=ts, level="info", kind="privacy.release", detail=detail))
                out.append(new)
            last = out[-1]
            self._put_state(s, LEDGER_TIP_KEY, {"seq": last.seq, "row_hash": last.row_hash})
            s.flush()
            return out

        rows = self._write(work)
        self._ledger_verified = (rows[-1].seq, rows[-1].row_hash)
        return rows

    def _verified_ledger_tip(self, s: Session) -> LedgerRow | None:
        """Verify the chain inside transaction ``s`` and return its newest row.

        The first call per store verifies every row; later calls re-check the last row this
        store verified and everything after it. Any failure forgets the verified prefix, so
        the next attempt verifies the whole chain again.
        """
        try:
            known_seq, known_hash = self._ledger_verified or (0, ledger_chain.GENESIS_HASH)
            rows = [
                self._ledger_row(r)
                for r in s.scalars(
                    select(LedgerEntryRow)
                    .where(LedgerEntryRow.seq >= max(known_seq, 1))
                    .order_by(LedgerEntryRow.seq)
                )
            ]
            if known_seq > 0:
                if not rows or rows[0].seq != known_seq or rows[0].row_hash != known_hash:
                    raise LedgerCorrupted(
                        f"privacy ledger row {known_seq} changed or vanished after it was verified"
                    )
                ledger_chain.verify_row(rows[0], known_seq, rows[0].prev_hash)
                rows = rows[1:]
            expected_prev, last = known_hash, None
            for i, row in enumerate(rows):
                ledger_chain.verify_row(row, known_seq + 1 + i, expected_prev)
                expected_prev, last = row.row_hash, row
            newest_seq, newest_hash = (
                (last.seq, last.row_hash) if last is not None else (known_seq, known_hash)
            )
            tip_state = self._ledger_tip_state(s)
            if newest_seq == 0:
                if tip_state is not None:
                    raise LedgerCorrupted(
                        f"privacy ledger is empty but its tip records {tip_state[0]} releases "
                        "(rows were deleted)"
                    )
                return None
            if tip_state != (newest_seq, newest_hash):
                raise LedgerCorrupted(
                    f"privacy ledger tip does not match its newest row {newest_seq} "
                    "(rows were truncated or the tip was edited)"
                )
            if last is None:
                last_row = s.get(LedgerEntryRow, newest_seq)
                assert last_row is not None
                last = self._ledger_row(last_row)
            return last
        except LedgerCorrupted:
            self._ledger_verified = None
            raise

    def ledger_rows(self, *, after_seq: int = 0) -> list[LedgerRow]:
        """Ledger rows with ``seq > after_seq``, in order (no verification; see ledger_verify)."""
        with self._read() as s:
            rows = s.scalars(
                select(LedgerEntryRow)
                .where(LedgerEntryRow.seq > after_seq)
                .order_by(LedgerEntryRow.seq)
            )
            return [self._ledger_row(r) for r in rows]

    def ledger_tip(self) -> LedgerRow | None:
        """The newest ledger row (None when nothing was released)."""
        with self._read() as s:
            row = s.scalars(
                select(LedgerEntryRow).order_by(LedgerEntryRow.seq.desc()).limit(1)
            ).first()
            return None if row is None else self._ledger_row(row)

    def ledger_verify(self) -> int:
        """Verify the whole hash chain and its recorded tip; return the number of rows.

        Raises
        ------
        LedgerCorrupted
            On any edited, missing, reordered or truncated row.
        """
        with self._read() as s:
            tip = self._ledger_tip_state(s)
            rows = s.scalars(
                select(LedgerEntryRow)
                .order_by(LedgerEntryRow.seq)
                .execution_options(yield_per=2000)
            )
            try:
                count = ledger_chain.verify_chain((self._ledger_row(r) for r in rows), tip)
            except LedgerCorrupted:
                self._ledger_verified = None
                raise
            self._ledger_verified = tip if tip is not None else None
            return count


def _validate_release(release: LedgerRelease) -> None:
    for name in ("epsilon_after", "delta", "noise_multiplier", "sample_rate"):
        value = getattr(release, name)
        if not is_finite(value) or value < 0:
            raise ValueError(f"ledger release {name} must be a finite number >= 0, got {value!r}")
    if not 0 < release.sample_rate <= 1:
        raise ValueError(f"ledger release sample_rate must be in (0, 1], got {release.sample_rate}")
    if not isinstance(release.steps, int) or release.steps < 1:
        raise ValueError(f"ledger release steps must be an int >= 1, got {release.steps!r}")
    if not release.release_kind or len(release.release_kind) > 32:
        raise ValueError(
            f"ledger release_kind must be 1..32 characters, got {release.release_kind!r}"
        )
    check_hex("ledger release_digest", release.release_digest)
    if release.scope not in ledger_chain.SCOPES:
        raise ValueError(
            f"ledger release scope must be one of {sorted(ledger_chain.SCOPES)}, "
            f"got {release.scope!r}"
        )
