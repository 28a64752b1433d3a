"""Signed SPSA batches: the ``spsa_batches`` table.

Before revision ``0003_spsa_batches`` the daemon kept each signed batch in the key/value
node state, under ``spsa.batch.<round:09d>.<origin>`` with the base64 of the wire bytes as
value; the migration moves those rows into the table, and node-state keys under that
prefix are now refused (:mod:`node.storage.state`). Batches are written with
``append_spsa(..., batches=...)`` and read with ``spsa_batches()``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from node.storage.core import check_hex, chunks, now_or
from node.storage.models import SpsaBatchRow
from node.storage.records import SpsaBatchRecord

__all__ = [
    "MAX_BATCH_BYTES",
    "SPSA_BATCH_KEY_PREFIX",
    "batch_record",
    "insert_batches",
    "validate_batch",
]

#: Node-state keys where batches were kept before revision ``0003_spsa_batches`` (reserved).
SPSA_BATCH_KEY_PREFIX = "spsa.batch."

# A batch carries at most a few thousand one-byte scalars; far above that is not a batch.
MAX_BATCH_BYTES = 4 * 1024 * 1024


def validate_batch(batch: SpsaBatchRecord) -> None:
    """Raise ``ValueError`` naming the field unless ``batch`` can be stored."""
    if not isinstance(batch.round, int) or isinstance(batch.round, bool) or batch.round < 0:
        raise ValueError(f"SPSA batch round must be an int >= 0, got {batch.round!r}")
    check_hex("SPSA batch origin", batch.origin)
    if not isinstance(batch.wire, bytes | bytearray | memoryview):
        raise ValueError(f"SPSA batch wire must be bytes, got {type(batch.wire).__name__}")
    if not 0 < len(batch.wire) <= MAX_BATCH_BYTES:
        raise ValueError(
            f"SPSA batch wire must be 1..{MAX_BATCH_BYTES} bytes, got {len(batch.wire)}"
        )


def batch_record(row: SpsaBatchRow) -> SpsaBatchRecord:
    """Detached record of a table row."""
    return SpsaBatchRecord(row.round, row.origin, bytes(row.wire), row.stored_at)


def insert_batches(s: Session, batches: Iterable[SpsaBatchRecord]) -> int:
    """Insert the batches whose (round, origin) is not stored yet; returns how many.

    The first batch stored for a (round, origin) stays: later ones, in this call or
    after, are ignored (the caller decides what a second, different batch means).
    """
    fresh: dict[tuple[int, str], SpsaBatchRecord] = {}
    for b in batches:
        fresh.setdefault((b.round, b.origin), b)
    if not fresh:
        return 0
    for chunk in chunks(list(fresh)):
        stored = s.execute(
            select(SpsaBatchRow.round, SpsaBatchRow.origin).where(
                tuple_(SpsaBatchRow.round, SpsaBatchRow.origin).in_(chunk)
            )
        )
        for round_idx, origin in stored:
            del fresh[(round_idx, origin)]
    for b in fresh.values():
        s.add(
            SpsaBatchRow(
                round=b.round, origin=b.origin, wire=bytes(b.wire), stored_at=now_or(b.stored_at)
            )
        )
    s.flush()
    return len(fresh)
