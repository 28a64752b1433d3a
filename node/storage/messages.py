"""Accepted-message log of the store: replay detection on (sender, kind, seq)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from node.storage.core import StoreCore, check_hex, now_or
from node.storage.models import MessageRow
from node.storage.records import MessageRecord

__all__ = ["MessageStore"]


class MessageStore(StoreCore):
    """Inbound message metadata and replay detection."""

    @staticmethod
    def _validate_message(msg: MessageRecord) -> None:
        check_hex("message sender", msg.sender)
        check_hex("message payload_sha256", msg.payload_sha256)
        if not msg.kind or len(msg.kind) > 32:
            raise ValueError(f"message kind must be 1..32 characters, got {msg.kind!r}")
        if not msg.network_id or len(msg.network_id) > 64:
            raise ValueError("message network_id must be 1..64 characters")
        if msg.seq < 0 or msg.size < 0:
            raise ValueError(f"message seq and size must be >= 0, got {msg.seq}, {msg.size}")

    @staticmethod
    def _insert_message(s: Session, msg: MessageRecord) -> MessageRow | None:
        """Insert ``msg`` unless its (sender, kind, seq) is already stored (a replay)."""
        seen = s.scalar(
            select(MessageRow.id).where(
                MessageRow.sender == msg.sender,
                MessageRow.kind == msg.kind,
                MessageRow.seq == msg.seq,
            )
        )
        if seen is not None:
            return None
        row = MessageRow(
            sender=msg.sender,
            kind=msg.kind,
            network_id=msg.network_id,
            seq=msg.seq,
            round=msg.round,
            received_at=now_or(msg.received_at),
            payload_sha256=msg.payload_sha256,
            size=msg.size,
        )
        s.add(row)
        s.flush()
        return row

    def record_message(self, msg: MessageRecord) -> bool:
        """Record an accepted message; False (and nothing stored) when it is a replay.

        A replay is a message whose ``(sender, kind, seq)`` was recorded before.
        """
        self._validate_message(msg)
        return self._write(lambda s: self._insert_message(s, msg) is not None)

    def message_seen(self, sender: str, kind: str, seq: int) -> bool:
        """True when ``(sender, kind, seq)`` was already recorded."""
        with self._read() as s:
            found = s.scalar(
                select(MessageRow.id).where(
                    MessageRow.sender == sender, MessageRow.kind == kind, MessageRow.seq == seq
                )
            )
            return found is not None

    def max_seq(self, sender: str, kind: str) -> int | None:
        """Highest recorded sequence number from ``sender`` for ``kind`` (None if none)."""
        with self._read() as s:
            return s.scalar(
                select(func.max(MessageRow.seq)).where(
                    MessageRow.sender == sender, MessageRow.kind == kind
                )
            )

    def count_messages(self, *, kind: str | None = None) -> int:
        """Number of recorded messages, optionally of one kind."""
        stmt = select(func.count()).select_from(MessageRow)
        if kind is not None:
            stmt = stmt.where(MessageRow.kind == kind)
        with self._read() as s:
            return int(s.scalar(stmt) or 0)
