"""Bristle-style aggregation: distance-based prioritiser plus performance-based integrator.

Verbraeken, de Vos, Pouwelse, "Bristle: Decentralized Federated Learning in Byzantine,
Non-i.i.d. Environments" (2021). Bristle's node keeps the peers' vectors closest to its own
(prioritiser), then weighs each candidate by how well it performs on the node's local validation
data relative to the node's own model (integrator), so a Byzantine majority cannot outvote the
node's own evidence. This is a torch-only simplification: the node supplies ``score_fn`` (e.g.
accuracy of the candidate vector on local validation data, possibly per-class averaged); the
paper's per-class weighting and transfer-learning split live in that callable, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aggregation.distances import distances_to
from aggregation.preconditions import (
    PreconditionError,
    check_f,
    check_reference,
    check_updates,
)

__all__ = ["bristle"]


def bristle(
    updates: torch.Tensor,
    *,
    f: int = 0,
    reference: torch.Tensor | None = None,
    score_fn: Callable[[torch.Tensor], float] | None = None,
    keep: int | None = None,
    tolerance: float = 0.05,
    **_: Any,
) -> torch.Tensor:
    """Bristle (Verbraeken et al., 2021): prioritise by distance, integrate by local score.

    1. Prioritiser: keep the ``keep`` rows closest (Euclidean) to ``reference``.
    2. Integrator: ``s_ref = score_fn(reference)``, ``s_j = score_fn(x_j)``; candidate weight
       ``max(0, s_j - s_ref + tolerance)`` (candidates worse than the node's own vector by more
       than ``tolerance`` get weight 0); the node's own vector gets weight ``tolerance``.
       The result is the weighted average; if every weight is 0 it is ``reference``.

    Parameters
    ----------
    updates:
        ``(n, d)`` peers' vectors, the same kind (model or update) as ``reference``.
    f:
        Assumed Byzantine count. Precondition ``f < n`` (at least one candidate survives the
        prioritiser); robustness beyond that rests on ``score_fn``, not on an honest majority.
    reference:
        The node's own vector ``(d,)``. Required.
    score_fn:
        Callable scoring a ``(d,)`` vector on local validation data, higher is better (for
        instance accuracy in [0, 1]). Required. Must return a finite float.
    keep:
        Candidates kept by the prioritiser; default ``n - f``.
    tolerance:
        Score slack (default 0.05, in ``score_fn`` units) and the own vector's weight.

    Returns
    -------
    torch.Tensor
        ``(d,)``.

    Raises
    ------
    PreconditionError
        On a missing reference or ``score_fn``, ``f >= n``, bad ``keep``/``tolerance``, or a
        non-finite score.
    """
    n, d = check_updates(updates, rule="bristle")
    check_f(f, n, rule="bristle", need="f < n", ok=f < n)
    ref = check_reference(reference, d, rule="bristle").to(updates.dtype)
    if score_fn is None or not callable(score_fn):
        raise PreconditionError("bristle: needs score_fn=, a callable scoring a (d,) vector")
    k = n - f if keep is None else keep
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise PreconditionError(f"bristle: keep must be an int in [1, n={n}], got {keep!r}")
    if not (isinstance(tolerance, int | float) and 0.0 <= tolerance < float("inf")):
        raise PreconditionError(f"bristle: tolerance must be finite and >= 0, got {tolerance!r}")

    dist = distances_to(updates, ref)
    candidates = torch.sort(dist, stable=True).indices[:k]
    own = _score(score_fn, ref)
    weights = torch.zeros(n, dtype=torch.float64)
    for j in candidates.tolist():
        weights[j] = max(0.0, _score(score_fn, updates[j]) - own + tolerance)
    total = float(weights.sum()) + tolerance
    if total <= 0.0:
        return ref.clone()
    weights /= total
    return ref * (tolerance / total) + weights.to(updates.dtype) @ updates


def _score(score_fn: Callable[[torch.Tensor], float], vector: torch.Tensor) -> float:
    value = float(score_fn(vector))
    if value != value or value in (float("inf"), float("-inf")):
        raise PreconditionError(f"bristle: score_fn returned a non-finite value {value}")
    return value
