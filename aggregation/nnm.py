"""Nearest-neighbour mixing (NNM) and composition of a pre-aggregator with a rule.

Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan, "Fixing by Mixing: A Recipe for
Optimal Byzantine ML under Heterogeneity", AISTATS 2023.

NNM replaces every vector by the average of its ``n - f`` nearest neighbours (itself included),
i.e. ``y = M @ x`` with a row-stochastic mixing matrix ``M`` built from one Gram matrix.

Composition (``compose(nnm, rule)`` and the ``"nnm+<rule>"`` entries of ``aggregation.RULES``)
avoids materialising the mixed ``(n, d)`` stack where the math allows:

- ``krum``, ``multi_krum``, ``geometric_median``, ``mean`` need only the mixed Gram matrix
  ``M G M^T`` and end with one weighted read ``(w @ M) @ x``;
- coordinate-wise rules (``median``, ``trimmed_mean``) are applied to ``M @ x[:, block]`` column
  block by column block, so the mixed stack never exists in full;
- any other rule gets the materialised ``M @ x``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aggregation.chunks import column_blocks
from aggregation.coordinatewise import mean, median, trimmed_mean
from aggregation.distances import gram, sq_distances_from_gram
from aggregation.geometric_median import _point_weights, geometric_median, weiszfeld_weights
from aggregation.krum import krum, krum_select, multi_krum
from aggregation.preconditions import PreconditionError, check_f, check_updates

__all__ = ["PreAggregator", "Rule", "compose", "nnm", "nnm_mixing"]

Rule = Callable[..., torch.Tensor]
PreAggregator = Callable[..., torch.Tensor]


def nnm_mixing(updates: torch.Tensor, f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NNM mixing matrix and the input Gram matrix.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``(M, G)``: ``M`` is ``(n, n)`` float64 with ``1 / (n - f)`` at each row's ``n - f``
        nearest neighbours (itself included, ties to the lowest index); ``G`` is the float64
        Gram matrix of ``updates``.
    """
    n = updates.shape[0]
    g = gram(updates)
    sq = sq_distances_from_gram(g)
    k = n - f
    # Self distance is 0; a tiny negative diagonal makes each vector pick itself first even
    # when exact duplicates exist, as the paper's definition requires.
    sq.fill_diagonal_(-1.0)
    idx = torch.topk(sq, k, dim=1, largest=False).indices
    m = torch.zeros(n, n, dtype=torch.float64)
    m.scatter_(1, idx, 1.0 / k)
    return m, g


def _check_nnm(updates: torch.Tensor, f: int, rule: str) -> int:
    n, _d = check_updates(updates, rule=rule)
    check_f(f, n, rule=rule, need="2f < n", ok=2 * f < n)
    return n


def nnm(updates: torch.Tensor, *, f: int = 0, **_: Any) -> torch.Tensor:
    """Nearest-neighbour mixing pre-aggregation (Allouah et al., AISTATS 2023).

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count. Precondition ``2f < n`` (default 0).

    Returns
    -------
    torch.Tensor
        ``(n, d)`` mixed stack: row ``i`` is the mean of the ``n - f`` rows nearest to row ``i``.

    Raises
    ------
    PreconditionError
        If ``2f >= n``.
    """
    _check_nnm(updates, f, "nnm")
    m, _g = nnm_mixing(updates, f)
    return m.to(updates.dtype) @ updates


def _nnm_then(rule: Rule, name: str) -> Rule:
    """Fast ``nnm`` + ``rule`` for rules that allow it (see module docstring)."""

    def composed(updates: torch.Tensor, *, f: int = 0, **params: Any) -> torch.Tensor:
        n = _check_nnm(updates, f, f"nnm+{name}")
        d = updates.shape[1]
        if rule in (krum, multi_krum, geometric_median, mean):
            # Validate the downstream precondition on the mixed stack's shape first.
            rule(torch.zeros(n, 1, dtype=updates.dtype), f=f, **params)
            m, g = nnm_mixing(updates, f)
            gm = m @ g @ m.T
            w = _gram_rule_weights(rule, gm, n, f, params)
            return (w @ m).to(updates.dtype) @ updates
        if rule in (median, trimmed_mean):
            rule(torch.zeros(n, 1, dtype=updates.dtype), f=f, **params)
            m, _g = nnm_mixing(updates, f)
            m32 = m.to(updates.dtype)
            out = torch.empty(d, dtype=updates.dtype)
            for cols in column_blocks(n, d):
                out[cols] = rule(m32 @ updates[:, cols], f=f, **params)
            return out
        return rule(nnm(updates, f=f), f=f, **params)

    composed.__name__ = f"nnm_{name}"
    composed.__qualname__ = composed.__name__
    composed.__doc__ = (
        f"NNM (Allouah et al., AISTATS 2023) followed by ``{name}``; "
        "preconditions of both apply.\n\nSee :func:`aggregation.nnm.compose`."
    )
    return composed


def _gram_rule_weights(
    rule: Rule, gm: torch.Tensor, n: int, f: int, params: dict[str, Any]
) -> torch.Tensor:
    """Row weights over the *mixed* vectors for the Gram-space rules."""
    if rule is mean:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule is geometric_median:
        alpha = _point_weights(params.get("weights"), n, rule="nnm+geometric_median")
        return weiszfeld_weights(
            gm,
            alpha,
            nu=params.get("nu", 1e-6),
            max_iter=params.get("max_iter", 100),
            ftol=params.get("ftol", 1e-10),
        )
    sq = sq_distances_from_gram(gm)
    keep = 1 if rule is krum else (params.get("m") or n - f)
    chosen = krum_select(sq, f, keep)
    w = torch.zeros(n, dtype=torch.float64)
    w[chosen] = 1.0 / keep
    return w


def compose(pre: PreAggregator, rule: Rule, *, name: str | None = None) -> Rule:
    """Compose a pre-aggregator ``(n, d) -> (n', d)`` with a rule ``(n', d) -> (d,)``.

    ``compose(nnm, r)`` for a built-in ``r`` returns the fused implementation described in the
    module docstring; anything else is the plain composition ``rule(pre(x, f=f), f=f, **params)``.
    Both receive the same ``f``; extra keyword parameters go to ``rule``.

    Parameters
    ----------
    pre:
        Pre-aggregator, e.g. :func:`nnm`.
    rule:
        Aggregation rule.
    name:
        Name used in error messages (default ``"<pre>+<rule>"``).
    """
    label = name or f"{getattr(pre, '__name__', 'pre')}+{getattr(rule, '__name__', 'rule')}"
    if pre is nnm:
        return _nnm_then(rule, getattr(rule, "__name__", label))

    def composed(updates: torch.Tensor, *, f: int = 0, **params: Any) -> torch.Tensor:
        mixed = pre(updates, f=f)
        if mixed.dim() != 2:
            raise PreconditionError(f"{label}: pre-aggregator must return (n, d)")
        return rule(mixed, f=f, **params)

    composed.__name__ = label.replace("+", "_")
    return composed
