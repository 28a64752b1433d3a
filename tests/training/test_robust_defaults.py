"""Observed f (node/training/robust_defaults.py): flag only rows that look Byzantine."""

from __future__ import annotations

import pytest
import torch

from aggregation import RULES
from node.training.robust_defaults import observed_f


def _honest(n: int = 6, d: int = 50, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(d, generator=g)
    # Heterogeneous honest peers: distances from ours vary by a factor of about two.
    rows = [own + (1 + i / n) * torch.randn(d, generator=g) / d**0.5 for i in range(n)]
    return own, rows


def test_no_attacker_means_f_zero_and_the_plain_average() -> None:
    own, rows = _honest()
    assert observed_f(own, rows, 2) == 0
    stack = torch.stack([own, *rows])
    # With f = 0 the recommended robust rule is the plain mean: nothing costs.
    assert torch.allclose(RULES["nnm+trimmed_mean"](stack, f=0), stack.mean(dim=0), atol=1e-6)


def test_far_rows_are_flagged_up_to_the_configured_f() -> None:
    own, rows = _honest()
    far = [own + 100 * torch.ones_like(own), own - 50 * torch.ones_like(own)]
    assert observed_f(own, rows + far[:1], 2) == 1
    assert observed_f(own, rows + far, 2) == 2
    assert observed_f(own, rows + far + [own + 70 * torch.ones_like(own)], 2) == 2
    assert observed_f(own, rows + far, 0) == 0


def test_non_finite_rows_count_as_flagged_and_no_rows_as_none() -> None:
    own, rows = _honest()
    assert observed_f(own, [*rows, torch.full_like(own, float("nan"))], 2) == 1
    assert observed_f(own, [], 2) == 0


def test_a_row_under_the_threshold_is_not_flagged() -> None:
    own, rows = _honest()
    med = float(torch.stack(rows).sub(own).norm(dim=1).median())
    direction = torch.ones_like(own) / own.numel() ** 0.5
    sneaky = own + 2.5 * med * direction
    assert observed_f(own, [*rows, sneaky], 2) == 0
    assert observed_f(own, [*rows, own + 4 * med * direction], 2) == 1


@pytest.mark.parametrize("f, factor", [(-1, 3.0), (1, 0.0), (1, float("inf")), (1, float("nan"))])
def test_bad_arguments_are_refused(f: int, factor: float) -> None:
    own, rows = _honest()
    with pytest.raises(ValueError):
        observed_f(own, rows, f, factor=factor)
