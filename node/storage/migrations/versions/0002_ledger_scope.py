"""Privacy ledger rows carry an accounting scope: node-level or record-level.

Revision ID: 0002_ledger_scope
Revises: 0001_initial
Create Date: 2026-12-01

Rows written before this revision are node-level releases (the only kind there was), so
they get ``scope = 'node'``; their hashes do not cover the scope and still verify.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledger_scope"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "privacy_ledger",
        sa.Column("scope", sa.String(16), nullable=False, server_default="node"),
    )


def downgrade() -> None:
    # Record-level rows cannot be told apart without the column: refuse to lose them.
    bind = op.get_bind()
    count = bind.execute(
        sa.text("SELECT COUNT(*) FROM privacy_ledger WHERE scope <> 'node'")
    ).scalar_one()
    if count:
        raise RuntimeError(
            f"the privacy ledger holds {count} record-level rows; a schema without scopes "
            "would count them as node-level releases"
        )
    with op.batch_alter_table("privacy_ledger") as batch:
        batch.drop_column("scope")
