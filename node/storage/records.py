"""Plain, immutable records the store accepts and returns.

They are detached from any database session, so callers (the asyncio daemon, the sans-I/O
cores) can pass them across threads and keep them after the store is closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointInfo",
    "EventRecord",
    "LedgerRelease",
    "LedgerRow",
    "PeerRecord",
    "ReputationRecord",
    "SpsaAppendResult",
    "SpsaBatchRecord",
    "SpsaEntry",
]


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A peer as the membership layer knows it.

    Attributes
    ----------
    node_id : str
        Hex node id (hash of the public key).
    address : str
        ``host:port`` the peer listens on.
    public_key : bytes
        Raw Ed25519 public key.
    pow_nonce : int
        Proof-of-work nonce in ``[0, 2**64)``.
    incarnation : int, default 0
        SWIM incarnation number.
    state : str, default "alive"
        Membership state (``alive``, ``suspect``, ``dead``, ``left``).
    last_seen : float or None, default None
        Unix seconds of the last contact; None means "now" when stored.
    rtt_ms : float or None, default None
        Last measured round-trip time.
    first_seen : float or None, default None
        Unix seconds of the first contact; set on insert, never changed by upserts.
    banned : bool, default False
        Operator ban; only ``Store.set_banned`` changes it on an existing peer.
    capabilities : dict, default {}
        JSON-serialisable capability map announced by the peer.
    """

    node_id: str
    address: str
    public_key: bytes
    pow_nonce: int
    incarnation: int = 0
    state: str = "alive"
    last_seen: float | None = None
    rtt_ms: float | None = None
    first_seen: float | None = None
    banned: bool = False
    capabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpsaEntry:
    """One SPSA step: the published (seed id, scalar) with its context.

    The applied coefficient is ``scalar * scale`` (``scale`` is the per-batch dequantisation
    factor of int8 scalars; 1.0 for fp16/fp32 scalars). ``seq`` (local log position) and
    ``applied_at`` (None means "now") are filled in by the store.
    """

    seed_id: str
    round: int
    sender: str
    step: int
    scalar: float
    scale: float = 1.0
    applied_at: float | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class SpsaAppendResult:
    """Outcome of ``Store.append_spsa``: which ids were new and which were already logged."""

    inserted: tuple[str, ...]
    duplicates: tuple[str, ...]
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class SpsaBatchRecord:
    """One signed SPSA batch, kept so the node can serve it to peers that catch up.

    Attributes
    ----------
    round : int
        Round the batch is for (``>= 0``).
    origin : str
        Hex node id of the node that signed it.
    wire : bytes
        The batch exactly as signed (its deterministic protobuf encoding, signature
        included). The store never parses it: ``storage`` knows no wire format.
    stored_at : float or None, default None
        Unix seconds it was stored; None means "now" when stored.
    """

    round: int
    origin: str
    wire: bytes
    stored_at: float | None = None


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """A checkpoint row; ``path`` is absolute (stored relative to the data dir)."""

    id: int
    round: int
    model_sha256: str
    file_sha256: str
    path: Path
    size: int
    created_at: float
    applied_seed_digest: str | None
    spsa_seq: int | None


@dataclass(frozen=True, slots=True)
class ReputationRecord:
    """Reputation counters of one peer."""

    node_id: str
    score: float
    accepted: int
    rejected: int
    quarantined_until: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class LedgerRelease:
    """One privacy release to debit.

    Attributes
    ----------
    epsilon_after : float
        Cumulative epsilon spent after this release, as computed by the accountant.
    delta : float
        The delta the epsilon is stated at.
    noise_multiplier : float
        Gaussian noise multiplier z (std = z * clip norm) of this release.
    sample_rate : float
        Sampling probability of this release's mechanism (1.0 for node-level DP).
    steps : int
        Number of mechanism applications (compositions) this release adds.
    release_kind : str
        What was released (``update``, ``spsa``, ...).
    release_digest : str
        sha256 hex of the released bytes, binding the debit to what left the node.
    scope : str, default "node"
        Which guarantee the row accounts for: ``node`` (node-level DP of the node's
        releases) or ``record`` (record-level DP of the local mechanism, e.g. DP-SGD
        steps). Each scope's ``epsilon_after`` composes only rows of that scope.
    """

    epsilon_after: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    release_kind: str
    release_digest: str
    scope: str = "node"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A committed ledger row: the release plus its chain position and hashes."""

    seq: int
    created_at: float
    epsilon_after: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    release_kind: str
    release_digest: str
    prev_hash: str
    row_hash: str
    scope: str = "node"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of the operator event log."""

    id: int
    ts: float
    level: str
    kind: str
    detail: dict[str, Any]
