"""Node-level differential privacy of every release, with a crash-safe budget ledger.

A *release* is one vector that leaves the node (the same vector sent to k peers in a
round is one release). Before it leaves, :meth:`ReleaseGuard.release`:

1. clips the update (new − base, L2 over all of it) to ``clip`` and adds Gaussian noise
   of std ``noise_multiplier * clip`` (``privacy.privatize_update``);
2. computes the epsilon after this release with the accountant (``privacy.PrivacyBudget``
   over every past release, RDP at the genesis delta);
3. debits the ledger in one SQL transaction (``Store.ledger_append``), whose budget check
   runs inside that transaction and refuses a release that would overspend.

Only then is the noisy vector handed back for sending. A crash after step 3 and before
the send over-counts; nothing can under-count. When the next release would exceed the
budget the node stops releasing — it keeps receiving, aggregating and serving — and says
so in status and logs. A ledger whose hash chain does not verify stops releases too,
with the reason, and is never reset.

The node then uses the *released* (noisy) vector as its own contribution when it
aggregates, so everything it later sends is post-processing of what it already released
plus new noisy releases: that is what makes the per-release accounting valid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from privacy import BudgetExceeded, PrivacyBudget, Release, privatize_update

from .genesis import PrivacySpec
from .logs import log
from .storage import Store
from .storage.errors import LedgerCorrupted
from .storage.records import LedgerRelease, LedgerRow

__all__ = ["ReleaseGuard", "ReleaseRefused"]


class ReleaseRefused(Exception):
    """The node may not release (budget exhausted or ledger unusable)."""


@dataclass
class _State:
    releasing: bool = True
    reason: str = ""


class ReleaseGuard:
    """Clip, noise, account and durably debit each release.

    Parameters
    ----------
    spec : PrivacySpec
        Genesis privacy settings (clip, noise multiplier, budget, delta).
    store : Store
        Holds the ledger.
    """

    def __init__(self, spec: PrivacySpec, store: Store) -> None:
        self.spec = spec
        self.store = store
        self.state = _State()
        self.budget = PrivacyBudget(spec.epsilon_budget, spec.delta)
        self.rows: list[LedgerRow] = []
        try:
            self.rows = store.ledger_rows()
            store.ledger_verify()
            releases = [Release(r.noise_multiplier, r.sample_rate, r.steps) for r in self.rows]
            self.budget = PrivacyBudget(spec.epsilon_budget, spec.delta, releases)
        except (LedgerCorrupted, ValueError) as exc:
            self._stop(f"privacy ledger unusable: {exc}")

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    def spent(self) -> float:
        return self.budget.spent() if self.rows else 0.0

    def _stop(self, reason: str) -> None:
        if self.state.releasing:
            log.warning("releases stopped: %s", reason)
        self.state = _State(False, reason)

    def release(self, update: torch.Tensor, *, kind: str = "update") -> torch.Tensor:
        """Privatize ``update`` and debit the ledger; raise :class:`ReleaseRefused` if not allowed.

        Blocking (SQL): call it from an executor.
        """
        if not self.state.releasing:
            raise ReleaseRefused(self.state.reason)
        release = Release(self.spec.noise_multiplier, 1.0, 1)
        try:
            epsilon_after = self.budget.check(release)
        except BudgetExceeded as exc:
            self._stop(str(exc) if "exhausted" in str(exc) else f"privacy budget exhausted: {exc}")
            raise ReleaseRefused(self.state.reason) from None
        private = privatize_update(
            update.detach().to(torch.float32).reshape(-1),
            clip_norm=self.spec.clip,
            noise_multiplier=self.spec.noise_multiplier,
        ).update
        digest = hashlib.sha256(private.numpy().tobytes()).hexdigest()
        known = len(self.rows)

        def check(tip: LedgerRow | None, _: LedgerRelease) -> None:
            # Another writer (there should be none: the data dir is locked) would make our
            # in-memory budget stale; refuse rather than under-count.
            if (0 if tip is None else tip.seq) != known:
                raise ReleaseRefused("ledger changed underneath this node")

        try:
            row = self.store.ledger_append(
                LedgerRelease(
                    epsilon_after=epsilon_after,
                    delta=self.spec.delta,
                    noise_multiplier=self.spec.noise_multiplier,
                    sample_rate=1.0,
                    steps=1,
                    release_kind=kind,
                    release_digest=digest,
                ),
                budget_check=check,
                event_detail={"kind": kind},
            )
        except LedgerCorrupted as exc:
            self._stop(f"privacy ledger unusable: {exc}")
            raise ReleaseRefused(self.state.reason) from None
        self.rows.append(row)
        self.budget = self.budget.with_release(release)
        return private

    @property
    def releasing(self) -> bool:
        return self.state.releasing

    @property
    def reason(self) -> str:
        return self.state.reason
