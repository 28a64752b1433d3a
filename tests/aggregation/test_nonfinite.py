"""Every rule in ``aggregation.RULES`` refuses non-finite input with a clear ValueError.

One NaN or Inf anywhere (one coordinate of one row, or the reference of the clipping
rules) must never come back as a silently poisoned aggregate (property tests, hypothesis).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import RULES

SETTINGS = settings(max_examples=40, deadline=None)
BAD = [math.nan, math.inf, -math.inf]


def _needs_reference(name: str) -> bool:
    return "clipping" in name or "bristle" in name


def _params(name: str, d: int, dtype: torch.dtype) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if _needs_reference(name):
        params["reference"] = torch.zeros(d, dtype=dtype)
    if "bristle" in name:  # Bristle scores candidates on local data: any finite score here
        params["score_fn"] = lambda v: -float(v.norm())
    return params


@SETTINGS
@given(
    name=st.sampled_from(sorted(RULES)),
    seed=st.integers(0, 10_000),
    d=st.integers(1, 12),
    row=st.integers(0, 10),
    col=st.integers(0, 11),
    bad=st.sampled_from(BAD),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_a_nonfinite_coordinate_is_refused(
    name: str, seed: int, d: int, row: int, col: int, bad: float, dtype: torch.dtype
) -> None:
    n = 11  # enough rows for every rule's f-vs-n precondition with f=1
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    x[row % n, col % d] = bad
    with pytest.raises(ValueError, match="finite"):
        RULES[name](x, f=1, **_params(name, d, dtype))


@SETTINGS
@given(
    name=st.sampled_from(sorted(n for n in RULES if _needs_reference(n))),
    col=st.integers(0, 7),
    bad=st.sampled_from(BAD),
)
def test_a_nonfinite_reference_is_refused(name: str, col: int, bad: float) -> None:
    x = torch.randn(11, 8, generator=torch.Generator().manual_seed(col), dtype=torch.float64)
    ref = torch.zeros(8, dtype=torch.float64)
    ref[col] = bad
    with pytest.raises(ValueError, match="finite"):
        RULES[name](x, f=1, **{**_params(name, 8, torch.float64), "reference": ref})


@pytest.mark.parametrize("name", sorted(RULES))
def test_finite_input_still_aggregates_to_a_finite_vector(name: str) -> None:
    x = torch.randn(11, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = RULES[name](x, f=1, **_params(name, 6, torch.float64))
    assert out.shape == (6,) and bool(torch.isfinite(out).all())
