"""Lifeguard local health: clamped score, timeouts scaled by score + 1."""

from __future__ import annotations

import pytest

from node.gossip.awareness import Awareness


def test_starts_healthy_and_scales_by_score_plus_one() -> None:
    a = Awareness(8)
    assert a.score == 0
    assert a.scale(0.5) == 0.5
    a.apply_delta(3)
    assert a.score == 3
    assert a.scale(0.5) == pytest.approx(2.0)


def test_score_is_clamped_to_its_range() -> None:
    a = Awareness(4)
    a.apply_delta(-5)
    assert a.score == 0  # never below healthy
    a.apply_delta(100)
    assert a.score == 3  # timeouts grow at most 4-fold
    assert a.scale(1.0) == 4.0
    a.apply_delta(-1)
    assert a.score == 2  # and recover one step per answered probe


def test_multiplier_one_disables_scaling() -> None:
    a = Awareness(1)
    a.apply_delta(10)
    assert (a.score, a.scale(2.0)) == (0, 2.0)


def test_multiplier_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_multiplier"):
        Awareness(0)
