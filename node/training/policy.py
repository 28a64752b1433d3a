"""What a node lets into a merge, and how it merges: one copy for the daemon and every simulation.

Pure functions and small frozen dataclasses, no I/O. The daemon
(:mod:`node.daemon.training_runtime`) calls them with what arrived over gRPC; the in-process
simulations (:mod:`node.sim.rounds`, :mod:`node.sim.byzantine`, :mod:`node.sim.sybil`) call
them with vectors they computed. A figure a simulation prints therefore comes from the same
decisions the daemon takes.

- :func:`admit_update`: a received vector may enter a merge only if it has the model's
  length, is finite and lies within ``max_norm`` of the node's own public model.
- :func:`aggregate_within_f`: run the rule, lowering ``f`` as far as the rows at hand need
  (a round that timed out with few updates), or keep the node's own vector.
- :func:`finite_or_own`: an unprotected rule can overflow; keep the node's own model then.
- :func:`merge`: the two above, in the order the daemon applies them.
- :func:`similarity_history`, :func:`sybil_filter`, :func:`unflagged`: the Sybil defence
  (FoolsGold weights over per-sender update histories, SybilWall's gossip of them) on
  receipt and on the choice of push targets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from aggregation.preconditions import PreconditionError
from aggregation.sybil import SimilarityHistory
from node.training.engine import Aggregate, RuleFn, aggregate_round
from node.training.robust_defaults import observed_f

__all__ = [
    "HISTORY_MAX_RECORDS",
    "HISTORY_SKETCH_ABOVE",
    "HISTORY_SKETCH_DIM",
    "Merge",
    "Refusal",
    "SybilVerdict",
    "admit_update",
    "aggregate_within_f",
    "finite_or_own",
    "local_or_base",
    "merge",
    "similarity_history",
    "sybil_filter",
    "unflagged",
]

#: Models with more parameters than this keep count-sketched histories (memory per sender).
HISTORY_SKETCH_ABOVE = 4096
#: Width of the count sketch of a large model's update history.
HISTORY_SKETCH_DIM = 2048
#: Histories (own and gossiped) one node keeps at most; a key-rich attacker cannot grow it.
HISTORY_MAX_RECORDS = 4096


@dataclass(frozen=True)
class Refusal:
    """Why a received vector may not enter a merge.

    Attributes
    ----------
    reason : str
        ``"bad_shape"``, ``"nonfinite"`` or ``"norm_exceeded"`` (the daemon's rejection codes).
    detail : str
        One human-readable line.
    """

    reason: str
    detail: str


def admit_update(
    vector: torch.Tensor,
    reference: torch.Tensor,
    *,
    numel: int,
    max_norm: float | None = None,
) -> Refusal | None:
    """Check one received vector before it may enter a merge.

    Parameters
    ----------
    vector : torch.Tensor
        The received model (or delta) vector.
    reference : torch.Tensor
        What it is compared with: the receiver's own public model (its last release or
        merge), never a model in mid-training.
    numel : int
        Length of the receiver's model vector.
    max_norm : float or None, default None
        Bound on ``||vector - reference||``; ``None`` or ``inf``: no bound.

    Returns
    -------
    Refusal or None
        ``None`` if the vector is admitted; the first failed check otherwise, in the order
        shape, finiteness, distance.
    """
    if not vector.is_floating_point() or vector.dim() != 1 or vector.numel() != numel:
        return Refusal(
            "bad_shape", f"shape {tuple(vector.shape)} {vector.dtype} != expected ({numel},) float"
        )
    if not bool(torch.isfinite(vector).all()):
        return Refusal("nonfinite", "update contains NaN or Inf")
    if max_norm is None:
        return None
    distance = float(torch.linalg.vector_norm(vector - reference))
    # Written so that a NaN distance is refused too.
    if not distance <= max_norm:
        return Refusal("norm_exceeded", f"vector is {distance:.3g} from ours, limit {max_norm:g}")
    return None


def aggregate_within_f(
    action: Aggregate, rules: Mapping[str, RuleFn] | None = None
) -> tuple[torch.Tensor, int | None]:
    """Run the rule; with too few rows for its ``f``, lower ``f`` as far as it needs.

    A round that timed out with few updates (say 3 rows under median with f = 2) breaks
    the rule's precondition; raising would leave the round engine waiting for this
    aggregation forever. The largest ``f >= 1`` the rule accepts for this many rows keeps
    what robustness is possible; if even ``f = 1`` is refused, the node keeps its own
    vector for the round rather than merge peers unprotected.

    Parameters
    ----------
    action : Aggregate
        The engine's action (own vector, received rows, rule, ``f``, parameters).
    rules : mapping or None, default None
        Rule table (default ``aggregation.RULES``).

    Returns
    -------
    (torch.Tensor, int or None)
        The merged vector and the ``f`` it was computed with; ``None`` when the rule
        refused every ``f`` and the result is the node's own vector only.
    """
    f = action.f
    while True:
        try:
            return aggregate_round(dataclasses.replace(action, f=f), rules), f
        except PreconditionError:
            if f <= 1:
                break
            f -= 1
    return aggregate_round(dataclasses.replace(action, received=()), rules), None


def finite_or_own(merged: torch.Tensor, action: Aggregate) -> tuple[torch.Tensor, bool]:
    """Keep the node's own model when the merged one is not finite.

    Each admitted row was finite, but an unprotected rule (the mean under IPM, say) can
    grow the model until it overflows; a node then keeps its own model for the round
    rather than carry NaN/Inf into training.

    Parameters
    ----------
    merged : torch.Tensor
        The rule's result.
    action : Aggregate
        The round's action (its ``own``, and ``base`` for the ``delta`` payload).

    Returns
    -------
    (torch.Tensor, bool)
        The vector to adopt, and whether the fallback replaced ``merged``.
    """
    if bool(torch.isfinite(merged).all()):
        return merged, False
    if action.payload == "delta" and action.base is not None:
        return action.base + action.own, True
    return action.own.clone(), True


def local_or_base(trained: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The round's local result, or the pre-training model when training diverged.

    A model that a huge (finite) merge pushed far off (the mean under IPM, say) can train
    into NaN/Inf. Such a result is never released: the daemon keeps its public model and
    stays silent for the round (no release, nothing debited), the simulations carry the
    pre-training model into the merge. Either way the node's rounds go on.

    Parameters
    ----------
    trained : torch.Tensor
        The model (or update) local training produced.
    base : torch.Tensor
        What the node had before training (same length).

    Returns
    -------
    (torch.Tensor, bool)
        The vector to continue with, and whether training diverged (``base`` returned).
    """
    if bool(torch.isfinite(trained).all()):
        return trained, False
    return base.clone(), True


@dataclass(frozen=True, eq=False)
class Merge:
    """Outcome of :func:`merge`.

    Attributes
    ----------
    vector : torch.Tensor
        The model the node adopts for the next round.
    f : int or None
        The ``f`` the rule ran with (``None``: too few rows, own vector kept).
    requested_f : int
        The ``f`` the action asked for.
    nonfinite : bool
        The rule's result was not finite and the node kept its own model.
    """

    vector: torch.Tensor
    f: int | None
    requested_f: int
    nonfinite: bool

    @property
    def kept_own(self) -> bool:
        """Whether the rule refused every ``f`` for these rows (own vector only)."""
        return self.f is None


def merge(
    action: Aggregate, rules: Mapping[str, RuleFn] | None = None, *, observed: bool = False
) -> Merge:
    """Merge a round: :func:`aggregate_within_f`, then :func:`finite_or_own`.

    Parameters
    ----------
    action : Aggregate
        The round's action, after admission and the Sybil filter.
    rules : mapping or None, default None
        Rule table (default ``aggregation.RULES``).
    observed : bool, default False
        Lower the rule's ``f`` first to the rows that look Byzantine
        (:func:`node.training.robust_defaults.observed_f`; genesis
        ``aggregation.observed_f``): 0 without an attacker, i.e. the plain rule's cost
        is paid only when outliers are present.

    Returns
    -------
    Merge
    """
    if observed and action.f is not None:
        lowered = observed_f(action.own, [r.vector for r in action.received], action.f)
        action = dataclasses.replace(action, f=lowered)
    merged, f = aggregate_within_f(action, rules)
    vector, fell_back = finite_or_own(merged, action)
    return Merge(vector, f, action.f, fell_back)


def similarity_history(numel: int, *, seed: int, self_id: str) -> SimilarityHistory:
    """The per-sender update history one node keeps for its Sybil weights.

    Parameters
    ----------
    numel : int
        Length of the model vector.
    seed : int
        Genesis seed (the count sketch is the same on every node).
    self_id : str
        This node's id: gossiped records about itself are not stored.

    Returns
    -------
    SimilarityHistory
        Count-sketched to :data:`HISTORY_SKETCH_DIM` when ``numel`` exceeds
        :data:`HISTORY_SKETCH_ABOVE`, at most :data:`HISTORY_MAX_RECORDS` records.
    """
    return SimilarityHistory(
        numel,
        sketch_dim=min(numel, HISTORY_SKETCH_DIM) if numel > HISTORY_SKETCH_ABOVE else None,
        seed=seed,
        self_id=self_id,
        max_records=HISTORY_MAX_RECORDS,
    )


@dataclass(frozen=True)
class SybilVerdict:
    """Outcome of :func:`sybil_filter`.

    Attributes
    ----------
    kept, dropped : tuple of int
        Indices into the ``senders`` given, in their order.
    weights : dict
        Sender -> Sybil weight in [0, 1].
    """

    kept: tuple[int, ...]
    dropped: tuple[int, ...]
    weights: Mapping[str, float]


def sybil_filter(
    history: SimilarityHistory,
    senders: Sequence[str],
    vectors: Sequence[torch.Tensor],
    *,
    base: torch.Tensor,
    round_idx: int,
    threshold: float,
) -> SybilVerdict:
    """Accumulate each sender's update in ``history`` and drop suspiciously similar senders.

    A sender's update is estimated as its vector minus the receiver's own pre-training
    base of the round (model payloads carry the peer's model, not its delta). Weights are
    FoolsGold's over every history known (own and gossiped), so Sybil twins that are not
    all neighbours of this node are caught too.

    Parameters
    ----------
    history : SimilarityHistory
        This node's histories; updated in place.
    senders, vectors : sequences of equal length
        Who sent what this round.
    base : torch.Tensor
        The receiver's model at the start of the round.
    round_idx : int
        The round.
    threshold : float
        Senders whose weight is below this are dropped (genesis ``sybil_threshold``).

    Returns
    -------
    SybilVerdict
    """
    if len(senders) != len(vectors):
        raise ValueError(f"{len(senders)} senders but {len(vectors)} vectors")
    if not senders:
        return SybilVerdict((), (), {})
    for sender, vec in zip(senders, vectors, strict=True):
        history.add_update(sender, vec - base, round_idx)
    weights = history.weights(list(senders))
    kept = tuple(i for i, s in enumerate(senders) if weights[s] >= threshold)
    dropped = tuple(i for i, s in enumerate(senders) if weights[s] < threshold)
    return SybilVerdict(kept, dropped, weights)


def unflagged(
    candidates: Sequence[str], history: SimilarityHistory, *, threshold: float
) -> list[str]:
    """Leave out of ``candidates`` the members whose Sybil weight is below ``threshold``.

    Pushing an update to a Sybil wastes it: with many Sybil identities in the view, most
    of an honest node's fan-out would go to them. Members without a history are kept.

    Parameters
    ----------
    candidates : sequence of str
        Push targets drawn from the view, in draw order (kept).
    history : SimilarityHistory
        This node's histories (not modified).
    threshold : float
        Genesis ``sybil_threshold``.

    Returns
    -------
    list of str
        The candidates not flagged, in their order.
    """
    known = [p for p in candidates if p in history]
    if not known:
        return list(candidates)
    weights = history.weights(known)
    return [p for p in candidates if weights.get(p, 1.0) >= threshold]
