"""Pairwise squared distances of an update stack from one Gram matrix.

Every distance-based rule (Krum, multi-Krum, Bulyan, NNM, the geometric median's Weiszfeld
iterations) derives what it needs from ``G = x @ x.T``: ``||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij``.
The product is one BLAS call over the (n, d) stack; everything after it is O(n^2) work on a
tiny matrix, done in float64 so that the subtraction does not lose the small honest distances
next to huge Byzantine norms.

Numerical note: the Gram product itself runs in the input dtype. Cancellation grows with
``||x||^2 / ||x_i - x_j||^2``, so pass *updates* (deltas, or peers' models minus the node's own
model), not raw model weights that share a large common offset.
"""

from __future__ import annotations

import torch

from aggregation.chunks import column_blocks

__all__ = [
    "distances_to",
    "gram",
    "krum_scores",
    "pairwise_sq_distances",
    "sq_distances_from_gram",
]


def gram(updates: torch.Tensor) -> torch.Tensor:
    """Return the Gram matrix ``updates @ updates.T`` of shape ``(n, n)`` in float64.

    The product runs in the input dtype (one BLAS call); only the small result is promoted.
    It is symmetrised because BLAS may round ``G_ij`` and ``G_ji`` differently, and exact
    symmetry is what makes tied scores (mutual nearest neighbours) tie exactly.
    """
    g = (updates @ updates.T).to(torch.float64)
    return (g + g.T) * 0.5


def sq_distances_from_gram(g: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(n, n)`` from a Gram matrix, clamped at 0, zero diagonal."""
    diag = torch.diagonal(g)
    sq = diag[:, None] + diag[None, :] - 2.0 * g
    sq.clamp_(min=0.0)
    sq.fill_diagonal_(0.0)
    return sq


def pairwise_sq_distances(updates: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of an ``(n, d)`` stack, float64 ``(n, n)``."""
    return sq_distances_from_gram(gram(updates))


def krum_scores(sq: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Krum score of every row: sum of squared distances to its ``neighbours`` nearest others.

    Parameters
    ----------
    sq:
        ``(n, n)`` squared distances with zero diagonal.
    neighbours:
        How many nearest *other* vectors to sum (``n - f - 2`` for textbook Krum).

    Returns
    -------
    torch.Tensor
        ``(n,)`` float64 scores; lower is more central.
    """
    n = sq.shape[0]
    if neighbours <= 0:
        return torch.zeros(n, dtype=sq.dtype)
    masked = sq.clone()
    # The vector itself must not count as its own neighbour, even when duplicates exist.
    masked.fill_diagonal_(float("inf"))
    return torch.topk(masked, neighbours, dim=1, largest=False).values.sum(dim=1)


def distances_to(updates: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``||x_i - center||`` as float64 ``(n,)``, from direct differences.

    Unlike the Gram route this does not cancel when the rows share a large offset (full model
    weights around the node's own model), and it works on column blocks so the ``(n, d)``
    difference is never materialised.
    """
    n, d = updates.shape
    acc = torch.zeros(n, dtype=torch.float64)
    for cols in column_blocks(n, d):
        diff = updates[:, cols] - center[cols]
        acc += torch.linalg.vector_norm(diff, dim=1).to(torch.float64).square()
    return acc.sqrt()
