"""fednode aggregation: Byzantine-robust rules, hygiene, variance correction, SPSA scalar
combination and evaluation attacks. Pure torch; imports nothing from ``node`` or gRPC.

Public entry point: :data:`RULES`, name -> ``rule(updates (n, d), *, f, **params) -> (d,)``.

The rule names (:mod:`aggregation.names`) are importable without torch; everything else is
loaded from its module on first access. Importing this package therefore costs nothing
until a rule is used, and genesis validation can check a rule name without torch (importing
the rules costs 13-15 s and 226 MB of resident memory on a 2-core machine at load 22,
measured with ``/usr/bin/time -f "%e s %M KB" python -c "import aggregation"`` before
this package was made lazy).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from aggregation.names import BASE_RULE_NAMES, PRE_AGGREGATOR_NAMES, RULE_NAMES

if TYPE_CHECKING:
    from aggregation.attacks import ATTACKS, label_flip, with_byzantine
    from aggregation.bristle import bristle
    from aggregation.bulyan import bulyan
    from aggregation.clipping import centered_clipping, self_centered_clipping
    from aggregation.coordinatewise import mean, median, trimmed_mean
    from aggregation.geometric_median import geometric_median, geometric_median_objective
    from aggregation.hygiene import Rejection, SanitizeResult, sanitize
    from aggregation.krum import krum, multi_krum
    from aggregation.nnm import compose, nnm
    from aggregation.preconditions import PreconditionError
    from aggregation.registry import BASE_RULES, PRE_AGGREGATORS, RULES, get_rule
    from aggregation.spsa import SCALAR_MODES, clip_scalars, combine_seed_scalars
    from aggregation.variance import variance_corrected_layer, variance_corrected_mean

__all__ = [
    "ATTACKS",
    "BASE_RULES",
    "BASE_RULE_NAMES",
    "PRE_AGGREGATORS",
    "PRE_AGGREGATOR_NAMES",
    "RULES",
    "RULE_NAMES",
    "SCALAR_MODES",
    "PreconditionError",
    "Rejection",
    "SanitizeResult",
    "bristle",
    "bulyan",
    "centered_clipping",
    "clip_scalars",
    "combine_seed_scalars",
    "compose",
    "geometric_median",
    "geometric_median_objective",
    "get_rule",
    "krum",
    "label_flip",
    "mean",
    "median",
    "multi_krum",
    "nnm",
    "sanitize",
    "self_centered_clipping",
    "trimmed_mean",
    "variance_corrected_layer",
    "variance_corrected_mean",
    "with_byzantine",
]

# Public name -> the module that defines it (all of them import torch).
_LAZY: dict[str, str] = {
    **dict.fromkeys(("ATTACKS", "label_flip", "with_byzantine"), "aggregation.attacks"),
    "bristle": "aggregation.bristle",
    "bulyan": "aggregation.bulyan",
    **dict.fromkeys(("centered_clipping", "self_centered_clipping"), "aggregation.clipping"),
    **dict.fromkeys(("mean", "median", "trimmed_mean"), "aggregation.coordinatewise"),
    **dict.fromkeys(
        ("geometric_median", "geometric_median_objective"), "aggregation.geometric_median"
    ),
    **dict.fromkeys(("Rejection", "SanitizeResult", "sanitize"), "aggregation.hygiene"),
    **dict.fromkeys(("krum", "multi_krum"), "aggregation.krum"),
    **dict.fromkeys(("compose", "nnm"), "aggregation.nnm"),
    "PreconditionError": "aggregation.preconditions",
    **dict.fromkeys(("BASE_RULES", "PRE_AGGREGATORS", "RULES", "get_rule"), "aggregation.registry"),
    **dict.fromkeys(("SCALAR_MODES", "clip_scalars", "combine_seed_scalars"), "aggregation.spsa"),
    **dict.fromkeys(
        ("variance_corrected_layer", "variance_corrected_mean"), "aggregation.variance"
    ),
}


class _Face(types.ModuleType):
    """This package's module type: a submodule never hides the function of its name.

    Importing ``aggregation.krum`` binds the attribute ``krum`` of this package to the
    submodule; the eager face used to rebind it to the function right after. Lazily, that
    rebinding would not happen, so the binding is refused: ``aggregation.krum`` stays the
    function, as it always was (the submodule is still in ``sys.modules``).
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


sys.modules[__name__].__class__ = _Face
