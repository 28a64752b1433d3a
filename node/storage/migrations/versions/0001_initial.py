"""Initial schema: peers, messages, updates, SPSA log, checkpoints, reputation, ledger, events.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from node.storage.models import UInt64

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same as models.BigId: SQLite only autoincrements a column declared INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "peers",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("pow_nonce", UInt64(), nullable=False),
        sa.Column("incarnation", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("rtt_ms", sa.Float(), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("banned", sa.Boolean(), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_peers")),
    )
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
    op.create_table(
        "spsa_log",
        sa.Column("seq", BigId, autoincrement=True, nullable=False),
        sa.Column("seed_id", sa.String(128), nullable=False),
        sa.Column("round", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("scalar", sa.Float(), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("applied_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_spsa_log")),
        sa.UniqueConstraint("seed_id", name=op.f("uq_spsa_log_seed_id")),
    )
    op.create_index(op.f("ix_spsa_log_round"), "spsa_log", ["round"])
    op.create_table(
        "checkpoints",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("round", sa.BigInteger(), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("applied_seed_digest", sa.String(64), nullable=True),
        sa.Column("spsa_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    op.create_index(op.f("ix_checkpoints_round"), "checkpoints", ["round"])
    op.create_table(
        "reputation",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("quarantined_until", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_reputation")),
    )
    op.create_table(
        "privacy_ledger",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("epsilon_after", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("noise_multiplier", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Float(), nullable=False),
        sa.Column("steps", sa.BigInteger(), nullable=False),
        sa.Column("release_kind", sa.String(32), nullable=False),
        sa.Column("release_digest", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_privacy_ledger")),
        sa.UniqueConstraint("row_hash", name=op.f("uq_privacy_ledger_row_hash")),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_ts"), "events", ["ts"])
    op.create_index(op.f("ix_events_kind"), "events", ["kind"])
    op.create_table(
        "node_state",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_node_state")),
    )


def downgrade() -> None:
    op.drop_table("node_state")
    op.drop_index(op.f("ix_events_kind"), table_name="events")
    op.drop_index(op.f("ix_events_ts"), table_name="events")
    op.drop_table("events")
    op.drop_table("privacy_ledger")
    op.drop_table("reputation")
    op.drop_index(op.f("ix_checkpoints_round"), table_name="checkpoints")
    op.drop_table("checkpoints")
    op.drop_table("spsa_log")
    op.drop_index("ix_updates_round_sender", table_name="updates")
    op.drop_table("updates")
    op.drop_table("messages")
    op.drop_table("peers")
