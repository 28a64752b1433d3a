"""Krum and multi-Krum from one Gram matrix.

Definition used: the textbook one (Blanchard et al., NeurIPS 2017) that flwr also implements:
each vector is scored by the sum of squared distances to its ``n - f - 2`` nearest *other*
vectors. (ByzFL averages over ``n - f - 1`` neighbours instead.) Exact score ties go to the
vector with the smaller total squared distance to all others (a permutation-invariant
tie-break), then to the lower index.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregation.distances import krum_scores, pairwise_sq_distances
from aggregation.preconditions import PreconditionError, check_f, check_updates

__all__ = ["krum", "krum_select", "multi_krum", "order_by_score"]


def krum_select(sq: torch.Tensor, f: int, m: int) -> torch.Tensor:
    """Indices of the ``m`` lowest Krum scores (``n - f - 2`` neighbours), best first.

    Parameters
    ----------
    sq:
        ``(n, n)`` squared distances with zero diagonal.
    f:
        Assumed Byzantine count.
    m:
        How many indices to return, ``1 <= m <= n``.
    """
    n = sq.shape[0]
    return order_by_score(krum_scores(sq, n - f - 2), sq)[:m]


def order_by_score(scores: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """Indices sorted by ``scores``; exact ties broken by the total squared distance to all
    others (then by index).

    Exact ties are common in small sets (two mutual nearest neighbours share a 1-neighbour
    score); breaking them by a property of the vectors rather than their position keeps the
    rules permutation invariant.
    """
    secondary = torch.sort(sq.sum(dim=1), stable=True).indices
    primary = torch.sort(scores[secondary], stable=True).indices
    return secondary[primary]


def krum(updates: torch.Tensor, *, f: int = 0, **_: Any) -> torch.Tensor:
    """Krum (Blanchard et al., "Machine Learning with Adversaries", NeurIPS 2017).

    Returns the input vector whose ``n - f - 2`` nearest neighbours are closest in summed
    squared distance (textbook/flwr definition; ByzFL uses ``n - f - 1``). Exact score ties
    go to the vector with the smaller total squared distance to all others.

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count. Precondition ``n >= 2f + 3`` (default 0).

    Returns
    -------
    torch.Tensor
        ``(d,)``, a copy of one input row.

    Raises
    ------
    PreconditionError
        If ``n < 2f + 3``.
    """
    n, _d = check_updates(updates, rule="krum")
    check_f(f, n, rule="krum", need="n >= 2f + 3", ok=n >= 2 * f + 3)
    best = krum_select(pairwise_sq_distances(updates), f, 1)
    return updates[int(best[0])].clone()


def multi_krum(
    updates: torch.Tensor, *, f: int = 0, m: int | None = None, **_: Any
) -> torch.Tensor:
    """Multi-Krum (El Mhamdi et al., ICML 2018; Blanchard et al. 2017): average of the ``m``
    vectors with the lowest Krum scores (``n - f - 2`` neighbours).

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count. Precondition ``n >= 2f + 3`` (default 0).
    m:
        How many vectors to average; defaults to ``n - f`` (ByzFL's choice). ``1 <= m <= n``.

    Returns
    -------
    torch.Tensor
        ``(d,)`` average of the selected rows.

    Raises
    ------
    PreconditionError
        If ``n < 2f + 3`` or ``m`` is out of range.
    """
    n, _d = check_updates(updates, rule="multi_krum")
    check_f(f, n, rule="multi_krum", need="n >= 2f + 3", ok=n >= 2 * f + 3)
    keep = n - f if m is None else m
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= n:
        raise PreconditionError(f"multi_krum: m must be an int in [1, n={n}], got {m!r}")
    chosen = krum_select(pairwise_sq_distances(updates), f, keep)
    weights = torch.zeros(n, dtype=updates.dtype)
    weights[chosen] = 1.0 / keep
    # One weighted read of the stack instead of gathering the chosen rows into a copy.
    return weights @ updates
