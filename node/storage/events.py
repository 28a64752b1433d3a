"""Operator-visible event log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.storage.core import StoreCore, now_or
from node.storage.models import EventRow
from node.storage.records import EventRecord

__all__ = ["EVENT_LEVELS", "EventStore"]

EVENT_LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})


class EventStore(StoreCore):
    """Append-only event log."""

    def log_event(
        self,
        kind: str,
        detail: Mapping[str, Any] | None = None,
        *,
        level: str = "info",
        ts: float | None = None,
    ) -> int:
        """Append an event (JSON-serialisable ``detail``); returns its id."""
        if level not in EVENT_LEVELS:
            raise ValueError(f"event level must be one of {sorted(EVENT_LEVELS)}, got {level!r}")
        if not kind or len(kind) > 64:
            raise ValueError(f"event kind must be 1..64 characters, got {kind!r}")

        def work(s: Session) -> int:
            row = EventRow(ts=now_or(ts), level=level, kind=kind, detail=dict(detail or {}))
            s.add(row)
            s.flush()
            return row.id

        return self._write(work)

    def events(
        self, *, after_id: int = 0, kind: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """Events with ``id > after_id`` in order, optionally of one kind, at most ``limit``."""
        stmt = select(EventRow).where(EventRow.id > after_id).order_by(EventRow.id).limit(limit)
        if kind is not None:
            stmt = stmt.where(EventRow.kind == kind)
        with self._read() as s:
            return [
                EventRecord(id=r.id, ts=r.ts, level=r.level, kind=r.kind, detail=dict(r.detail))
                for r in s.scalars(stmt)
            ]
