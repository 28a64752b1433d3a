"""Persistence of the fednode daemon: SQL via SQLAlchemy 2, schema via Alembic.

``open_store(url, data_dir=...)`` returns a :class:`Store`; SQLite in WAL mode is the
default (``sqlite_url_for(data_dir)``), PostgreSQL or any SQLAlchemy URL works. See
``docs/storage.md``.
"""

from node.base.seed_digest import EMPTY_SEED_SET_DIGEST, SeedSetDigest, seed_set_digest
from node.storage.engine import DB_FILENAME, sqlite_url_for
from node.storage.errors import (
    CheckpointCorrupted,
    LedgerConflict,
    LedgerCorrupted,
    PayloadCorrupted,
    StorageError,
)
from node.storage.ledger_chain import GENESIS_HASH
from node.storage.records import (
    DTYPE_ITEMSIZE,
    CheckpointInfo,
    EventRecord,
    LedgerRelease,
    LedgerRow,
    MessageRecord,
    PeerRecord,
    ReputationRecord,
    SpsaAppendResult,
    SpsaEntry,
    UpdateRecord,
)
from node.storage.store import BudgetCheck, Store, open_store

__all__ = [
    "DB_FILENAME",
    "DTYPE_ITEMSIZE",
    "EMPTY_SEED_SET_DIGEST",
    "GENESIS_HASH",
    "BudgetCheck",
    "CheckpointCorrupted",
    "CheckpointInfo",
    "EventRecord",
    "LedgerConflict",
    "LedgerCorrupted",
    "LedgerRelease",
    "LedgerRow",
    "MessageRecord",
    "PayloadCorrupted",
    "PeerRecord",
    "ReputationRecord",
    "SeedSetDigest",
    "SpsaAppendResult",
    "SpsaEntry",
    "StorageError",
    "Store",
    "UpdateRecord",
    "open_store",
    "seed_set_digest",
    "sqlite_url_for",
]
