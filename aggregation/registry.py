"""Name -> rule registry (``aggregation.RULES``) and pre-aggregators.

Every entry has the signature ``rule(updates: Tensor (n, d), *, f: int, **params) -> Tensor (d,)``.

Composition with NNM: for every base rule ``r`` there is an entry ``"nnm+r"``
(``compose(nnm, r)``). ``RULES["nnm"]`` is NNM followed by the rule named by its ``then=``
parameter (default ``"trimmed_mean"``, the combination of Allouah et al. and the best row of our
ByzFL anchor table), so that it too returns a ``(d,)`` vector. The bare pre-aggregator that
returns the mixed ``(n, d)`` stack is ``PRE_AGGREGATORS["nnm"]``.
"""

from __future__ import annotations

from typing import Any

import torch

from aggregation.bristle import bristle
from aggregation.bulyan import bulyan
from aggregation.clipping import centered_clipping, self_centered_clipping
from aggregation.coordinatewise import mean, median, trimmed_mean
from aggregation.geometric_median import geometric_median
from aggregation.krum import krum, multi_krum
from aggregation.names import BASE_RULE_NAMES, NNM, PRE_AGGREGATOR_NAMES, composed_name
from aggregation.nnm import PreAggregator, Rule, compose, nnm
from aggregation.preconditions import PreconditionError

__all__ = ["BASE_RULES", "PRE_AGGREGATORS", "RULES", "get_rule"]

_BASE_FUNCTIONS: dict[str, Rule] = {
    "mean": mean,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "multi_krum": multi_krum,
    "geometric_median": geometric_median,
    "centered_clipping": centered_clipping,
    "bulyan": bulyan,
    "self_centered_clipping": self_centered_clipping,
    "bristle": bristle,
}
_PRE_FUNCTIONS: dict[str, PreAggregator] = {NNM: nnm}
# Genesis validation trusts aggregation.names without importing this module: a rule added
# here but not there (or the reverse) must fail at import, not when a network uses it.
if set(_BASE_FUNCTIONS) != set(BASE_RULE_NAMES) or set(_PRE_FUNCTIONS) != set(PRE_AGGREGATOR_NAMES):
    raise ImportError(
        "aggregation.names and aggregation.registry disagree: "
        f"{sorted(set(_BASE_FUNCTIONS) ^ set(BASE_RULE_NAMES))} "
        f"{sorted(set(_PRE_FUNCTIONS) ^ set(PRE_AGGREGATOR_NAMES))}"
    )

BASE_RULES: dict[str, Rule] = {name: _BASE_FUNCTIONS[name] for name in BASE_RULE_NAMES}

PRE_AGGREGATORS: dict[str, PreAggregator] = {
    name: _PRE_FUNCTIONS[name] for name in PRE_AGGREGATOR_NAMES
}

_NNM_COMPOSED: dict[str, Rule] = {
    composed_name(NNM, name): compose(nnm, rule, name=composed_name(NNM, name))
    for name, rule in BASE_RULES.items()
}


def nnm_then(
    updates: torch.Tensor, *, f: int = 0, then: str = "trimmed_mean", **params: Any
) -> torch.Tensor:
    """NNM (Allouah et al., AISTATS 2023) followed by the base rule named ``then``.

    Parameters
    ----------
    updates:
        ``(n, d)`` floating tensor.
    f:
        Assumed Byzantine count; NNM needs ``2f < n``, plus whatever ``then`` needs.
    then:
        Name in :data:`BASE_RULES` (default ``"trimmed_mean"``).
    **params:
        Passed to ``then``.

    Raises
    ------
    PreconditionError
        On an unknown ``then`` or a violated precondition.
    """
    if then not in BASE_RULES:
        raise PreconditionError(f"nnm: unknown then={then!r}; known: {sorted(BASE_RULES)}")
    return _NNM_COMPOSED[composed_name(NNM, then)](updates, f=f, **params)


RULES: dict[str, Rule] = {**BASE_RULES, NNM: nnm_then, **_NNM_COMPOSED}


def get_rule(name: str) -> Rule:
    """Look up a rule by name with a clear error listing the known names."""
    try:
        return RULES[name]
    except KeyError:
        raise PreconditionError(
            f"unknown aggregation rule {name!r}; known: {sorted(RULES)}"
        ) from None
