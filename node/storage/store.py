"""The node store: every piece of persistent node state behind one typed API.

``Store`` combines the per-table parts (peers, SPSA log and batches, checkpoints,
reputation, privacy ledger, events, node state), each in its own module on top of
``node.storage.core.StoreCore``. Every public write is one transaction (see ``core``).
All methods are blocking and thread-safe (one pooled connection per call); the asyncio
daemon calls them through an executor.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from sqlalchemy import func, select, text
from sqlalchemy.engine import URL

from node.storage import migrate
from node.storage.checkpoints import CheckpointStore
from node.storage.engine import (
    create_store_engine,
    normalize_url,
    sqlite_file_of,
    sqlite_url_for,
)
from node.storage.events import EventStore
from node.storage.ledger import BudgetCheck, LedgerStore
from node.storage.models import Base
from node.storage.peers import PeerStore
from node.storage.reputation import ReputationStore
from node.storage.spsa import SpsaStore
from node.storage.state import NodeStateStore

__all__ = ["BudgetCheck", "Store", "open_store"]

_PG_MIGRATE_LOCK = 7241982301


class Store(
    PeerStore,
    SpsaStore,
    CheckpointStore,
    ReputationStore,
    LedgerStore,
    EventStore,
    NodeStateStore,
):
    """Persistent node state in SQL (SQLite by default, PostgreSQL or any SQLAlchemy URL).

    Open one with :func:`open_store`; close it with :meth:`close` or use it as a context
    manager. See ``docs/storage.md`` for the schema and the crash guarantees.
    """

    @classmethod
    def open(
        cls,
        url: str | URL | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        migrate_schema: bool = True,
        busy_timeout_s: float = 30.0,
        echo: bool = False,
    ) -> Store:
        """Open (and by default migrate) a store. Same as :func:`open_store`."""
        return open_store(
            url,
            data_dir=data_dir,
            migrate_schema=migrate_schema,
            busy_timeout_s=busy_timeout_s,
            echo=echo,
        )

    def table_counts(self) -> dict[str, int]:
        """Row count of every table, read in one transaction (for status and export)."""
        with self._read() as s:
            return {
                table.name: int(s.scalar(select(func.count()).select_from(table)) or 0)
                for table in Base.metadata.sorted_tables
            }

    def close(self) -> None:
        """Release every pooled connection. The store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_store(
    url: str | URL | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    migrate_schema: bool = True,
    busy_timeout_s: float = 30.0,
    echo: bool = False,
) -> Store:
    """Open the node store and bring its schema to the newest migration.

    Parameters
    ----------
    url : str, URL or None, default None
        SQLAlchemy URL. None means the default SQLite file ``<data_dir>/fednode.db``
        (then ``data_dir`` is required). ``postgresql://`` uses psycopg 3.
    data_dir : path or None, default None
        Directory for checkpoint files. Defaults to the database file's
        directory for a SQLite file URL; for other URLs, file features raise
        ``StorageError`` until a data dir is given.
    migrate_schema : bool, default True
        Run ``alembic upgrade head`` on open (serialised against concurrent openers).
    busy_timeout_s : float, default 30.0
        Lock wait before a write fails.
    echo : bool, default False
        Log SQL.

    Raises
    ------
    ValueError
        On a malformed URL or a missing ``data_dir`` where one is needed.
    """
    if url is None:
        if data_dir is None:
            raise ValueError("open_store needs a database URL or a data_dir")
        url = sqlite_url_for(data_dir)
    parsed = normalize_url(url)
    if data_dir is not None:
        base: Path | None = Path(data_dir).expanduser().resolve()
    else:
        file = sqlite_file_of(parsed)
        base = None if file is None else file.expanduser().resolve().parent
    if base is not None:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = create_store_engine(parsed, busy_timeout_s=busy_timeout_s, echo=echo)
    try:
        if migrate_schema:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two nodes opening one fresh database must not both create the tables.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
                migrate.upgrade(conn)
    except Exception:
        engine.dispose()
        raise
    return Store(engine, data_dir=base)
