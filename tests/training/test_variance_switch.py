"""The rounds.variance_correction switch: carried by the engine, applied per layer."""

from __future__ import annotations

import pytest
import torch

from aggregation.variance import variance_corrected_layer
from node.training.engine import Aggregate, Received, RoundEngine, aggregate_round
from node.training.spec import RoundSpec

SIZES = (400, 20, 300, 10)  # two "weight" layers of different scale, two "bias" layers
SCALES = (0.5, 0.05, 0.1, 0.01)


def _independent(n: int, seed: int = 0) -> torch.Tensor:
    """n uncorrelated models: each layer drawn with its own init scale."""
    gen = torch.Generator().manual_seed(seed)
    parts = [torch.randn(n, s, generator=gen) * c for s, c in zip(SIZES, SCALES, strict=True)]
    return torch.cat(parts, dim=1)


def _layers(v: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(v, list(SIZES)))


def _action(rows: torch.Tensor, rule: str = "mean", vc: bool = True, **kw: object) -> Aggregate:
    received = tuple(Received(f"p{i}", 0, rows[i], 1.0, 10 * i) for i in range(1, len(rows)))
    return Aggregate(
        round=0,
        own=rows[0],
        received=received,
        rule=rule,
        f=int(kw.pop("f", 0)),  # type: ignore[call-overload]
        params={},
        payload="model",
        own_examples=5,
        variance_correction=vc,
        layer_sizes=SIZES,
        **kw,  # type: ignore[arg-type]
    )


def _std(t: torch.Tensor) -> float:
    return float(t.double().std(unbiased=False))


def test_engine_carries_switch_and_layer_sizes() -> None:
    spec = RoundSpec(peers_per_round=1, variance_correction=True)
    eng = RoundEngine("me", spec, numel=sum(SIZES), layer_sizes=SIZES)
    eng.tick(0.0)
    eng.on_sampled_peers(0, ("a",), 0.0)
    eng.on_local_result(0, torch.zeros(sum(SIZES)), 1.0)
    acts = eng.on_update("a", 0, torch.ones(sum(SIZES)), 1.1)
    agg = next(a for a in acts if isinstance(a, Aggregate))
    assert agg.variance_correction is True and agg.layer_sizes == SIZES
    off = RoundEngine("me", RoundSpec(), numel=4)
    assert off.layer_sizes is None


def test_switch_needs_layer_sizes_and_model_payload() -> None:
    with pytest.raises(ValueError, match="layer_sizes"):
        RoundEngine("me", RoundSpec(variance_correction=True), numel=10)
    with pytest.raises(ValueError, match="add up"):
        RoundEngine("me", RoundSpec(variance_correction=True), numel=10, layer_sizes=(3, 3))
    with pytest.raises(ValueError, match="payload 'model'"):
        RoundSpec(variance_correction=True, payload="delta")
    # The daemon builds its spec with model_copy(update=...), which skips validators:
    # the engine re-checks, so a bad combination cannot slip through.
    bad = RoundSpec().model_copy(update={"variance_correction": True, "payload": "delta"})
    with pytest.raises(ValueError, match="payload 'model'"):
        RoundEngine("me", bad, numel=sum(SIZES), layer_sizes=SIZES)
    bad_weighting = RoundSpec(weight_by_examples=True).model_copy(update={"aggregation": "median"})
    with pytest.raises(ValueError, match="weight_by_examples"):
        RoundEngine("me", bad_weighting, numel=4)


def test_mean_of_independent_models_keeps_layer_std(rules) -> None:  # type: ignore[no-untyped-def]
    rows = _independent(8)
    plain = aggregate_round(_action(rows, vc=False), rules)
    corrected = aggregate_round(_action(rows), rules)
    for j, (p, c) in enumerate(zip(_layers(plain), _layers(corrected), strict=True)):
        target = sum(_std(_layers(r)[j]) for r in rows) / len(rows)
        # Averaging 8 uncorrelated layers shrinks the std by about sqrt(8) ...
        assert _std(p) < 0.5 * target
        # ... the switch restores the inputs' mean std, along the same deviation direction.
        assert _std(c) == pytest.approx(target, rel=1e-5)
        assert torch.nn.functional.cosine_similarity(p - p.mean(), c - c.mean(), dim=0) > 0.9999
    assert not torch.allclose(plain, corrected)


def test_mean_rule_matches_aggregation_variance(rules) -> None:  # type: ignore[no-untyped-def]
    rows = _independent(5, seed=3)
    out = aggregate_round(_action(rows), rules)
    starts = [0, *torch.tensor(SIZES).cumsum(0)[:-1].tolist()]
    ref = torch.cat(
        [variance_corrected_layer(rows[:, a : a + s]) for a, s in zip(starts, SIZES, strict=True)]
    )
    assert torch.allclose(out, ref, atol=1e-6)
    # With FedAvg weighting the target std is weighted by example counts too.
    weighted = aggregate_round(_action(rows, weight_by_examples=True), rules)
    counts = [5, 10, 20, 30, 40]
    ref_w = variance_corrected_layer(rows[:, : SIZES[0]], weights=counts)
    assert torch.allclose(weighted[: SIZES[0]], ref_w, atol=1e-6)


def test_correlated_models_barely_change(rules) -> None:  # type: ignore[no-untyped-def]
    base = _independent(1, seed=7)[0]
    gen = torch.Generator().manual_seed(8)
    rows = base + 1e-3 * torch.randn(6, base.numel(), generator=gen)
    plain = aggregate_round(_action(rows, vc=False), rules)
    corrected = aggregate_round(_action(rows), rules)
    assert float((plain - corrected).abs().max()) < 1e-3


def test_robust_rule_uses_median_std_and_resists_inflation(rules) -> None:  # type: ignore[no-untyped-def]
    honest = _independent(7, seed=11)
    byz = 1e3 * torch.ones(2, honest.shape[1])
    byz[:, ::2] = -1e3  # huge per-layer std
    rows = torch.cat([honest, byz])
    out = aggregate_round(_action(rows, rule="median", f=2), rules)
    plain = aggregate_round(_action(rows, rule="median", f=2, vc=False), rules)
    for j, layer in enumerate(_layers(out)):
        stds = sorted(_std(_layers(r)[j]) for r in rows)
        assert _std(layer) == pytest.approx(stds[(len(stds) - 1) // 2], rel=1e-5)
        honest_max = max(_std(_layers(r)[j]) for r in honest)
        assert _std(layer) <= honest_max * (1 + 1e-5)
    assert _std(_layers(out)[0]) > 1.5 * _std(_layers(plain)[0])
