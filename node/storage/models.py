"""SQLAlchemy 2 ORM models of the node's persistent state.

Every timestamp is a float of Unix seconds (UTC): it round-trips exactly on SQLite and
PostgreSQL, compares cheaply, and the sans-I/O protocol cores already speak in seconds.
Node ids, digests and hashes are lower-case hex strings. The schema itself is created by
the Alembic migrations in ``node/storage/migrations``; these classes must stay in step with
them (``tests/storage/test_migrations.py`` fails when they drift).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Dialect,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "CheckpointRow",
    "EventRow",
    "LedgerEntryRow",
    "NodeStateRow",
    "PeerRow",
    "ReputationRow",
    "SpsaBatchRow",
    "SpsaRow",
    "UInt64",
]

# Explicit constraint names make migrations reproducible on every backend (Alembic cannot
# drop or alter an anonymous constraint portably).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HEX64 = 64

# Autoincrementing 64-bit keys; SQLite only autoincrements a column declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UInt64(TypeDecorator[int]):
    """Unsigned 64-bit integer stored in a signed BIGINT by two's complement.

    Proof-of-work nonces span ``[0, 2**64)``; neither SQLite nor PostgreSQL has an unsigned
    64-bit column, and NUMERIC on SQLite silently degrades to a lossy REAL.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if not 0 <= value < 2**64:
            raise ValueError(f"UInt64 value {value} is outside [0, 2**64)")
        return value - 2**64 if value >= 2**63 else value

    def process_result_value(self, value: int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return value + 2**64 if value < 0 else value


class Base(DeclarativeBase):
    """Declarative base carrying the shared naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[int]: JSON,
        bytes: LargeBinary,
    }


class PeerRow(Base):
    """One known peer (membership table)."""

    __tablename__ = "peers"

    node_id: Mapped[str] = mapped_column(String(HEX64), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[bytes]
    pow_nonce: Mapped[int] = mapped_column(UInt64())
    incarnation: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default="alive")
    last_seen: Mapped[float] = mapped_column(Float)
    rtt_ms: Mapped[float | None] = mapped_column(Float)
    first_seen: Mapped[float] = mapped_column(Float)
    banned: Mapped[bool] = mapped_column(Boolean, default=False)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SpsaRow(Base):
    """One applied SPSA step: a seed id and its projected-gradient scalar."""

    __tablename__ = "spsa_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seed_id: Mapped[str] = mapped_column(String(128), unique=True)
    round: Mapped[int] = mapped_column(BigInteger, index=True)
    sender: Mapped[str] = mapped_column(String(HEX64))
    step: Mapped[int] = mapped_column(Integer)
    scalar: Mapped[float] = mapped_column(Float)
    scale: Mapped[float] = mapped_column(Float)
    applied_at: Mapped[float] = mapped_column(Float)


class SpsaBatchRow(Base):
    """One signed SPSA batch as received (or made): at most one per (round, origin).

    The daemon serves these bytes to peers that catch up; the entries they carry are in
    ``spsa_log``. ``wire`` is opaque here (storage knows no protobuf).
    """

    __tablename__ = "spsa_batches"

    round: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(HEX64), primary_key=True)
    wire: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[float] = mapped_column(Float)


class CheckpointRow(Base):
    """A model checkpoint: a safetensors file in the data dir, its hashes in SQL."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    round: Mapped[int] = mapped_column(BigInteger, index=True)
    model_sha256: Mapped[str] = mapped_column(String(HEX64))
    file_sha256: Mapped[str] = mapped_column(String(HEX64))
    path: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    applied_seed_digest: Mapped[str | None] = mapped_column(String(HEX64))
    spsa_seq: Mapped[int | None] = mapped_column(BigInteger)


class ReputationRow(Base):
    """Per-peer reputation counters and quarantine deadline."""

    __tablename__ = "reputation"

    node_id: Mapped[str] = mapped_column(String(HEX64), primary_key=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    quarantined_until: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class LedgerEntryRow(Base):
    """One privacy release; rows form a hash chain through ``prev_hash``/``row_hash``."""

    __tablename__ = "privacy_ledger"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[float] = mapped_column(Float)
    epsilon_after: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    noise_multiplier: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[float] = mapped_column(Float)
    steps: Mapped[int] = mapped_column(BigInteger)
    release_kind: Mapped[str] = mapped_column(String(32))
    release_digest: Mapped[str] = mapped_column(String(HEX64))
    prev_hash: Mapped[str] = mapped_column(String(HEX64))
    row_hash: Mapped[str] = mapped_column(String(HEX64), unique=True)
    scope: Mapped[str] = mapped_column(String(16), default="node", server_default="node")


class EventRow(Base):
    """Operator-visible event log."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    level: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class NodeStateRow(Base):
    """Small key/value store for scalar node state (current round, model hash, ...)."""

    __tablename__ = "node_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
