"""Coordinate-wise rules: mean, median, trimmed mean.

All three act on each coordinate independently, so they are permutation invariant and
translation equivariant. Median and trimmed mean keep every output coordinate inside the
honest values' range whenever the precondition holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from aggregation.chunks import column_blocks
from aggregation.preconditions import check_f, check_updates

__all__ = [
    "block_median",
    "block_trimmed_mean",
    "coordinate_median",
    "mean",
    "median",
    "trimmed_mean",
]


def mean(updates: torch.Tensor, *, f: int = 0, **_: Any) -> torch.Tensor:
    """Plain average (FedAvg with equal weights; McMahan et al. 2017). Not robust.

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Accepted for a uniform signature and only checked to be a non-negative int; the mean
        tolerates no Byzantine input at all (one vector can move it arbitrarily far).

    Returns
    -------
    torch.Tensor
        ``(d,)`` average of the rows.
    """
    n, _d = check_updates(updates, rule="mean")
    check_f(f, n, rule="mean", need="f >= 0", ok=True)
    return updates.mean(dim=0)


def _blocks(updates: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(cols, updates[:, cols])`` in column blocks (see :mod:`aggregation.chunks`)."""
    n, d = updates.shape
    for cols in column_blocks(n, d):
        yield cols, updates[:, cols]


def _as_numpy(block: torch.Tensor) -> np.ndarray | None:
    """Zero-copy numpy view of a CPU float32/float64 tensor, else ``None`` (torch fallback)."""
    if block.device.type == "cpu" and block.dtype in (torch.float32, torch.float64):
        return block.detach().numpy()
    return None


def block_median(block: torch.Tensor) -> torch.Tensor:
    """Median along dim 0 of ``(n, width)``; even ``n``: mean of the two middle values.

    numpy's ``partition`` places both middle order statistics in one introselect pass; torch
    has no multi-``k`` selection and needs two ``kthvalue`` calls. On the shared 2-core build
    machine the numpy path was 2-5x faster (bench/bench_aggregation_speed.py), so it is used
    for float32/float64 and torch is the fallback for other dtypes.
    """
    n = block.shape[0]
    lo_k, hi_k = (n - 1) // 2, n // 2
    arr = _as_numpy(block)
    if arr is not None:
        part = np.partition(arr, (lo_k, hi_k) if lo_k != hi_k else hi_k, axis=0)
        if lo_k == hi_k:
            return torch.from_numpy(part[hi_k].copy())
        return torch.from_numpy(part[lo_k] * 0.5 + part[hi_k] * 0.5)
    if n % 2 == 1:
        return torch.median(block, dim=0).values
    lower = torch.kthvalue(block, lo_k + 1, dim=0).values
    upper = torch.kthvalue(block, hi_k + 1, dim=0).values
    return lower * 0.5 + upper * 0.5


def block_trimmed_mean(block: torch.Tensor, b: int) -> torch.Tensor:
    """Mean of sorted positions ``b .. n-b-1`` along dim 0 of ``(n, width)``.

    One numpy ``partition`` with the two cut positions puts exactly the kept values between
    them (unsorted, which a mean does not need); torch falls back to a full sort. The kept values
    are summed directly, so huge trimmed outliers cannot cancel away precision.
    """
    n = block.shape[0]
    arr = _as_numpy(block)
    if arr is not None:
        part = np.partition(arr, (b, n - b - 1), axis=0)
        return torch.from_numpy(part[b : n - b].mean(axis=0))
    return torch.sort(block, dim=0).values[b : n - b].mean(dim=0)


def coordinate_median(updates: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median; for even ``n`` the average of the two middle values.

    This is numpy's and flwr's definition (``torch.median`` alone returns the lower one).
    No precondition checks; callers validate.
    """
    out = torch.empty(updates.shape[1], dtype=updates.dtype)
    for cols, block in _blocks(updates):
        out[cols] = block_median(block)
    return out


def median(updates: torch.Tensor, *, f: int = 0, **_: Any) -> torch.Tensor:
    """Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning", ICML 2018).

    Even ``n``: the average of the two middle values per coordinate (numpy/flwr definition),
    not ``torch.median``'s lower value.

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count. Precondition ``2f < n`` (default 0).

    Returns
    -------
    torch.Tensor
        ``(d,)``; each coordinate lies within the honest values' range when ``2f < n``.

    Raises
    ------
    PreconditionError
        If ``2f >= n``.
    """
    n, _d = check_updates(updates, rule="median")
    check_f(f, n, rule="median", need="2f < n", ok=2 * f < n)
    return coordinate_median(updates)


def trimmed_mean(
    updates: torch.Tensor, *, f: int = 0, trim: int | None = None, **_: Any
) -> torch.Tensor:
    """Coordinate-wise trimmed mean (Yin et al. 2018; ByzFL ``TrMean``).

    Per coordinate, drop the ``trim`` largest and ``trim`` smallest values and average the
    remaining ``n - 2 trim``.

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count (default 0).
    trim:
        Values cut at each end; defaults to ``f``. Must satisfy ``f <= trim`` and ``2 trim < n``.

    Returns
    -------
    torch.Tensor
        ``(d,)``; within the honest range per coordinate when ``f <= trim`` and ``2 trim < n``.

    Raises
    ------
    PreconditionError
        If ``2 trim >= n`` or ``trim < f``.
    """
    n, d = check_updates(updates, rule="trimmed_mean")
    b = f if trim is None else trim
    check_f(f, n, rule="trimmed_mean", need="2f < n", ok=2 * f < n)
    check_f(b, n, rule="trimmed_mean", need="f <= trim and 2*trim < n", ok=f <= b and 2 * b < n)
    if b == 0:
        return updates.mean(dim=0)
    out = torch.empty(d, dtype=updates.dtype)
    for cols, block in _blocks(updates):
        out[cols] = block_trimmed_mean(block, b)
    return out
