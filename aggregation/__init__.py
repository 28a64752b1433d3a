"""fednode aggregation: Byzantine-robust rules, hygiene, variance correction, SPSA scalar
combination and evaluation attacks. Pure torch; imports nothing from ``node`` or gRPC.

Public entry point: :data:`RULES`, name -> ``rule(updates (n, d), *, f, **params) -> (d,)``.
"""

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
    "PRE_AGGREGATORS",
    "RULES",
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
