"""Hash chain of the privacy ledger (pure functions, no database).

Row ``n`` stores ``prev_hash`` = ``row_hash`` of row ``n - 1`` (``GENESIS_HASH`` for row 1)
and ``row_hash`` = sha256 of a canonical JSON array of every other column. Floats enter as
``float.hex()`` so the hash is exact and identical on every backend. Editing any column of
any row, deleting or reordering rows breaks the chain; the store additionally keeps the
tip ``(seq, row_hash)`` in ``node_state`` within the same transaction, so truncating the
newest rows is caught too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from node.storage.errors import LedgerCorrupted
from node.storage.records import LedgerRelease, LedgerRow

__all__ = ["GENESIS_HASH", "SCOPES", "compute_row_hash", "make_row", "verify_chain", "verify_row"]

GENESIS_HASH = "0" * 64
_DOMAIN = "fednode/privacy-ledger/v1"
_DOMAIN_SCOPED = "fednode/privacy-ledger/v2"
#: Accounting scopes a row may belong to (see ``LedgerRelease.scope``).
SCOPES = frozenset({"node", "record"})


def compute_row_hash(seq: int, created_at: float, release: LedgerRelease, prev_hash: str) -> str:
    """sha256 hex of the canonical encoding of one ledger row.

    Node-scope rows hash exactly as before scopes existed (ledgers written then still
    verify); rows of any other scope use a second domain and append the scope, so
    relabelling a row's scope breaks its hash.
    """
    scoped = release.scope != "node"
    body: list[object] = [
        _DOMAIN_SCOPED if scoped else _DOMAIN,
        seq,
        float(created_at).hex(),
        float(release.epsilon_after).hex(),
        float(release.delta).hex(),
        float(release.noise_multiplier).hex(),
        float(release.sample_rate).hex(),
        int(release.steps),
        release.release_kind,
        release.release_digest,
        prev_hash,
    ]
    if scoped:
        body.append(release.scope)
    encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return hashlib.sha256(encoded).hexdigest()


def make_row(seq: int, created_at: float, release: LedgerRelease, prev_hash: str) -> LedgerRow:
    """Build the chained row that follows ``prev_hash`` at position ``seq``."""
    return LedgerRow(
        seq=seq,
        created_at=created_at,
        epsilon_after=release.epsilon_after,
        delta=release.delta,
        noise_multiplier=release.noise_multiplier,
        sample_rate=release.sample_rate,
        steps=release.steps,
        release_kind=release.release_kind,
        release_digest=release.release_digest,
        prev_hash=prev_hash,
        row_hash=compute_row_hash(seq, created_at, release, prev_hash),
        scope=release.scope,
    )


def _release_of(row: LedgerRow) -> LedgerRelease:
    return LedgerRelease(
        epsilon_after=row.epsilon_after,
        delta=row.delta,
        noise_multiplier=row.noise_multiplier,
        sample_rate=row.sample_rate,
        steps=row.steps,
        release_kind=row.release_kind,
        release_digest=row.release_digest,
        scope=row.scope,
    )


def verify_row(row: LedgerRow, expected_seq: int, expected_prev: str) -> None:
    """Check one row's position, link and hash; raise ``LedgerCorrupted`` otherwise."""
    if row.seq != expected_seq:
        raise LedgerCorrupted(
            f"privacy ledger: expected row seq {expected_seq}, found {row.seq} "
            "(a row was deleted or inserted)"
        )
    if row.prev_hash != expected_prev:
        raise LedgerCorrupted(
            f"privacy ledger row {row.seq}: prev_hash does not match row {row.seq - 1}'s hash"
        )
    recomputed = compute_row_hash(row.seq, row.created_at, _release_of(row), row.prev_hash)
    if recomputed != row.row_hash:
        raise LedgerCorrupted(
            f"privacy ledger row {row.seq}: contents do not match its row_hash "
            "(the row was edited or corrupted)"
        )


def verify_chain(rows: Iterable[LedgerRow], tip: tuple[int, str] | None) -> int:
    """Verify a full ledger (rows in ascending ``seq``) against the recorded tip.

    Parameters
    ----------
    rows : iterable of LedgerRow
        Every ledger row, ordered by ``seq``.
    tip : (int, str) or None
        ``(seq, row_hash)`` of the newest row as recorded alongside it, or None when no
        release was ever recorded.

    Returns
    -------
    int
        Number of rows verified.

    Raises
    ------
    LedgerCorrupted
        On any broken link, edited row, gap, or a tip that does not match the last row.
    """
    expected_prev = GENESIS_HASH
    count = 0
    last: LedgerRow | None = None
    for row in rows:
        verify_row(row, count + 1, expected_prev)
        expected_prev = row.row_hash
        count += 1
        last = row
    if last is None:
        if tip is not None:
            raise LedgerCorrupted(
                f"privacy ledger is empty but its tip records {tip[0]} releases (rows were deleted)"
            )
        return 0
    if tip is None:
        raise LedgerCorrupted("privacy ledger has rows but no recorded tip")
    if tip != (last.seq, last.row_hash):
        raise LedgerCorrupted(
            f"privacy ledger tip records row {tip[0]} but the newest row is {last.seq} "
            "(rows were truncated or the tip was edited)"
        )
    return count
