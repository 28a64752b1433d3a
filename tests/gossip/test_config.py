"""Profiles and the documented formulas of GossipConfig."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from node.gossip import PROFILES, GossipConfig


def test_profiles_match_memberlist_defaults() -> None:
    lan, wan, local = (GossipConfig.profile(p) for p in ("lan", "wan", "local"))
    assert (lan.probe_interval, lan.probe_timeout, lan.indirect_checks) == (1.0, 0.5, 3)
    assert (lan.suspicion_mult, lan.retransmit_mult, lan.gossip_interval) == (4, 4, 0.2)
    assert (wan.probe_interval, wan.probe_timeout, wan.suspicion_mult) == (5.0, 3.0, 6)
    assert (local.probe_timeout, local.indirect_checks, local.retransmit_mult) == (0.2, 1, 2)
    test = GossipConfig.profile("test")
    assert test.probe_interval == lan.probe_interval / 10
    assert set(PROFILES) == {"lan", "wan", "local", "test"}


def test_unknown_profile_and_bad_override_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown gossip profile 'mars'"):
        GossipConfig.profile("mars")
    with pytest.raises(ValidationError, match="probe_timeout"):
        GossipConfig.profile("lan", probe_timeout=2.0)
    with pytest.raises(ValidationError, match="extra"):
        GossipConfig.profile("lan", probe_intervall=2.0)


def test_retransmit_limit_formula() -> None:
    cfg = GossipConfig.profile("lan")
    assert cfg.retransmit_limit(1) == 4 * 1
    assert cfg.retransmit_limit(9) == 4 * 1
    assert cfg.retransmit_limit(10) == 4 * 2
    assert cfg.retransmit_limit(256) == 4 * 3


def test_lifeguard_suspicion_timeout_shrinks_with_confirmations() -> None:
    cfg = GossipConfig.profile("lan")
    n = 100
    lo = cfg.suspicion_min(n)
    assert lo == pytest.approx(4 * math.log10(100) * 1.0)
    assert cfg.suspicion_max(n) == pytest.approx(6 * lo)
    k = cfg.suspicion_confirmations(n)
    assert k == 2
    times = [cfg.suspicion_timeout(n, c) for c in range(k + 2)]
    assert times[0] == pytest.approx(6 * lo)
    assert times[0] > times[1] > times[2]
    assert times[2] == pytest.approx(lo) and times[3] == pytest.approx(lo)
    # Tiny clusters expect no confirmations and use the minimum directly.
    assert cfg.suspicion_confirmations(3) == 0
    assert cfg.suspicion_timeout(3, 0) == pytest.approx(cfg.suspicion_min(3))


def test_push_pull_period_scales_above_32_nodes() -> None:
    cfg = GossipConfig.profile("lan")
    assert cfg.push_pull_period(32) == 30.0
    assert cfg.push_pull_period(64) == 60.0
    assert cfg.push_pull_period(256) == 120.0
