"""Signed SPSA batches: the ``spsa_batches`` table and its node-state key form.

Before revision ``0003_spsa_batches`` the daemon kept each signed batch in the key/value
node state, under ``spsa.batch.<round:09d>.<origin>`` with the base64 of the wire bytes as
value. The migration moves those rows into the table. Writes and reads through the
node-state API under that prefix (``set_states``, ``get_state``, ``all_state``) are
served from the table, so a caller still using the key form and one using
``append_spsa(..., batches=...)`` / ``spsa_batches()`` see the same rows.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from node.storage.core import check_hex, chunks, now_or
from node.storage.models import SpsaBatchRow
from node.storage.records import SpsaBatchRecord

__all__ = [
    "MAX_BATCH_BYTES",
    "SPSA_BATCH_KEY_PREFIX",
    "batch_from_state",
    "batch_record",
    "batch_state_key",
    "batch_state_value",
    "insert_batches",
    "validate_batch",
]

SPSA_BATCH_KEY_PREFIX = "spsa.batch."

# A batch carries at most a few thousand one-byte scalars; far above that is not a batch.
MAX_BATCH_BYTES = 4 * 1024 * 1024


def batch_state_key(round: int, origin: str) -> str:
    """Node-state key of the batch of ``round`` signed by ``origin``."""
    return f"{SPSA_BATCH_KEY_PREFIX}{round:09d}.{origin}"


def batch_state_value(wire: bytes) -> str:
    """Node-state value of a batch: the base64 of its wire bytes."""
    return base64.b64encode(wire).decode("ascii")


def batch_from_state(key: str, value: Any) -> SpsaBatchRecord:
    """The batch a node-state ``key``/``value`` pair stands for.

    Raises
    ------
    ValueError
        When the key is not ``batch_state_key(round, origin)`` for a round >= 0 and a
        64-hex origin, or the value is not base64 text.
    """
    body = key[len(SPSA_BATCH_KEY_PREFIX) :] if key.startswith(SPSA_BATCH_KEY_PREFIX) else ""
    round_text, _, origin = body.partition(".")
    if not round_text.isdigit() or not round_text.isascii():
        raise ValueError(f"SPSA batch key {key[:120]!r} has no round")
    check_hex("SPSA batch origin", origin)
    round_idx = int(round_text)
    if batch_state_key(round_idx, origin) != key:
        raise ValueError(f"SPSA batch key {key[:120]!r} is not in canonical form")
    if not isinstance(value, str):
        raise ValueError(f"SPSA batch {key[:120]!r}: value must be base64 text")
    try:
        wire = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"SPSA batch {key[:120]!r}: value is not base64") from None
    return SpsaBatchRecord(round_idx, origin, wire)


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
