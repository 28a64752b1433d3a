"""Received model updates: raw tensor payloads inline or as verified files."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from node.storage.core import check_hex, now_or
from node.storage.errors import PayloadCorrupted
from node.storage.files import atomic_write
from node.storage.messages import MessageStore
from node.storage.models import UpdateRow
from node.storage.records import DTYPE_ITEMSIZE, MessageRecord, UpdateRecord

__all__ = ["UpdateStore"]


class UpdateStore(MessageStore):
    """Model updates, stored with the envelope that carried them."""

    def store_update(
        self,
        round: int,
        sender: str,
        payload: bytes,
        *,
        dtype: str,
        shape: Iterable[int],
        accepted: bool = True,
        reason: str | None = None,
        message: MessageRecord | None = None,
        received_at: float | None = None,
    ) -> int | None:
        """Store a received update (raw little-endian tensor bytes), accepted or not.

        Payloads above the store's ``inline_limit`` (default 256 KiB) go to a file of their
        own, ``<data_dir>/updates/<sha256 prefix>-<random>.bin``, written and fsynced before
        the row commits; smaller ones, or all of them without a data dir, are stored in the
        row.

        Parameters
        ----------
        round, sender : int, str
            Round the update is for and the sender's hex node id.
        payload : bytes
            Tensor bytes; for an accepted update its length must equal
            ``prod(shape) * itemsize(dtype)``. A rejected update may carry any payload
            (often ``b""``) with the rejection ``reason``.
        dtype : str
            One of ``records.DTYPE_ITEMSIZE``.
        shape : iterable of int
            Tensor shape.
        accepted : bool, default True
            Whether the node accepted the update for aggregation.
        reason : str or None, default None
            Why it was rejected (or any note).
        message : MessageRecord or None, default None
            The envelope that carried the update; recorded in the same transaction, and
            when it is a replay nothing is stored and None is returned.
        received_at : float or None, default None (now)

        Returns
        -------
        int or None
            The update id, or None for a replayed message.
        """
        check_hex("update sender", sender)
        if dtype not in DTYPE_ITEMSIZE:
            raise ValueError(f"update dtype {dtype!r} is not one of {sorted(DTYPE_ITEMSIZE)}")
        dims = tuple(int(d) for d in shape)
        if any(d < 0 for d in dims):
            raise ValueError(f"update shape {list(dims)} has a negative dimension")
        payload = bytes(payload)
        if accepted:
            numel = 1
            for d in dims:
                numel *= d
            if numel * DTYPE_ITEMSIZE[dtype] != len(payload):
                raise ValueError(
                    f"update payload has {len(payload)} bytes but dtype {dtype} and shape "
                    f"{list(dims)} need {numel * DTYPE_ITEMSIZE[dtype]}"
                )
        if message is not None:
            self._validate_message(message)
        if reason is not None and len(reason) > 255:
            reason = reason[:252] + "..."
        sha = hashlib.sha256(payload).hexdigest()
        rel_path: str | None = None
        if self._data_dir is not None and len(payload) > self._inline_limit:
            # One file per row (never shared), so pruning a row can delete its file without
            # racing a concurrent store of identical bytes.
            rel_path = f"updates/{sha[:32]}-{secrets.token_hex(8)}.bin"
            atomic_write(self._data_dir / rel_path, payload)

        def work(s: Session) -> int | None:
            message_id = None
            if message is not None:
                mrow = self._insert_message(s, message)
                if mrow is None:
                    return None
                message_id = mrow.id
            row = UpdateRow(
                round=round,
                sender=sender,
                message_id=message_id,
                payload=None if rel_path else payload,
                payload_path=rel_path,
                payload_sha256=sha,
                size=len(payload),
                dtype=dtype,
                shape=list(dims),
                accepted=accepted,
                reason=reason,
                received_at=now_or(received_at),
            )
            s.add(row)
            s.flush()
            return row.id

        return self._write(work)

    def _update_record(self, row: UpdateRow, with_payload: bool) -> UpdateRecord:
        payload: bytes | None = None
        if with_payload:
            if row.payload_path is not None:
                base = self._require_data_dir("reading a file-backed update")
                try:
                    payload = (base / row.payload_path).read_bytes()
                except OSError as exc:
                    raise PayloadCorrupted(
                        f"update {row.id}: payload file {row.payload_path} unreadable: {exc}"
                    ) from exc
            else:
                payload = bytes(row.payload or b"")
            if hashlib.sha256(payload).hexdigest() != row.payload_sha256:
                raise PayloadCorrupted(f"update {row.id}: payload does not match its sha256")
        return UpdateRecord(
            id=row.id,
            round=row.round,
            sender=row.sender,
            payload=payload,
            payload_sha256=row.payload_sha256,
            size=row.size,
            dtype=row.dtype,
            shape=tuple(row.shape),
            accepted=row.accepted,
            reason=row.reason,
            received_at=row.received_at,
            message_id=row.message_id,
            stored_in_file=row.payload_path is not None,
        )

    def list_updates(
        self,
        round: int,
        *,
        accepted: bool | None = None,
        sender: str | None = None,
        with_payload: bool = True,
    ) -> list[UpdateRecord]:
        """Updates stored for ``round`` in arrival order, payloads verified by sha256.

        Parameters
        ----------
        round : int
        accepted : bool or None, default None
            Filter on the accepted flag (None: both).
        sender : str or None, default None
            Only this sender's updates.
        with_payload : bool, default True
            False skips loading (and verifying) the payload bytes.

        Raises
        ------
        PayloadCorrupted
            When a payload no longer matches its recorded sha256.
        """
        stmt = select(UpdateRow).where(UpdateRow.round == round).order_by(UpdateRow.id)
        if accepted is not None:
            stmt = stmt.where(UpdateRow.accepted.is_(accepted))
        if sender is not None:
            stmt = stmt.where(UpdateRow.sender == sender)
        with self._read() as s:
            rows = list(s.scalars(stmt))
        return [self._update_record(r, with_payload) for r in rows]

    def prune_updates(self, before_round: int) -> int:
        """Delete updates of rounds ``< before_round`` (and their payload files).

        Returns the number of rows deleted.
        """

        def work(s: Session) -> tuple[int, list[str]]:
            doomed = UpdateRow.round < before_round
            paths = list(
                s.scalars(
                    select(UpdateRow.payload_path).where(
                        doomed, UpdateRow.payload_path.is_not(None)
                    )
                )
            )
            result = s.execute(delete(UpdateRow).where(doomed))
            return int(result.rowcount), [p for p in paths if p]  # type: ignore[attr-defined]

        count, orphaned = self._write(work)
        # Files go only after the commit: a crash before it keeps rows and files together.
        if self._data_dir is not None:
            for rel in orphaned:
                (self._data_dir / rel).unlink(missing_ok=True)
        return count
