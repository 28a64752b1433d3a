"""Accounting against Opacus, against the exact Gaussian curve, and its own invariants."""

from __future__ import annotations

import math

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from privacy.accounting import (
    Release,
    compose_releases,
    epsilon,
    epsilon_of_releases,
    noise_multiplier_for,
)

DELTA = 1e-5


def opacus_rdp(z: float, q: float, steps: int, delta: float = DELTA) -> float:
    accountant = RDPAccountant()
    accountant.history = [(z, q, steps)]
    return float(accountant.get_epsilon(delta=delta))


def gaussian_delta(eps: float, mu: float) -> float:
    """Exact delta(eps) of a mu-GDP mechanism (Balle & Wang 2018, Dong et al. 2019)."""

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    return phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2)


def exact_gaussian_epsilon(mu: float, delta: float) -> float:
    low, high = 0.0, 100.0
    for _ in range(200):
        mid = (low + high) / 2
        if gaussian_delta(mid, mu) > delta:
            low = mid
        else:
            high = mid
    return high


def test_known_value_matches_opacus_docs_example() -> None:
    # q=0.01, z=1.0, 1000 steps at delta=1e-5: both RDP accountants give 2.10.
    assert epsilon(1.0, 0.01, 1000, DELTA) == pytest.approx(2.1014, abs=1e-3)


@pytest.mark.parametrize(
    ("z", "q", "steps"),
    [(0.8, 0.01, 1000), (1.0, 0.004, 10_000), (1.5, 0.05, 500), (3.0, 1.0, 20), (0.6, 0.1, 50)],
)
def test_rdp_agrees_with_opacus(z: float, q: float, steps: int) -> None:
    ours = epsilon(z, q, steps, DELTA)
    theirs = opacus_rdp(z, q, steps)
    # Same method and conversion; the two libraries only differ in the grid of RDP orders.
    assert ours == pytest.approx(theirs, rel=0.005)


def test_pld_agrees_with_opacus_prv() -> None:
    z, q, steps = 1.0, 0.01, 1000
    ours = epsilon(z, q, steps, DELTA, accountant="pld")
    prv = PRVAccountant()
    prv.history = [(z, q, steps)]
    theirs = float(prv.get_epsilon(delta=DELTA))
    assert ours == pytest.approx(theirs, rel=0.03)
    # PLD is tighter than RDP.
    assert ours < epsilon(z, q, steps, DELTA)


@pytest.mark.parametrize(("z", "steps"), [(1.0, 1), (2.0, 10), (5.0, 100)])
def test_full_batch_gaussian_against_exact_curve(z: float, steps: int) -> None:
    mu = math.sqrt(steps) / z
    exact = exact_gaussian_epsilon(mu, DELTA)
    pld_eps = epsilon(z, 1.0, steps, DELTA, accountant="pld")
    rdp_eps = epsilon(z, 1.0, steps, DELTA)
    # Both are sound upper bounds; PLD is nearly exact, RDP looser.
    assert exact <= pld_eps <= exact * 1.01 + 1e-3
    assert pld_eps <= rdp_eps
    assert gaussian_delta(rdp_eps, mu) <= DELTA


def test_spsa_batch_equivalence_m_steps_equals_one_scaled_query() -> None:
    # m scalars with multiplier z == one vector query with multiplier z / sqrt(m).
    z, m = 4.0, 16
    as_steps = epsilon(z, 1.0, m, DELTA, accountant="pld")
    as_vector = epsilon(z / math.sqrt(m), 1.0, 1, DELTA, accountant="pld")
    assert as_steps == pytest.approx(as_vector, rel=1e-3)


def test_monotonicity() -> None:
    by_steps = [epsilon(1.0, 0.02, n, DELTA) for n in (10, 100, 1000, 5000)]
    assert by_steps == sorted(by_steps)
    assert len(set(by_steps)) == len(by_steps)
    by_noise = [epsilon(z, 0.02, 1000, DELTA) for z in (0.7, 1.0, 2.0, 4.0)]
    assert by_noise == sorted(by_noise, reverse=True)
    by_rate = [epsilon(1.0, q, 1000, DELTA) for q in (0.001, 0.01, 0.1)]
    assert by_rate == sorted(by_rate)
    by_delta = [epsilon(1.0, 0.01, 1000, d) for d in (1e-7, 1e-5, 1e-3)]
    assert by_delta == sorted(by_delta, reverse=True)


def test_edge_values() -> None:
    assert epsilon(1.0, 0.5, 0, DELTA) == 0.0
    assert epsilon(0.0, 0.5, 3, DELTA) == math.inf
    assert epsilon(0.0, 0.5, 3, DELTA, accountant="pld") == math.inf


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"noise_multiplier": math.nan}, "noise_multiplier"),
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"steps": -3}, "steps"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "gdp"}, "accountant"),
    ],
)
def test_bad_parameters_raise_value_error(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "noise_multiplier": 1.0,
        "sample_rate": 0.1,
        "steps": 10,
        "delta": DELTA,
    }
    accountant = kwargs.pop("accountant", "rdp")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        epsilon(**args, accountant=accountant)  # type: ignore[arg-type]


def test_non_integer_steps_is_type_error() -> None:
    with pytest.raises(TypeError, match="steps"):
        epsilon(1.0, 0.1, 10.5, DELTA)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "q", "steps"), [(1.0, 0.01, 1000), (3.0, 0.1, 200), (8.0, 1.0, 10)]
)
def test_noise_multiplier_inverse_round_trips(target: float, q: float, steps: int) -> None:
    z = noise_multiplier_for(target, q, steps, DELTA)
    assert epsilon(z, q, steps, DELTA) <= target
    # Minimal to within the bisection tolerance: slightly less noise overspends.
    assert epsilon(z * 0.999, q, steps, DELTA) > target
    assert epsilon(z, q, steps, DELTA) == pytest.approx(target, rel=0.01)


def test_noise_multiplier_agrees_with_opacus() -> None:
    ours = noise_multiplier_for(2.0, 0.01, 2000, DELTA)
    theirs = get_noise_multiplier(
        target_epsilon=2.0,
        target_delta=DELTA,
        sample_rate=0.01,
        steps=2000,
        epsilon_tolerance=0.001,
    )
    assert ours == pytest.approx(theirs, rel=0.01)


def test_noise_multiplier_pld_is_smaller_than_rdp() -> None:
    rdp_z = noise_multiplier_for(3.0, 1.0, 10, DELTA)
    pld_z = noise_multiplier_for(3.0, 1.0, 10, DELTA, accountant="pld", rtol=1e-3)
    assert pld_z < rdp_z
    assert epsilon(pld_z, 1.0, 10, DELTA, accountant="pld") <= 3.0


def test_noise_multiplier_edge_cases() -> None:
    assert noise_multiplier_for(math.inf, 0.1, 10, DELTA) == 0.0
    assert noise_multiplier_for(1.0, 0.1, 0, DELTA) == 0.0
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_multiplier_for(0.0, 0.1, 10, DELTA)
    with pytest.raises(ValueError, match="too small"):
        noise_multiplier_for(1e-9, 1.0, 10**6, DELTA)


def test_heterogeneous_composition() -> None:
    a = Release(1.0, 0.01, 500)
    b = Release(2.0, 0.05, 300)
    both = epsilon_of_releases([a, b], DELTA)
    assert both > max(epsilon(1.0, 0.01, 500, DELTA), epsilon(2.0, 0.05, 300, DELTA))
    # Tighter than adding stand-alone epsilons (basic composition).
    assert both < epsilon(1.0, 0.01, 500, DELTA) + epsilon(2.0, 0.05, 300, DELTA)
    # Order-free, and identical blocks merge by steps.
    assert epsilon_of_releases([b, a], DELTA) == pytest.approx(both)
    split = [Release(1.0, 0.01, 200), b, Release(1.0, 0.01, 300)]
    assert epsilon_of_releases(split, DELTA) == pytest.approx(both, rel=1e-12)
    assert compose_releases(split) == [Release(1.0, 0.01, 500), b]


def test_release_validation_names_field() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        Release(1.0, -0.1, 3)
    with pytest.raises(TypeError, match="steps"):
        Release(1.0, 0.1, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise_multiplier"):
        Release(math.inf, 0.1, 3)


@pytest.mark.parametrize(("z", "steps"), [(2.0, 10), (5.0, 100), (20.0, 1000)])
def test_pld_closed_form_matches_discretised_pld_accountant(z: float, steps: int) -> None:
    from dp_accounting import GaussianDpEvent, SelfComposedDpEvent
    from dp_accounting.pld import PLDAccountant

    accountant = PLDAccountant()
    accountant.compose(SelfComposedDpEvent(GaussianDpEvent(z), steps))
    discretised = float(accountant.get_epsilon(DELTA))
    closed = epsilon(z, 1.0, steps, DELTA, accountant="pld")
    # The discretised PLD rounds up; the closed form is exact and never above it.
    assert closed <= discretised + 1e-6
    assert closed == pytest.approx(discretised, rel=0.01)


def test_pld_closed_form_composes_heterogeneous_full_batch_blocks() -> None:
    # 10 steps at z=2 and 40 steps at z=4: 1/sigma^2 = 10/4 + 40/16 = 5 -> one query at
    # z = 1/sqrt(5).
    both = epsilon_of_releases(
        [Release(2.0, 1.0, 10), Release(4.0, 1.0, 40)], DELTA, accountant="pld"
    )
    assert both == pytest.approx(epsilon(1 / math.sqrt(5), 1.0, 1, DELTA, accountant="pld"))


def test_numpy_scalars_are_accepted() -> None:
    import numpy as np

    release = Release(np.float64(2.0), np.float32(1.0), np.int64(7))  # type: ignore[arg-type]
    assert type(release.steps) is int and release.steps == 7
    assert epsilon(np.float64(2.0), 1.0, np.int64(7), DELTA) == epsilon(2.0, 1.0, 7, DELTA)  # type: ignore[arg-type]
