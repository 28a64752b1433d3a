"""sanitize(): non-finite, wrong-shape, wrong-dtype and over-norm updates are rejected."""

from __future__ import annotations

import pytest
import torch

from aggregation import ATTACKS, RULES, sanitize


def test_tensor_input_rejects_nonfinite_and_large_rows() -> None:
    x = torch.randn(6, 4)
    x[1, 2] = float("nan")
    x[3, 0] = float("inf")
    x[4] = 1e4
    res = sanitize(x, max_norm=100.0)
    assert res.kept == [0, 2, 5]
    assert torch.equal(res.updates, x[[0, 2, 5]])
    assert set(res.reasons) == {1, 3, 4}
    assert "non-finite" in res.reasons[1] and "non-finite" in res.reasons[3]
    assert "exceeds max_norm" in res.reasons[4]
    assert torch.allclose(res.norms, x[[0, 2, 5]].double().norm(dim=1))


def test_sequence_input_shapes_and_dtypes() -> None:
    good = [torch.randn(5) for _ in range(3)]
    items = [good[0], torch.randn(4), good[1], torch.randn(5, 1), torch.ones(5, dtype=torch.int32)]
    items.append(good[2])
    res = sanitize(items)
    assert res.kept == [0, 2, 5]
    assert res.updates.shape == (3, 5)
    assert "shape (4,) != expected (5,)" in res.reasons[1]
    assert "shape (5, 1)" in res.reasons[3]
    assert "not floating point" in res.reasons[4]


def test_single_malformed_sender_cannot_set_the_shape() -> None:
    # The first item has the odd shape; the majority length wins.
    items = [torch.randn(3), torch.randn(7), torch.randn(7), torch.randn(7)]
    res = sanitize(items)
    assert res.kept == [1, 2, 3]
    res2 = sanitize(items, dim=3)
    assert res2.kept == [0]


def test_float64_overflow_to_float32_is_non_finite() -> None:
    big = torch.full((3,), 1e300, dtype=torch.float64)
    res = sanitize([big, torch.zeros(3, dtype=torch.float64)])
    assert res.kept == [1]
    assert "non-finite" in res.reasons[0]


def test_everything_rejected_gives_empty_stack() -> None:
    res = sanitize(torch.full((2, 3), float("nan")))
    assert res.updates.shape == (0, 3) and res.kept == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_norm"):
        sanitize(torch.zeros(2, 2), max_norm=0.0)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        sanitize(torch.zeros(3))
    with pytest.raises(ValueError, match="sequence of tensors"):
        sanitize("not a stack")  # type: ignore[arg-type]


@pytest.mark.parametrize("attack", ["inf", "nan"])
def test_nonfinite_attacks_are_filtered_before_the_rule(attack: str) -> None:
    honest = torch.randn(8, 5)
    byz = ATTACKS[attack](honest, f=2)
    res = sanitize(torch.cat([honest, byz]))
    assert res.kept == list(range(8))
    out = RULES["trimmed_mean"](res.updates, f=2)
    assert bool(torch.isfinite(out).all())
