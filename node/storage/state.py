"""Small key/value node state (current round, model hash, ...).

Signed SPSA batches are not node state: they have their own table, written with
``append_spsa(..., batches=...)`` and read with ``spsa_batches()``
(:mod:`node.storage.spsa`). Keys under ``spsa.batch.``, where they were kept before
revision ``0003_spsa_batches``, are refused so that no caller stores one where no reader
looks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.storage.core import RESERVED_STATE_PREFIX, StoreCore
from node.storage.models import NodeStateRow
from node.storage.spsa_batches import SPSA_BATCH_KEY_PREFIX

__all__ = ["NodeStateStore"]


class NodeStateStore(StoreCore):
    """JSON values by key; ``storage.*`` and ``spsa.batch.*`` keys are reserved."""

    @staticmethod
    def _check_state_key(key: str) -> None:
        if not key or len(key) > 128:
            raise ValueError(f"state key must be 1..128 characters, got {key!r}")
        if key.startswith(RESERVED_STATE_PREFIX):
            raise ValueError(f"state keys starting with {RESERVED_STATE_PREFIX!r} are reserved")
        if key.startswith(SPSA_BATCH_KEY_PREFIX):
            raise ValueError(
                f"state keys starting with {SPSA_BATCH_KEY_PREFIX!r} are reserved: signed SPSA "
                "batches are stored with append_spsa(batches=...)"
            )

    def get_state(self, key: str, default: Any = None) -> Any:
        """Value stored under ``key`` (JSON-decoded), or ``default``."""
        with self._read() as s:
            row = s.get(NodeStateRow, key)
            return default if row is None else row.value

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key``."""
        self.set_states({key: value})

    def set_states(self, values: Mapping[str, Any]) -> None:
        """Store several keys in one transaction.

        Raises
        ------
        ValueError
            On a reserved or malformed key; nothing is stored.
        """
        for key in values:
            self._check_state_key(key)

        def work(s: Session) -> None:
            for key, value in values.items():
                self._put_state(s, key, value)

        self._write(work)

    def all_state(self) -> dict[str, Any]:
        """Every key/value pair (reserved ``storage.*`` keys included)."""
        with self._read() as s:
            return {r.key: r.value for r in s.scalars(select(NodeStateRow))}
