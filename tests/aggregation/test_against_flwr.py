"""Our rules agree with flwr's numpy implementations where the definitions coincide."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg

from aggregation import RULES


def results(x: torch.Tensor) -> list[tuple[list[np.ndarray], int]]:
    return [([row.numpy()], 1) for row in x]


@pytest.mark.parametrize("n", [9, 10])
def test_median_matches_flwr(n: int) -> None:
    x = torch.randn(n, 33, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    ours = RULES["median"](x, f=2).numpy()
    np.testing.assert_allclose(ours, aggregate_median(results(x))[0], rtol=1e-12)


def test_trimmed_mean_matches_flwr() -> None:
    x = torch.randn(10, 33, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = RULES["trimmed_mean"](x, f=2).numpy()
    np.testing.assert_allclose(ours, aggregate_trimmed_avg(results(x), 0.2)[0], rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_krum_and_multi_krum_match_flwr(seed: int) -> None:
    x = torch.randn(11, 20, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[:2] *= 5.0
    np.testing.assert_allclose(
        RULES["krum"](x, f=2).numpy(), aggregate_krum(results(x), 2, 0)[0], rtol=1e-12
    )
    np.testing.assert_allclose(
        RULES["multi_krum"](x, f=2, m=6).numpy(), aggregate_krum(results(x), 2, 6)[0], rtol=1e-10
    )
