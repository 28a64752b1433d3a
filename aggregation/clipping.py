"""Clipping-based rules: centered clipping and self-centered clipping (ClippedGossip).

Both move a centre ``v`` by the average of the inputs' differences from ``v``, each difference
clipped to norm ``tau``. Distances are computed from direct differences in column blocks (see
:func:`aggregation.distances.distances_to`), so full model weights that share a large offset
are handled without cancellation, and the result is assembled as ``v * (1 - sum c) + c @ x``
with one weighted read of the stack.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregation.distances import distances_to
from aggregation.preconditions import (
    PreconditionError,
    check_f,
    check_reference,
    check_updates,
)

__all__ = ["adaptive_radius", "centered_clipping", "clip_factors", "self_centered_clipping"]


def adaptive_radius(dist: torch.Tensor, f: int) -> float:
    """Radius that clips exactly the ``f`` farthest inputs: the ``(f + 1)``-th largest distance.

    With ``f = 0`` this is the largest distance, i.e. nothing is clipped. With ``f >= n`` it is
    0 and every input is clipped to the centre.
    """
    n = dist.shape[0]
    if f >= n:
        return 0.0
    return float(torch.topk(dist, f + 1).values[-1])


def clip_factors(dist: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-row factors ``min(1, tau / ||x_i - v||)`` (1 for rows at the centre), float64."""
    safe = dist.clamp(min=1e-300)
    return torch.where(dist > tau, tau / safe, torch.ones_like(dist))


def _check_tau(tau: float | None, rule: str) -> None:
    if tau is not None and not (isinstance(tau, int | float) and tau >= 0.0 and tau < float("inf")):
        raise PreconditionError(f"{rule}: tau must be a finite non-negative number, got {tau!r}")


def centered_clipping(
    updates: torch.Tensor,
    *,
    f: int = 0,
    tau: float | None = None,
    iterations: int = 1,
    reference: torch.Tensor | None = None,
    **_: Any,
) -> torch.Tensor:
    """Centered clipping (Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
    Optimization", ICML 2021).

    ``v <- v + (1/n) sum_i clip_tau(x_i - v)``, repeated ``iterations`` times from
    ``v = reference`` (the previous aggregate / momentum in the paper; zeros if omitted, as in
    ByzFL).

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count. Precondition ``2f < n`` (default 0); the paper's guarantee
        needs the Byzantine fraction below a small constant.
    tau:
        Clipping radius. ``None`` (default) picks it adaptively at each iteration as the
        ``(f + 1)``-th largest distance to the current centre, so the ``f`` farthest inputs are
        clipped. ByzFL's fixed default is ``tau=100``.
    iterations:
        Number of clipping iterations ``L`` (default 1, as in the paper's experiments).
    reference:
        Starting centre ``(d,)``; default zeros.

    Returns
    -------
    torch.Tensor
        ``(d,)``.

    Raises
    ------
    PreconditionError
        If ``2f >= n``, ``tau`` is negative or ``iterations < 1``.
    """
    n, d = check_updates(updates, rule="centered_clipping")
    check_f(f, n, rule="centered_clipping", need="2f < n", ok=2 * f < n)
    _check_tau(tau, "centered_clipping")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise PreconditionError(
            f"centered_clipping: iterations must be an int >= 1, got {iterations!r}"
        )
    if reference is None:
        v = torch.zeros(d, dtype=updates.dtype)
    else:
        v = check_reference(reference, d, rule="centered_clipping").to(updates.dtype)
    for _step in range(iterations):
        dist = distances_to(updates, v)
        radius = adaptive_radius(dist, f) if tau is None else float(tau)
        c = clip_factors(dist, radius) / n
        v = v * (1.0 - float(c.sum())) + c.to(updates.dtype) @ updates
    return v


def self_centered_clipping(
    updates: torch.Tensor,
    *,
    f: int = 0,
    reference: torch.Tensor | None = None,
    tau: float | None = None,
    weights: torch.Tensor | None = None,
    **_: Any,
) -> torch.Tensor:
    """Self-centered clipping, the ClippedGossip rule (He, Karimireddy, Jaggi, "Byzantine-Robust
    Decentralized Learning via ClippedGossip", 2022).

    ``x_i' = x_i + sum_j W_ij clip_tau(x_j - x_i)`` where ``x_i`` is the node's own vector
    (``reference``) and ``x_j`` are its neighbours' vectors (rows of ``updates``). The node's
    own gossip weight is ``1 - sum_j W_ij``.

    Parameters
    ----------
    updates:
        ``(n, d)`` neighbours' vectors (models or updates; the same kind as ``reference``).
    f:
        Assumed Byzantine neighbours. Precondition ``2f < n + 1``: the Byzantine neighbours
        are a strict minority of the closed neighbourhood (the node plus its ``n`` neighbours).
    reference:
        The node's own vector ``(d,)``. Required.
    tau:
        Clipping radius. ``None`` (default): adaptive, the practical rule of the paper with
        uniform gossip weights -- the radius is the ``(f + 1)``-th largest neighbour distance,
        so the clipped neighbours' total weight equals the assumed Byzantine weight ``f * W``.
    weights:
        Gossip weights ``W_ij`` for the neighbours, ``(n,)`` non-negative with sum <= 1;
        default ``1 / (n + 1)`` each (uniform over the closed neighbourhood).

    Returns
    -------
    torch.Tensor
        ``(d,)`` the node's new vector.

    Raises
    ------
    PreconditionError
        If ``reference`` is missing or malformed, ``2f >= n + 1``, or ``weights`` is invalid.
    """
    n, d = check_updates(updates, rule="self_centered_clipping")
    check_f(f, n, rule="self_centered_clipping", need="2f < n + 1", ok=2 * f < n + 1)
    ref = check_reference(reference, d, rule="self_centered_clipping").to(updates.dtype)
    _check_tau(tau, "self_centered_clipping")
    if weights is None:
        w = torch.full((n,), 1.0 / (n + 1), dtype=torch.float64)
    else:
        w = torch.as_tensor(weights, dtype=torch.float64)
        ok = w.shape == (n,) and bool(torch.isfinite(w).all()) and bool((w >= 0).all())
        if not ok or float(w.sum()) > 1.0 + 1e-9:
            raise PreconditionError(
                f"self_centered_clipping: weights must be {n} non-negative values summing to <= 1"
            )
    dist = distances_to(updates, ref)
    radius = adaptive_radius(dist, f) if tau is None else float(tau)
    c = clip_factors(dist, radius) * w
    return ref * (1.0 - float(c.sum())) + c.to(updates.dtype) @ updates
