"""Sybil weighting: FoolsGold scores, histories, gossip merging, composition with rules."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation.sybil import (
    CountSketch,
    HistoryRecord,
    SimilarityHistory,
    forward_probability,
    pairwise_cosine,
    sybil_filter,
    sybil_weighted_mean,
    sybil_weights,
)

D = 2000


def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def population(seed: int = 0, honest: int = 10, sybils: int = 5, d: int = D) -> torch.Tensor:
    """Honest histories share a common descent direction (cos ~0.3 with each other);
    Sybil histories all push one target direction with a little jitter."""
    g = gen(seed)
    common = torch.randn(d, generator=g)
    rows = [0.7 * common + torch.randn(d, generator=g) for _ in range(honest)]
    target = torch.randn(d, generator=g)
    rows += [3.0 * target + 0.1 * torch.randn(d, generator=g) for _ in range(sybils)]
    return torch.stack(rows)


def reference_foolsgold(histories: torch.Tensor, confidence: float = 1.0) -> list[float]:
    """Loop transcription of FoolsGold's Algorithm 1 (self excluded from the max)."""
    x = histories.double()
    n = x.shape[0]
    cs = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            cs[i][j] = (
                -math.inf if i == j else float(torch.dot(x[i], x[j]) / (x[i].norm() * x[j].norm()))
            )
    v = [max(row) for row in cs]
    for i in range(n):
        for j in range(n):
            if i != j and v[i] < v[j] and v[j] > 0:
                cs[i][j] *= min(1.0, max(0.0, v[i]) / v[j])
    alpha = [min(1.0, max(0.0, 1 - max(row))) for row in cs]
    top = max(alpha)
    alpha = [a / top for a in alpha]
    out = []
    for a in alpha:
        a = 0.99 if a >= 1 else a
        w = -math.inf if a == 0 else confidence * (math.log(a / (1 - a)) + 0.5)
        out.append(min(1.0, max(0.0, w)))
    return out


def test_sybils_get_low_weight_honest_high() -> None:
    histories = population()
    weights = sybil_weights(histories)
    assert weights.shape == (15,)
    assert (weights[:10] > 0.9).all(), weights
    assert (weights[10:] < 0.1).all(), weights
    linear = sybil_weights(histories, method="linear")
    assert (linear[:10] > 0.8).all()
    assert (linear[10:] < 0.2).all()


def test_matches_loop_reference_implementation() -> None:
    for seed in range(3):
        histories = population(seed, honest=6, sybils=3, d=300)
        # Make one honest peer partially resemble the Sybils so pardoning matters.
        histories[0] = histories[-1] * 0.6 + histories[0]
        ours = sybil_weights(histories, confidence=0.7)
        assert ours.tolist() == pytest.approx(reference_foolsgold(histories, 0.7), abs=1e-9)


def test_pardoning_hand_case() -> None:
    # Two identical Sybils along x; an honest peer at 60 degrees (cos 0.5 with both).
    h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    # cs[c, sybil] is pardoned to 0.5 * 0.5 / 1 = 0.25 -> alpha_c = 0.75 -> normalised 1.
    assert sybil_weights(h, method="linear").tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert sybil_weights(h).tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_permutation_equivariance() -> None:
    histories = population(1)
    base = sybil_weights(histories)
    for seed in range(5):
        perm = torch.randperm(histories.shape[0], generator=gen(seed))
        assert torch.allclose(sybil_weights(histories[perm]), base[perm], atol=1e-12)


def test_scale_invariance_and_degenerate_inputs() -> None:
    histories = population(2)
    scales = torch.rand(histories.shape[0], 1, generator=gen(0)) * 100 + 0.01
    assert torch.allclose(sybil_weights(histories * scales), sybil_weights(histories), atol=1e-9)
    assert sybil_weights(torch.ones(1, 4)).tolist() == [1.0]
    assert sybil_weights(torch.zeros(0, 4)).shape == (0,)
    assert sybil_weights(torch.ones(3, 4)).tolist() == [0.0, 0.0, 0.0]
    # A zero history is dissimilar to everyone (cosine 0) rather than NaN.
    with_zero = torch.cat([histories, torch.zeros(1, histories.shape[1])])
    assert torch.isfinite(sybil_weights(with_zero)).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"method": "krum"}, "method"), ({"confidence": 0.0}, "confidence")],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sybil_weights(torch.ones(3, 4), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-finite"):
        sybil_weights(torch.tensor([[1.0, math.nan], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        sybil_weights(torch.ones(4))


def test_pairwise_cosine_values() -> None:
    cs = pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
    expected = torch.tensor([[1, 0, -1], [0, 1, 0], [-1, 0, 1]], dtype=torch.float64)
    assert torch.allclose(cs, expected, atol=1e-12)


def test_forward_probability() -> None:
    assert forward_probability(0) == 1.0
    assert forward_probability(1, 1.0, 0.8) == pytest.approx(math.exp(-0.8))
    assert forward_probability(3, 0.5, 0.0) == 0.5
    probs = [forward_probability(h, 0.9, 0.5) for h in range(6)]
    assert probs == sorted(probs, reverse=True)
    for bad in ({"hops": -1}, {"p0": 1.5}, {"decay": -0.1}):
        args = {"hops": 1, "p0": 1.0, "decay": 0.8} | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            forward_probability(**args)  # type: ignore[arg-type]


def test_count_sketch_linear_deterministic_and_inner_product_preserving() -> None:
    d, k = 50_000, 4096
    a = CountSketch(d, k, seed=11)
    b = CountSketch(d, k, seed=11)
    c = CountSketch(d, k, seed=12)
    assert torch.equal(a.buckets, b.buckets) and torch.equal(a.signs, b.signs)
    assert not torch.equal(a.buckets, c.buckets)
    g = gen(0)
    x, y = torch.randn(d, generator=g), torch.randn(d, generator=g)
    y = 0.5 * x + y  # cosine ~0.45
    assert torch.allclose(a(x + y), a(x) + a(y), atol=1e-4)
    stacked = a(torch.stack([x, y]))
    assert torch.allclose(stacked[0], a(x)) and stacked.shape == (2, k)
    full = torch.nn.functional.cosine_similarity(x, y, dim=0).item()
    sketched = torch.nn.functional.cosine_similarity(a(x), a(y), dim=0).item()
    assert abs(full - sketched) < 0.05
    with pytest.raises(ValueError, match="shape"):
        a(torch.ones(3))


def test_history_accumulates_and_sketches() -> None:
    d = 500
    h = SimilarityHistory(d, sketch_dim=64, seed=1, self_id="me")
    u1, u2 = torch.randn(d, generator=gen(1)), torch.randn(d, generator=gen(2))
    h.add_update("p", u1, 0)
    h.add_update("p", u2, 1)
    h.add_update("me", u1, 1)  # own id is ignored
    record = h.get("p")
    assert record is not None and record.direct and record.hops == 1 and record.round == 1
    assert torch.allclose(record.vector, CountSketch(d, 64, 1)(u1 + u2), atol=1e-4)
    assert h.peers == ["p"] and "me" not in h
    assert h.matrix().shape == (1, 64)
    with pytest.raises(ValueError, match="shape"):
        h.add_update("q", torch.ones(3), 0)
    with pytest.raises(ValueError, match="non-finite"):
        h.add_update("q", torch.full((d,), math.inf), 0)
    with pytest.raises(ValueError, match="round"):
        h.add_update("q", torch.ones(d), -1)


def test_gossip_merge_rules() -> None:
    h = SimilarityHistory(4, self_id="me")
    h.add_update("n1", torch.ones(4), 5)
    vec = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # Never overwrite a direct observation, never store records about self or the sender.
    assert not h.merge_gossip(HistoryRecord("n1", vec, 9, 1, None), via="n2")
    assert not h.merge_gossip(HistoryRecord("me", vec, 9, 1, None), via="n2")
    assert not h.merge_gossip(HistoryRecord("n2", vec, 9, 0, None), via="n2")
    assert torch.equal(h.matrix(["n1"])[0], torch.ones(4))
    # A remote record is stored one hop further out.
    assert h.merge_gossip(HistoryRecord("far", vec, 3, 1, None), via="n2")
    far = h.get("far")
    assert far is not None and far.hops == 2 and far.via == "n2" and not far.direct
    # Older or equally fresh-but-further records do not replace it; fresher ones do.
    assert not h.merge_gossip(HistoryRecord("far", 2 * vec, 2, 1, None), via="n3")
    assert not h.merge_gossip(HistoryRecord("far", 2 * vec, 3, 4, "x"), via="n3")
    assert h.merge_gossip(HistoryRecord("far", 3 * vec, 4, 2, "x"), via="n3")
    far = h.get("far")
    assert far is not None and far.round == 4 and far.hops == 3 and far.via == "n3"
    # Direct observation supersedes the gossiped record.
    h.add_update("far", torch.ones(4), 6)
    far = h.get("far")
    assert far is not None and far.direct and torch.equal(far.vector, torch.ones(4))
    with pytest.raises(ValueError, match="shape"):
        h.merge_gossip(HistoryRecord("z", torch.ones(5), 1, 1, None), via="n2")
    with pytest.raises(ValueError, match="non-finite"):
        h.merge_gossip(HistoryRecord("z", torch.full((4,), math.nan), 1, 1, None), via="n2")


def test_select_for_gossip_excludes_recipient_and_prefers_near() -> None:
    h = SimilarityHistory(2)
    h.add_update("near", torch.ones(2), 1)
    h.merge_gossip(HistoryRecord("far", torch.ones(2), 1, 4, None), via="n")
    h.merge_gossip(HistoryRecord("from_r", torch.ones(2), 1, 1, None), via="r")
    h.add_update("r", torch.ones(2), 1)
    counts = {"near": 0, "far": 0}
    g = gen(0)
    for _ in range(2000):
        picked = h.select_for_gossip("r", generator=g)
        assert len(picked) == 1
        assert picked[0].peer in counts  # never "r" nor something learned from "r"
        counts[picked[0].peer] += 1
    # Weights e^-0.8 (hops 1) vs e^-4.0 (hops 5): "far" is picked ~4% of the time.
    assert counts["far"] / 2000 == pytest.approx(1 / (1 + math.exp(3.2)), abs=0.02)
    assert {r.peer for r in h.select_for_gossip("r", count=5, generator=g)} == {"near", "far"}
    bern = [len(h.select_for_gossip("r", count=None, generator=g)) for _ in range(2000)]
    assert sum(bern) / 2000 == pytest.approx(math.exp(-0.8) + math.exp(-4.0), abs=0.05)
    assert h.select_for_gossip("r", count=0) == []


def test_max_records_evicts_furthest_gossip_first() -> None:
    h = SimilarityHistory(2, max_records=3)
    h.add_update("a", torch.ones(2), 1)
    h.merge_gossip(HistoryRecord("b", torch.ones(2), 1, 1, None), via="a")
    h.merge_gossip(HistoryRecord("c", torch.ones(2), 1, 3, None), via="a")
    h.add_update("d", torch.ones(2), 1)
    assert set(h.peers) == {"a", "b", "d"}  # "c" was furthest
    h.add_update("e", torch.ones(2), 2)
    assert set(h.peers) == {"a", "d", "e"}  # then the remaining gossiped record
    h.add_update("f", torch.ones(2), 3)
    assert len(h) == 3 and "f" in h


def test_gossip_lets_a_node_catch_a_sybil_it_meets_alone() -> None:
    """SybilWall's point: a node with one Sybil neighbour cannot see the similarity alone;
    histories gossiped from the rest of the network reveal the Sybil's twins."""
    histories = population(3)
    names = [f"h{i}" for i in range(10)] + [f"s{i}" for i in range(5)]
    node = SimilarityHistory(D, sketch_dim=1024, seed=7, self_id="me")
    for name in ("h0", "h1", "s0"):
        node.add_update(name, histories[names.index(name)], 1)
    alone = node.weights(["h0", "h1", "s0"])
    assert alone["s0"] > 0.9  # nothing to compare it with yet
    # Other nodes sketch with the same seed and gossip their direct records.
    remote = SimilarityHistory(D, sketch_dim=1024, seed=7, self_id="other")
    for name in names[2:10] + names[11:]:
        remote.add_update(name, histories[names.index(name)], 1)
    for record in remote:
        assert node.merge_gossip(record, via="h1")
    after = node.weights(["h0", "h1", "s0"])
    assert after["s0"] < 0.1
    assert after["h0"] > 0.9 and after["h1"] > 0.9


def test_filter_then_rule_and_weighted_mean() -> None:
    g = gen(4)
    honest = torch.randn(6, 3, generator=g) * 0.1 + 1.0
    sybil = torch.full((4, 3), -50.0)
    updates = torch.cat([honest, sybil])
    weights = torch.tensor([1.0] * 6 + [0.0] * 4)
    kept, index = sybil_filter(updates, weights)
    assert index.tolist() == list(range(6))
    assert torch.allclose(kept.mean(dim=0), honest.mean(dim=0))
    mean = sybil_weighted_mean(updates, weights=weights)
    assert torch.allclose(mean, honest.mean(dim=0), atol=1e-6)
    own = torch.zeros(3)
    anchored = sybil_weighted_mean(updates, weights=weights, reference=own)
    assert torch.allclose(anchored, honest.sum(dim=0) / 7, atol=1e-6)
    with pytest.raises(ValueError, match="every weight is zero"):
        sybil_weighted_mean(updates, weights=torch.zeros(10))
    with pytest.raises(ValueError, match="weights"):
        sybil_filter(updates, torch.ones(3))
    with pytest.raises(ValueError, match="weights"):
        sybil_weighted_mean(updates, weights=-torch.ones(10))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=12),
    k=st.integers(min_value=2, max_value=16),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    method=st.sampled_from(["foolsgold", "linear"]),
)
def test_property_weights_bounded_and_permutation_equivariant(
    n: int, k: int, seed: int, method: str
) -> None:
    g = gen(seed)
    histories = torch.randn(n, k, generator=g)
    # Plant a duplicated row half the time, the case the weighting exists for.
    if seed % 2:
        histories[1] = histories[0] * 2.0
    weights = sybil_weights(histories, method=method)
    assert weights.shape == (n,)
    assert bool(((weights >= 0) & (weights <= 1)).all())
    perm = torch.randperm(n, generator=g)
    assert torch.allclose(sybil_weights(histories[perm], method=method), weights[perm], atol=1e-9)
    if seed % 2:
        # Exact twins (cosine 1, not pardoned since neither is less suspicious) get 0.
        assert weights[0].item() == 0.0
        assert weights[1].item() == 0.0
