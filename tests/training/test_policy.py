"""node.training.policy: admission, f-lowering, the non-finite fallback and the Sybil defence."""

from __future__ import annotations

import pytest
import torch

from aggregation import RULES
from aggregation.preconditions import PreconditionError
from aggregation.sybil import SimilarityHistory
from node.training import policy
from node.training.engine import Aggregate, Received, aggregate_round


def _action(
    own: torch.Tensor,
    rows: list[torch.Tensor],
    *,
    rule: str = "mean",
    f: int = 0,
    payload: str = "model",
    base: torch.Tensor | None = None,
) -> Aggregate:
    received = tuple(Received(f"p{i}", 0, r, 1.0) for i, r in enumerate(rows))
    return Aggregate(0, own, received, rule, f, {}, payload, base=base)


# --- admission -------------------------------------------------------------------------------


def test_admit_update_accepts_a_near_finite_vector() -> None:
    ours = torch.zeros(4)
    assert policy.admit_update(torch.ones(4), ours, numel=4, max_norm=2.0) is None
    # No bound: any finite vector of the right length.
    assert policy.admit_update(torch.full((4,), 1e30), ours, numel=4) is None
    assert policy.admit_update(torch.full((4,), 1e30), ours, numel=4, max_norm=float("inf")) is None


@pytest.mark.parametrize(
    "vector",
    [torch.ones(3), torch.ones(5), torch.ones(2, 2), torch.ones(4, dtype=torch.int64)],
    ids=["short", "long", "2d", "int"],
)
def test_admit_update_refuses_wrong_shape_or_dtype(vector: torch.Tensor) -> None:
    refusal = policy.admit_update(vector, torch.zeros(4), numel=4, max_norm=10.0)
    assert refusal is not None and refusal.reason == "bad_shape"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_admit_update_refuses_non_finite_before_the_distance(bad: float) -> None:
    vector = torch.tensor([0.0, bad, 0.0, 0.0])
    copy = vector.clone()
    refusal = policy.admit_update(vector, torch.zeros(4), numel=4, max_norm=None)
    assert refusal is not None and refusal.reason == "nonfinite"
    assert torch.equal(vector.nan_to_num(), copy.nan_to_num())  # input untouched


def test_admit_update_refuses_a_far_vector_with_its_distance() -> None:
    refusal = policy.admit_update(
        torch.tensor([3.0, 4.0, 0.0, 0.0]), torch.zeros(4), numel=4, max_norm=4.9
    )
    assert refusal == policy.Refusal("norm_exceeded", "vector is 5 from ours, limit 4.9")
    # Measured from the reference, not from zero.
    near = policy.admit_update(
        torch.tensor([103.0, 4.0, 0.0, 0.0]), torch.tensor([100.0, 0, 0, 0]), numel=4, max_norm=5.0
    )
    assert near is None


def test_admit_update_refuses_when_the_distance_overflows() -> None:
    # Both finite, but their float32 distance is inf: not within any finite bound.
    far = torch.full((4,), 3e38)
    refusal = policy.admit_update(far, -far, numel=4, max_norm=1e30)
    assert refusal is not None and refusal.reason == "norm_exceeded"


# --- f-lowering ------------------------------------------------------------------------------


def test_aggregate_within_f_keeps_f_when_the_rule_accepts_it() -> None:
    own = torch.zeros(2)
    rows = [torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0]), torch.tensor([100.0, 100.0])]
    merged, f = policy.aggregate_within_f(_action(own, rows, rule="trimmed_mean", f=1))
    assert f == 1
    assert torch.allclose(merged, torch.tensor([1.5, 1.5]))  # 0 and 100 trimmed


def test_aggregate_within_f_lowers_f_to_the_rows_at_hand() -> None:
    # median needs 2f < n: 3 rows refuse f = 2 and accept f = 1.
    own = torch.zeros(2)
    rows = [torch.tensor([1.0, 1.0]), torch.tensor([5.0, 5.0])]
    with pytest.raises(PreconditionError, match="2f < n"):
        RULES["median"](torch.stack([own, *rows]), f=2)
    merged, f = policy.aggregate_within_f(_action(own, rows, rule="median", f=2))
    assert f == 1
    assert torch.equal(merged, torch.tensor([1.0, 1.0]))


def test_aggregate_within_f_keeps_own_when_no_f_fits() -> None:
    # krum needs n >= 2f + 3: two rows allow no f >= 1.
    own = torch.tensor([7.0, -1.0])
    merged, f = policy.aggregate_within_f(
        _action(own, [torch.tensor([0.0, 0.0])], rule="krum", f=1)
    )
    assert f is None
    assert torch.equal(merged, own)
    result = policy.merge(_action(own, [torch.tensor([0.0, 0.0])], rule="krum", f=1))
    assert result.kept_own and result.requested_f == 1 and not result.nonfinite


# --- non-finite fallback ---------------------------------------------------------------------


def test_finite_or_own_passes_a_finite_result_through() -> None:
    merged = torch.tensor([1.0, 2.0])
    out, fell_back = policy.finite_or_own(merged, _action(torch.zeros(2), []))
    assert out is merged and not fell_back


def test_finite_or_own_keeps_own_model_or_base_plus_own_delta() -> None:
    bad = torch.tensor([float("inf"), 0.0])
    own = torch.tensor([1.0, 2.0])
    out, fell_back = policy.finite_or_own(bad, _action(own, []))
    assert fell_back and torch.equal(out, own) and out is not own
    base = torch.tensor([10.0, 10.0])
    out, fell_back = policy.finite_or_own(bad, _action(own, [], payload="delta", base=base))
    assert fell_back and torch.equal(out, torch.tensor([11.0, 12.0]))


def test_merge_falls_back_when_the_mean_overflows() -> None:
    # Each row is finite; their sum overflows float32 inside the rule.
    own = torch.zeros(3)
    result = policy.merge(_action(own, [torch.full((3,), 3e38)] * 2))
    assert result.nonfinite and result.f == 0
    assert torch.equal(result.vector, own)


def test_merge_is_aggregate_round_when_nothing_goes_wrong() -> None:
    own = torch.tensor([0.0, 1.0])
    action = _action(own, [torch.tensor([2.0, 3.0]), torch.tensor([4.0, -1.0])])
    result = policy.merge(action)
    assert torch.equal(result.vector, aggregate_round(action))
    assert not result.nonfinite and not result.kept_own


# --- Sybil defence ---------------------------------------------------------------------------


def test_similarity_history_sketches_large_models_only() -> None:
    small = policy.similarity_history(4096, seed=1, self_id="me")
    large = policy.similarity_history(10_000, seed=1, self_id="me")
    assert small.sketch is None and small.vector_dim == 4096
    assert large.vector_dim == policy.HISTORY_SKETCH_DIM
    assert large.max_records == policy.HISTORY_MAX_RECORDS


def _twins_round(
    history: SimilarityHistory, round_idx: int, gen: torch.Generator
) -> tuple[list[str], list[torch.Tensor]]:
    """Two Sybil twins pushing (nearly) one direction, three honest peers pushing their own."""
    base = torch.zeros(64)
    sybil = torch.randn(64, generator=gen)
    senders = ["s0", "s1", "h0", "h1", "h2"]
    vectors = [
        sybil + 0.01 * torch.randn(64, generator=gen),
        sybil + 0.01 * torch.randn(64, generator=gen),
        *(torch.randn(64, generator=gen) for _ in range(3)),
    ]
    return senders, [base + v for v in vectors]


def test_sybil_filter_drops_twins_and_records_histories() -> None:
    history = policy.similarity_history(64, seed=0, self_id="me")
    gen = torch.Generator().manual_seed(0)
    for r in range(3):
        senders, vectors = _twins_round(history, r, gen)
        verdict = policy.sybil_filter(
            history, senders, vectors, base=torch.zeros(64), round_idx=r, threshold=0.5
        )
    assert [senders[i] for i in verdict.dropped] == ["s0", "s1"]
    assert [senders[i] for i in verdict.kept] == ["h0", "h1", "h2"]
    assert set(verdict.weights) == set(senders)
    assert all(s in history for s in senders)


def test_sybil_filter_refuses_mismatched_input_and_changes_nothing() -> None:
    history = policy.similarity_history(8, seed=0, self_id="me")
    with pytest.raises(ValueError, match="2 senders but 1 vectors"):
        policy.sybil_filter(
            history, ["a", "b"], [torch.ones(8)], base=torch.zeros(8), round_idx=0, threshold=0.5
        )
    assert len(history) == 0
    empty = policy.sybil_filter(history, [], [], base=torch.zeros(8), round_idx=0, threshold=0.5)
    assert empty == policy.SybilVerdict((), (), {})


def test_unflagged_leaves_out_flagged_members_in_draw_order() -> None:
    history = policy.similarity_history(64, seed=0, self_id="me")
    # Nothing known yet: every candidate stays.
    assert policy.unflagged(["s0", "x", "h0"], history, threshold=0.5) == ["s0", "x", "h0"]
    gen = torch.Generator().manual_seed(0)
    for r in range(3):
        senders, vectors = _twins_round(history, r, gen)
        policy.sybil_filter(
            history, senders, vectors, base=torch.zeros(64), round_idx=r, threshold=0.5
        )
    drawn = ["h2", "s1", "new", "h0", "s0"]
    assert policy.unflagged(drawn, history, threshold=0.5) == ["h2", "new", "h0"]
    # Threshold 0 flags nobody.
    assert policy.unflagged(drawn, history, threshold=0.0) == drawn


def test_local_or_base_keeps_a_finite_result_and_replaces_a_diverged_one() -> None:
    base = torch.ones(3)
    trained = torch.tensor([2.0, 3.0, 4.0])
    kept, diverged = policy.local_or_base(trained, base)
    assert torch.equal(kept, trained) and not diverged
    for bad in (float("nan"), float("inf")):
        out, diverged = policy.local_or_base(torch.tensor([1.0, bad, 0.0]), base)
        assert diverged and torch.equal(out, base)
        out[0] = 5.0  # a copy: the caller's base is untouched
        assert torch.equal(base, torch.ones(3))
