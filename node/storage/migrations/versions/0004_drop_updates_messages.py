"""Drop ``updates`` and ``messages``: no daemon code ever wrote or read them.

Revision ID: 0004_drop_updates_messages
Revises: 0003_spsa_batches
Create Date: 2026-12-07

Why they go rather than get used is in ``docs/storage.md`` ("What is stored, and what is
not"). In short: a vector update is merged into the model and the merged model is what a
restarted node resumes from (its checkpoint); replays are refused by the envelope's
replay window and the round engine; the accepted SPSA messages are kept, in
``spsa_batches``. The downgrade recreates both tables empty, as ``0001_initial`` made
them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_drop_updates_messages"
down_revision: str | None = "0003_spsa_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same as models.BigId: SQLite only autoincrements a column declared INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.drop_index("ix_updates_round_sender", table_name="updates")
    op.drop_table("updates")
    op.drop_table("messages")


def downgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("network_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("sender", "kind", "seq", name=op.f("uq_messages_sender_kind_seq")),
    )
    op.create_table(
        "updates",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("round", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("message_id", BigId, nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("payload_path", sa.String(512), nullable=True),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_updates_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_updates")),
    )
    op.create_index("ix_updates_round_sender", "updates", ["round", "sender"])
