"""Names of the aggregation rules, without torch.

Reading a genesis file validates its rule name, and that must not import torch (seconds
and about 200 MB for every CLI call). The registry (:mod:`aggregation.registry`) builds
:data:`~aggregation.RULES` from these names and refuses to load if a name lacks its
function or a function its name, so the two cannot disagree.
"""

from __future__ import annotations

__all__ = [
    "BASE_RULE_NAMES",
    "NNM",
    "PRE_AGGREGATOR_NAMES",
    "RULE_NAMES",
    "composed_name",
]

BASE_RULE_NAMES: tuple[str, ...] = (
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "centered_clipping",
    "bulyan",
    "self_centered_clipping",
    "bristle",
)
"""Rules that map ``(n, d)`` updates to one ``(d,)`` vector on their own."""

NNM = "nnm"
"""Nearest-neighbour mixing: a pre-aggregator, and also a rule (NNM then a base rule)."""

PRE_AGGREGATOR_NAMES: tuple[str, ...] = (NNM,)
"""Pre-aggregators: ``(n, d)`` -> ``(n, d)``, composed in front of a base rule."""


def composed_name(pre: str, rule: str) -> str:
    """Registry name of pre-aggregator ``pre`` followed by base rule ``rule``: ``"pre+rule"``."""
    return f"{pre}+{rule}"


RULE_NAMES: frozenset[str] = frozenset(
    (
        *BASE_RULE_NAMES,
        NNM,
        *(composed_name(pre, rule) for pre in PRE_AGGREGATOR_NAMES for rule in BASE_RULE_NAMES),
    )
)
"""Every key of ``aggregation.RULES``: the base rules, ``nnm`` and each ``nnm+<base rule>``."""
