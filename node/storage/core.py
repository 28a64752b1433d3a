"""Shared base of the store: engine, transaction helpers and input checks.

Transaction rule: every public method that writes runs exactly one database transaction
(``StoreCore._write``) and commits it before returning; when it raises, nothing it did is
stored. Files that belong to a row (checkpoints) are written to a
temporary name, fsynced and renamed into place *before* the row's transaction commits, so
a committed row always points at a complete file; a crash in between leaves at most an
unreferenced file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from node.storage import migrate
from node.storage.engine import READ_OPTION
from node.storage.errors import StorageError
from node.storage.models import NodeStateRow

__all__ = [
    "RESERVED_STATE_PREFIX",
    "StoreCore",
    "check_hex",
    "chunks",
    "is_finite",
    "now_or",
]

T = TypeVar("T")

RESERVED_STATE_PREFIX = "storage."
_WRITE_ATTEMPTS = 8
_IN_CHUNK = 500  # bound IN (...) lists well below every backend's parameter limit


def now_or(value: float | None) -> float:
    """``value`` as a float, or the current Unix time when it is None."""
    return time.time() if value is None else float(value)


def is_finite(value: Any) -> bool:
    """True for a real int or float that is neither NaN nor infinite."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )


def check_hex(name: str, value: str, length: int | None = 64) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is lower-case hex of ``length``."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a hex str, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must be {length} hex characters, got {len(value)}")
    try:
        int(value, 16)
    except ValueError:
        raise ValueError(f"{name} must be lower-case hex, got {value[:80]!r}") from None
    if value != value.lower():
        raise ValueError(f"{name} must be lower-case hex, got {value[:80]!r}")


def chunks(items: list[T], size: int = _IN_CHUNK) -> Iterator[list[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StoreCore:
    """Engine, data dir and the transaction helpers every part of the store builds on."""

    def __init__(
        self,
        engine: Engine,
        *,
        data_dir: Path | None,
    ) -> None:
        self._engine = engine
        self._data_dir = data_dir
        # (seq, row_hash) of the newest ledger row this store has verified the chain up to.
        self._ledger_verified: tuple[int, str] | None = None

    @property
    def engine(self) -> Engine:
        """The underlying SQLAlchemy engine (for diagnostics and tests)."""
        return self._engine

    @property
    def backend(self) -> str:
        """Dialect name: ``"sqlite"``, ``"postgresql"``, ..."""
        return self._engine.dialect.name

    @property
    def url(self) -> str:
        """Database URL with the password masked."""
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def data_dir(self) -> Path | None:
        """Directory for checkpoint files (None: file features off)."""
        return self._data_dir

    def schema_revision(self) -> str | None:
        """Alembic revision the database is at (None for an unmigrated database)."""
        with self._engine.connect() as conn:
            return migrate.current_revision(conn)

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction and commit it.

        A unique-constraint race with a concurrent writer (possible on PostgreSQL, where
        transactions are not serialised up front as on SQLite) rolls back and re-runs
        ``work``, which always re-reads before it writes.
        """
        for attempt in range(_WRITE_ATTEMPTS):
            with Session(self._engine, expire_on_commit=False) as session:
                try:
                    result = work(session)
                    session.commit()
                    return result
                except IntegrityError:
                    session.rollback()
                    if attempt == _WRITE_ATTEMPTS - 1:
                        raise
        raise AssertionError("unreachable")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A read-only session (deferred ``BEGIN`` on SQLite, so it never blocks writers)."""
        with Session(self._engine, expire_on_commit=False) as session:
            session.connection(execution_options={READ_OPTION: True})
            # Closing (not rolling back) ends the read transaction without expiring the
            # loaded rows, so callers may convert them after the block.
            yield session

    def _require_data_dir(self, what: str) -> Path:
        if self._data_dir is None:
            raise StorageError(
                f"{what} needs a data directory: open the store with data_dir=... "
                "(implicit only for a SQLite file URL)"
            )
        return self._data_dir

    @staticmethod
    def _put_state(s: Session, key: str, value: Any) -> None:
        row = s.get(NodeStateRow, key)
        if row is None:
            s.add(NodeStateRow(key=key, value=value))
        else:
            row.value = value
