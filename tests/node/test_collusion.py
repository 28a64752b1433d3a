"""The colluding attackers' harness (node/testnet/collusion.py), without daemons."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from node.testnet.collusion import (
    COLLUDING_ATTACKS,
    LOOKBACK,
    NORM_MARGIN,
    Collusion,
    CollusionError,
    collude_round,
    colluding_vector,
    fit_norm,
    parse_colluding,
)
from node.training.genesis import Genesis


def _honest(h: int = 6, d: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=g)
    step = 0.1 * torch.randn(d, generator=g)  # the common direction of this round's updates
    return base, base + step + 0.02 * torch.randn(h, d, generator=g)


def test_parse_names_and_parameters() -> None:
    assert parse_colluding("dissensus:eps=2") == ("dissensus", {"eps": 2.0})
    assert parse_colluding("alie") == ("alie", {})
    assert "dissensus" in COLLUDING_ATTACKS and "optimal_ipm" in COLLUDING_ATTACKS
    with pytest.raises(CollusionError, match="unknown attack"):
        parse_colluding("nope")
    with pytest.raises(CollusionError, match="key=<number>"):
        parse_colluding("ipm:eps=lots")


def test_fit_norm_scales_to_the_limit_and_keeps_what_fits() -> None:
    rows = torch.zeros(3, 4)
    direction = torch.tensor([10.0, 0, 0, 0])
    out = fit_norm(torch.zeros(4), direction, rows, limit=2.0)
    assert float(out.norm()) == pytest.approx(2.0, rel=1e-6)
    small = torch.tensor([1.0, 0, 0, 0])
    assert torch.equal(fit_norm(torch.zeros(4), small, rows, limit=2.0), small)


@pytest.mark.parametrize("attack", sorted(COLLUDING_ATTACKS))
def test_every_attack_is_finite_and_passes_the_receivers_norm_check(attack: str) -> None:
    base, honest = _honest()
    out = colluding_vector(
        attack,
        {},
        honest=honest,
        targets=honest[:2],
        base=base,
        f=2,
        rule="nnm+trimmed_mean",
        rule_f=2,
        rule_params={},
        max_norm=5.0,
    )
    assert out.shape == base.shape and bool(torch.isfinite(out).all())
    dist = torch.linalg.vector_norm(honest - out, dim=1)
    assert float(dist.max()) <= NORM_MARGIN * 5.0 + 1e-4


def test_ipm_takes_the_strongest_strength_the_norm_check_allows() -> None:
    base, honest = _honest()
    kw = dict(honest=honest, targets=honest[:0], base=base, f=2, rule="mean", rule_f=0)
    out = colluding_vector("ipm", {}, rule_params={}, max_norm=5.0, **kw)  # type: ignore[arg-type]
    worst = float(torch.linalg.vector_norm(honest - out, dim=1).max())
    assert worst == pytest.approx(NORM_MARGIN * 5.0, rel=1e-3)
    # Opposite to the honest updates' mean: the inner product with it is negative.
    mu = (honest - base).mean(dim=0)
    assert float(torch.dot(out - base, mu)) < 0


def test_dissensus_pushes_the_targets_away_from_the_consensus() -> None:
    base, honest = _honest()
    center = honest.mean(dim=0)
    out = colluding_vector(
        "dissensus",
        {"eps": 1.0},
        honest=honest,
        targets=honest[:1],
        base=base,
        f=2,
        rule="mean",
        rule_f=0,
        rule_params={},
        max_norm=100.0,
    )
    # Twice the target's deviation from the consensus, on the target's side.
    assert torch.allclose(out - center, 2 * (honest[0] - center), atol=1e-5)


def test_rendezvous_pools_honest_rows_and_leaves_out_colluders(tmp_path: Path) -> None:
    a = Collusion(tmp_path, "aa" * 8)
    b = Collusion(tmp_path, "bb" * 8)
    a.share(3, "11" * 8, torch.ones(5))
    b.share(3, "22" * 8, 2 * torch.ones(5))
    b.share(3, "11" * 8, torch.ones(5))  # both received the same sender: one row
    a.share(3, "bb" * 8, 9 * torch.ones(5))  # a colluder's own vector is no honest row
    pool = b.pool(3)
    assert sorted(pool) == ["11" * 8, "22" * 8]
    assert torch.equal(pool["22" * 8], 2 * torch.ones(5))
    assert [t.tolist() for t in a.targets(3)] == [[1.0] * 5]
    assert a.pool(4) == {}
    assert a.wait_pool(3, want=5, timeout=0.2, sleep=0.05).keys() == pool.keys()


def test_waiting_stops_once_the_pool_stops_growing(tmp_path: Path) -> None:
    # k + 1 rows may never come (fewer honest peers sampled the colluders this round):
    # waiting the whole timeout every round made the attackers a round late, i.e. stale.
    a = Collusion(tmp_path, "aa" * 8)
    a.share(2, "11" * 8, torch.ones(5))
    t0 = time.monotonic()
    assert len(a.wait_pool(2, want=4, timeout=0.6, sleep=0.02, settle=0.1)) == 1
    assert time.monotonic() - t0 >= 0.6  # one row is not enough to stop early
    a.share(2, "22" * 8, torch.ones(5))
    t0 = time.monotonic()
    assert len(a.wait_pool(2, want=4, timeout=30.0, sleep=0.02, settle=0.1)) == 2
    assert time.monotonic() - t0 < 10.0


def test_a_lagging_attacker_attacks_with_earlier_rounds_rows(tmp_path: Path) -> None:
    genesis = Genesis.fresh(network={"name": "lab"}, rounds={"round_timeout": 1.0})
    a = Collusion(tmp_path, "aa" * 8)
    base, honest = _honest(h=3)
    for i, row in enumerate(honest):
        a.share(4, f"{i}{i}" * 8, row)
    own = honest[0].clone()
    # Rounds 5 and 6 are empty (the honest nodes are ahead or behind): round 4 stands in.
    out = collude_round(a, "ipm", genesis, 7, base=base, own=own)
    assert not torch.equal(out, own)
    assert float((out - base) @ (honest.mean(0) - base)) < 0  # IPM: against the honest step
    # Beyond the lookback there is nothing to attack with: the attacker sends its own vector.
    assert torch.equal(collude_round(a, "ipm", genesis, 4 + LOOKBACK + 1, base=base, own=own), own)


def test_rendezvous_must_exist(tmp_path: Path) -> None:
    with pytest.raises(CollusionError, match="does not exist"):
        Collusion(tmp_path / "missing", "aa")


def test_stealth_stays_under_the_observed_f_threshold_of_every_honest_receiver() -> None:
    from node.training.robust_defaults import OUTLIER_FACTOR, observed_f

    base, honest = _honest(h=8)
    out = colluding_vector(
        "ipm",
        {},
        honest=honest,
        targets=honest[:0],
        base=base,
        f=2,
        rule="nnm+trimmed_mean",
        rule_f=2,
        rule_params={},
        max_norm=1e4,
        stealth=OUTLIER_FACTOR,
    )
    for i in range(honest.shape[0]):
        others = [honest[j] for j in range(honest.shape[0]) if j != i]
        assert observed_f(honest[i], [*others, out], 2) == 0
    # Still an attack: it pulls the average against the honest updates' mean, as far as the
    # threshold lets it (beyond the honest rows' own spread).
    mu = (honest - base).mean(dim=0)
    pull = out - honest.mean(dim=0)
    assert float(torch.dot(pull, mu)) < 0
    spread = float(torch.linalg.vector_norm(honest - honest.mean(dim=0), dim=1).max())
    assert float(pull.norm()) > spread
