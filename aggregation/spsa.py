"""Robust combination of zeroth-order (SPSA) scalars.

In the zeroth-order learner a node publishes, per step, only ``(seed id, g)``: the projected
gradient scalar ``g`` along a perturbation ``z`` that every peer regenerates from the seed. The
model step is ``-lr * g * z``. Two seed schedules:

``per_node`` ("Just One Byte" style)
    Each node has its own seeds. Each scalar is bounded by :func:`clip_scalars` to
    ``[-C, C]``. Bound: one Byzantine node moves a peer's model by at most ``lr * C * ||z||``
    per step (``~ lr * C * sqrt(d)`` for ``z ~ N(0, I_d)``), along a direction fixed by its
    seed that it cannot choose; ``f`` of them by at most ``f`` times that, before any averaging
    over nodes divides it by the number of contributors.

``shared``
    All nodes of a round evaluate the same seeds on their own data, so for each seed there
    are ``n`` scalars to combine with :func:`combine_seed_scalars`:

    - ``median`` (``2f < n``): the combined scalar lies in ``[min, max]`` of the honest
      scalars for that seed, however large the Byzantine ones.
    - ``trimmed_mean`` (trim ``f``, ``2f < n``): also within the honest ``[min, max]``.
    - ``clipped_mean`` (clip to ``[-C, C]``, then mean): deviates from the mean of the honest
      clipped scalars by at most ``f * (C + |honest mean|) / n <= 2 f C / n``.

A Byzantine node cannot choose ``z`` (seeds derive from genesis seed, round, node id and step),
so in both modes its only lever is the scalar, which these functions bound.
"""

from __future__ import annotations

from typing import Literal

import torch

from aggregation.preconditions import PreconditionError, check_f

__all__ = ["SCALAR_MODES", "ScalarMode", "clip_scalars", "combine_seed_scalars"]

ScalarMode = Literal["median", "trimmed_mean", "clipped_mean"]
SCALAR_MODES: tuple[str, ...] = ("median", "trimmed_mean", "clipped_mean")


def _as_float_tensor(values: torch.Tensor, what: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{what}: non-finite scalar at index {first}")
    return t


def _check_bound(bound: float | None, what: str) -> float:
    if bound is None or not (0.0 < float(bound) < float("inf")):
        raise ValueError(f"{what}: bound must be finite and > 0, got {bound!r}")
    return float(bound)


def clip_scalars(values: torch.Tensor, bound: float) -> torch.Tensor:
    """Hard-bound per-node SPSA scalars to ``[-bound, bound]`` (the ``per_node`` mode).

    Parameters
    ----------
    values:
        Tensor of scalars, any shape.
    bound:
        ``C > 0``, finite.

    Returns
    -------
    torch.Tensor
        Clamped copy, same shape.

    Raises
    ------
    ValueError
        On a non-finite scalar (naming its index) or an invalid bound.
    """
    c = _check_bound(bound, "clip_scalars")
    return _as_float_tensor(values, "clip_scalars").clamp(-c, c)


def combine_seed_scalars(
    scalars: torch.Tensor,
    *,
    mode: ScalarMode = "median",
    f: int = 0,
    bound: float | None = None,
) -> torch.Tensor:
    """Combine the scalars ``n`` nodes reported for the same seeds (the ``shared`` mode).

    Parameters
    ----------
    scalars:
        ``(n,)`` for one seed or ``(n, s)`` for ``s`` seeds; row = node.
    mode:
        ``"median"`` (default; even ``n``: mean of the two middle values), ``"trimmed_mean"``
        (drop ``f`` at each end) or ``"clipped_mean"`` (clamp to ``[-bound, bound]``, then mean).
    f:
        Assumed Byzantine nodes. ``median``/``trimmed_mean`` require ``2f < n``;
        ``clipped_mean`` requires ``f < n``.
    bound:
        Clip bound ``C`` for ``clipped_mean`` (required there, ignored otherwise).

    Returns
    -------
    torch.Tensor
        ``()`` for 1-D input, ``(s,)`` otherwise.

    Raises
    ------
    ValueError
        On an unknown mode, non-finite scalars, a missing bound or a violated precondition.
    """
    t = _as_float_tensor(scalars, "combine_seed_scalars")
    if t.dim() not in (1, 2) or t.shape[0] < 1:
        raise ValueError(
            f"combine_seed_scalars: scalars must be (n,) or (n, s), got {tuple(t.shape)}"
        )
    n = t.shape[0]
    cols = t.reshape(n, -1)
    if mode == "median":
        check_f(f, n, rule="combine_seed_scalars(median)", need="2f < n", ok=2 * f < n)
        s = torch.sort(cols, dim=0).values
        out = (s[(n - 1) // 2] + s[n // 2]) * 0.5
    elif mode == "trimmed_mean":
        check_f(f, n, rule="combine_seed_scalars(trimmed_mean)", need="2f < n", ok=2 * f < n)
        out = torch.sort(cols, dim=0).values[f : n - f].mean(dim=0)
    elif mode == "clipped_mean":
        check_f(f, n, rule="combine_seed_scalars(clipped_mean)", need="f < n", ok=f < n)
        c = _check_bound(bound, "combine_seed_scalars(clipped_mean)")
        out = cols.clamp(-c, c).mean(dim=0)
    else:
        raise PreconditionError(
            f"combine_seed_scalars: unknown mode {mode!r}; expected one of {SCALAR_MODES}"
        )
    return out.reshape(t.shape[1:])
