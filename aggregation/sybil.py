"""Sybil weighting from the similarity of peers' update histories (FoolsGold / SybilWall).

An attacker who controls many identities wants all of them to push the model the same
way, so their *accumulated* updates point in nearly the same direction, while honest
nodes, each training on its own data, drift apart over time. FoolsGold [1]_ turns that
into per-peer weights: the more a peer's history resembles some other peer's, the less
weight it gets. SybilWall [2]_ carries the idea to decentralized learning, where a node
only hears from its neighbours: nodes also gossip the histories they hold, with a
forwarding probability that decays with hop distance, so a node scores its neighbours
against the histories of non-neighbours too (a Sybil cluster spread across the network
still meets its twins).

This module holds the pure parts:

* :func:`forward_probability` -- the hop-decayed gossip probability;
* :class:`CountSketch` -- a fixed, seed-derived random linear compression of histories
  (feature hashing), identical on every node that uses the same seed, so compressed
  histories learned through gossip are comparable with locally built ones;
* :class:`SimilarityHistory` -- per-peer accumulated histories (direct observations and
  gossiped records), gossip selection and merge rules, bounded memory;
* :func:`sybil_weights` -- FoolsGold scoring (max cosine similarity, pardoning, logit) or
  a plain linear score, on an ``(n, k)`` stack of histories;
* :func:`sybil_filter` and :func:`sybil_weighted_mean` -- two ways to compose the weights
  with a robust rule: drop low-weight peers before the rule, or use the weights in a
  (SybilWall-style, self-anchored) weighted mean.

Only torch, numpy and the standard library are imported.

References
----------
.. [1] C. Fung, C. J. M. Yoon, I. Beschastnikh. "The Limitations of Federated Learning in
   Sybil Settings" (FoolsGold). RAID 2020.
.. [2] T. Werthenbach, J. Pouwelse. "Towards Sybil Resilience in Decentralized Learning"
   (SybilWall). arXiv:2306.15044, 2023 (revised 2024).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = [
    "SYBIL_METHODS",
    "CountSketch",
    "HistoryRecord",
    "SimilarityHistory",
    "SybilMethod",
    "forward_probability",
    "pairwise_cosine",
    "sybil_filter",
    "sybil_weighted_mean",
    "sybil_weights",
]

SybilMethod = Literal["foolsgold", "linear"]
SYBIL_METHODS: tuple[str, ...] = ("foolsgold", "linear")

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# Histories whose pardoned max cosine is within this of 1 count as exact twins.
_TWIN_TOLERANCE = 1e-9


def forward_probability(hops: int, p0: float = 1.0, decay: float = 0.8) -> float:
    """Probability of forwarding a history record that is ``hops`` hops away.

    ``p = p0 * exp(-decay * hops)``, clipped to ``[0, 1]``. SybilWall [2]_ picks the
    record to gossip with weight ``lambda * exp(-lambda * d)``; that is this function with
    ``p0 = decay = lambda`` (the authors' code uses ``lambda = 0.8``), normalised over the
    candidates. Near records spread more, so the gossip load stays bounded while every
    history still reaches a few hops.

    Parameters
    ----------
    hops : int
        Hop distance >= 0 of the record's subject from the holder (0: the holder itself,
        1: a neighbour observed directly).
    p0 : float, default 1.0
        Probability at distance 0, in [0, 1].
    decay : float, default 0.8
        Decay rate per hop, >= 0.

    Raises
    ------
    ValueError
        Negative hops, p0 outside [0, 1], negative or non-finite decay.
    """
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ValueError(f"hops must be an int >= 0, got {hops!r}")
    if not (0.0 <= p0 <= 1.0):
        raise ValueError(f"p0 must be in [0, 1], got {p0!r}")
    if not math.isfinite(decay) or decay < 0.0:
        raise ValueError(f"decay must be finite and >= 0, got {decay!r}")
    return min(1.0, p0 * math.exp(-decay * hops))


def _splitmix64(values: np.ndarray) -> np.ndarray:
    # SplitMix64 finaliser (Steele, Lea, Flood 2014): a portable integer hash, so the
    # sketch is the same on every machine and every numpy/torch version.
    z = values.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


class CountSketch:
    """A fixed random linear map from R^dim to R^sketch_dim (count sketch / feature hashing).

    Coordinate ``i`` is added, with sign ``s(i)`` in {-1, +1}, to bucket ``h(i)``; both are
    derived from ``hash(seed, i)``. The map is linear, so the sketch of a sum of updates is
    the sum of their sketches, and it preserves inner products in expectation
    (``E[<Sx, Sy>] = <x, y>``, variance at most ``2 |x|^2 |y|^2 / sketch_dim``): cosine
    similarities of sketched histories estimate those of the full histories to about
    ``1 / sqrt(sketch_dim)``. Memory is ``O(dim)`` for the hash table and
    ``O(sketch_dim)`` per history, instead of a dense ``dim x sketch_dim`` projection.

    Parameters
    ----------
    dim : int
        Input dimension (flattened update length), >= 1.
    sketch_dim : int
        Output dimension, >= 1.
    seed : int, default 0
        Seed (e.g. derived from the genesis seed): nodes with the same seed produce
        comparable sketches.
    """

    def __init__(self, dim: int, sketch_dim: int, seed: int = 0) -> None:
        if dim < 1 or sketch_dim < 1:
            raise ValueError(f"dim and sketch_dim must be >= 1, got {dim} and {sketch_dim}")
        self.dim = int(dim)
        self.sketch_dim = int(sketch_dim)
        self.seed = int(seed)
        seed_mix = _splitmix64(np.array([self.seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
        with np.errstate(over="ignore"):
            keys = np.arange(self.dim, dtype=np.uint64) ^ seed_mix
        hashed = _splitmix64(keys)
        self.buckets = torch.from_numpy((hashed % np.uint64(self.sketch_dim)).astype(np.int64))
        signs = ((hashed >> np.uint64(63)).astype(np.float32) * 2.0) - 1.0
        self.signs = torch.from_numpy(signs)

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        """Sketch a ``(dim,)`` vector or an ``(n, dim)`` stack; returns float32."""
        if vectors.shape[-1] != self.dim or vectors.dim() not in (1, 2):
            raise ValueError(
                f"expected shape ({self.dim},) or (n, {self.dim}), got {tuple(vectors.shape)}"
            )
        signed = vectors.to(torch.float32) * self.signs
        out = torch.zeros((*vectors.shape[:-1], self.sketch_dim), dtype=torch.float32)
        return out.index_add_(-1, self.buckets, signed)


@dataclass(frozen=True)
class HistoryRecord:
    """What a node knows about one peer's accumulated updates.

    Attributes
    ----------
    peer : str
        The peer the history is about.
    vector : torch.Tensor
        Accumulated (optionally sketched) updates, 1-D float32.
    round : int
        Latest round included.
    hops : int
        Hop distance from the holder: 1 for a neighbour observed directly, >= 2 for a
        record learned through gossip.
    via : str or None
        The neighbour it was learned from; ``None`` for a direct observation.
    """

    peer: str
    vector: torch.Tensor
    round: int
    hops: int
    via: str | None

    @property
    def direct(self) -> bool:
        """Whether the holder built this record from updates it received itself."""
        return self.via is None


class SimilarityHistory:
    """Per-peer accumulated update histories for Sybil weighting, with gossip merging.

    Direct observations (:meth:`add_update`) are summed into a record with ``hops=1``.
    Records learned from a neighbour (:meth:`merge_gossip`) are stored one hop further
    away; they never overwrite a direct record, and replace an older gossiped record only
    when they are fresher (higher round, or same round and fewer hops). Gossiped records
    are only as trustworthy as the neighbour that forwarded them: have the node layer
    sign histories at the source if forgery matters.

    Parameters
    ----------
    dim : int
        Length of a flattened update.
    sketch_dim : int or None, default None
        If given, histories are compressed with a :class:`CountSketch` of this size
        (recommended: 1024-4096 for models above ~1e5 parameters).
    seed : int, default 0
        Sketch seed; must be the same on every node (e.g. from the genesis seed).
    self_id : str or None, default None
        The holder's own id; records about it are ignored.
    max_records : int or None, default None
        Memory bound. When exceeded, the gossiped record with the most hops (oldest round
        first among equals) is evicted; if there are only direct records, the oldest one.
    """

    def __init__(
        self,
        dim: int,
        *,
        sketch_dim: int | None = None,
        seed: int = 0,
        self_id: str | None = None,
        max_records: int | None = None,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if max_records is not None and max_records < 1:
            raise ValueError(f"max_records must be >= 1 or None, got {max_records}")
        self.dim = int(dim)
        self.sketch = None if sketch_dim is None else CountSketch(dim, sketch_dim, seed)
        self.vector_dim = self.dim if self.sketch is None else self.sketch.sketch_dim
        self.self_id = self_id
        self.max_records = max_records
        self._records: dict[str, HistoryRecord] = {}

    # -- inspection ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, peer: object) -> bool:
        return peer in self._records

    def __iter__(self) -> Iterator[HistoryRecord]:
        return iter(list(self._records.values()))

    @property
    def peers(self) -> list[str]:
        """Peers with a record, in insertion order."""
        return list(self._records)

    def get(self, peer: str) -> HistoryRecord | None:
        """The record about ``peer``, or ``None``."""
        return self._records.get(peer)

    def forget(self, peer: str) -> None:
        """Drop the record about ``peer`` (e.g. after a ban); no error if absent."""
        self._records.pop(peer, None)

    def matrix(self, peers: Sequence[str] | None = None) -> torch.Tensor:
        """Stack the histories of ``peers`` (default: all, insertion order) as ``(n, k)``."""
        chosen = self.peers if peers is None else list(peers)
        missing = [p for p in chosen if p not in self._records]
        if missing:
            raise KeyError(f"no history for peers {missing}")
        if not chosen:
            return torch.zeros((0, self.vector_dim), dtype=torch.float32)
        return torch.stack([self._records[p].vector for p in chosen])

    # -- updates ------------------------------------------------------------------------
    def _check_round(self, round_: int) -> int:
        if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 0:
            raise ValueError(f"round must be an int >= 0, got {round_!r}")
        return round_

    def add_update(self, peer: str, update: torch.Tensor, round_: int) -> None:
        """Add an update received directly from ``peer`` to its history.

        A gossiped record about ``peer`` is discarded in favour of direct observation
        (what we saw ourselves cannot be forged by a forwarder).

        Raises
        ------
        ValueError
            Wrong shape, non-finite values, or a bad round.
        """
        self._check_round(round_)
        if peer == self.self_id:
            return
        if tuple(update.shape) != (self.dim,):
            raise ValueError(
                f"update for {peer!r} must have shape ({self.dim},), got {tuple(update.shape)}"
            )
        if not bool(torch.isfinite(update).all()):
            raise ValueError(f"update for {peer!r} has non-finite values")
        vec = update.detach().to(torch.float32)
        if self.sketch is not None:
            vec = self.sketch(vec)
        old = self._records.get(peer)
        if old is not None and old.direct:
            record = HistoryRecord(peer, old.vector + vec, max(old.round, round_), 1, None)
        else:
            record = HistoryRecord(peer, vec.clone(), round_, 1, None)
        self._store(record)

    def merge_gossip(self, record: HistoryRecord, *, via: str) -> bool:
        """Merge a record forwarded by neighbour ``via`` (as ``via`` stored it).

        The record is stored with ``hops + 1`` and ``via``. Records about the holder or
        about ``via`` itself (``via`` is observed directly) are ignored.

        Returns
        -------
        bool
            Whether the record was stored.

        Raises
        ------
        ValueError
            Wrong vector shape, non-finite values, bad round or hops.
        """
        self._check_round(record.round)
        if isinstance(record.hops, bool) or not isinstance(record.hops, int) or record.hops < 0:
            raise ValueError(f"hops must be an int >= 0, got {record.hops!r}")
        if tuple(record.vector.shape) != (self.vector_dim,):
            raise ValueError(
                f"gossiped history for {record.peer!r} must have shape "
                f"({self.vector_dim},), got {tuple(record.vector.shape)}"
            )
        if not bool(torch.isfinite(record.vector).all()):
            raise ValueError(f"gossiped history for {record.peer!r} has non-finite values")
        if record.peer in (self.self_id, via):
            return False
        incoming = HistoryRecord(
            record.peer,
            record.vector.detach().to(torch.float32).clone(),
            record.round,
            record.hops + 1,
            via,
        )
        old = self._records.get(record.peer)
        if old is not None:
            if old.direct:
                return False
            if (incoming.round, -incoming.hops) <= (old.round, -old.hops):
                return False
        self._store(incoming)
        return True

    def _store(self, record: HistoryRecord) -> None:
        self._records[record.peer] = record
        if self.max_records is not None:
            while len(self._records) > self.max_records:
                self._evict(keep=record.peer)

    def _evict(self, keep: str) -> None:
        candidates = [r for r in self._records.values() if r.peer != keep]
        remote = [r for r in candidates if not r.direct]
        pool = remote if remote else candidates
        victim = min(pool, key=lambda r: (-r.hops, r.round, r.peer))
        del self._records[victim.peer]

    # -- gossip -------------------------------------------------------------------------
    def select_for_gossip(
        self,
        recipient: str,
        *,
        count: int | None = 1,
        p0: float = 1.0,
        decay: float = 0.8,
        generator: torch.Generator | None = None,
    ) -> list[HistoryRecord]:
        """Pick records to forward to ``recipient``.

        Records about the recipient or learned from it are never sent back. With
        ``count`` set, up to ``count`` records are drawn without replacement with weights
        :func:`forward_probability` (SybilWall's rule for ``count=1``); with
        ``count=None`` each record is forwarded independently with that probability.

        Parameters
        ----------
        recipient : str
            The neighbour the records go to.
        count : int or None, default 1
            Number of records to draw, or ``None`` for independent Bernoulli forwarding.
        p0, decay : float
            See :func:`forward_probability`.
        generator : torch.Generator or None, default None
            Randomness (seed it for deterministic simulations).
        """
        candidates = [
            r for r in self._records.values() if r.peer != recipient and r.via != recipient
        ]
        if not candidates:
            return []
        probs = torch.tensor(
            [forward_probability(r.hops, p0, decay) for r in candidates], dtype=torch.float64
        )
        if count is None:
            draws = torch.rand(len(candidates), generator=generator, dtype=torch.float64)
            return [r for r, u, p in zip(candidates, draws, probs, strict=True) if u < p]
        if count < 0:
            raise ValueError(f"count must be >= 0 or None, got {count}")
        positive = int((probs > 0).sum())
        take = min(count, positive)
        if take == 0:
            return []
        index = torch.multinomial(probs, take, replacement=False, generator=generator)
        return [candidates[i] for i in index.tolist()]

    # -- weights ------------------------------------------------------------------------
    def weights(
        self,
        peers: Sequence[str] | None = None,
        *,
        method: str = "foolsgold",
        confidence: float = 1.0,
    ) -> dict[str, float]:
        """Sybil weights of ``peers`` (default: all), scored against *all* known histories.

        Histories of non-neighbours (gossiped) take part in the similarity computation,
        which is how SybilWall catches Sybil twins that are not all neighbours of the
        holder; the returned dict has only the requested peers.
        """
        everyone = self.peers
        if not everyone:
            return {}
        weights = sybil_weights(self.matrix(everyone), method=method, confidence=confidence)
        by_peer = dict(zip(everyone, weights.tolist(), strict=True))
        chosen = everyone if peers is None else list(peers)
        missing = [p for p in chosen if p not in by_peer]
        if missing:
            raise KeyError(f"no history for peers {missing}")
        return {p: by_peer[p] for p in chosen}


def pairwise_cosine(vectors: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` cosine similarities of the rows, in float64; zero rows give 0."""
    if vectors.dim() != 2:
        raise ValueError(f"vectors must have shape (n, k), got {tuple(vectors.shape)}")
    x = vectors.to(torch.float64)
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    unit = torch.where(norms > 0, x / norms.clamp_min(1e-300), torch.zeros_like(x))
    return unit @ unit.T


def sybil_weights(
    histories: torch.Tensor, *, method: str = "foolsgold", confidence: float = 1.0
) -> torch.Tensor:
    """Per-peer weights in [0, 1] that fall as a peer's history resembles another's.

    Steps (FoolsGold [1]_, Algorithm 1, without its feature-importance reweighting):

    1. ``cs[i, j]`` = cosine similarity of histories i and j (self excluded);
       ``v[i] = max_j cs[i, j]``.
    2. Pardoning: if ``v[i] < v[j]``, ``cs[i, j] *= v[i] / v[j]`` -- an honest peer that
       happens to resemble a Sybil (whose twins make ``v[j]`` large) is not punished for
       it. The ratio is clipped to [0, 1] (a deviation from the paper for negative ``v``).
    3. ``a[i] = clip(1 - max_j cs[i, j], 0, 1)`` (values below 1e-9, float round-off of
       exact twins, are set to 0), then ``a /= max(a)``.
    4. ``method="foolsgold"``: ``w = clip(confidence * (ln(a / (1 - a)) + 0.5), 0, 1)``
       with ``a = 1`` replaced by 0.99 (the logit makes the split sharp: Sybils go to 0,
       honest peers saturate at 1). ``method="linear"``: ``w = a`` (a gentler score that
       is still decreasing in the max similarity).

    Parameters
    ----------
    histories : torch.Tensor
        ``(n, k)`` stack of accumulated (optionally sketched) updates.
    method : {"foolsgold", "linear"}, default "foolsgold"
    confidence : float, default 1.0
        FoolsGold's kappa (> 0); larger is sharper.

    Returns
    -------
    torch.Tensor
        ``(n,)`` float64 weights. A single history gets weight 1. If every history is
        identical to another (all ``a`` are 0), all weights are 0: there is no evidence
        to prefer anyone, and the caller should fall back on its own model.

    Notes
    -----
    The result is permutation-equivariant: permuting the rows permutes the weights.
    Honest nodes with near-identical (i.i.d.) data also look alike; FoolsGold assumes
    honest data are diverse enough to be told apart from coordinated Sybils.
    """
    if method not in SYBIL_METHODS:
        raise ValueError(f"method must be one of {SYBIL_METHODS}, got {method!r}")
    if not math.isfinite(confidence) or confidence <= 0.0:
        raise ValueError(f"confidence must be finite and > 0, got {confidence!r}")
    if histories.dim() != 2:
        raise ValueError(f"histories must have shape (n, k), got {tuple(histories.shape)}")
    if not bool(torch.isfinite(histories).all()):
        raise ValueError("histories contain non-finite values")
    n = histories.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    cs = pairwise_cosine(histories)
    eye = torch.eye(n, dtype=torch.bool)
    cs = cs.masked_fill(eye, -math.inf)
    v = cs.max(dim=1).values
    vi = v.unsqueeze(1)
    vj = v.unsqueeze(0)
    ratio = torch.where(
        (vi < vj) & (vj > 0), (vi.clamp_min(0.0) / vj.clamp_min(1e-300)).clamp(0.0, 1.0), 1.0
    )
    pardoned = (cs * ratio).masked_fill(eye, -math.inf)
    alpha = (1.0 - pardoned.max(dim=1).values).clamp(0.0, 1.0)
    # Exact twins have cosine 1 only up to float64 round-off; without this cut a 1e-16
    # residue would be normalised up to full weight when every peer has a twin.
    alpha = torch.where(alpha < _TWIN_TOLERANCE, torch.zeros_like(alpha), alpha)
    top = alpha.max()
    if top <= 0:
        return torch.zeros(n, dtype=torch.float64)
    alpha = alpha / top
    if method == "linear":
        return alpha
    alpha = torch.where(alpha >= 1.0, torch.full_like(alpha, 0.99), alpha)
    logit = torch.log(alpha / (1.0 - alpha))  # alpha = 0 gives -inf, i.e. weight 0
    weights = confidence * (logit + 0.5)
    return torch.nan_to_num(weights, nan=0.0, neginf=0.0, posinf=1.0).clamp(0.0, 1.0)


def _check_stack(updates: torch.Tensor, weights: torch.Tensor, rule: str) -> int:
    if updates.dim() != 2 or not updates.is_floating_point():
        raise ValueError(
            f"{rule}: updates must be a floating (n, d) tensor, "
            f"got {updates.dtype} {tuple(updates.shape)}"
        )
    n = updates.shape[0]
    if tuple(weights.shape) != (n,):
        raise ValueError(f"{rule}: weights must have shape ({n},), got {tuple(weights.shape)}")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"{rule}: weights must be finite and >= 0")
    return int(n)


def sybil_filter(
    updates: torch.Tensor, weights: torch.Tensor, *, threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop updates whose Sybil weight is below ``threshold`` (pre-filter for any rule).

    Compose as ``rule(kept, f=f_kept, ...)`` where ``kept, index = sybil_filter(...)``.
    The rule's f-vs-n precondition applies to the *kept* count; recompute f for it.

    Parameters
    ----------
    updates : torch.Tensor
        ``(n, d)`` updates, row i from the peer with weight ``weights[i]``.
    weights : torch.Tensor
        ``(n,)`` weights from :func:`sybil_weights`.
    threshold : float, default 0.5
        Keep rows with ``weight >= threshold``.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        The kept rows ``(m, d)`` and their indices ``(m,)`` (int64), possibly empty.
    """
    _check_stack(updates, weights, "sybil_filter")
    index = torch.nonzero(weights >= threshold).flatten()
    return updates[index], index


def sybil_weighted_mean(
    updates: torch.Tensor,
    *,
    f: int = 0,
    weights: torch.Tensor,
    reference: torch.Tensor | None = None,
    reference_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted mean of updates by Sybil weight, optionally anchored on the node's own.

    SybilWall's aggregation: neighbours' models weighted by their scores plus the node's
    own model with weight 1, normalised to sum 1. Signature matches ``aggregation.RULES``
    (``f`` is accepted for uniformity and unused: the weights, not a count, do the work).

    Parameters
    ----------
    updates : torch.Tensor
        ``(n, d)``.
    f : int, default 0
        Ignored (must be >= 0).
    weights : torch.Tensor
        ``(n,)`` non-negative weights.
    reference : torch.Tensor or None, default None
        The node's own ``(d,)`` vector, always included with ``reference_weight``.
    reference_weight : float, default 1.0

    Raises
    ------
    ValueError
        Shape mismatches, negative weights, or all weights zero with no reference.
    """
    n = _check_stack(updates, weights, "sybil_weighted_mean")
    if f < 0:
        raise ValueError(f"sybil_weighted_mean: f must be >= 0, got {f}")
    w = weights.to(torch.float64)
    total = w.sum()
    acc = (w.unsqueeze(1) * updates.to(torch.float64)).sum(dim=0) if n else None
    if reference is not None:
        if tuple(reference.shape) != (updates.shape[1],):
            raise ValueError(
                f"sybil_weighted_mean: reference must have shape "
                f"({updates.shape[1]},), got {tuple(reference.shape)}"
            )
        if not (math.isfinite(reference_weight) and reference_weight > 0):
            raise ValueError(f"reference_weight must be finite and > 0, got {reference_weight}")
        ref = reference.to(torch.float64) * reference_weight
        acc = ref if acc is None else acc + ref
        total = total + reference_weight
    if acc is None or total <= 0:
        raise ValueError("sybil_weighted_mean: every weight is zero and no reference was given")
    return (acc / total).to(updates.dtype)
