"""Variance-corrected averaging restores the per-layer variance plain averaging loses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aggregation import variance_corrected_layer, variance_corrected_mean


def random_models(k: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    models = []
    for _ in range(k):
        net = nn.Sequential(nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 10), nn.BatchNorm1d(10))
        models.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    return models


def test_plain_average_of_independent_inits_loses_variance_and_correction_restores_it() -> None:
    k = 8
    models = random_models(k)
    key = "0.weight"
    stds = torch.stack([m[key].std(unbiased=False) for m in models])
    plain = torch.stack([m[key] for m in models]).mean(0)
    # Averaging k uncorrelated layers divides the std by ~sqrt(k).
    assert plain.std().item() == pytest.approx(stds.mean().item() / k**0.5, rel=0.1)
    corrected = variance_corrected_mean(models)
    assert corrected[key].std(unbiased=False).item() == pytest.approx(stds.mean().item(), rel=1e-5)
    # the mean of the layer and its direction of deviation are preserved
    assert corrected[key].mean().item() == pytest.approx(plain.mean().item(), abs=1e-6)
    cos = torch.nn.functional.cosine_similarity(
        (corrected[key] - corrected[key].mean()).flatten(), (plain - plain.mean()).flatten(), dim=0
    )
    assert cos.item() == pytest.approx(1.0, abs=1e-5)


def test_correlated_models_are_nearly_unchanged() -> None:
    base = random_models(1)[0]
    g = torch.Generator().manual_seed(1)
    models = [
        {
            k: v + 1e-3 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
            for k, v in base.items()
        }
        for _ in range(6)
    ]
    corrected = variance_corrected_mean(models)
    plain = torch.stack([m["2.weight"] for m in models]).mean(0)
    assert torch.allclose(corrected["2.weight"], plain, atol=1e-3)


def test_non_float_and_constant_layers() -> None:
    models = random_models(3)
    out = variance_corrected_mean(models)
    # BatchNorm counter copied, BatchNorm running_var (all ones) has no spread to rescale.
    assert out["3.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(out["3.running_var"], torch.ones(10))
    excluded = variance_corrected_mean(models, include=lambda name, t: name.endswith("weight"))
    plain_bias = torch.stack([m["0.bias"] for m in models]).mean(0)
    assert torch.allclose(excluded["0.bias"], plain_bias)


def test_weights_and_layer_function() -> None:
    a = torch.tensor([1.0, -1.0, 1.0, -1.0])
    b = torch.tensor([3.0, 1.0, -1.0, -3.0])
    out = variance_corrected_layer(torch.stack([a, b]), weights=[1.0, 0.0])
    assert torch.allclose(out, a)
    mixed = variance_corrected_layer(torch.stack([a, b]))
    target = 0.5 * (a.std(unbiased=False) + b.std(unbiased=False))
    assert mixed.std(unbiased=False).item() == pytest.approx(target.item(), rel=1e-6)


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least one model"):
        variance_corrected_mean([])
    with pytest.raises(ValueError, match="different keys"):
        variance_corrected_mean([{"a": torch.ones(2)}, {"b": torch.ones(2)}])
    with pytest.raises(ValueError, match="shape"):
        variance_corrected_mean([{"a": torch.ones(2)}, {"a": torch.ones(3)}])
    with pytest.raises(ValueError, match="weights"):
        variance_corrected_layer(torch.ones(2, 3), weights=[1.0])
