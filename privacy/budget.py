"""Budget arithmetic: how much of an (epsilon, delta) budget past releases have spent.

This is the pure core of the privacy ledger. The SQL ledger in ``node/`` persists every
:class:`~privacy.accounting.Release` (debited in the same transaction that records the
outgoing message, *before* the bytes leave) and rebuilds a :class:`PrivacyBudget` from
the stored rows; this module only does the arithmetic and never touches storage.

"Remaining" is ``budget_epsilon - spent_epsilon``, a display figure: epsilon does not
add up linearly under RDP or PLD composition, so whether a given next release fits is
answered by :meth:`PrivacyBudget.can_release` (which composes it with the history), not
by comparing its stand-alone epsilon with ``remaining()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from privacy.accounting import Release, _check_accountant, _check_delta, epsilon_of_releases

__all__ = ["BudgetExceeded", "PrivacyBudget"]


class BudgetExceeded(ValueError):
    """A release would push the spent epsilon past the budget; it must not be sent.

    Attributes
    ----------
    spent : float
        Epsilon spent before the refused release.
    would_spend : float
        Epsilon after it, had it been allowed.
    budget : float
        The budget epsilon.
    """

    def __init__(self, message: str, *, spent: float, would_spend: float, budget: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.would_spend = would_spend
        self.budget = budget


class PrivacyBudget:
    """An (epsilon, delta) budget together with the releases already made against it.

    Instances are immutable: :meth:`with_release` returns a new budget. Epsilon values are
    computed lazily and memoised.

    Parameters
    ----------
    epsilon : float
        Budget epsilon, > 0; ``math.inf`` disables the limit (everything fits, spending is
        still reported).
    delta : float
        Budget delta in (0, 1); every epsilon is computed at this delta.
    releases : Iterable[Release], default ()
        Past releases, in any order.
    accountant : {"rdp", "pld"}, default "rdp"
        Accountant used for composition (see :mod:`privacy.accounting`).

    Raises
    ------
    ValueError
        On a non-positive or NaN epsilon, delta outside (0, 1), an unknown accountant.
    TypeError
        If a release is not a :class:`~privacy.accounting.Release`.
    """

    def __init__(
        self,
        epsilon: float,
        delta: float,
        releases: Iterable[Release] = (),
        *,
        accountant: str = "rdp",
    ) -> None:
        eps = float(epsilon)
        if math.isnan(eps) or eps <= 0.0:
            raise ValueError(f"budget epsilon must be > 0 (or inf), got {epsilon!r}")
        self._epsilon = eps
        self._delta = _check_delta(delta)
        self._accountant = _check_accountant(accountant)
        history = tuple(releases)
        for index, release in enumerate(history):
            if not isinstance(release, Release):
                raise TypeError(
                    f"release #{index} must be a privacy.accounting.Release, "
                    f"got {type(release).__name__}"
                )
        self._releases = history
        self._spent: float | None = None

    @property
    def epsilon(self) -> float:
        """The budget epsilon."""
        return self._epsilon

    @property
    def delta(self) -> float:
        """The budget delta."""
        return self._delta

    @property
    def accountant(self) -> str:
        """The accountant name."""
        return self._accountant

    @property
    def releases(self) -> tuple[Release, ...]:
        """Past releases, in the order given."""
        return self._releases

    def spent(self) -> float:
        """Epsilon spent by all past releases at the budget's delta (0.0 if none)."""
        if self._spent is None:
            self._spent = epsilon_of_releases(
                self._releases, self._delta, accountant=self._accountant
            )
        return self._spent

    def remaining(self) -> float:
        """``max(0, budget epsilon - spent epsilon)``; ``inf`` for an unlimited budget.

        A display figure only; use :meth:`can_release` to decide (module docstring).
        """
        if math.isinf(self._epsilon):
            return math.inf
        return max(0.0, self._epsilon - self.spent())

    def epsilon_after(self, next_release: Release) -> float:
        """Epsilon spent if ``next_release`` were composed with the history."""
        if not isinstance(next_release, Release):
            raise TypeError(f"next_release must be a Release, got {type(next_release).__name__}")
        return epsilon_of_releases(
            (*self._releases, next_release), self._delta, accountant=self._accountant
        )

    def can_release(self, next_release: Release) -> bool:
        """Whether ``next_release`` fits: spent epsilon after it is <= budget epsilon."""
        if math.isinf(self._epsilon):
            return True
        return self.epsilon_after(next_release) <= self._epsilon

    def check(self, next_release: Release) -> float:
        """Return the epsilon after ``next_release``, or raise if it would overspend.

        Raises
        ------
        BudgetExceeded
            With a message giving spent, would-be and budget epsilon and the release.
        """
        after = self.epsilon_after(next_release)
        if math.isinf(self._epsilon) or after <= self._epsilon:
            return after
        spent = self.spent()
        raise BudgetExceeded(
            f"privacy budget exhausted: release {next_release} would raise epsilon from "
            f"{spent:.4g} to {after:.4g}, above the budget {self._epsilon:.4g} "
            f"at delta={self._delta:g} ({self._accountant} accountant); not releasing",
            spent=spent,
            would_spend=after,
            budget=self._epsilon,
        )

    def with_release(self, next_release: Release) -> PrivacyBudget:
        """A new budget with ``next_release`` appended, after :meth:`check` passes.

        Raises
        ------
        BudgetExceeded
            If it does not fit (the release is refused, never truncated).
        """
        after = self.check(next_release)
        budget = PrivacyBudget(
            self._epsilon,
            self._delta,
            (*self._releases, next_release),
            accountant=self._accountant,
        )
        budget._spent = after
        return budget

    def steps_left(self, noise_multiplier: float, sample_rate: float) -> int:
        """How many more steps at ``(noise_multiplier, sample_rate)`` fit in the budget.

        Exponential then binary search over composed epsilon; capped at ``2**40`` (also
        returned for an unlimited budget).
        """
        cap = 2**40
        if math.isinf(self._epsilon):
            return cap

        def fits(steps: int) -> bool:
            return self.can_release(Release(noise_multiplier, sample_rate, steps))

        if not fits(1):
            return 0
        low, high = 1, 2
        while fits(high):
            low, high = high, high * 2
            if high > cap:
                return cap
        while high - low > 1:
            mid = (low + high) // 2
            if fits(mid):
                low = mid
            else:
                high = mid
        return low

    def __repr__(self) -> str:
        return (
            f"PrivacyBudget(epsilon={self._epsilon!r}, delta={self._delta!r}, "
            f"releases={len(self._releases)}, accountant={self._accountant!r})"
        )
