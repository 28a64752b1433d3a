"""RULES holds every documented name, all with the (n, d) -> (d,) contract; compose works."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aggregation import PRE_AGGREGATORS, RULES, compose, nnm

REQUIRED = {
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "centered_clipping",
    "bulyan",
    "self_centered_clipping",
    "bristle",
    "nnm",
}


def test_required_names_and_nnm_variants() -> None:
    assert set(RULES) >= REQUIRED
    for name in REQUIRED - {"nnm"}:
        assert f"nnm+{name}" in RULES
    assert PRE_AGGREGATORS["nnm"] is nnm


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_returns_a_d_vector_in_the_input_dtype(name: str) -> None:
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    params: dict[str, Any] = {}
    if "clipping" in name or "bristle" in name:
        params["reference"] = torch.zeros(5)
    if "bristle" in name:
        params["score_fn"] = lambda v: -float(v.norm())
    out = RULES[name](x, f=2, **params)
    assert out.shape == (5,)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


def test_compose_with_a_custom_pre_aggregator() -> None:
    def drop_last(updates: torch.Tensor, *, f: int) -> torch.Tensor:
        return updates[: updates.shape[0] - f]

    rule = compose(drop_last, RULES["mean"])
    x = torch.tensor([[1.0], [3.0], [100.0]])
    assert rule(x, f=1).item() == pytest.approx(2.0)
    assert rule.__name__ == "drop_last_mean"


def test_rules_do_not_modify_their_input() -> None:
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    for name in (
        "median",
        "trimmed_mean",
        "krum",
        "bulyan",
        "nnm+trimmed_mean",
        "centered_clipping",
    ):
        RULES[name](x, f=2)
    assert torch.equal(x, before)
