"""Budget arithmetic: spent, remaining, refusal of overspending releases."""

from __future__ import annotations

import math

import pytest

from privacy.accounting import Release, epsilon, epsilon_of_releases
from privacy.budget import BudgetExceeded, PrivacyBudget

DELTA = 1e-5


def test_empty_budget_has_spent_nothing() -> None:
    budget = PrivacyBudget(3.0, DELTA)
    assert budget.spent() == 0.0
    assert budget.remaining() == 3.0
    assert budget.releases == ()


def test_spent_matches_accountant_for_same_parameters() -> None:
    history = [Release(5.0, 1.0, 10), Release(5.0, 1.0, 15)]
    budget = PrivacyBudget(8.0, DELTA, history)
    assert budget.spent() == pytest.approx(epsilon(5.0, 1.0, 25, DELTA))
    assert budget.remaining() == pytest.approx(8.0 - budget.spent())


def test_heterogeneous_history_composes_in_accountant() -> None:
    history = [Release(5.0, 1.0, 10), Release(1.0, 0.01, 1000)]
    budget = PrivacyBudget(10.0, DELTA, history, accountant="pld")
    assert budget.spent() == pytest.approx(epsilon_of_releases(history, DELTA, accountant="pld"))


def test_refuses_release_that_would_overspend() -> None:
    budget = PrivacyBudget(3.0, DELTA)
    release = Release(5.0, 1.0, 1)
    n = 0
    while budget.can_release(release):
        budget = budget.with_release(release)
        n += 1
        assert budget.spent() <= 3.0
        assert n < 10_000
    assert n > 0
    assert epsilon(5.0, 1.0, n, DELTA) <= 3.0 < epsilon(5.0, 1.0, n + 1, DELTA)
    with pytest.raises(BudgetExceeded, match="privacy budget exhausted") as info:
        budget.check(release)
    assert info.value.budget == 3.0
    assert info.value.spent == pytest.approx(budget.spent())
    assert info.value.would_spend > 3.0
    with pytest.raises(BudgetExceeded):
        budget.with_release(release)
    # Refused, not truncated: the history is unchanged.
    assert len(budget.releases) == n
    assert budget.remaining() < 3.0
    assert budget.remaining() == pytest.approx(3.0 - budget.spent())


def test_steps_left_agrees_with_repeated_release() -> None:
    budget = PrivacyBudget(3.0, DELTA, [Release(5.0, 1.0, 4)])
    left = budget.steps_left(5.0, 1.0)
    assert budget.can_release(Release(5.0, 1.0, left))
    assert not budget.can_release(Release(5.0, 1.0, left + 1))
    assert PrivacyBudget(0.01, DELTA).steps_left(1.0, 1.0) == 0


def test_big_single_release_refused_even_on_empty_budget() -> None:
    budget = PrivacyBudget(1.0, DELTA)
    assert not budget.can_release(Release(0.5, 1.0, 1))
    assert not budget.can_release(Release(0.0, 1.0, 1))  # no noise: infinite epsilon


def test_unlimited_budget_accepts_everything_but_reports_spend() -> None:
    budget = PrivacyBudget(math.inf, DELTA).with_release(Release(1.0, 1.0, 3))
    assert budget.can_release(Release(0.0, 1.0, 1))
    assert budget.remaining() == math.inf
    assert budget.spent() == pytest.approx(epsilon(1.0, 1.0, 3, DELTA))


def test_check_returns_epsilon_after() -> None:
    budget = PrivacyBudget(5.0, DELTA, [Release(4.0, 1.0, 2)])
    after = budget.check(Release(4.0, 1.0, 3))
    assert after == pytest.approx(epsilon(4.0, 1.0, 5, DELTA))
    assert budget.with_release(Release(4.0, 1.0, 3)).spent() == pytest.approx(after)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0.0, DELTA), {}, ValueError, "epsilon"),
        ((math.nan, DELTA), {}, ValueError, "epsilon"),
        ((1.0, 0.0), {}, ValueError, "delta"),
        ((1.0, DELTA), {"accountant": "moments"}, ValueError, "accountant"),
        ((1.0, DELTA, [(1.0, 1.0, 3)]), {}, TypeError, "release #0"),
    ],
)
def test_bad_budget_parameters(
    args: tuple[object, ...], kwargs: dict[str, str], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        PrivacyBudget(*args, **kwargs)  # type: ignore[arg-type]


def test_corrupted_row_fails_loudly() -> None:
    # What the ledger does with a row whose steps went negative: building the Release fails.
    with pytest.raises(ValueError, match="steps"):
        PrivacyBudget(3.0, DELTA, [Release(1.0, 1.0, -4)])
