"""Lifeguard suspicion timer: confirmations shorten it, never lengthen it."""

from __future__ import annotations

import pytest

from node.gossip.config import GossipConfig
from node.gossip.suspicion import Suspicion

LAN = GossipConfig.profile("lan")
N = 20  # enough members for confirmations to count (K >= 1)


def test_starts_at_the_maximum_timeout() -> None:
    s = Suspicion.begin(100.0, N, LAN)
    assert s.k == LAN.suspicion_confirmations(N) >= 1
    assert s.deadline == pytest.approx(100.0 + LAN.suspicion_max(N))
    assert not s.due(100.0 + LAN.suspicion_max(N) - 1e-6)
    assert s.due(100.0 + LAN.suspicion_max(N))


def test_k_confirmations_bring_it_to_the_minimum() -> None:
    s = Suspicion.begin(0.0, N, LAN)
    deadlines = []
    for i in range(s.k):
        assert s.confirm(bytes([i]) * 32)
        deadlines.append(s.deadline)
    assert deadlines == sorted(deadlines, reverse=True)  # each one shortens it
    assert deadlines[0] == pytest.approx(LAN.suspicion_timeout(N, 1))
    assert s.deadline == pytest.approx(LAN.suspicion_min(N))
    s.confirm(b"\xff" * 32)  # more than K: stays at the minimum
    assert s.deadline == pytest.approx(LAN.suspicion_min(N))


def test_a_repeated_confirmation_counts_once() -> None:
    s = Suspicion.begin(0.0, N, LAN)
    assert s.confirm(b"a" * 32)
    once = s.deadline
    assert not s.confirm(b"a" * 32)
    assert s.deadline == once and len(s.confirmations) == 1


def test_small_views_use_the_minimum_at_once() -> None:
    """With too few members to confirm (K = 0) there is nothing to wait for."""
    s = Suspicion.begin(5.0, 3, LAN)
    assert s.k == 0
    assert s.deadline == pytest.approx(5.0 + LAN.suspicion_min(3))


def test_deadline_counts_from_the_start_not_from_the_confirmation() -> None:
    s = Suspicion.begin(0.0, N, LAN)
    s.confirm(b"a" * 32)
    # A confirmation arriving late cannot push the deadline past start + timeout(n, 1).
    assert s.deadline == pytest.approx(LAN.suspicion_timeout(N, 1))
