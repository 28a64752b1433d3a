"""Each rule against small hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from aggregation import RULES, nnm
from aggregation.clipping import adaptive_radius


def col(*values: float) -> torch.Tensor:
    """1-D points as an (n, 1) stack."""
    return torch.tensor(values, dtype=torch.float64).unsqueeze(1)


def test_mean() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(RULES["mean"](x, f=0), torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((1.0, 5.0, 2.0), 2.0),  # odd n: middle value
        ((1.0, 2.0, 10.0, 3.0), 2.5),  # even n: mean of the two middle values (numpy/flwr)
        ((1.0, 1.0, 1.0, 5.0), 1.0),  # ties at the lower middle value
        ((7.0, 1.0, 7.0, 7.0), 7.0),  # ties at the upper middle value
    ],
)
def test_median_even_and_odd(values: tuple[float, ...], expected: float) -> None:
    assert RULES["median"](col(*values), f=1).item() == pytest.approx(expected)


def test_median_is_per_coordinate() -> None:
    x = torch.tensor([[1.0, 40.0], [2.0, 10.0], [3.0, 30.0], [100.0, 20.0]])
    assert torch.allclose(RULES["median"](x, f=1), torch.tensor([2.5, 25.0]))


def test_trimmed_mean() -> None:
    x = torch.tensor([[1.0, -50.0], [2.0, 0.0], [3.0, 1.0], [100.0, 2.0]])
    # per column drop the min and the max: (2 + 3) / 2 and (0 + 1) / 2
    assert torch.allclose(RULES["trimmed_mean"](x, f=1), torch.tensor([2.5, 0.5]))
    # trim larger than f is allowed and cuts more
    x5 = col(0.0, 1.0, 2.0, 3.0, 100.0)
    assert RULES["trimmed_mean"](x5, f=1, trim=2).item() == pytest.approx(2.0)


def test_krum_textbook_definition_differs_from_byzfl() -> None:
    # Points 0, 1, 2, 10, 11 with f=1. Textbook Krum sums the n-f-2 = 2 nearest squared
    # distances: scores 5, 2, 5, 65, 82 -> picks 1. ByzFL's n-f-1 = 3 neighbours would give
    # 105, 83, 69, ... and pick 2 instead.
    x = col(0.0, 1.0, 2.0, 10.0, 11.0)
    assert RULES["krum"](x, f=1).item() == 1.0


def test_multi_krum() -> None:
    x = col(0.0, 1.0, 2.0, 10.0, 11.0)
    # scores 5, 2, 5, 65, 82: best three are 1, 0, 2
    assert RULES["multi_krum"](x, f=1, m=3).item() == pytest.approx(1.0)
    # default m = n - f = 4 also takes 10
    assert RULES["multi_krum"](x, f=1).item() == pytest.approx(13.0 / 4.0)


def test_geometric_median_collinear_and_square() -> None:
    # On a line the geometric median of an odd set is its median.
    assert RULES["geometric_median"](col(0.0, 1.0, 10.0), f=1).item() == pytest.approx(
        1.0, abs=1e-4
    )
    square = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(RULES["geometric_median"](square, f=1), torch.tensor([1.0, 1.0]).double())


def test_geometric_median_fermat_point_of_triangle() -> None:
    # Triangle (0,0), (1,0), (0,1): all angles < 120 deg, Fermat point at
    # ((3 - sqrt 3) / 6 ... ) -- check it satisfies the first-order condition instead.
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z = RULES["geometric_median"](x, f=1, max_iter=1000, ftol=0.0)
    units = (x - z) / (x - z).norm(dim=1, keepdim=True)
    assert units.sum(dim=0).norm().item() < 1e-5
    assert z[0].item() == pytest.approx(z[1].item())


def test_geometric_median_weights() -> None:
    # With weight 3 on one point of three, that point is the weighted geometric median.
    x = col(0.0, 1.0, 10.0)
    z = RULES["geometric_median"](x, f=0, weights=torch.tensor([3.0, 1.0, 1.0]))
    assert z.item() == pytest.approx(0.0, abs=1e-4)


def test_centered_clipping_one_step() -> None:
    x = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    out = RULES["centered_clipping"](x, f=0, tau=1.0)
    # (3,0) clipped to (1,0); (0,0.5) is inside the radius; mean from centre 0
    assert torch.allclose(out, torch.tensor([0.5, 0.25]))
    out2 = RULES["centered_clipping"](x, f=0, tau=1.0, reference=torch.tensor([1.0, 0.0]))
    # from centre (1,0): diffs (2,0)->(1,0), (-1,0.5) norm 1.118 -> scaled by 1/1.118
    d2 = torch.tensor([-1.0, 0.5]) / math.hypot(1.0, 0.5)
    assert torch.allclose(out2, torch.tensor([1.0, 0.0]) + (torch.tensor([1.0, 0.0]) + d2) / 2)


def test_self_centered_clipping_fixed_and_adaptive_radius() -> None:
    ref = torch.zeros(2)
    x = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    fixed = RULES["self_centered_clipping"](x, f=0, reference=ref, tau=2.0)
    # ref + 1/3 * (2, 0) + 1/3 * (0, 1)
    assert torch.allclose(fixed, torch.tensor([2.0 / 3.0, 1.0 / 3.0]))
    adaptive = RULES["self_centered_clipping"](x, f=1, reference=ref)
    # adaptive radius = 2nd largest distance = 1: (4,0) -> (1,0)
    assert torch.allclose(adaptive, torch.tensor([1.0 / 3.0, 1.0 / 3.0]))
    weighted = RULES["self_centered_clipping"](
        x, f=0, reference=ref, tau=10.0, weights=torch.tensor([0.5, 0.25])
    )
    assert torch.allclose(weighted, torch.tensor([2.0, 0.25]))


def test_adaptive_radius() -> None:
    d = torch.tensor([1.0, 5.0, 3.0, 4.0], dtype=torch.float64)
    assert adaptive_radius(d, 0) == 5.0
    assert adaptive_radius(d, 2) == 3.0
    assert adaptive_radius(d, 4) == 0.0


def test_bulyan() -> None:
    # n=7, f=1, theta=5, beta=3. Recursive Krum (n'-f-2 neighbours, at least 1) picks 2; then
    # 1 and 3 tie (score 14) and 3 wins on total squared distance (5472 < 5896); then 1
    # (score 10); then 0 and 4 tie (16) and 4 wins; then 50 and 60 tie (100) and 50 wins.
    # Selection {2, 3, 1, 4, 50}: median 3, the 3 values closest to it are 2, 3, 4 -> 3.
    x = col(0.0, 1.0, 2.0, 3.0, 4.0, 50.0, 60.0)
    assert RULES["bulyan"](x, f=1).item() == pytest.approx(3.0)
    # Byzantine 50 and 60 replaced by -1000 and 1000: they never survive the trimming.
    x2 = col(0.0, 1.0, 2.0, 3.0, 4.0, -1000.0, 1000.0)
    assert 0.0 <= RULES["bulyan"](x2, f=1).item() <= 4.0


def test_nnm_mixing_by_hand() -> None:
    x = col(0.0, 1.0, 2.0, 10.0)
    mixed = nnm(x, f=1)
    assert torch.allclose(mixed.squeeze(1), torch.tensor([1.0, 1.0, 1.0, 13.0 / 3.0]).double())


def test_nnm_rules_match_materialised_composition() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 7, generator=g, dtype=torch.float64)
    x[:2] += 50.0
    mixed = nnm(x, f=2)
    for base in ("mean", "median", "trimmed_mean", "krum", "multi_krum", "geometric_median"):
        fused = RULES[f"nnm+{base}"](x, f=2)
        plain = RULES[base](mixed, f=2)
        assert torch.allclose(fused, plain, atol=1e-6), base
    assert torch.allclose(RULES["nnm"](x, f=2), RULES["trimmed_mean"](mixed, f=2))
    assert torch.allclose(RULES["nnm"](x, f=2, then="median"), RULES["median"](mixed, f=2))


def test_bristle_prioritise_then_integrate() -> None:
    ref = torch.zeros(2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    target = torch.tensor([1.0, 0.0])

    def score(v: torch.Tensor) -> float:
        return -float((v - target).norm())

    # keep 2 closest (rows 0, 1). scores: own -1, row0 0, row1 -sqrt(2).
    # weights: row0 0 - (-1) + 0.1 = 1.1, row1 max(0, -0.414 + 0.1) = 0, own 0.1.
    out = RULES["bristle"](x, f=1, reference=ref, score_fn=score, tolerance=0.1)
    assert torch.allclose(out, torch.tensor([1.1 / 1.2, 0.0]))


def test_bristle_falls_back_to_own_vector() -> None:
    ref = torch.tensor([1.0, 1.0])
    x = torch.tensor([[5.0, 5.0], [6.0, 6.0]])
    out = RULES["bristle"](x, f=0, reference=ref, score_fn=lambda v: -float(v.sum()), tolerance=0.0)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("n", "f"), [(5, 1), (8, 2), (9, 4), (16, 3)])
def test_coordinatewise_rules_with_many_ties_match_sorting(seed: int, n: int, f: int) -> None:
    # Small-integer data makes ties at the order statistics common, the hard case for the
    # order-statistic (no full sort) implementation of trimmed mean and median.
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, (n, 3000), generator=g).to(torch.float32)
    s = torch.sort(x, dim=0).values
    expected_trim = s[f : n - f].mean(dim=0)
    expected_median = (s[(n - 1) // 2] + s[n // 2]) / 2
    assert torch.allclose(RULES["trimmed_mean"](x, f=f), expected_trim, atol=1e-6)
    assert torch.equal(RULES["median"](x, f=f if 2 * f < n else 0), expected_median)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n", [7, 8])
def test_coordinatewise_torch_fallback_for_dtypes_numpy_lacks(dtype: torch.dtype, n: int) -> None:
    g = torch.Generator().manual_seed(n)
    x64 = torch.randint(-3, 4, (n, 500), generator=g).to(torch.float64)
    s = torch.sort(x64, dim=0).values
    median = RULES["median"](x64.to(dtype), f=1)
    trimmed = RULES["trimmed_mean"](x64.to(dtype), f=2)
    assert median.dtype == dtype and trimmed.dtype == dtype
    assert torch.allclose(median.double(), (s[(n - 1) // 2] + s[n // 2]) / 2)
    assert torch.allclose(trimmed.double(), s[2 : n - 2].mean(dim=0), atol=1e-2)


def test_geometric_median_refine_steps_do_not_increase_the_objective() -> None:
    from aggregation import geometric_median_objective

    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 200, generator=g)
    x[:3] += 40.0
    base = geometric_median_objective(x, RULES["geometric_median"](x, f=3, max_iter=2))
    refined = geometric_median_objective(x, RULES["geometric_median"](x, f=3, max_iter=2, refine=3))
    assert refined <= base + 1e-9
    with pytest.raises(ValueError, match="refine"):
        RULES["geometric_median"](x, f=3, refine=-1)
