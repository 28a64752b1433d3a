"""The ``spsa`` learner on a running daemon: scalar batches by gossip, one model everywhere.

Each node runs its own round clock. In round ``r`` it computes ``spsa_steps`` (seed id,
scalar) pairs on its shard with :class:`~node.training.learners.spsa.SPSALearner`, signs
the batch as its *origin* (so relays cannot alter it), stores it in SQL and pushes it to
every live member (networks of up to ``DIRECT_PUSH_MAX_MEMBERS``) or to ``k`` sampled
peers. A node that sees a batch for the first time verifies it and stores it; in a large
network it forwards it to ``k`` random peers, so every batch reaches every node.
Anti-entropy pulls list what the puller holds, so peers resend only missing batches. The round
closes when every live member's batch of the round is in, or after ``round_timeout``.

Deterministic application (why models agree bit for bit)
---------------------------------------------------------
The model is ``genesis init - lr/N * sum(scalar * z(seed))`` over every accepted entry.
Mathematically that is order independent; float addition is not. So the model is a pure
function of the *set* of entries: rounds are applied in increasing order and, inside a
round, in sorted ``(seed id, origin)`` order (:func:`~node.training.learners.spsa.apply_scalars`).
:class:`RoundLedger` keeps one snapshot per open round (``W_r`` = everything of rounds
``< r`` applied); a batch that arrives after its round closed marks that round dirty and
the snapshots from there on are recomputed, so arrival order never shows in the bits.
Rounds older than ``max_staleness`` behind the node's clock are *final*: batches for them
are refused (``stale_round``) and the snapshot becomes the base, written as a checkpoint
that a late joiner can start from.

Catch-up: a joiner (or a restarted node) pulls every signed batch from a peer
(``PullScalars``, ``SCALARS_SINCE``), verifies each origin signature, and either takes
a final checkpoint (``Pull``, ``CHECKPOINT``) that ``f + 1`` members with standing serve
bit for bit (``[catchup]``, node/daemon/catchup.py) and whose seed-set digest equals the digest
of the pulled batches of the rounds it covers, or replays the whole log from the genesis
initialisation (exact, needs no trust).
A fresh node makes that first pull while its data and model load, then pulls again until a
pull brings nothing new, so it joins the round the network is in by then (a late joiner
agrees within 5 rounds; each node logs a ``round closed`` line per round with the
digest of its final rounds, which is how that is measured).
A restarted node rebuilds from its own SQL log and checkpoint, then catches up the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import math
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import torch

from fednode_proto.v1 import admin_pb2
from fednode_proto.v1 import training_pb2 as pb
from fednode_proto.v1.envelope_pb2 import Envelope
from node.base.identity import Identity, node_id_for, verify_signature
from node.base.logs import log
from node.daemon.catchup import VoucherPolicy, catchup_quorum, pull_checkpoint, serve_checkpoint
from node.daemon.evaluations import load_history, record_evaluation
from node.daemon.participation import releases
from node.daemon.peer_wait import wait_for_peers
from node.daemon.privacy_guard import RecordMechanism, ReleaseGuard, ReleaseRefused, Ticket
from node.storage.records import SpsaEntry
from node.storage.spsa_digest import SeedSetDigest
from node.training.learners.spsa import (
    Distribution,
    ScalarBatch,
    ScalarDType,
    ScalarEntry,
    Schedule,
    SPSALearner,
    apply_scalars,
    combine_shared,
    seed_id,
)
from node.training.params import (
    checkpoint_tensors,
    decode_checkpoint,
    encode_state,
    vector_hash,
)
from node.wire.envelope import EnvelopeError, SeqCounter, Verified, check_envelope, seal
from node.wire.service import Rejected

if TYPE_CHECKING:
    from node.daemon.core import Daemon

__all__ = [
    "MAX_ABS_SCALAR",
    "ORIGIN_DOMAIN",
    "CheckedBatch",
    "RoundLedger",
    "SpsaRuntime",
    "batch_to_wire",
    "check_batch",
    "entry_key",
    "origin_signing_bytes",
    "parse_entry_key",
    "release_digest",
    "start_spsa",
]

#: Domain separation of the origin signature over a scalar batch.
ORIGIN_DOMAIN = b"fednode/v1/spsa-batch\x00"
#: Largest accepted |scalar| (a projected-gradient estimate; cross-entropy differences
#: divided by 2 eps stay far below this in practice, a poisoned value does not).
MAX_ABS_SCALAR = 1.0e4
#: Most batches one catch-up pull may return (bad-input bound).
MAX_PULL_BATCHES = 200_000
STATE_ROUND = "spsa.round"
#: Idle iterations (after the last round) that pull a peer's whole log.
FULL_SYNC_AT = frozenset({2, 4, 6, 9, 12, 16, 20})
#: Most log pulls of a late joiner's catch-up (the first one included).
CATCH_UP_PULLS = 4
# A network of at most this many live members gets each batch straight from its origin
# (N - 1 copies); receivers do not forward what came from the origin itself. Larger
# networks use push gossip with fan-out k. Either way anti-entropy pulls repair losses.
DIRECT_PUSH_MAX_MEMBERS = 32
MAX_HAVE_KEYS = 65_536
STATE_BATCH = "spsa.batch."
_META_ROUND = "fednode.spsa.round"
_META_DIGEST = "fednode.spsa.digest"
_META_HASH = "fednode.model_hash"
_WIRE_DTYPES: dict[str, ScalarDType] = {"int8": "int8", "float16": "fp16", "float32": "fp32"}
_LEARNER_DTYPES = {v: k for k, v in _WIRE_DTYPES.items()}


# --- pure helpers: wire format, origin signature, checks ----------------------------------


def entry_key(seed: int, origin: str) -> str:
    """Log key of one entry: ``"<seed id as 16 hex>:<origin hex>"``.

    The origin is part of the key so the ``shared`` seed schedule (one seed, many nodes)
    stores one row per node; this string is also what the seed-set digest hashes.
    """
    return f"{seed:016x}:{origin}"


def parse_entry_key(key: str) -> tuple[int, str]:
    """Inverse of :func:`entry_key`; raises ValueError on a malformed key."""
    seed_hex, sep, origin = key.partition(":")
    if not sep or len(seed_hex) != 16 or not origin:
        raise ValueError(f"malformed SPSA log key {key!r}")
    return int(seed_hex, 16), origin


def _lp(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def origin_signing_bytes(network_id: bytes, batch: pb.ScalarBatch) -> bytes:
    """Exact bytes the origin signs (documented in docs/spsa.md).

    ``ORIGIN_DOMAIN || lp(network_id) || lp(origin_id) || lp(dtype) || f32 scale ||
    u32 n || n * (u64 seed_id, u64 round, u32 step, i32 q, f32 value)``, little-endian,
    ``lp`` = u32 length prefix. The network id binds a batch to one network.
    """
    parts = [
        ORIGIN_DOMAIN,
        _lp(network_id),
        _lp(batch.origin_id),
        _lp(batch.dtype.encode("utf-8")),
        struct.pack("<fI", batch.scale, len(batch.entries)),
    ]
    for e in batch.entries:
        parts.append(struct.pack("<QQIif", e.seed_id, e.round, e.step, e.q, e.value))
    return b"".join(parts)


def release_digest(network_id: bytes, batch: pb.ScalarBatch) -> str:
    """sha256 hex the privacy ledger records for a scalar batch: of its origin-signed bytes.

    Anyone holding the batch recomputes it, so a ledger row binds the debit to the exact
    values that left the node.
    """
    return hashlib.sha256(origin_signing_bytes(network_id, batch)).hexdigest()


def _have_key(round_idx: int, origin_hex: str) -> bytes:
    return struct.pack("<Q", round_idx) + bytes.fromhex(origin_hex)[:8]


def batch_to_wire(batch: ScalarBatch, identity: Identity, network_id: bytes) -> pb.ScalarBatch:
    """The learner's batch as a signed wire :class:`ScalarBatch` with ``identity`` as origin."""
    out = pb.ScalarBatch(
        origin_id=identity.node_id,
        dtype=_LEARNER_DTYPES[batch.dtype],
        scale=float(batch.scale),
        origin_public_key=identity.public_key,
    )
    for st, sid, code in zip(batch.steps, batch.seed_ids, batch.codes.tolist(), strict=True):
        if batch.dtype == "int8":
            out.entries.append(pb.ScalarEntry(seed_id=sid, round=batch.round, step=st, q=int(code)))
        else:
            out.entries.append(
                pb.ScalarEntry(seed_id=sid, round=batch.round, step=st, value=float(code))
            )
    out.origin_signature = identity.sign(origin_signing_bytes(network_id, out))
    return out


@dataclass(frozen=True)
class CheckedBatch:
    """A wire batch that passed :func:`check_batch`."""

    round: int
    origin: str
    batch: ScalarBatch
    entries: tuple[ScalarEntry, ...]
    wire: bytes
    """Serialized wire batch (what is stored and relayed, byte for byte)."""


def check_batch(
    wire: pb.ScalarBatch,
    *,
    network_id: bytes,
    genesis_seed: int,
    schedule: Schedule,
    dtype: ScalarDType,
    steps_per_round: int,
    max_abs_scalar: float = MAX_ABS_SCALAR,
    verify: bool = True,
) -> CheckedBatch:
    """Check a received scalar batch completely; raise :class:`~node.wire.service.Rejected`.

    Checks, cheapest first: origin key and id (``origin_id = sha256(origin key)``),
    dtype (must be the network's), entry count (``1..steps_per_round``), one round per
    batch, steps in range and unique, int8 codes in ``[-127, 127]``, scale and values
    finite, ``|scalar| <= max_abs_scalar``, the origin's signature, and that every seed
    id is the one derived from ``(genesis seed, round, origin, step)``.

    Parameters
    ----------
    wire : training_pb2.ScalarBatch
    network_id : bytes
        The network the origin signature must be bound to.
    genesis_seed, schedule, dtype, steps_per_round
        The network's SPSA settings.
    max_abs_scalar : float, default MAX_ABS_SCALAR (1e4)
    verify : bool, default True
        Verify the origin signature (False only for batches read back from our own store).
    """
    if len(wire.origin_public_key) != 32 or len(wire.origin_signature) != 64:
        raise Rejected("malformed", "origin public key or signature has the wrong length")
    if node_id_for(wire.origin_public_key) != wire.origin_id:
        raise Rejected("bad_origin_id", "origin id is not the sha256 of the origin public key")
    if wire.dtype not in _WIRE_DTYPES:
        raise Rejected("bad_dtype", f"unknown scalar dtype {wire.dtype!r}")
    if _WIRE_DTYPES[wire.dtype] != dtype:
        raise Rejected(
            "bad_dtype", f"scalars are {wire.dtype}, network uses {_LEARNER_DTYPES[dtype]}"
        )
    n = len(wire.entries)
    if n == 0:
        raise Rejected("bad_shape", "empty scalar batch")
    if n > steps_per_round:
        raise Rejected("oversized", f"{n} entries, at most {steps_per_round} per round")
    rounds = {int(e.round) for e in wire.entries}
    if len(rounds) != 1:
        raise Rejected("bad_shape", "a batch must hold one round")
    steps = [int(e.step) for e in wire.entries]
    if len(set(steps)) != n:
        raise Rejected("duplicate_seed", "batch repeats a step (duplicate seed id)")
    if any(not 0 <= s < steps_per_round for s in steps):
        raise Rejected("unknown_seed", f"step outside [0, {steps_per_round})")
    scale = float(wire.scale)
    if not math.isfinite(scale):
        raise Rejected("nonfinite", "batch scale is NaN or Inf")
    if dtype == "int8":
        if scale <= 0:
            raise Rejected("bad_scalar", "int8 scale must be > 0")
        qs = [int(e.q) for e in wire.entries]
        if any(not -127 <= q <= 127 for q in qs) or any(e.value != 0 for e in wire.entries):
            raise Rejected("bad_dtype", "int8 codes must lie in [-127, 127] with value unset")
        codes = np.asarray(qs, dtype=np.int8)
    else:
        values = np.asarray([e.value for e in wire.entries], dtype=np.float32)
        if not np.isfinite(values).all():
            raise Rejected("nonfinite", "scalar is NaN or Inf")
        if scale != 1.0 or any(e.q != 0 for e in wire.entries):
            raise Rejected("bad_dtype", "float scalars carry scale 1 and no int8 code")
        codes = values.astype(np.float16 if dtype == "fp16" else np.float32)
        if not np.isfinite(codes).all():
            raise Rejected("nonfinite", "scalar overflows float16")
    origin = wire.origin_id.hex()
    learner_batch = ScalarBatch(
        round=rounds.pop(),
        node=origin,
        schedule=schedule,
        dtype=dtype,
        steps=tuple(steps),
        seed_ids=tuple(int(e.seed_id) for e in wire.entries),
        codes=codes,
        scale=scale,
    )
    entries = tuple(learner_batch.entries())
    if any(not math.isfinite(e.scalar) or abs(e.scalar) > max_abs_scalar for e in entries):
        raise Rejected("out_of_bounds", f"|scalar| above {max_abs_scalar:g} or not finite")
    if verify and not verify_signature(
        wire.origin_public_key, wire.origin_signature, origin_signing_bytes(network_id, wire)
    ):
        raise Rejected("bad_origin_signature", "origin signature does not verify")
    for e in entries:
        if e.seed_id != seed_id(genesis_seed, e.round, origin, e.step, schedule):
            raise Rejected(
                "unknown_seed",
                f"seed id {e.seed_id} is not the one of round {e.round} step {e.step} "
                f"for origin {origin[:16]}",
            )
    return CheckedBatch(
        round=learner_batch.round,
        origin=origin,
        batch=learner_batch,
        entries=entries,
        wire=wire.SerializeToString(deterministic=True),
    )


# --- sans-I/O core: the set of entries and the model it determines ------------------------


class RoundLedger:
    """Accepted SPSA entries and the model they determine, independent of arrival order.

    ``vector()`` is ``base`` with every entry of the rounds ``base_round <= r < frontier``
    applied, round by round, each round in sorted ``(seed id, origin)`` order. Entries of
    rounds ``< base_round`` are *folded* into ``base`` (only their keys are kept, for the
    digest and duplicate detection); entries of rounds ``>= frontier`` wait for their round
    to close.

    Parameters
    ----------
    base : torch.Tensor
        Model of round ``base_round`` (the genesis initialisation for round 0).
    lr : float
        Learning rate.
    weight : float
        Factor on every per-node scalar (``1/num_nodes``: the rounds' steps are averaged).
    distribution : str
        Perturbation distribution.
    schedule : str, default "per_node"
        ``shared`` combines each seed's scalars with ``shared_rule`` (weight not applied).
    shared_rule : str, default "mean"
    shared_trim : int, default 0
    base_round : int, default 0
    """

    def __init__(
        self,
        base: torch.Tensor,
        *,
        lr: float,
        weight: float,
        distribution: Distribution,
        schedule: Schedule = "per_node",
        shared_rule: str = "mean",
        shared_trim: int = 0,
        base_round: int = 0,
    ) -> None:
        self.lr = lr
        self.weight = weight
        self.distribution: Distribution = distribution
        self.schedule: Schedule = schedule
        self.shared_rule = shared_rule
        self.shared_trim = shared_trim
        self.base_round = base_round
        self.frontier = base_round
        self._snapshots: dict[int, torch.Tensor] = {
            base_round: base.detach().clone().to(torch.float32)
        }
        self._rounds: dict[int, dict[tuple[int, str], ScalarEntry]] = {}
        self._keys: set[tuple[int, str]] = set()
        self._all = SeedSetDigest()
        self._folded = SeedSetDigest()
        self._dirty: int | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def has(self, key: tuple[int, str]) -> bool:
        """True when the entry ``(seed id, origin)`` was accepted before."""
        return key in self._keys

    def add(self, entries: Iterable[ScalarEntry], *, folded: bool = False) -> int:
        """Record entries (known keys are skipped); returns how many were new.

        ``folded=True`` records entries of rounds ``< base_round`` whose effect is already
        in the base (catch-up from a checkpoint, restart): only their keys are kept.
        Anything else must belong to a round ``>= base_round``.
        """
        added = 0
        for e in entries:
            if e.key in self._keys:
                continue
            if folded:
                if e.round >= self.base_round:
                    raise ValueError(f"round {e.round} is not folded into base {self.base_round}")
                self._folded.add(entry_key(*e.key))
            else:
                if e.round < self.base_round:
                    raise ValueError(f"round {e.round} is final (base {self.base_round})")
                self._rounds.setdefault(e.round, {})[e.key] = e
                if e.round < self.frontier:
                    self._dirty = e.round if self._dirty is None else min(self._dirty, e.round)
            self._keys.add(e.key)
            self._all.add(entry_key(*e.key))
            added += 1
        return added

    def newest_round(self) -> int:
        """Highest round holding an entry (``frontier - 1`` when none is open)."""
        return max(self._rounds, default=self.frontier - 1)

    def rounds(self) -> list[int]:
        """Rounds holding at least one entry that is not folded into the base."""
        return list(self._rounds)

    def origins(self, round_idx: int) -> set[str]:
        """Origins with at least one entry in ``round_idx``."""
        return {node for _, node in self._rounds.get(round_idx, {})}

    def close_through(self, round_idx: int) -> None:
        """Close every round ``<= round_idx``: they become part of :meth:`vector`."""
        if round_idx + 1 > self.frontier:
            self._dirty = self.frontier if self._dirty is None else min(self._dirty, self.frontier)
            self.frontier = round_idx + 1

    def _apply_round(self, vector: torch.Tensor, round_idx: int) -> torch.Tensor:
        entries = sorted(self._rounds.get(round_idx, {}).values(), key=lambda e: e.key)
        if not entries:
            return vector.clone()
        if self.schedule == "shared":
            pairs = combine_shared(entries, self.shared_rule, self.shared_trim)
            return apply_scalars(vector, pairs, self.lr, distribution=self.distribution)
        return apply_scalars(
            vector, entries, self.lr, distribution=self.distribution, weight=self.weight
        )

    def vector(self) -> torch.Tensor:
        """The model after every closed round (a view: do not modify it)."""
        if self._dirty is not None:
            for r in range(max(self._dirty, self.base_round), self.frontier):
                self._snapshots[r + 1] = self._apply_round(self._snapshots[r], r)
            self._dirty = None
        return self._snapshots[self.frontier]

    def finalize_before(self, round_idx: int) -> bool:
        """Make rounds ``< round_idx`` final (``round_idx <= frontier``); True if base moved."""
        round_idx = min(round_idx, self.frontier)
        if round_idx <= self.base_round:
            return False
        self.vector()
        for r in range(self.base_round, round_idx):
            for key in self._rounds.pop(r, {}):
                self._folded.add(entry_key(*key))
            self._snapshots.pop(r, None)
        self.base_round = round_idx
        return True

    @property
    def base(self) -> torch.Tensor:
        """The model of ``base_round`` (every final round applied)."""
        self.vector()
        return self._snapshots[self.base_round]

    def digest(self) -> str:
        """Seed-set digest of every accepted entry (``storage.spsa_digest`` definition)."""
        return self._all.hexdigest()

    def folded_digest(self) -> str:
        """Digest of the entries folded into :attr:`base` (rounds ``< base_round``)."""
        return self._folded.hexdigest()

    def digest_through(self, round_idx: int) -> str:
        """Digest of every accepted entry of rounds ``<= round_idx`` (``>= base_round - 1``).

        Nodes that closed round ``round_idx`` with the same entry set report the same value
        whatever they hold of later rounds, so it compares nodes that are at different
        rounds (the full :meth:`digest` differs while a round is open).
        """
        if round_idx < self.base_round - 1:
            raise ValueError(f"round {round_idx} is folded into base {self.base_round}")
        acc = copy.copy(self._folded)
        for r in range(self.base_round, round_idx + 1):
            acc.update(entry_key(*key) for key in self._rounds.get(r, {}))
        return acc.hexdigest()

    def entries_since(self, round_idx: int) -> list[ScalarEntry]:
        """Held (not folded) entries of rounds ``>= round_idx``, by (round, key)."""
        out = [e for r, d in self._rounds.items() if r >= round_idx for e in d.values()]
        return sorted(out, key=lambda e: (e.round, e.key))


def digest_of(keys: Iterable[tuple[int, str]]) -> str:
    """Seed-set digest of ``(seed id, origin)`` keys."""
    return SeedSetDigest(entry_key(s, o) for s, o in keys).hexdigest()


def _batch_key(batch: CheckedBatch) -> str:
    """Node-state key of a stored signed batch (served to peers that catch up)."""
    return f"{STATE_BATCH}{batch.round:09d}.{batch.origin}"


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (JSON header only; nothing else parsed)."""
    if len(data) < 8:
        return {}
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > len(data) - 8 or n > 1 << 24:
        return {}
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


# --- the runtime ---------------------------------------------------------------------------


class SpsaRuntime:
    """SPSA training on one daemon (implements the service's ``TrainingHandler``).

    Parameters
    ----------
    daemon : Daemon
        The running daemon (identity, membership, store, metrics, channels).
    shard : int
        Index of this node's data shard in the genesis partition.
    """

    def __init__(self, daemon: Daemon, shard: int) -> None:
        self.daemon = daemon
        self.shard = shard
        assert daemon.identity is not None
        self.identity: Identity = daemon.identity
        self.node_id = self.identity.node_id_hex
        g = daemon.genesis
        self.spec = g.learner
        self.rounds = g.rounds
        self.network_id = g.network_id
        self.seed = g.network.seed
        self.max_rounds = g.rounds.max_rounds
        self.past = max(1, g.rounds.max_staleness)
        # Batches of peers slightly ahead are kept, not refused: refusing them would make
        # this node depend on a later pull to ever see them.
        self.future = max(1, g.rounds.max_future, self.past)
        self.fanout = max(1, g.rounds.peers_per_round)
        self.seq = SeqCounter()
        assert daemon.store is not None
        self.guard: ReleaseGuard = daemon.guard or ReleaseGuard(
            g.privacy, daemon.store, daemon.metrics
        )
        self.ledger: RoundLedger | None = None
        self.round = 0
        self.ready = False
        self.task: Any = None  # node.training.tasks.LocalTask
        self.model: Any = None
        self.data: Any = None
        self.layout: Any = None
        self.learner: SPSALearner | None = None
        self.init_vector: torch.Tensor | None = None
        self.last_accuracy = 0.0
        self.last_loss = float("nan")
        self.model_hash = ""
        self.evaluations: list[tuple[int, float, float, float]] = []
        self._stored_round = 0  # the round in the store, reported until the log is restored
        self.rejected: Counter[str] = Counter()
        self.catchup: dict[str, Any] = {}
        self._wire: dict[tuple[int, str], bytes] = {}
        self._claimed: set[tuple[int, str]] = set()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._task: asyncio.Task[Any] | None = None

    # --- set-up --------------------------------------------------------------------------

    def _build(self) -> None:
        from node.training.params import flatten, layout_of
        from node.training.tasks import build_local_task, spsa_learner

        g = self.daemon.genesis
        self.task = build_local_task(g.task, self.seed, self.shard % g.task.num_nodes)
        self.data = self.task.data
        self.model = self.task.model
        self.layout = layout_of(self.model)
        self.init_vector = flatten(self.model).clone()
        self.learner = spsa_learner(
            self.task, self.spec, batch_size=g.task.batch_size, seed=self.seed, node=self.node_id
        )
        dp_round = self.learner.dp_round(self.data.num_examples)
        if dp_round is not None:
            # Record-level DP-ZO: every round's m steps are debited with its batch.
            self.guard.set_record_mechanism(RecordMechanism("dp_zo", *dp_round))

    def _new_ledger(self, base: torch.Tensor, base_round: int) -> RoundLedger:
        g = self.daemon.genesis
        rule = g.aggregation.rule if g.aggregation.rule in {"median", "trimmed_mean"} else "mean"
        return RoundLedger(
            base,
            lr=self.spec.lr,
            weight=1.0 / g.task.num_nodes,
            distribution=self.spec.spsa_distribution,
            schedule=self.spec.spsa_seed_schedule,
            shared_rule=rule,
            shared_trim=g.aggregation.f if rule == "trimmed_mean" else 0,
            base_round=base_round,
        )

    def _checked(self, wire: pb.ScalarBatch, *, verify: bool = True) -> CheckedBatch:
        return check_batch(
            wire,
            network_id=self.network_id,
            genesis_seed=self.seed,
            schedule=self.spec.spsa_seed_schedule,
            dtype=self.spec.spsa_scalar_dtype,
            steps_per_round=self.spec.spsa_steps,
            verify=verify,
        )

    def _restore(self) -> None:
        """Rebuild from our own SQL state: signed batches, the log, the last checkpoint."""
        store = self.daemon.store
        assert store is not None and self.init_vector is not None
        for key, value in store.all_state().items():
            if not key.startswith(STATE_BATCH):
                continue
            with contextlib.suppress(Exception):  # a damaged row is skipped, never fatal
                wire = pb.ScalarBatch()
                wire.ParseFromString(base64.b64decode(str(value), validate=True))
                checked = self._checked(wire, verify=False)
                self._wire[(checked.round, checked.origin)] = checked.wire
        entries: list[ScalarEntry] = []
        for row in store.spsa_since():
            try:
                sid, origin = parse_entry_key(row.seed_id)
            except ValueError:
                continue
            value = float(np.float32(row.scalar) * np.float32(row.scale))
            entries.append(ScalarEntry(sid, row.round, origin, row.step, value))
        base, base_round = self.init_vector, 0
        ckpt = store.latest_checkpoint()
        if ckpt is not None and entries:
            try:
                vec = decode_checkpoint(store.checkpoint_bytes(ckpt), self.layout)
                folded = digest_of(e.key for e in entries if e.round < ckpt.round)
                if folded == ckpt.applied_seed_digest:
                    base, base_round = vec, ckpt.round
            except Exception as exc:  # corrupt checkpoint: replay the log instead
                log.warning("checkpoint unusable, replaying the SPSA log", exc_info=exc)
        ledger = self._new_ledger(base, base_round)
        ledger.add([e for e in entries if e.round < base_round], folded=True)
        ledger.add([e for e in entries if e.round >= base_round])
        self.round = max(int(store.get_state(STATE_ROUND, 0) or 0), base_round)
        if self.round > 0:
            ledger.close_through(self.round - 1)
        self.ledger = ledger

    async def start(self) -> None:
        """Start the round loop; data, model and SQL state load in the background.

        The daemon reports itself started (and answers status) while that happens; peer
        batches are refused with ``not_ready`` until the node has caught up.
        Meanwhile status reports the stored round and accuracy history (read here, two
        cheap queries), not round 0.
        """
        store = self.daemon.store
        assert store is not None
        loop = asyncio.get_running_loop()
        self._stored_round = int(
            await loop.run_in_executor(None, store.get_state, STATE_ROUND, 0) or 0
        )
        history = await loop.run_in_executor(None, load_history, store)
        if history:  # the accuracy curve survives restarts
            self.evaluations = history
            _, self.last_accuracy, self.last_loss, _ = history[-1]
        self._task = asyncio.create_task(self._run(), name="spsa")

    async def _setup(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        await loop.run_in_executor(None, self._build)
        await loop.run_in_executor(None, self._restore)
        assert self.ledger is not None
        self._refresh_hash()
        log.info(
            "spsa ready",
            extra={
                "fields": {
                    "task": self.daemon.genesis.task.name,
                    "params": self.layout.numel,
                    "shard": self.shard,
                    "start_round": self.round,
                    "logged_entries": len(self.ledger),
                    "setup_s": round(time.monotonic() - t0, 2),
                }
            },
        )

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._inflight):
            task.cancel()

    # --- peers -----------------------------------------------------------------------------

    def _members(self) -> list[Any]:
        membership = self.daemon.membership
        return [] if membership is None else list(membership.members())

    def _sample(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
        membership = self.daemon.membership
        if membership is None or k <= 0:
            return []
        skip = set(exclude)
        picked = membership.sample(k + len(skip))
        return [(m.node_id.hex(), m.address) for m in picked if m.node_id.hex() not in skip][:k]

    def _alive(self) -> set[str]:
        alive = {
            m.node_id.hex()
            for m in self._members()
            if getattr(m.state, "value", m.state) == "alive"
        }
        return alive - self.daemon.banned

    def _expected_origins(self) -> set[str]:
        """Whose batch of the round this node waits for: itself and every live member that
        still releases (one that announced ``no-release`` sends none, see
        node/daemon/participation.py).
        """
        takes_part = {
            m.node_id.hex() for m in self._members() if releases(getattr(m, "capabilities", ()))
        }
        return (self._alive() & takes_part) | {self.node_id}

    async def _wait_for_peers(self, want: int | None = None) -> None:
        """Wait until ``want`` peers are alive (default ``min(k, N - 1)``), at most a round."""
        g = self.daemon.genesis
        if want is None:
            want = min(self.rounds.peers_per_round, max(0, g.task.num_nodes - 1))
        await wait_for_peers(lambda: len(self._sample(want)), want, g, lambda: self._stopping)

    async def _prefetch(self) -> tuple[str, list[CheckedBatch]] | None:
        """A fresh node's first pull of the network's whole log (runs while the model loads).

        Only for a node without SPSA state: a restarted node pulls from its own base round
        once its store is read. Returns the serving peer's address and the verified batches.
        """
        store = self.daemon.store
        assert store is not None
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, store.get_state, STATE_ROUND, None) is not None:
            return None
        await self._wait_for_peers(1)
        peers = self._sample(1)
        if not peers:
            return None
        address = peers[0][1]
        return address, await self._pull_batches(address, 0)

    # --- the round loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        # Loading data and model (executor) overlaps finding a peer and pulling the network's
        # log: on a loaded machine each takes seconds, and the network keeps closing rounds
        # meanwhile, so a late joiner that did them one after the other started far behind.
        setup = asyncio.create_task(self._setup())
        try:
            prefetched = await self._prefetch()
        except Exception:  # a failed pull only costs the head start; catch-up pulls again
            log.warning("spsa log prefetch failed", exc_info=True)
            prefetched = None
        try:
            await setup
        except Exception as exc:  # the daemon keeps serving membership; the operator sees the log
            from node.training.usercode import TaskSetupError

            if isinstance(exc, TaskSetupError):
                log.error("spsa learner could not start: %s", exc)
            else:
                log.exception("spsa learner could not start")
            return
        await self._initial_catch_up(prefetched)
        if self.round == 0:
            # A network that is starting: do not train the first rounds alone.
            await self._wait_for_peers()
        self.ready = True
        # Batches pushed while we were catching up were refused (not_ready): fetch them.
        await self._anti_entropy(max(0, self.round - 1))
        while not self._stopping:
            if self.max_rounds is not None and self.round >= self.max_rounds:
                log.info(
                    "training finished: rounds.max_rounds reached; the node keeps serving its "
                    "peers until `fednode stop`",
                    extra={"fields": {"rounds": self.round}},
                )
                await self._idle()
                return
            await self._one_round(self.round)

    async def _one_round(self, r: int) -> None:
        assert self.ledger is not None and self.learner is not None
        newest = self._network_round(r)
        if newest is not None:
            # More than a round behind the network: our batches for the rounds in between
            # would arrive when peers already closed (or finalised) them. Join its round.
            self._jump(newest)
            self._refresh_hash()
            return
        # A batch already stored (a restart) is re-sent as is: it was debited when made.
        body = self._wire.get((r, self.node_id))
        if body is None:
            body = await self._release_own(r)
        expected_self = body is not None
        if body is not None:
            for peer, address in self._own_targets():
                self._spawn(self._push(peer, address, r, body))
        deadline = time.monotonic() + self.rounds.round_timeout
        pulled = False
        t0 = time.monotonic()
        while not self._stopping:
            missing = self._expected_origins() - self.ledger.origins(r)
            if not expected_self:
                missing.discard(self.node_id)
            if not missing or time.monotonic() >= deadline:
                break
            if not pulled and time.monotonic() - t0 > min(2.0, self.rounds.round_timeout / 3):
                pulled = True
                self._spawn(self._anti_entropy(r))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.25)
        await self._close(r)

    def _network_round(self, r: int) -> int | None:
        """The round the network is in when it is beyond ``r + 1``, else None.

        The largest round ``R > r + 1`` such that ``f + 1`` distinct live members (not
        banned or quarantined; ``f`` as for catch-up, node/daemon/catchup.py) signed batches for
        rounds ``>= R``: ``f`` identities pushing batches of the furthest round the engine
        admits cannot make this node skip rounds.
        """
        assert self.ledger is not None
        if self.ledger.newest_round() <= r + 1:
            return None
        g = self.daemon.genesis
        f, _ = catchup_quorum(g.catchup.byzantine, g.task.num_nodes)
        membership = self.daemon.membership
        from node.daemon.runtime import is_banned

        origins: set[str] = set()
        for rnd in sorted((x for x in self.ledger.rounds() if x > r + 1), reverse=True):
            for origin in self.ledger.origins(rnd):
                node_id = bytes.fromhex(origin)
                if origin == self.node_id or is_banned(self.daemon, node_id):
                    continue
                if membership is not None and not membership.is_member(node_id):
                    continue
                origins.add(origin)
            if len(origins) >= f + 1:
                return rnd
        return None

    async def _release_own(self, r: int) -> bytes | None:
        """Compute, debit and store this node's batch of round ``r`` (the release path).

        The guard is asked first (no computation once the budget is spent), privatizes
        every scalar as the learner computes it, and debits the ledger with the digest of
        the signed batch before the batch is stored, and so before anyone can receive it.
        Returns the stored wire bytes, or None when this node releases nothing this round.
        """
        loop = asyncio.get_running_loop()
        assert self.ledger is not None
        guard = self.guard
        try:
            ticket = await loop.run_in_executor(
                None, lambda: guard.open("spsa", steps=self.spec.spsa_steps)
            )
        except ReleaseRefused:
            self._sync_participation()
            return None  # the guard logged why, once; the node keeps following the network
        vector = self.ledger.vector().clone()
        batch = await loop.run_in_executor(None, self._compute, vector, r, ticket)
        wire = batch_to_wire(batch, self.identity, self.network_id)
        try:
            await loop.run_in_executor(
                None, guard.commit, ticket, release_digest(self.network_id, wire)
            )
        except ReleaseRefused:
            self._sync_participation()
            return None
        try:
            checked = self._checked(wire)
            await self._ingest(checked)
        except Rejected as exc:  # e.g. a diverged loss gave non-finite scalars: skip
            log.warning(
                "own SPSA batch refused", extra={"fields": {"round": r, "reason": exc.reason}}
            )
            return None
        return checked.wire

    def _sync_participation(self) -> None:
        """Tell peers (through our member record) that this node releases no more batches."""
        membership = self.daemon.membership
        if membership is not None:
            membership.set_releasing(self.guard.releasing or not self.guard.private)

    def _compute(self, vector: torch.Tensor, r: int, ticket: Ticket) -> ScalarBatch:
        from node.training.params import load_vector

        assert self.learner is not None
        load_vector(self.model, vector)
        privatize = ticket.privatize_scalar if ticket.noised else None
        return self.learner.train_round(self.model, self.data, r, privatize=privatize)

    async def _close(self, r: int) -> None:
        assert self.ledger is not None
        ledger = self.ledger
        ledger.close_through(r)
        self.round = r + 1
        final = self.round - self.past
        moved = ledger.finalize_before(final)
        if r % 2 == 0:
            # Periodic anti-entropy: a batch lost by push gossip (or refused while this
            # node was busy) is fetched while its round can still change, i.e. before it
            # becomes final here and at the peers. Each round is covered ~past/2 times.
            self._spawn(self._anti_entropy(max(ledger.base_round, r - self.past + 1)))
        self._refresh_hash()
        # One line per round: what this node closed it with. Comparing these lines across
        # nodes (same round, same digest and model hash) is how agreement and a late
        # joiner's catch-up are measured while rounds are still open elsewhere.
        log.info(
            "round closed",
            extra={
                "fields": {
                    "round": r,
                    "digest": ledger.digest_through(r)[:16],
                    "model_hash": self.model_hash[:16],
                    "final": ledger.base_round,
                    "final_digest": ledger.folded_digest()[:16],
                    "entries": len(ledger),
                }
            },
        )
        d = self.daemon
        d.metrics.round.set(self.round)
        loop = asyncio.get_running_loop()
        assert d.store is not None
        store = d.store
        await loop.run_in_executor(None, store.set_state, STATE_ROUND, self.round)
        if moved:
            base = ledger.base.clone()
            await loop.run_in_executor(
                None, self._checkpoint, ledger.base_round, base, ledger.folded_digest()
            )
        last = self.max_rounds is not None and self.round >= self.max_rounds
        if self.round % self.rounds.eval_every == 0 or last:
            await self._evaluate(self.round)

    def _checkpoint(self, base_round: int, vector: torch.Tensor, digest: str) -> None:
        store = self.daemon.store
        assert store is not None
        mhash = vector_hash(vector, self.layout)
        store.save_checkpoint(
            base_round,
            checkpoint_tensors(vector, self.layout),
            model_sha256=mhash,
            applied_seed_digest=digest,
            metadata={_META_ROUND: str(base_round), _META_DIGEST: digest, _META_HASH: mhash},
        )
        store.prune_checkpoints(keep=2)

    async def _idle(self) -> None:
        """After the last round: keep serving, and reconcile with peers now and then."""
        waits = [1.0, 2.0, 3.0, 5.0, 8.0]
        i = 0
        while not self._stopping:
            await asyncio.sleep(waits[min(i, len(waits) - 1)] if i < 12 else 15.0)
            i += 1
            before = self.ledger.digest() if self.ledger else ""
            if i in FULL_SYNC_AT:
                await self._full_sync()
            else:
                await self._anti_entropy(self.ledger.base_round if self.ledger else 0)
            if self.ledger is not None and self.ledger.digest() != before:
                self._refresh_hash()
                await self._evaluate(self.round)

    async def _full_sync(self) -> int:
        """Pull a peer's whole log; a batch of a round final here triggers a replay.

        Pushes cannot change a final round, but a batch that some peer accepted and this
        node never saw would otherwise keep the digests apart for good. After training,
        the node therefore takes the union of what its peers hold (origin signatures are
        verified) and, if that reaches into final rounds, rebuilds from the genesis
        initialisation so the model stays a function of the entry set.
        """
        peers = self._sample(1)
        if not peers or self.ledger is None:
            return 0
        batches = await self._pull_batches(peers[0][1], 0)
        n = await self._ingest_pulled(batches)
        if n:
            self._refresh_hash()
        return n

    def _refresh_hash(self) -> None:
        assert self.ledger is not None
        self.model_hash = vector_hash(self.ledger.vector(), self.layout)

    async def _evaluate(self, round_idx: int) -> None:
        from node.training.params import load_vector

        assert self.ledger is not None
        vector = self.ledger.vector().clone()

        def work() -> Any:
            load_vector(self.model, vector)
            return self.task.evaluate()

        result = await asyncio.get_running_loop().run_in_executor(None, work)
        self.last_accuracy = float(result.accuracy)
        self.last_loss = float(result.loss)
        self.evaluations.append((round_idx, self.last_accuracy, self.last_loss, time.time()))
        await asyncio.get_running_loop().run_in_executor(
            None,
            record_evaluation,
            self.daemon.store,
            round_idx,
            self.last_accuracy,
            self.last_loss,
        )
        m = self.daemon.metrics
        m.accuracy.set(self.last_accuracy)
        m.loss.set(self.last_loss if math.isfinite(self.last_loss) else 0.0)
        log.info(
            "evaluated",
            extra={"fields": {"round": round_idx, "accuracy": round(self.last_accuracy, 4)}},
        )

    # --- sending ---------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("spsa task failed", exc_info=task.exception())

    async def _push(self, peer: str, address: str, round_idx: int, body: bytes) -> None:
        d = self.daemon
        env = seal(
            self.identity, self.network_id, "spsa", body, seq=self.seq.next("spsa"), round=round_idx
        )
        d.metrics.bytes.labels(direction="out", kind="spsa").inc(env.ByteSize())
        try:
            receipt = await d.channels.stub(address).PushScalars(env, timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            log.debug(
                "scalar push failed", extra={"fields": {"peer": peer[:12], "code": exc.code().name}}
            )
            return
        if not receipt.accepted and not receipt.reason.startswith("duplicate"):
            log.debug(
                "peer refused scalars",
                extra={"fields": {"peer": peer[:12], "reason": receipt.reason}},
            )

    def _have_keys(self, since: int) -> list[bytes]:
        """Compact keys of the batches we hold for rounds >= ``since`` (see PullRequest.have)."""
        keys = sorted(k for k in list(self._wire) if k[0] >= since)[:MAX_HAVE_KEYS]
        return [_have_key(r, origin) for r, origin in keys]

    def _direct_push(self) -> bool:
        """True when the live network is small enough for origins to reach every member."""
        return len(self._expected_origins()) <= DIRECT_PUSH_MAX_MEMBERS

    def _own_targets(self) -> list[tuple[str, str]]:
        if not self._direct_push():
            return self._sample(self.fanout)
        # Also members that release nothing themselves: they follow the model all the same.
        alive = self._alive() - {self.node_id}
        return [
            (m.node_id.hex(), m.address)
            for m in self._members()
            if m.node_id.hex() in alive and m.address
        ]

    def _request(self, what: int, since_round: int = 0, have: Sequence[bytes] = ()) -> Envelope:
        request = pb.PullRequest(
            what=what,  # type: ignore[arg-type]
            since_round=since_round,
            have=list(have),
        )
        body = request.SerializeToString()
        env = seal(self.identity, self.network_id, "request", body, seq=self.seq.next("request"))
        self.daemon.metrics.bytes.labels(direction="out", kind="request").inc(env.ByteSize())
        return env

    # --- receiving -------------------------------------------------------------------------

    def _admit_window(self, checked: CheckedBatch) -> None:
        assert self.ledger is not None
        if checked.round < self.ledger.base_round:
            raise Rejected(
                "stale_round",
                f"round {checked.round} is final here (rounds < {self.ledger.base_round})",
            )
        if checked.round > self.round + self.future:
            raise Rejected(
                "future_round", f"round {checked.round} is beyond {self.round} + {self.future}"
            )

    def _duplicate(
        self, checked_round: int, origin: str, wire_bytes: bytes, *, verified: bool
    ) -> None:
        known = self._wire.get((checked_round, origin))
        if (checked_round, origin) in self._claimed or known == wire_bytes:
            raise Rejected("duplicate", f"batch of round {checked_round} from {origin[:16]} known")
        if known is not None and verified:
            # Two different batches both signed by the origin for one round: provable.
            raise Rejected(
                "equivocation",
                f"a different signed batch of round {checked_round} from {origin[:16]} is known",
            )

    async def _ingest(self, checked: CheckedBatch) -> bool:
        """Store and apply a checked batch; False if it was (concurrently) known already."""
        key = (checked.round, checked.origin)
        if key in self._claimed or key in self._wire:
            return False
        assert self.ledger is not None
        if any(self.ledger.has(e.key) for e in checked.entries):
            raise Rejected("duplicate_seed", "a seed id of this batch is already applied")
        self._claimed.add(key)
        try:
            store = self.daemon.store
            assert store is not None
            rows = [
                SpsaEntry(
                    seed_id=entry_key(e.seed_id, e.node),
                    round=e.round,
                    sender=e.node,
                    step=e.step,
                    scalar=float(code),
                    scale=checked.batch.scale,
                )
                for e, code in zip(checked.entries, checked.batch.codes.tolist(), strict=True)
            ]
            signed = {_batch_key(checked): base64.b64encode(checked.wire).decode()}

            def work() -> None:
                store.append_spsa(rows)
                store.set_states(signed)

            await asyncio.get_running_loop().run_in_executor(None, work)
            if checked.round < self.ledger.base_round:
                raise Rejected("stale_round", f"round {checked.round} became final meanwhile")
            self.ledger.add(checked.entries)
            self._wire[key] = checked.wire
            if checked.round < self.ledger.frontier:
                self._refresh_hash()
        finally:
            self._claimed.discard(key)
        self._wake.set()
        return True

    #: SPSA exchanges scalars, never update vectors: pushes are refused before their body.
    update_numel: int | None = None

    async def on_update(self, msg: Verified, header: pb.TensorHeader, payload: bytes) -> None:
        raise Rejected("wrong_learner", "this network's learner is spsa: it exchanges scalars")

    async def on_scalars(self, msg: Verified, batch: pb.ScalarBatch) -> None:
        if not self.ready or self.ledger is None:
            raise Rejected("not_ready", "catching up")
        wire_bytes = batch.SerializeToString(deterministic=True)
        rounds = {int(e.round) for e in batch.entries}
        if len(rounds) == 1 and batch.origin_id:
            self._duplicate(next(iter(rounds)), batch.origin_id.hex(), wire_bytes, verified=False)
        checked = self._checked(batch)
        if msg.round != checked.round:
            raise Rejected("bad_round", "envelope round differs from the batch round")
        self._admit_window(checked)
        self._duplicate(checked.round, checked.origin, checked.wire, verified=True)
        membership = self.daemon.membership
        if (
            checked.origin != self.node_id
            and membership is not None
            and membership.get(bytes.fromhex(checked.origin)) is None
        ):
            raise Rejected("unknown_origin", f"origin {checked.origin[:16]} is not a member")
        if checked.origin in self.daemon.banned:
            raise Rejected("banned", f"origin {checked.origin[:16]} is banned here")
        if not await self._ingest(checked):
            raise Rejected("duplicate", "batch arrived twice at once")
        if msg.sender_id.hex() == checked.origin and self._direct_push():
            return  # the origin pushed to every member itself
        skip = {msg.sender_id.hex(), checked.origin, self.node_id}
        for peer, address in self._sample(self.fanout, exclude=skip):
            self._spawn(self._push(peer, address, checked.round, checked.wire))

    # --- serving catch-up ------------------------------------------------------------------

    async def pull_scalars(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[Envelope]:
        if request.what != pb.PullRequest.SCALARS_SINCE:
            return
        since = int(request.since_round)
        have = set(request.have[:MAX_HAVE_KEYS])
        keys = sorted(k for k in list(self._wire) if k[0] >= since and _have_key(*k) not in have)[
            :MAX_PULL_BATCHES
        ]
        out = self.daemon.metrics.bytes.labels(direction="out", kind="spsa")
        for r, origin in keys:
            body = self._wire.get((r, origin))
            if body is None:
                continue
            env = seal(
                self.identity, self.network_id, "spsa", body, seq=self.seq.next("spsa"), round=r
            )
            out.inc(env.ByteSize())
            yield env

    async def pull(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[pb.TensorChunk]:
        if request.what != pb.PullRequest.CHECKPOINT or self.layout is None:
            return
        assert self.daemon.store is not None
        async for chunk in serve_checkpoint(
            self.daemon.store,
            self.layout,
            self.identity,
            self.network_id,
            self.seq,
            self.daemon.metrics,
        ):
            yield chunk

    # --- catching up -----------------------------------------------------------------------

    async def _pull_batches(self, address: str, since: int) -> list[CheckedBatch]:
        """Every batch of rounds >= ``since`` a peer holds, each verified; [] on failure."""
        stub = self.daemon.channels.stub(address)
        got: list[CheckedBatch] = []
        metric = self.daemon.metrics.bytes.labels(direction="in", kind="spsa")
        try:
            call = stub.PullScalars(
                self._request(pb.PullRequest.SCALARS_SINCE, since, self._have_keys(since)),
                timeout=60.0,
            )
            async for env in call:
                metric.inc(env.ByteSize())
                if len(got) >= MAX_PULL_BATCHES:
                    break
                try:
                    verified = check_envelope(
                        env, self.network_id, replay=None, kinds=frozenset({"spsa"})
                    )
                    wire = pb.ScalarBatch()
                    wire.ParseFromString(verified.body)
                    got.append(self._checked(wire))
                except (EnvelopeError, Rejected, ValueError) as exc:
                    reason = getattr(exc, "reason", "malformed")
                    self.rejected[f"pulled_{reason}"] += 1
                    self.daemon.metrics.messages_rejected.labels(reason=f"spsa_{reason}").inc()
        except grpc.aio.AioRpcError as exc:
            log.info("scalar pull failed", extra={"fields": {"code": exc.code().name}})
        return got

    async def _agreed_checkpoint(self) -> tuple[int, torch.Tensor, dict[str, str], bytes] | None:
        """A final checkpoint that ``f + 1`` standing members serve bit for bit, or None.

        Final SPSA state is a deterministic function of the signed log, so honest members
        at the same final round serve identical checkpoints; ``f`` liars (members with
        standing, ``catchup.byzantine``) cannot make ``f + 1`` agree on a forgery. Waits at
        most ``catchup.min_standing_s`` for enough standing members; on no agreement the
        caller replays the whole log from the genesis initialisation (exact, needs no trust).
        """
        d = self.daemon
        g = d.genesis
        membership = d.membership
        if membership is None:
            return None
        from node.daemon.runtime import is_banned

        f, _ = catchup_quorum(g.catchup.byzantine, g.task.num_nodes)
        need = f + 1
        policy = VoucherPolicy(
            membership,
            min_standing_s=g.catchup.min_standing_s,
            excluded=lambda node_id: is_banned(d, node_id),
        )
        deadline = time.monotonic() + g.catchup.min_standing_s + 1.0
        while True:
            standing = [
                (m.node_id.hex(), m.address)
                for m in self._members()
                if m.node_id != self.identity.node_id and policy(m.node_id.hex())
            ]
            if len(standing) >= need or time.monotonic() > deadline or self._stopping:
                break
            await asyncio.sleep(0.2)
        if len(standing) < need:
            log.info(
                "no agreed checkpoint: too few standing members",
                extra={"fields": {"standing": len(standing), "need": need}},
            )
            return None
        picked = standing[: 2 * f + 1]
        got = await asyncio.gather(*(self._pull_checkpoint(a, sender) for sender, a in picked))
        groups: dict[tuple[int, str, str], list[tuple[int, torch.Tensor, dict[str, str], bytes]]]
        groups = {}
        for ckpt in got:
            if ckpt is None:
                continue
            ck_round, vec, meta, _ = ckpt
            digest = hashlib.sha256(vec.numpy().tobytes()).hexdigest()
            groups.setdefault((ck_round, digest, meta.get(_META_DIGEST, "")), []).append(ckpt)
        agreed = [k for k, v in groups.items() if len(v) >= need]
        if not agreed:
            log.info(
                "no agreed checkpoint: members serve different ones",
                extra={"fields": {"asked": len(picked), "need": need}},
            )
            self.daemon.metrics.messages_rejected.labels(reason="catchup_disagreement").inc()
            return None
        best = max(agreed)
        log.info(
            "agreed checkpoint",
            extra={"fields": {"round": best[0], "members": len(groups[best]), "need": need}},
        )
        return groups[best][0]

    async def _pull_checkpoint(
        self, address: str, expect_sender: str | None = None
    ) -> tuple[int, torch.Tensor, dict[str, str], bytes] | None:
        """A peer's latest final checkpoint, checked (hash, safetensors, shape, finite)."""
        assert self.layout is not None
        got = await pull_checkpoint(
            self.daemon.channels,
            address,
            expect_sender=expect_sender,
            request=self._request(pb.PullRequest.CHECKPOINT),
            network_id=self.network_id,
            layout=self.layout,
            max_bytes=self.daemon.settings.max_update_bytes,
            metrics=self.daemon.metrics,
        )
        if isinstance(got, str):
            log.info("peer checkpoint refused", extra={"fields": {"error": got[:120]}})
            return None
        return got.round, got.vector, _safetensors_metadata(got.data), got.data

    async def _initial_catch_up(
        self, prefetched: tuple[str, list[CheckedBatch]] | None = None
    ) -> None:
        """Fetch the network's log (and a checkpoint when it helps), then join its round.

        ``prefetched`` is a pull already made by :meth:`_prefetch` (serving address and
        batches). After the first pull, which can take many seconds on a loaded machine, the
        node pulls again from other peers what was added meanwhile (at most
        ``CATCH_UP_PULLS`` times, until a pull brings nothing new), so it joins the network's
        current round instead of one that peers have already closed.
        """
        assert self.ledger is not None
        t0 = time.monotonic()
        start_base = self.ledger.base_round
        if prefetched is not None:
            address, batches = prefetched
            batches = [b for b in batches if b.round >= start_base]
        else:
            peers = self._sample(1)
            if not peers:
                return
            _, address = peers[0]
            batches = await self._pull_batches(address, start_base)
        t_pull = time.monotonic()
        fresh = [b for b in batches if (b.round, b.origin) not in self._wire]
        newest = max((b.round for b in batches), default=-1)
        used_checkpoint = False
        if fresh and len(self.ledger) == 0 and newest - self.past > 0:
            ckpt = await self._agreed_checkpoint()
            if ckpt is not None:
                ck_round, vec, meta, data = ckpt
                folded = digest_of(e.key for b in batches if b.round < ck_round for e in b.entries)
                if meta.get(_META_DIGEST) == folded and meta.get(_META_ROUND) == str(ck_round):
                    store = self.daemon.store
                    assert store is not None
                    await asyncio.get_running_loop().run_in_executor(
                        None,
                        lambda: store.save_checkpoint_bytes(
                            ck_round,
                            data,
                            model_sha256=vector_hash(vec, self.layout),
                            applied_seed_digest=folded,
                        ),
                    )
                    self.ledger = self._new_ledger(vec, ck_round)
                    used_checkpoint = True
                else:
                    log.info(
                        "agreed checkpoint does not match the pulled log; replaying it",
                        extra={"fields": {"round": ck_round}},
                    )
        await self._ingest_pulled(fresh, folded_ok=used_checkpoint)
        if newest > self.round:
            self._jump(newest)
        t_apply = time.monotonic()
        pulls, got = 1, len(fresh)
        while fresh and pulls < CATCH_UP_PULLS and not self._stopping:
            peers = self._sample(1)
            if not peers:
                break
            since = max(self.ledger.base_round, self.round - 1)
            more = await self._pull_batches(peers[0][1], since)
            pulls += 1
            new = [b for b in more if b.round >= self.ledger.base_round]
            n = await self._ingest_pulled(new)
            got += n
            top = max((b.round for b in more), default=-1)
            if top > self.round:
                self._jump(top)
            if n == 0:
                break
        self._refresh_hash()
        self.catchup = {
            "batches": got,
            "checkpoint": used_checkpoint,
            "round": self.round,
            "pulls": pulls,
            "pull_s": round(t_pull - t0, 3),
            "apply_s": round(t_apply - t_pull, 3),
            "seconds": round(time.monotonic() - t0, 3),
        }
        if got:
            log.info("caught up", extra={"fields": self.catchup})

    def _jump(self, round_idx: int) -> None:
        """Join the network's open round ``round_idx``: every earlier round closes."""
        assert self.ledger is not None
        self.round = round_idx
        self.ledger.close_through(round_idx - 1)
        self.ledger.finalize_before(round_idx - self.past)

    async def _ingest_pulled(
        self, batches: Sequence[CheckedBatch], *, folded_ok: bool = False
    ) -> int:
        """Store and apply pulled batches (any round: we asked for them).

        Batches of rounds already final here are folded into the base when ``folded_ok``
        (the base is a checkpoint whose digest covers exactly them); otherwise the base
        lacks them and the whole log is replayed from the genesis initialisation.
        """
        assert self.ledger is not None
        new = [b for b in batches if (b.round, b.origin) not in self._wire]
        if not new:
            return 0
        store = self.daemon.store
        assert store is not None
        rows: list[SpsaEntry] = []
        signed: dict[str, str] = {}
        for b in new:
            for e, code in zip(b.entries, b.batch.codes.tolist(), strict=True):
                rows.append(
                    SpsaEntry(
                        entry_key(e.seed_id, e.node),
                        e.round,
                        e.node,
                        e.step,
                        float(code),
                        b.batch.scale,
                    )
                )
            signed[_batch_key(b)] = base64.b64encode(b.wire).decode()

        def work() -> None:
            # Two transactions for the whole pull, not one per batch.
            store.append_spsa(rows)
            store.set_states(signed)

        await asyncio.get_running_loop().run_in_executor(None, work)
        ledger = self.ledger
        for b in new:
            self._wire[(b.round, b.origin)] = b.wire
        old = [e for b in new if b.round < ledger.base_round for e in b.entries]
        if old and not folded_ok and any(not ledger.has(e.key) for e in old):
            self._replay_all()
        else:
            ledger.add(old, folded=True)
            ledger.add([e for b in new if b.round >= ledger.base_round for e in b.entries])
        self._wake.set()
        return len(new)

    def _wire_batches(self) -> list[CheckedBatch]:
        out = []
        for raw in list(self._wire.values()):
            wire = pb.ScalarBatch()
            wire.ParseFromString(raw)
            out.append(self._checked(wire, verify=False))
        return out

    def _replay_all(self) -> None:
        """Rebuild the model from the genesis initialisation and every stored batch."""
        assert self.ledger is not None and self.init_vector is not None
        frontier = self.ledger.frontier
        ledger = self._new_ledger(self.init_vector, 0)
        ledger.add([e for b in self._wire_batches() for e in b.entries])
        ledger.close_through(frontier - 1)
        ledger.finalize_before(frontier - self.past)
        self.ledger = ledger
        log.info("replayed the SPSA log from genesis", extra={"fields": {"entries": len(ledger)}})

    async def _anti_entropy(self, since: int) -> int:
        """Pull batches since ``since`` from one random peer and take the missing ones."""
        peers = self._sample(1)
        if not peers or self.ledger is None:
            return 0
        since = max(since, self.ledger.base_round)
        batches = await self._pull_batches(peers[0][1], since)
        assert self.ledger is not None
        fresh = [b for b in batches if b.round >= self.ledger.base_round]
        n = await self._ingest_pulled(fresh)
        if n:
            self._refresh_hash()
        return n

    # --- operator --------------------------------------------------------------------------

    def fill_status(self, reply: admin_pb2.StatusReply) -> None:
        reply.learner = "spsa"
        # Until the log is restored, the stored round (not 0) is the truth.
        reply.round = self.round if self.ledger is not None else self._stored_round
        reply.last_accuracy = self.last_accuracy
        reply.model_hash = self.model_hash
        reply.spsa_digest = self.ledger.digest() if self.ledger is not None else ""
        for r, acc, loss, ts in self.evaluations:
            reply.history.append(
                admin_pb2.Evaluation(
                    round=r, accuracy=acc, loss=loss if math.isfinite(loss) else 0.0, unix_time=ts
                )
            )

    def export(self) -> admin_pb2.ExportReply:
        if self.ledger is None:
            raise LookupError("the spsa model is still loading")
        tensors = self.layout.split(self.ledger.vector())
        return admin_pb2.ExportReply(
            model_safetensors=encode_state(tensors), round=self.round, model_hash=self.model_hash
        )


async def start_spsa(daemon: Daemon, shard: int) -> SpsaRuntime:
    """Create, start and attach the SPSA runtime to the daemon's service."""
    runtime = SpsaRuntime(daemon, shard)
    await runtime.start()
    daemon.training = runtime
    assert daemon.service is not None
    daemon.service.training = runtime
    return runtime
