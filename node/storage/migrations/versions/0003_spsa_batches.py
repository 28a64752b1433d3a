"""Signed SPSA batches get their own table; the node-state rows that held them move there.

Revision ID: 0003_spsa_batches
Revises: 0002_ledger_scope
Create Date: 2026-12-07

Before this revision a signed batch was a node-state row, key
``spsa.batch.<round:09d>.<origin>`` (origin: 64 lower-case hex), value the base64 of the
wire bytes (a JSON string). Each such row becomes one ``spsa_batches`` row and is deleted
from ``node_state`` in the same transaction. Its ``stored_at`` is the migration time (the
old rows kept none). A row whose key or value is not in that form is left where it is:
the daemon skipped such rows before and still does.

The legacy format is written out here, not imported, so this revision keeps meaning the
same thing whatever later code does.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003_spsa_batches"
down_revision: str | None = "0002_ledger_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PREFIX = "spsa.batch."
_HEX = frozenset("0123456789abcdef")
_CHUNK = 500

_state = sa.table("node_state", sa.column("key", sa.String), sa.column("value", sa.JSON))
_batches = sa.table(
    "spsa_batches",
    sa.column("round", sa.BigInteger),
    sa.column("origin", sa.String),
    sa.column("wire", sa.LargeBinary),
    sa.column("stored_at", sa.Float),
)


def _parse(key: str, value: Any) -> tuple[int, str, bytes] | None:
    """(round, origin, wire) of a legacy batch row, None when it is not one."""
    round_text, _, origin = key[len(_PREFIX) :].partition(".")
    if not (round_text.isascii() and round_text.isdigit()):
        return None
    if len(origin) != 64 or not set(origin) <= _HEX:
        return None
    round_idx = int(round_text)
    if key != f"{_PREFIX}{round_idx:09d}.{origin}" or not isinstance(value, str):
        return None
    try:
        wire = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return (round_idx, origin, wire) if wire else None


def upgrade() -> None:
    op.create_table(
        "spsa_batches",
        sa.Column("round", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("wire", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("round", "origin", name=op.f("pk_spsa_batches")),
    )
    bind = op.get_bind()
    legacy = bind.execute(
        sa.select(_state.c.key, _state.c.value).where(_state.c.key.startswith(_PREFIX))
    ).all()
    now = time.time()
    moved: list[dict[str, Any]] = []
    keys: list[str] = []
    for key, value in legacy:
        parsed = _parse(key, value)
        if parsed is None:
            continue
        round_idx, origin, wire = parsed
        moved.append({"round": round_idx, "origin": origin, "wire": wire, "stored_at": now})
        keys.append(key)
    for start in range(0, len(moved), _CHUNK):
        bind.execute(_batches.insert(), moved[start : start + _CHUNK])
        bind.execute(_state.delete().where(_state.c.key.in_(keys[start : start + _CHUNK])))


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_batches.c.round, _batches.c.origin, _batches.c.wire).order_by(
            _batches.c.round, _batches.c.origin
        )
    ).all()
    back = [
        {
            "key": f"{_PREFIX}{round_idx:09d}.{origin}",
            "value": base64.b64encode(bytes(wire)).decode("ascii"),
        }
        for round_idx, origin, wire in rows
    ]
    for start in range(0, len(back), _CHUNK):
        part = back[start : start + _CHUNK]
        # A damaged row the upgrade left behind may hold the same key: the table's is good.
        bind.execute(_state.delete().where(_state.c.key.in_([r["key"] for r in part])))
        bind.execute(_state.insert(), part)
    op.drop_table("spsa_batches")
