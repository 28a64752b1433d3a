"""Observed f: a robust rule pays for the Byzantine rows it sees, not for those it was told of.

A rule configured for ``f`` Byzantine peers trims, discards or clips about ``f`` rows of every
merge. On a gossip network a node merges only a handful of rows per round (its ``k`` sampled
peers plus those that sampled it, 4-9 at ``k = 3``), so with ``f = 2`` and no attacker the
rule throws away a large share of honest, heterogeneous rows every round and the network
mixes slower than with plain averaging (docs/aggregation.md, "Robust rules on real daemons").

:func:`observed_f` lowers ``f`` per merge to the number of rows that *look* Byzantine: those
farther from the node's own vector than ``factor`` times the median distance of the received
rows (at most ``f``; the median is an honest distance while fewer than half of the received
rows are Byzantine). With no attacker nothing is flagged and the rule runs with ``f = 0``,
which for ``mean``, ``trimmed_mean``, ``nnm+*`` and the clipping rules is the plain average.
A vector far enough to matter is flagged and meets the rule at full strength; one that stays
under the threshold enters the average with a pull on the merged model of at most
``factor * median / rows`` per attacker, the same order as one honest row's heterogeneity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["OUTLIER_FACTOR", "observed_f"]

#: Rows farther than this many median distances from our own vector count as Byzantine.
OUTLIER_FACTOR = 3.0


def observed_f(
    own: torch.Tensor,
    received: Sequence[torch.Tensor],
    f: int,
    *,
    factor: float = OUTLIER_FACTOR,
) -> int:
    """The ``f`` to run the rule with for this merge.

    Parameters
    ----------
    own : torch.Tensor
        (d,) this node's vector (the centre distances are measured from).
    received : sequence of torch.Tensor
        The peers' (d,) vectors of this merge.
    f : int
        The configured ``f`` (an upper bound: at most that many rows are flagged).
    factor : float, default OUTLIER_FACTOR
        Threshold in median distances.

    Returns
    -------
    int
        ``min(f, number of rows farther than factor * median distance)``; 0 without rows or
        with ``f = 0``.

    Raises
    ------
    ValueError
        If ``f`` is negative or ``factor`` is not a positive finite number.
    """
    if f < 0:
        raise ValueError(f"f must be >= 0, got {f}")
    if not (factor > 0 and factor < float("inf")):
        raise ValueError(f"factor must be positive and finite, got {factor}")
    if f == 0 or not received:
        return 0
    stack = torch.stack([r.to(torch.float64) for r in received])
    dist = torch.linalg.vector_norm(stack - own.to(torch.float64), dim=1)
    # Non-finite rows never reach a rule (hygiene); count them as flagged all the same.
    far = ~torch.isfinite(dist)
    finite = dist[~far]
    if finite.numel():
        far |= dist > factor * float(finite.median())
    return min(f, int(far.sum()))
