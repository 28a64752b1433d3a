"""Robust combination of SPSA scalars and the per-node hard bound."""

from __future__ import annotations

import pytest
import torch

from aggregation import clip_scalars, combine_seed_scalars


def test_median_and_trimmed_mean_stay_in_the_honest_range() -> None:
    g = torch.Generator().manual_seed(0)
    honest = torch.randn(9, 50, generator=g, dtype=torch.float64)
    byz = torch.full((4, 50), 1e9, dtype=torch.float64)
    scalars = torch.cat([honest, byz])
    lo, hi = honest.min(0).values, honest.max(0).values
    for mode in ("median", "trimmed_mean"):
        out = combine_seed_scalars(scalars, mode=mode, f=4)
        assert out.shape == (50,)
        assert bool(((out >= lo) & (out <= hi)).all()), mode


def test_clipped_mean_deviation_bound() -> None:
    honest = torch.tensor([0.5, -0.2, 0.1, 0.3, 0.0, 0.4], dtype=torch.float64)
    f, c = 2, 1.0
    scalars = torch.cat([honest, torch.tensor([1e6, 1e6], dtype=torch.float64)])
    out = combine_seed_scalars(scalars, mode="clipped_mean", f=f, bound=c)
    assert out.shape == ()
    n = scalars.numel()
    assert abs(out.item() - honest.mean().item()) <= 2 * f * c / n
    assert out.item() == pytest.approx((honest.sum().item() + 2 * c) / n)


def test_even_median_and_single_seed() -> None:
    assert combine_seed_scalars(torch.tensor([1.0, 2.0, 3.0, 10.0]), f=1).item() == 2.5


def test_clip_scalars() -> None:
    out = clip_scalars(torch.tensor([-5.0, 0.5, 7.0]), 1.0)
    assert torch.equal(out, torch.tensor([-1.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"non-finite scalar at index \(1,\)"):
        clip_scalars(torch.tensor([0.0, float("nan")]), 1.0)
    with pytest.raises(ValueError, match="bound"):
        clip_scalars(torch.tensor([0.0]), 0.0)


def test_combine_errors() -> None:
    with pytest.raises(ValueError, match="requires 2f < n"):
        combine_seed_scalars(torch.zeros(4), mode="median", f=2)
    with pytest.raises(ValueError, match="bound"):
        combine_seed_scalars(torch.zeros(4), mode="clipped_mean", f=1)
    with pytest.raises(ValueError, match="unknown mode"):
        combine_seed_scalars(torch.zeros(4), mode="max", f=1)  # type: ignore[arg-type]
