"""Small key/value node state (current round, model hash, ...).

Keys under ``spsa.batch.`` are signed SPSA batches: they live in the ``spsa_batches``
table and are read and written there (see ``node.storage.spsa_batches``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.storage.core import RESERVED_STATE_PREFIX, StoreCore
from node.storage.models import NodeStateRow, SpsaBatchRow
from node.storage.records import SpsaBatchRecord
from node.storage.spsa_batches import (
    SPSA_BATCH_KEY_PREFIX,
    batch_from_state,
    batch_state_key,
    batch_state_value,
    insert_batches,
    validate_batch,
)

__all__ = ["NodeStateStore"]


class NodeStateStore(StoreCore):
    """JSON values by key; ``storage.*`` keys are reserved."""

    @staticmethod
    def _check_state_key(key: str) -> None:
        if not key or len(key) > 128:
            raise ValueError(f"state key must be 1..128 characters, got {key!r}")
        if key.startswith(RESERVED_STATE_PREFIX):
            raise ValueError(f"state keys starting with {RESERVED_STATE_PREFIX!r} are reserved")

    def get_state(self, key: str, default: Any = None) -> Any:
        """Value stored under ``key`` (JSON-decoded), or ``default``."""
        with self._read() as s:
            if key.startswith(SPSA_BATCH_KEY_PREFIX):
                try:
                    wanted = batch_from_state(key, "")
                except ValueError:
                    return default
                batch = s.get(SpsaBatchRow, (wanted.round, wanted.origin))
                return default if batch is None else batch_state_value(batch.wire)
            row = s.get(NodeStateRow, key)
            return default if row is None else row.value

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key``."""
        self.set_states({key: value})

    def set_states(self, values: Mapping[str, Any]) -> None:
        """Store several keys in one transaction.

        A key ``spsa.batch.<round:09d>.<origin>`` with base64 text stores that signed
        batch in ``spsa_batches``; as there, the first batch stored for a (round, origin)
        stays.

        Raises
        ------
        ValueError
            On a reserved or malformed key, or a malformed batch; nothing is stored.
        """
        plain: dict[str, Any] = {}
        batches: list[SpsaBatchRecord] = []
        for key, value in values.items():
            self._check_state_key(key)
            if key.startswith(SPSA_BATCH_KEY_PREFIX):
                batch = batch_from_state(key, value)
                validate_batch(batch)
                batches.append(batch)
            else:
                plain[key] = value

        def work(s: Session) -> None:
            for key, value in plain.items():
                self._put_state(s, key, value)
            insert_batches(s, batches)

        self._write(work)

    def all_state(self) -> dict[str, Any]:
        """Every key/value pair (reserved ``storage.*`` keys and stored batches included)."""
        with self._read() as s:
            values = {r.key: r.value for r in s.scalars(select(NodeStateRow))}
            for b in s.scalars(select(SpsaBatchRow)):
                values[batch_state_key(b.round, b.origin)] = batch_state_value(b.wire)
            return values
