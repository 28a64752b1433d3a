"""Bulyan: recursive Krum selection followed by a coordinate-wise trimmed average around the
median (El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed Learning in
Byzantium", ICML 2018).
"""

from __future__ import annotations

from typing import Any

import torch

from aggregation.chunks import column_blocks
from aggregation.coordinatewise import block_median
from aggregation.distances import krum_scores, pairwise_sq_distances
from aggregation.krum import order_by_score
from aggregation.preconditions import check_f, check_updates

__all__ = ["bulyan", "bulyan_select"]


def bulyan_select(sq: torch.Tensor, f: int) -> torch.Tensor:
    """Indices of the ``theta = n - 2f`` vectors Bulyan picks by repeated Krum.

    Each round applies Krum (``max(1, n' - f - 2)`` neighbours, the flwr convention for the
    small final sets) to the ``n'`` vectors not yet picked and moves the winner to the selection.
    All rounds reuse the one distance matrix ``sq``.
    """
    n = sq.shape[0]
    theta = n - 2 * f
    remaining = torch.arange(n)
    picked: list[int] = []
    for _ in range(theta):
        sub = sq[remaining][:, remaining]
        scores = krum_scores(sub, max(1, remaining.numel() - f - 2))
        best = int(order_by_score(scores, sub)[0])
        picked.append(int(remaining[best]))
        remaining = torch.cat([remaining[:best], remaining[best + 1 :]])
    return torch.tensor(picked, dtype=torch.long)


def bulyan(updates: torch.Tensor, *, f: int = 0, **_: Any) -> torch.Tensor:
    """Bulyan (El Mhamdi et al., ICML 2018) on top of Krum.

    1. Select ``theta = n - 2f`` vectors by recursive Krum (textbook ``n' - f - 2`` neighbours).
    2. Per coordinate, average the ``beta = theta - 2f`` selected values closest to the
       selected values' median (even-count median = mean of the two middle values).

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count. Precondition ``n >= 4f + 3`` (default 0).

    Returns
    -------
    torch.Tensor
        ``(d,)``.

    Raises
    ------
    PreconditionError
        If ``n < 4f + 3``.
    """
    n, d = check_updates(updates, rule="bulyan")
    check_f(f, n, rule="bulyan", need="n >= 4f + 3", ok=n >= 4 * f + 3)
    chosen = bulyan_select(pairwise_sq_distances(updates), f)
    selected = updates[chosen]
    theta = selected.shape[0]
    beta = theta - 2 * f
    out = torch.empty(d, dtype=updates.dtype)
    for cols in column_blocks(theta, d):
        block = selected[:, cols]
        med = block_median(block)
        closest = torch.topk((block - med).abs(), beta, dim=0, largest=False).indices
        out[cols] = torch.gather(block, 0, closest).mean(dim=0)
    return out
