"""Run the store's Alembic migrations programmatically (no ``alembic.ini`` needed).

The script location is the ``migrations`` folder next to this module, so migrations work
from a source checkout, an editable install and a wheel alike.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from node.storage.errors import StorageError

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Build an Alembic ``Config`` pointing at the packaged migrations.

    Parameters
    ----------
    connection : Connection or None, default None
        Open connection the migrations run on (preferred: it shares the store's pool,
        pragmas and, for in-memory SQLite, the database itself).
    url : str or None, default None
        Database URL used only when no connection is given.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation would choke on a literal '%' in a password.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    """Revision id of the newest packaged migration (read once per process)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def current_revision(connection: Connection) -> str | None:
    """Revision the database at ``connection`` is at, or None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database on ``connection`` to ``revision`` (default ``"head"``).

    The caller owns the transaction: it is committed by the caller after this returns.
    A database already at the packaged head is left alone without loading the Alembic
    environment (that keeps opening a store cheap).
    """
    current = current_revision(connection)
    if revision == "head" and current == head_revision():
        return
    if current is not None and current not in _known_revisions():
        raise StorageError(
            f"database schema is at revision {current!r}, unknown to this fednode "
            f"(newest known: {head_revision()!r}); it was written by a newer release"
        )
    command.upgrade(alembic_config(connection), revision)


@functools.cache
def _known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())
