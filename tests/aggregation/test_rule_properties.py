"""Property tests (hypothesis): permutation invariance, translation equivariance, and that
f Byzantine vectors at 1e6 cannot drag a robust rule outside the honest bounding box."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import RULES

SETTINGS = settings(max_examples=25, deadline=None)

# Rules whose result does not depend on input order (ties have probability 0 on random data).
PERMUTATION_INVARIANT = [
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "centered_clipping",
    "bulyan",
    "self_centered_clipping",
    "nnm+trimmed_mean",
    "nnm+median",
    "nnm+krum",
    "nnm+multi_krum",
    "nnm+geometric_median",
    "nnm+centered_clipping",
]

# rule(x + t) == rule(x) + t. Clipping rules qualify only when their reference moves too.
TRANSLATION_EQUIVARIANT = [
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "bulyan",
    "self_centered_clipping",
    "centered_clipping",
    "nnm+trimmed_mean",
    "nnm+median",
    "nnm+krum",
    "nnm+multi_krum",
    "nnm+geometric_median",
]

# Rules that promise to stay inside the honest vectors' coordinate-wise bounding box.
BOX_RULES = [
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "bulyan",
    "nnm+trimmed_mean",
    "nnm",
]


def stack(seed: int, n: int, d: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def params_for(name: str, x: torch.Tensor, seed: int) -> dict[str, Any]:
    if "clipping" in name:
        g = torch.Generator().manual_seed(seed + 1)
        return {"reference": torch.randn(x.shape[1], generator=g, dtype=x.dtype)}
    return {}


@SETTINGS
@given(
    name=st.sampled_from(PERMUTATION_INVARIANT),
    seed=st.integers(0, 10_000),
    d=st.integers(1, 6),
)
def test_permutation_invariance(name: str, seed: int, d: int) -> None:
    n, f = 11, 2
    x = stack(seed, n, d)
    params = params_for(name, x, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a = RULES[name](x, f=f, **params)
    b = RULES[name](x[perm], f=f, **params)
    assert torch.allclose(a, b, atol=1e-9, rtol=1e-9)


@SETTINGS
@given(
    name=st.sampled_from(TRANSLATION_EQUIVARIANT),
    seed=st.integers(0, 10_000),
    d=st.integers(1, 6),
    shift=st.floats(-100.0, 100.0),
)
def test_translation_equivariance(name: str, seed: int, d: int, shift: float) -> None:
    n, f = 11, 2
    x = stack(seed, n, d)
    t = torch.linspace(-1.0, 1.0, d, dtype=torch.float64) * shift
    params = params_for(name, x, seed)
    shifted = {k: v + t for k, v in params.items()}
    a = RULES[name](x, f=f, **params) + t
    b = RULES[name](x + t, f=f, **shifted)
    assert torch.allclose(a, b, atol=1e-6, rtol=1e-6)


@SETTINGS
@given(
    name=st.sampled_from(BOX_RULES),
    seed=st.integers(0, 10_000),
    d=st.integers(1, 8),
    f=st.integers(1, 2),
    extra=st.integers(0, 3),
    spread=st.booleans(),
)
def test_outliers_stay_outside_honest_box(
    name: str, seed: int, d: int, f: int, extra: int, spread: bool
) -> None:
    h = 3 * f + 3 + extra  # n = h + f >= 4f + 3 satisfies every rule in BOX_RULES
    honest = stack(seed, h, d)
    if spread:
        signs = torch.where(stack(seed + 7, f, d) > 0, 1.0, -1.0).to(torch.float64)
        byz = 1e6 * signs
    else:
        byz = torch.full((f, d), 1e6, dtype=torch.float64)
    x = torch.cat([honest, byz]).to(torch.float32)
    out = RULES[name](x, f=f).to(torch.float64)
    lo, hi = honest.min(dim=0).values, honest.max(dim=0).values
    tol = 1e-4
    assert bool((out >= lo - tol).all() and (out <= hi + tol).all()), (out, lo, hi)


@SETTINGS
@given(seed=st.integers(0, 10_000), d=st.integers(1, 8), f=st.integers(1, 3))
def test_geometric_median_stays_near_honest_vectors(seed: int, d: int, f: int) -> None:
    # The geometric median is not confined to the box, but with 2f < n its distance from the
    # honest points is bounded independently of the outliers: check it stays within the honest
    # points' radius around their mean.
    h = 2 * f + 3
    honest = stack(seed, h, d)
    x = torch.cat([honest, torch.full((f, d), 1e6, dtype=torch.float64)]).to(torch.float32)
    out = RULES["geometric_median"](x, f=f).to(torch.float64)
    center = honest.mean(dim=0)
    radius = (honest - center).norm(dim=1).max()
    assert float((out - center).norm()) <= float(radius)
