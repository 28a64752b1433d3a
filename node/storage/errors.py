"""Exceptions raised by the node store."""

from __future__ import annotations

__all__ = [
    "CheckpointCorrupted",
    "LedgerConflict",
    "LedgerCorrupted",
    "StorageError",
]


class StorageError(RuntimeError):
    """Base class of every error the store raises on its own account."""


class LedgerCorrupted(StorageError):
    """The privacy ledger's hash chain does not verify: a row was edited, lost or reordered.

    The node must stop releasing anything until an operator looks at the ledger; it must
    never reset the budget.
    """


class LedgerConflict(StorageError):
    """A release was computed against a ledger tip that is no longer the newest row."""


class CheckpointCorrupted(StorageError):
    """A checkpoint file is missing, unreadable or does not match the sha256 stored in SQL."""
