"""Attacks: shapes and definitions."""

from __future__ import annotations

from statistics import NormalDist

import pytest
import torch

from aggregation import ATTACKS, RULES, label_flip, with_byzantine
from aggregation.attacks import alie_default_z, line_search


def honest_stack(h: int = 10, d: int = 6) -> torch.Tensor:
    return torch.randn(h, d, generator=torch.Generator().manual_seed(0)) + 1.0


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("f", [0, 1, 3])
def test_shapes(name: str, f: int) -> None:
    out = ATTACKS[name](honest_stack(), f=f)
    assert out.shape == (f, 6)
    assert out.dtype == torch.float32


def test_definitions() -> None:
    x = honest_stack()
    mu, sd = x.mean(0), x.std(0)
    assert torch.allclose(ATTACKS["sign_flip"](x, f=2), -mu.expand(2, -1))
    assert torch.allclose(ATTACKS["ipm"](x, f=2), -0.1 * mu.expand(2, -1))
    assert torch.allclose(ATTACKS["ipm"](x, f=1, eps=100.0)[0], -100.0 * mu)
    assert torch.allclose(ATTACKS["alie"](x, f=2, z=1.5)[1], mu - 1.5 * sd)
    assert torch.equal(ATTACKS["mimic"](x, f=2, target=3), x[3].expand(2, -1))
    assert bool(torch.isposinf(ATTACKS["inf"](x, f=1)).all())
    assert bool(torch.isnan(ATTACKS["nan"](x, f=1)).all())


def test_alie_default_z_follows_the_paper_formula() -> None:
    # n = 12, f = 2: s = floor(12/2 + 1) - 2 = 5, z = Phi^-1((12 - 5) / 12)
    assert alie_default_z(12, 2) == pytest.approx(NormalDist().inv_cdf(7 / 12))
    assert alie_default_z(12, 2) == pytest.approx(0.2104, abs=1e-3)
    x = honest_stack()
    expected = x.mean(0) - alie_default_z(12, 2) * x.std(0)
    assert torch.allclose(ATTACKS["alie"](x, f=2)[0], expected)


def test_gaussian_is_reproducible_and_has_the_requested_scale() -> None:
    x = torch.zeros(4, 20_000)
    a = ATTACKS["gaussian"](x, f=2, sigma=100.0, generator=torch.Generator().manual_seed(1))
    b = ATTACKS["gaussian"](x, f=2, sigma=100.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(100.0, rel=0.02)
    assert abs(a.mean().item()) < 2.0


def test_line_search_finds_the_maximum_of_a_concave_function() -> None:
    best = line_search(lambda t: -((t - 37.0) ** 2), evals=40)
    assert best == pytest.approx(37.0, abs=1.0)


def damage(rule: str, honest: torch.Tensor, byz: torch.Tensor, f: int) -> float:
    out = RULES[rule](torch.cat([honest, byz]), f=f)
    return float((out - honest.mean(0)).norm())


@pytest.mark.parametrize("rule", ["mean", "trimmed_mean", "median"])
def test_optimal_attacks_do_at_least_as_much_damage_as_fixed_ones(rule: str) -> None:
    x, f = honest_stack(), 2
    opt_ipm = ATTACKS["optimal_ipm"](x, f=f, rule=rule)
    opt_alie = ATTACKS["optimal_alie"](x, f=f, rule=rule)
    assert damage(rule, x, opt_ipm, f) >= damage(rule, x, ATTACKS["ipm"](x, f=f), f) - 1e-6
    assert damage(rule, x, opt_alie, f) >= damage(rule, x, ATTACKS["alie"](x, f=f), f) - 1e-6
    # the optimal IPM is still an IPM vector: a negative multiple of the honest mean
    ratio = opt_ipm[0] / x.mean(0)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)


def test_optimal_ipm_against_a_callable_rule() -> None:
    x = honest_stack()
    out = ATTACKS["optimal_ipm"](x, f=2, rule=RULES["krum"], evals=5)
    assert out.shape == (2, 6)


def test_label_flip() -> None:
    y = torch.tensor([0, 1, 9, 4])
    assert torch.equal(label_flip(y, 10), torch.tensor([9, 8, 0, 5]))
    with pytest.raises(ValueError, match="lie in"):
        label_flip(torch.tensor([10]), 10)
    with pytest.raises(ValueError, match="integer"):
        label_flip(torch.tensor([1.0]), 10)


def test_with_byzantine() -> None:
    x = honest_stack()
    stacked = with_byzantine(x, f=2, attack="sign_flip")
    assert stacked.shape == (12, 6)
    assert torch.equal(stacked[:10], x)
    assert torch.allclose(stacked[10], -x.mean(0))
    opt = with_byzantine(x, f=2, attack="optimal_alie", rule="trimmed_mean", evals=5)
    assert opt.shape == (12, 6)
    with pytest.raises(ValueError, match="needs the defender's rule"):
        with_byzantine(x, f=2, attack="optimal_ipm")
    with pytest.raises(ValueError, match="unknown attack"):
        with_byzantine(x, f=2, attack="nope")
