"""Engine construction: URLs, SQLite pragmas and transaction begin modes.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed transaction survives power
loss, which the privacy ledger's debit-before-send rule needs), ``foreign_keys=ON`` and a
busy timeout. pysqlite's implicit transaction handling is switched off and every write
transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken up front, so a
read-then-write transaction can never fail half-way with ``SQLITE_BUSY`` on lock upgrade.
Read-only transactions (execution option ``fednode_read``) use a plain deferred ``BEGIN``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "DB_FILENAME",
    "READ_OPTION",
    "create_store_engine",
    "normalize_url",
    "sqlite_file_of",
    "sqlite_url_for",
]

DB_FILENAME = "fednode.db"
READ_OPTION = "fednode_read"


def sqlite_url_for(data_dir: str | os.PathLike[str]) -> str:
    """SQLite URL of the default database file ``<data_dir>/fednode.db`` (absolute path)."""
    path = (Path(data_dir).expanduser() / DB_FILENAME).resolve()
    return f"sqlite:///{path}"


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; a bare ``postgresql://`` gets the installed psycopg 3 driver.

    Raises
    ------
    ValueError
        When the URL cannot be parsed.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ValueError(f"invalid database URL {str(url)!r}: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_file_of(url: URL) -> Path | None:
    """Path of the database file for a file-backed SQLite URL, else None."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Own the transaction boundaries (see module docstring).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = bool(conn.get_execution_options().get(READ_OPTION, False))
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_store_engine(
    url: str | URL, *, busy_timeout_s: float = 30.0, echo: bool = False
) -> Engine:
    """Create the engine for ``url`` with the store's connection settings.

    Parameters
    ----------
    url : str or URL
        Any SQLAlchemy URL; ``sqlite:///path`` and ``postgresql+psycopg://...`` are tested.
    busy_timeout_s : float, default 30.0
        How long a writer waits for a lock before failing (SQLite ``busy_timeout``; the
        PostgreSQL ``lock_timeout``).
    echo : bool, default False
        Log every SQL statement.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"echo": echo}
    if backend == "sqlite":
        file = sqlite_file_of(parsed)
        connect_args: dict[str, Any] = {"timeout": busy_timeout_s, "check_same_thread": False}
        if file is None:
            # One shared connection: each new connection to :memory: is a new empty database.
            kwargs["poolclass"] = StaticPool
        else:
            file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        _install_sqlite_hooks(engine, int(busy_timeout_s * 1000), in_memory=file is None)
        return engine
    if backend == "postgresql":
        kwargs["pool_pre_ping"] = True
        engine = create_engine(parsed, **kwargs)
        lock_ms = int(busy_timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _on_pg_connect(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET lock_timeout = {lock_ms}")
            dbapi_conn.commit()

        return engine
    return create_engine(parsed, **kwargs)
