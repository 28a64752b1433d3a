"""Zeroth-order SPSA with shared randomness ("Just One Byte" + MeZO).

Per step a node derives a 63-bit seed id from ``(genesis seed, round, node id,
step)`` (``per_node`` schedule) or ``(genesis seed, round, step)`` (``shared``
schedule), regenerates the perturbation ``z`` over the trainable vector from
that seed, and computes the MeZO two-point estimate on a local minibatch::

    g = (L(w + eps z) - L(w - eps z)) / (2 eps)

Only ``(seed id, g)`` is published, ``g`` int8-quantised with one fp32 scale
per batch (or fp16/fp32). Every node applies every published scalar exactly
once::

    w <- w - lr * weight * g * z(seed)

The result is a sum, so it does not depend on arrival order mathematically;
float addition is not associative though, so :func:`apply_scalars` applies in
sorted ``(seed id, node)`` order, which makes models bit-identical on every node
that applied the same set. A digest of the applied set (:meth:`ScalarLog.digest`)
makes that agreement checkable.

DP-ZO (``LearnerSpec.dp_zo``, record-level DP): each step's scalar is instead
:func:`dp_zo_scalar` of the per-example estimates of a Poisson-sampled minibatch (sample
rate ``q = batch_size / examples``, secret draws from the OS CSPRNG): clipped to
``[-C, C]``, summed, Gaussian noise ``N(0, (zC)^2)`` added, divided by ``q * examples``.
Noise goes on one scalar per step, so its cost does not grow with the model. The node's
next step within the round uses the released (noised) scalar.

Perturbation distribution: Rademacher (±1 per coordinate, default; ``E[z z^T] = I``
with bounded entries, so an int8 scalar's effect per coordinate is bounded by
``lr * |g|``) or standard Gaussian (MeZO's choice).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from node.training.datasets import NodeData
from node.training.params import flatten, load_vector
from node.training.seeding import derive_seed
from node.training.spec import LearnerSpec
from privacy import secure_normal, secure_uniform

__all__ = [
    "SPSALearner",
    "ScalarBatch",
    "ScalarEntry",
    "ScalarError",
    "ScalarLog",
    "apply_round",
    "apply_scalars",
    "combine_shared",
    "dequantize",
    "dp_zo_scalar",
    "perturbation",
    "quantize",
    "replay",
    "seed_id",
    "seed_set_digest",
]

Schedule = Literal["per_node", "shared"]
Distribution = Literal["rademacher", "gaussian"]
ScalarDType = Literal["int8", "fp16", "fp32"]

_DTYPE_CODES: dict[str, int] = {"int8": 0, "fp16": 1, "fp32": 2}
_SCHEDULE_CODES: dict[str, int] = {"per_node": 0, "shared": 1}
_MAGIC = b"FNSB"
_VERSION = 1
#: Hard cap on entries in one batch (bad-input bound for decoding).
MAX_BATCH_ENTRIES = 65_536
#: Node ids in shared-schedule seed derivation are replaced by this marker.
SHARED = "*"
_BIT_SHIFTS = torch.arange(8, dtype=torch.uint8)


class ScalarError(ValueError):
    """An SPSA scalar batch is malformed, inconsistent or conflicts with the log."""


def seed_id(
    genesis_seed: int, round_idx: int, node: str, step: int, schedule: Schedule = "per_node"
) -> int:
    """Seed id of one SPSA step.

    Parameters
    ----------
    genesis_seed
        The network's genesis seed.
    round_idx, step
        Round and step within the round (both >= 0).
    node
        Node id (ignored by the ``shared`` schedule, whose seeds are common to all nodes).
    schedule
        ``"per_node"`` (default) or ``"shared"``.
    """
    if round_idx < 0 or step < 0:
        raise ScalarError("round and step must be >= 0")
    who = SHARED if schedule == "shared" else node
    return derive_seed("spsa", genesis_seed, round_idx, who, step)


def perturbation(seed: int, numel: int, distribution: Distribution = "rademacher") -> torch.Tensor:
    """Regenerate the float32 perturbation ``z`` of length ``numel`` from ``seed``.

    Uses a CPU ``torch.Generator``; identical on every node for a given torch version.
    """
    gen = torch.Generator().manual_seed(int(seed))
    if distribution == "rademacher":
        # One random byte gives eight signs: 8x fewer generator draws than one per sign.
        raw = torch.randint(0, 256, ((numel + 7) // 8,), generator=gen, dtype=torch.uint8)
        bits = (raw.unsqueeze(1) >> _BIT_SHIFTS) & 1
        return bits.reshape(-1)[:numel].to(torch.float32) * 2 - 1
    if distribution == "gaussian":
        return torch.randn(numel, generator=gen, dtype=torch.float32)
    raise ScalarError(f"unknown perturbation distribution {distribution!r}")


def quantize(values: Sequence[float], dtype: ScalarDType = "int8") -> tuple[np.ndarray, float]:
    """Quantise scalars for the wire.

    Returns
    -------
    codes, scale
        ``int8`` codes with ``scale = max|v| / 127`` (so ``|v - code*scale| <= scale/2``),
        or fp16/fp32 values with ``scale = 1.0``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ScalarError("SPSA scalars must be finite")
    if dtype == "int8":
        peak = float(np.abs(arr).max()) if arr.size else 0.0
        scale = float(np.float32(peak / 127.0)) if peak > 0 else 1.0
        codes = np.clip(np.rint(arr / scale), -127, 127).astype(np.int8)
        return codes, scale
    if dtype == "fp16":
        return arr.astype(np.float16), 1.0
    if dtype == "fp32":
        return arr.astype(np.float32), 1.0
    raise ScalarError(f"unknown scalar dtype {dtype!r}")


def dequantize(codes: np.ndarray, scale: float) -> list[float]:
    """Float values of wire codes (the values every node applies, the sender included)."""
    s = np.float32(scale)
    return [float(np.float32(c) * s) for c in codes.tolist()]


@dataclass(frozen=True)
class ScalarEntry:
    """One applied SPSA step: who, when, its seed and its (dequantised) scalar."""

    seed_id: int
    round: int
    node: str
    step: int
    scalar: float

    @property
    def key(self) -> tuple[int, str]:
        """Identity in the log: ``(seed id, node)``."""
        return (self.seed_id, self.node)


@dataclass(frozen=True)
class ScalarBatch:
    """The wire unit of the SPSA learner: one node's steps of one round.

    ``codes`` hold the quantised scalars (int8, fp16 or fp32), ``scale`` the int8 scale.
    """

    round: int
    node: str
    schedule: Schedule
    dtype: ScalarDType
    steps: tuple[int, ...]
    seed_ids: tuple[int, ...]
    codes: np.ndarray
    scale: float = 1.0
    loss: float = field(default=float("nan"), compare=False)

    def entries(self) -> list[ScalarEntry]:
        """Dequantised entries of this batch."""
        vals = dequantize(self.codes, self.scale)
        return [
            ScalarEntry(s, self.round, self.node, st, v)
            for s, st, v in zip(self.seed_ids, self.steps, vals, strict=True)
        ]

    def encode(self) -> bytes:
        """Compact little-endian bytes: header, (step u32, seed u64) pairs, then scalars."""
        node = self.node.encode("utf-8")
        if len(node) > 1024:
            raise ScalarError("node id longer than 1024 bytes")
        n = len(self.steps)
        head = _MAGIC + struct.pack(
            "<BBBQH",
            _VERSION,
            _DTYPE_CODES[self.dtype],
            _SCHEDULE_CODES[self.schedule],
            self.round,
            len(node),
        )
        head += node + struct.pack("<If", n, self.scale)
        body = b"".join(
            struct.pack("<IQ", st, s) for st, s in zip(self.steps, self.seed_ids, strict=True)
        )
        wire = {"int8": "<i1", "fp16": "<f2", "fp32": "<f4"}[self.dtype]
        return head + body + np.asarray(self.codes).astype(wire).tobytes()

    @classmethod
    def decode(cls, data: bytes) -> ScalarBatch:
        """Parse :meth:`encode` output; raises :class:`ScalarError` on any inconsistency."""
        try:
            if data[:4] != _MAGIC:
                raise ScalarError("not a scalar batch (bad magic)")
            version, dcode, scode, rnd, nlen = struct.unpack_from("<BBBQH", data, 4)
            if version != _VERSION:
                raise ScalarError(f"unsupported scalar batch version {version}")
            off = 4 + struct.calcsize("<BBBQH")
            node = data[off : off + nlen].decode("utf-8")
            off += nlen
            n, scale = struct.unpack_from("<If", data, off)
            off += 8
        except (struct.error, UnicodeDecodeError) as exc:
            raise ScalarError(f"truncated or malformed scalar batch header: {exc}") from exc
        dtypes = {v: k for k, v in _DTYPE_CODES.items()}
        schedules = {v: k for k, v in _SCHEDULE_CODES.items()}
        if dcode not in dtypes or scode not in schedules:
            raise ScalarError("unknown scalar dtype or seed schedule code")
        if n > MAX_BATCH_ENTRIES:
            raise ScalarError(f"batch of {n} entries exceeds {MAX_BATCH_ENTRIES}")
        dtype = dtypes[dcode]
        width = {"int8": 1, "fp16": 2, "fp32": 4}[dtype]
        if len(data) != off + n * 12 + n * width:
            raise ScalarError("scalar batch length does not match its entry count")
        if not np.isfinite(scale) or scale <= 0:
            raise ScalarError("scalar batch scale must be finite and > 0")
        pairs = [struct.unpack_from("<IQ", data, off + 12 * i) for i in range(n)]
        wire = {"int8": "<i1", "fp16": "<f2", "fp32": "<f4"}[dtype]
        codes = np.frombuffer(data, dtype=wire, count=n, offset=off + 12 * n).copy()
        if dtype != "int8" and not np.isfinite(codes).all():
            raise ScalarError("scalar batch contains NaN or Inf")
        return cls(
            round=rnd,
            node=node,
            schedule=schedules[scode],  # type: ignore[arg-type]
            dtype=dtype,  # type: ignore[arg-type]
            steps=tuple(p[0] for p in pairs),
            seed_ids=tuple(p[1] for p in pairs),
            codes=codes,
            scale=float(scale),
        )


def seed_set_digest(keys: Iterable[tuple[int, str]]) -> str:
    """Hex sha256 of a set of ``(seed id, node)`` keys, independent of order."""
    h = hashlib.sha256(b"fednode-spsa-seedset-v1")
    for sid, node in sorted(set(keys)):
        nb = node.encode("utf-8")
        h.update(struct.pack("<QH", sid, len(nb)) + nb)
    return h.hexdigest()


def combine_shared(
    entries: Iterable[ScalarEntry], rule: str = "mean", trim: int = 0
) -> list[tuple[int, float]]:
    """Combine the scalars of each shared-schedule seed into one.

    Parameters
    ----------
    entries
        Entries of a shared-schedule round (several nodes per seed id).
    rule
        ``"mean"`` (default), ``"median"`` (average of the two middle values for
        an even count) or ``"trimmed_mean"`` (drop ``trim`` largest and smallest).
    trim
        Values dropped at each end by ``trimmed_mean`` (default 0).

    Returns
    -------
    list of (seed id, scalar), sorted by seed id. Within a seed the values are
    sorted first, so the result does not depend on arrival order.
    """
    groups: dict[int, list[float]] = {}
    for e in entries:
        groups.setdefault(e.seed_id, []).append(e.scalar)
    out: list[tuple[int, float]] = []
    for sid in sorted(groups):
        vals = np.sort(np.asarray(groups[sid], dtype=np.float64))
        if rule == "mean":
            v = float(vals.mean())
        elif rule == "median":
            v = float(np.median(vals))
        elif rule == "trimmed_mean":
            if 2 * trim >= len(vals):
                raise ScalarError(
                    f"trim {trim} leaves nothing of {len(vals)} scalars for seed {sid}"
                )
            v = float(vals[trim : len(vals) - trim].mean())
        else:
            raise ScalarError(f"unknown shared-seed combination rule {rule!r}")
        out.append((sid, v))
    return out


def apply_scalars(
    vector: torch.Tensor,
    entries: Iterable[ScalarEntry | tuple[int, float]],
    lr: float,
    *,
    distribution: Distribution = "rademacher",
    weight: float = 1.0,
) -> torch.Tensor:
    """Return ``vector - lr * weight * sum(scalar * z(seed))`` over ``entries``.

    Entries are applied in sorted ``(seed id, node, scalar)`` order, so any
    permutation of the same entries yields a bit-identical result.

    Parameters
    ----------
    vector
        Flat float32 trainable vector (not modified).
    entries
        :class:`ScalarEntry` objects or ``(seed id, scalar)`` pairs.
    lr
        Learning rate.
    distribution
        Perturbation distribution used when the scalars were computed.
    weight
        Extra factor, e.g. ``1/num_nodes`` to average the nodes' steps (default 1).
    """
    keyed: list[tuple[int, str, float]] = []
    for e in entries:
        if isinstance(e, ScalarEntry):
            keyed.append((e.seed_id, e.node, e.scalar))
        else:
            keyed.append((int(e[0]), "", float(e[1])))
    keyed.sort()
    out = vector.detach().clone().to(torch.float32)
    n = out.numel()
    for sid, _, scalar in keyed:
        if scalar == 0.0:
            continue
        out.add_(perturbation(sid, n, distribution), alpha=-lr * weight * scalar)
    return out


def apply_round(
    vector: torch.Tensor,
    entries: Iterable[ScalarEntry],
    lr: float,
    *,
    schedule: Schedule = "per_node",
    distribution: Distribution = "rademacher",
    num_nodes: int = 1,
    shared_rule: str = "mean",
    trim: int = 0,
) -> torch.Tensor:
    """Apply one round's entries the way every node of a network must.

    ``per_node``: each entry with ``weight = 1/num_nodes`` (the mean of the nodes'
    steps). ``shared``: one scalar per seed from :func:`combine_shared`
    (``shared_rule``, ``trim``), weight 1.
    """
    if schedule == "shared":
        combined = combine_shared(entries, shared_rule, trim)
        return apply_scalars(vector, combined, lr, distribution=distribution)
    return apply_scalars(vector, entries, lr, distribution=distribution, weight=1.0 / num_nodes)


def replay(
    vector: torch.Tensor,
    log: ScalarLog,
    start_round: int,
    stop_round: int,
    lr: float,
    **kwargs: Any,
) -> torch.Tensor:
    """Catch up from a checkpoint: apply rounds ``start_round .. stop_round - 1`` in order.

    Rounds are applied one at a time with :func:`apply_round` (keyword arguments
    are passed on), which reproduces the live nodes' float operations exactly;
    applying all entries in a single sorted pass would not be bit-identical.
    """
    out = vector
    for r in range(start_round, stop_round):
        out = apply_round(out, log.round_entries(r), lr, schedule=log.schedule, **kwargs)
    return out


class ScalarLog:
    """Sans-I/O log of SPSA entries a node has accepted (and will apply).

    It checks every incoming batch: seed ids must be the ones derived from
    ``(genesis seed, round, node, step)`` (else they are *unknown*), steps must
    lie below ``steps_per_round``, a batch must not repeat a step, and an entry
    must not conflict with a stored one (same key, different scalar).
    Re-delivery of identical entries, normal under gossip, is counted in
    :attr:`duplicates` and otherwise ignored.

    Parameters
    ----------
    genesis_seed
        The network's genesis seed.
    schedule
        Seed schedule of the network.
    steps_per_round
        SPSA steps per node per round (``LearnerSpec.spsa_steps``).
    """

    def __init__(
        self, genesis_seed: int, *, schedule: Schedule = "per_node", steps_per_round: int = 1
    ):
        self.genesis_seed = genesis_seed
        self.schedule: Schedule = schedule
        self.steps_per_round = steps_per_round
        self._entries: dict[tuple[int, str], ScalarEntry] = {}
        self._by_round: dict[int, list[ScalarEntry]] = {}
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, batch: ScalarBatch) -> list[ScalarEntry]:
        """Validate ``batch`` and store its new entries; returns them (may be empty).

        Raises
        ------
        ScalarError
            Wrong schedule, unknown seed id, step out of range or repeated,
            or a conflicting entry. Nothing of the batch is stored then.
        """
        if batch.schedule != self.schedule:
            raise ScalarError(f"batch schedule {batch.schedule!r}, network uses {self.schedule!r}")
        if len(set(batch.steps)) != len(batch.steps):
            raise ScalarError("batch repeats a step")
        entries = batch.entries()
        fresh: list[ScalarEntry] = []
        for e in entries:
            if not 0 <= e.step < self.steps_per_round:
                raise ScalarError(f"step {e.step} outside [0, {self.steps_per_round})")
            expect = seed_id(self.genesis_seed, e.round, e.node, e.step, self.schedule)
            if e.seed_id != expect:
                raise ScalarError(f"unknown seed id {e.seed_id} for round {e.round} step {e.step}")
            old = self._entries.get(e.key)
            if old is not None:
                if old.scalar != e.scalar:
                    raise ScalarError(f"conflicting scalar for seed {e.seed_id} from {e.node}")
                self.duplicates += 1
                continue
            fresh.append(e)
        for e in fresh:
            self._entries[e.key] = e
            self._by_round.setdefault(e.round, []).append(e)
        return fresh

    def round_entries(self, round_idx: int) -> list[ScalarEntry]:
        """Stored entries of one round, sorted by key."""
        return sorted(self._by_round.get(round_idx, []), key=lambda e: e.key)

    def since(self, round_idx: int) -> list[ScalarEntry]:
        """Entries of rounds >= ``round_idx`` (catch-up from a checkpoint), by (round, key)."""
        return sorted(
            (e for e in self._entries.values() if e.round >= round_idx),
            key=lambda e: (e.round, e.key),
        )

    def digest(self, up_to_round: int | None = None) -> str:
        """Digest of the stored key set (optionally only rounds <= ``up_to_round``)."""
        keys = (
            k for k, e in self._entries.items() if up_to_round is None or e.round <= up_to_round
        )
        return seed_set_digest(keys)


def dp_zo_scalar(
    differences: torch.Tensor, *, clip: float, noise_multiplier: float, expected_batch: float
) -> float:
    """DP-ZO's released scalar from one step's per-example projected-gradient estimates.

    ``(sum_i clip(d_i) + N(0, (z C)^2)) / expected_batch`` with ``clip`` to ``[-C, C]``; a
    NaN difference (a diverged loss) counts as 0 and +-Inf as +-C, so each example moves
    the sum by at most C whatever the model does. Adding or removing one example of the
    Poisson-sampled batch changes the sum by at most C: one step is the sampled Gaussian
    mechanism with noise multiplier z, accounted exactly as a DP-SGD step on a
    one-dimensional gradient (Tang et al. 2024, "Private fine-tuning of large language
    models with zeroth-order optimization"; DPZero, Zhang et al. 2024).

    Parameters
    ----------
    differences : torch.Tensor
        ``(L_i(w + eps z) - L_i(w - eps z)) / (2 eps)`` of the sampled examples (may be
        empty: an empty draw is still a step, noise only).
    clip : float
        C > 0.
    noise_multiplier : float
        z >= 0 (noise from the OS CSPRNG).
    expected_batch : float
        ``q * examples`` (> 0), the normaliser that keeps the sensitivity fixed.
    """
    if not expected_batch > 0:
        raise ValueError(f"expected_batch must be > 0, got {expected_batch!r}")
    c = float(clip)
    d = torch.nan_to_num(differences.detach().to(torch.float64), nan=0.0, posinf=c, neginf=-c)
    total = float(d.clamp(-c, c).sum())
    noise = float(secure_normal((1,), float(noise_multiplier) * c)[0])
    return (total + noise) / expected_batch


class SPSALearner:
    """Compute one round's SPSA scalars on local data.

    Parameters
    ----------
    spec
        Learner spec (``lr``, ``spsa_eps``, ``spsa_steps``, dtype, schedule, distribution).
    batch_size
        Minibatch size of each two-point estimate.
    seed
        Genesis seed.
    node
        This node's id.

    Notes
    -----
    Within a round the node takes its own steps sequentially (so step s+1 is
    evaluated after step s), then restores the round-start model: the caller
    applies the round's full entry set (own and peers') with
    :func:`apply_scalars`, which is what keeps all nodes identical.
    """

    def __init__(self, spec: LearnerSpec, *, batch_size: int, seed: int, node: str):
        if spec.kind != "spsa":
            raise ValueError(f"SPSALearner needs learner kind 'spsa', got {spec.kind!r}")
        self.spec = spec
        self.batch_size = batch_size
        self.seed = seed
        self.node = node
        self.empty_draws = 0
        """DP-ZO steps whose Poisson draw was empty (noise only), since creation."""

    def sample_rate(self, examples: int) -> float:
        """DP-ZO's Poisson sampling rate ``q = min(1, batch_size / examples)``."""
        if examples <= 0:
            raise ValueError("node has no training examples")
        return min(1.0, self.batch_size / examples)

    def dp_round(self, examples: int) -> tuple[float, float, int] | None:
        """``(noise multiplier, sample rate, steps)`` of one DP-ZO round, None without DP-ZO."""
        if not self.spec.dp_zo:
            return None
        return self.spec.dp_zo_noise_multiplier, self.sample_rate(examples), self.spec.spsa_steps

    @torch.no_grad()
    def _dp_zo_step(
        self, model: nn.Module, w: torch.Tensor, z: torch.Tensor, data: NodeData
    ) -> tuple[float, float]:
        """One DP-ZO scalar at ``w`` along ``z``, and the batch's mean loss (NaN if empty)."""
        spec = self.spec
        n = data.num_examples
        q = self.sample_rate(n)
        # The sample must be secret (amplification by subsampling): OS CSPRNG, never the
        # genesis seed every peer knows.
        idx = torch.nonzero(secure_uniform(n) < q).reshape(-1)
        if idx.numel() == 0:
            self.empty_draws += 1
            diffs = torch.zeros(0, dtype=torch.float64)
            loss = float("nan")
        else:
            x, y = data.x[idx], data.y[idx]
            load_vector(model, w + spec.spsa_eps * z, check=False)
            lp = nn.functional.cross_entropy(model(x), y, reduction="none").double()
            load_vector(model, w - spec.spsa_eps * z, check=False)
            lm = nn.functional.cross_entropy(model(x), y, reduction="none").double()
            diffs = (lp - lm) / (2 * spec.spsa_eps)
            loss = float(0.5 * (lp.mean() + lm.mean()))
        g = dp_zo_scalar(
            diffs,
            clip=spec.dp_zo_clip,
            noise_multiplier=spec.dp_zo_noise_multiplier,
            expected_batch=q * n,
        )
        return g, loss

    @torch.no_grad()
    def _loss(self, model: nn.Module, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        load_vector(model, w, check=False)
        return float(nn.functional.cross_entropy(model(x), y))

    def train_round(
        self,
        model: nn.Module,
        data: NodeData,
        round_idx: int,
        *,
        privatize: Callable[[float], float] | None = None,
    ) -> ScalarBatch:
        """Return this node's quantised scalar batch for ``round_idx``; ``model`` is unchanged.

        Parameters
        ----------
        model, data, round_idx
            The model at the round's start, the node's data, the round.
        privatize : callable or None, default None
            Applied to every scalar as soon as it is computed (the release guard's
            per-scalar clip and noise). The node's own next step within the round uses
            the privatized value, so everything the learner computes after a step is a
            function of released values and the data, never of an unreleased scalar.
        """
        n = data.num_examples
        if n == 0:
            raise ValueError("node has no training examples")
        spec = self.spec
        model.eval()
        w0 = flatten(model)
        w = w0.clone()
        steps = list(range(spec.spsa_steps))
        sids: list[int] = []
        scalars: list[float] = []
        losses: list[float] = []
        bs = min(self.batch_size, n)
        try:
            for step in steps:
                sid = seed_id(self.seed, round_idx, self.node, step, spec.spsa_seed_schedule)
                z = perturbation(sid, w.numel(), spec.spsa_distribution)
                if spec.dp_zo:
                    g, loss = self._dp_zo_step(model, w, z, data)
                else:
                    gen = torch.Generator().manual_seed(derive_seed("spsa-batch", sid, self.node))
                    idx = torch.randint(0, n, (bs,), generator=gen)
                    x, y = data.x[idx], data.y[idx]
                    lp = self._loss(model, w + spec.spsa_eps * z, x, y)
                    lm = self._loss(model, w - spec.spsa_eps * z, x, y)
                    g = (lp - lm) / (2 * spec.spsa_eps)
                    loss = 0.5 * (lp + lm)
                if privatize is not None:
                    g = privatize(g)
                sids.append(sid)
                scalars.append(g)
                losses.append(loss)
                # The next step starts from released values only (DP-ZO's output, then
                # the node-level privatizer's): never from an unreleased scalar.
                w.add_(z, alpha=-spec.lr * g)
        finally:
            load_vector(model, w0)
        codes, scale = quantize(scalars, spec.spsa_scalar_dtype)
        return ScalarBatch(
            round=round_idx,
            node=self.node,
            schedule=spec.spsa_seed_schedule,
            dtype=spec.spsa_scalar_dtype,
            steps=tuple(steps),
            seed_ids=tuple(sids),
            codes=codes,
            scale=scale,
            loss=float(np.nanmean(losses)) if not np.isnan(losses).all() else float("nan"),
        )
