"""Differential privacy for fednode: clipping, the Gaussian mechanism, accounting, budgets.

Pure functions only (torch, numpy, the standard library and dp-accounting); the durable
ledger that persists releases lives in ``node/`` and calls :class:`PrivacyBudget`.
See ``docs/privacy.md`` for the sensitivity argument.
"""

from privacy.accounting import (
    ACCOUNTANTS,
    Release,
    compose_releases,
    epsilon,
    epsilon_of_releases,
    noise_multiplier_for,
)
from privacy.budget import BudgetExceeded, PrivacyBudget
from privacy.clipping import (
    ClippedTensors,
    ClippedUpdate,
    clip_scalars,
    clip_tensors,
    clip_update,
    clip_vector,
    l2_norm,
)
from privacy.noise import (
    PrivatizedTensors,
    PrivatizedUpdate,
    add_gaussian_noise,
    fresh_generator,
    noise_std,
    privatize_scalars,
    privatize_update,
    secure_normal,
    secure_uniform,
)

__all__ = [
    "ACCOUNTANTS",
    "BudgetExceeded",
    "ClippedTensors",
    "ClippedUpdate",
    "PrivacyBudget",
    "PrivatizedTensors",
    "PrivatizedUpdate",
    "Release",
    "add_gaussian_noise",
    "clip_scalars",
    "clip_tensors",
    "clip_update",
    "clip_vector",
    "compose_releases",
    "epsilon",
    "epsilon_of_releases",
    "fresh_generator",
    "l2_norm",
    "noise_multiplier_for",
    "noise_std",
    "privatize_scalars",
    "privatize_update",
    "secure_normal",
    "secure_uniform",
]
