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
    StorageError,
)
from node.storage.ledger_chain import GENESIS_HASH
from node.storage.records import (
    CheckpointInfo,
    EventRecord,
    LedgerRelease,
    LedgerRow,
    PeerRecord,
    ReputationRecord,
    SpsaAppendResult,
    SpsaBatchRecord,
    SpsaEntry,
)
from node.storage.spsa_batches import SPSA_BATCH_KEY_PREFIX
from node.storage.store import BudgetCheck, Store, open_store

__all__ = [
    "DB_FILENAME",
    "EMPTY_SEED_SET_DIGEST",
    "GENESIS_HASH",
    "SPSA_BATCH_KEY_PREFIX",
    "BudgetCheck",
    "CheckpointCorrupted",
    "CheckpointInfo",
    "EventRecord",
    "LedgerConflict",
    "LedgerCorrupted",
    "LedgerRelease",
    "LedgerRow",
    "PeerRecord",
    "ReputationRecord",
    "SeedSetDigest",
    "SpsaAppendResult",
    "SpsaBatchRecord",
    "SpsaEntry",
    "StorageError",
    "Store",
    "open_store",
    "seed_set_digest",
    "sqlite_url_for",
]
