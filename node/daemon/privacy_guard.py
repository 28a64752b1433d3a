"""The release guard: every value that leaves the node computed from its data passes here.

A *release* is one message-sized value computed from the node's data: a vector update
(learners ``sgd`` and ``flower``; the same vector sent to k peers in a round is one
release) or one SPSA scalar batch (learner ``spsa``). A round goes through the guard in
three steps:

1. :meth:`ReleaseGuard.open` *before* any local computation: refuses (raises
   :class:`ReleaseRefused`) when the release would overrun the node-level budget, when the
   round's record-level mechanism steps would overrun the record-level budget, or when the
   ledger cannot be trusted. A refused node does not train that round, nor any later one.
2. The learner computes; everything it publishes passes through the returned
   :class:`Ticket`: :meth:`Ticket.privatize_update` (joint L2 clip to ``clip`` and
   Gaussian noise of std ``noise_multiplier * clip`` on every coordinate) or
   :meth:`Ticket.privatize_scalar` (per-scalar clip to ``[-clip, clip]`` and Gaussian
   noise of the same std). With node-level privacy off both are the identity.
3. :meth:`ReleaseGuard.commit` with the sha256 of the exact bytes that will go on the
   wire: one SQL transaction writes the node-level row (``Release(z, 1.0, steps)``) and,
   when the learner runs a record-level mechanism (DP-SGD, DP-ZO), the record-level row of
   the round's steps (``Release(z_rec, q, steps_rec)``), each with its scope's cumulative
   epsilon; the budget checks run inside it. Only then does the caller send.

Two guarantees, two accounts in one hash-chained ledger (``scope`` ``node`` / ``record``):

* node-level: neighbouring executions differ in the node's whole data set; a vector update
  is one Gaussian mechanism of sensitivity ``clip`` (one step), a batch of ``m`` scalars
  one of L2 sensitivity ``clip * sqrt(m)`` at per-coordinate noise ``z * clip``, i.e.
  exactly ``m`` steps at ``z`` (docs/privacy.md);
* record-level: neighbouring executions differ in one training example; the learner's
  Poisson-subsampled Gaussian steps (sample rate ``q``) are debited when their result is
  released, which is before anything computed from them can leave the node or reach a
  checkpoint. A restarted node rebuilds both accounts from the ledger.

A crash after the commit and before the send over-counts; nothing can under-count. A
ledger whose hash chain does not verify stops releases, with the reason, and is never
reset.

What the node keeps is post-processing of what it released: the runtimes replace their
own contribution by the released value (vector learners) or only ever apply released
scalars (SPSA), so checkpoints they serve are built from released values only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from node.base.logs import log
from node.storage import Store
from node.storage.errors import LedgerConflict, LedgerCorrupted
from node.storage.records import LedgerRelease, LedgerRow
from node.training.genesis import PrivacySpec
from privacy import BudgetExceeded, PrivacyBudget, Release, privatize_scalars, privatize_update

if TYPE_CHECKING:
    from node.base.metrics import Metrics

__all__ = [
    "Account",
    "RecordMechanism",
    "ReleaseGuard",
    "ReleaseRefused",
    "Ticket",
    "tensor_digest",
]


class ReleaseRefused(Exception):
    """The node may not release (a budget is exhausted or the ledger is unusable)."""


def tensor_digest(vector: torch.Tensor) -> str:
    """sha256 hex of a vector as sent on the wire (flat little-endian float32).

    Equal to ``TensorHeader.payload_sha256`` of the update that carries it.
    """
    flat = vector.detach().to(torch.float32).reshape(-1).contiguous().numpy()
    return hashlib.sha256(flat.astype("<f4", copy=False).tobytes()).hexdigest()


@dataclass(frozen=True)
class RecordMechanism:
    """The record-level DP mechanism a learner runs every round.

    Attributes
    ----------
    kind : str
        ``dp_sgd`` or ``dp_zo`` (the ledger rows' release kind).
    noise_multiplier : float
        z > 0 of every step.
    sample_rate : float
        Poisson sampling rate q in (0, 1] of every step.
    steps : int
        Steps per round.
    """

    kind: str
    noise_multiplier: float
    sample_rate: float
    steps: int

    @property
    def release(self) -> Release:
        """One round of the mechanism as an accounting release."""
        return Release(self.noise_multiplier, self.sample_rate, self.steps)


class Account:
    """One scope of the ledger: its rows, its budget, and whether it still allows spending.

    Parameters
    ----------
    scope : str
        ``node`` or ``record``.
    epsilon, delta : float
        Budget (``math.inf``: account without a limit) and the delta it is stated at.
    rows : iterable of LedgerRow
        This scope's committed rows, oldest first.
    """

    def __init__(self, scope: str, epsilon: float, delta: float, rows: Iterable[LedgerRow]):
        self.scope = scope
        self.rows = list(rows)
        self.budget = PrivacyBudget(
            epsilon, delta, [Release(r.noise_multiplier, r.sample_rate, r.steps) for r in self.rows]
        )
        self.active = True
        self.reason = ""

    def spent(self) -> float:
        """Epsilon of every committed row of this scope at its delta (0 when none)."""
        return self.budget.spent() if self.rows else 0.0

    @property
    def steps(self) -> int:
        return sum(r.steps for r in self.rows)

    def stop(self, reason: str) -> None:
        self.active = False
        self.reason = reason

    def check(self, release: Release) -> float:
        """Epsilon after ``release``; raises :class:`BudgetExceeded` when it does not fit."""
        return self.budget.check(release)

    def add(self, row: LedgerRow, release: Release) -> None:
        self.rows.append(row)
        self.budget = self.budget.with_release(release)


@dataclass
class Ticket:
    """Permission for one release, obtained before the computation.

    Attributes
    ----------
    kind : str
        What is released (``update``, ``spsa``).
    steps : int
        Node-level Gaussian-mechanism steps this release debits (1 per update, m per SPSA
        batch).
    clip : float
        Node-level clip C (L2 for updates, per scalar for SPSA).
    noise_multiplier : float
        Node-level z; 0 when node-level privacy is off (then nothing is noised here).
    record : RecordMechanism or None
        The record-level steps this release carries (debited with it).
    """

    kind: str
    steps: int
    clip: float
    noise_multiplier: float
    record: RecordMechanism | None = None
    node_epsilon_after: float | None = None
    record_epsilon_after: float | None = None
    known_seq: int = 0
    committed: bool = False
    privatized: int = field(default=0, repr=False)

    @property
    def noised(self) -> bool:
        """True when node-level clipping and noise apply to this release."""
        return self.node_epsilon_after is not None

    def privatize_update(self, update: torch.Tensor) -> torch.Tensor:
        """Clip ``update`` jointly to L2 ``clip`` and add N(0, (z clip)^2) per coordinate."""
        if not self.noised:
            return update
        self.privatized += 1
        return privatize_update(
            update.detach().to(torch.float32).reshape(-1),
            clip_norm=self.clip,
            noise_multiplier=self.noise_multiplier,
        ).update

    def privatize_scalar(self, value: float) -> float:
        """Clip one SPSA scalar to ``[-clip, clip]`` and add N(0, (z clip)^2).

        A NaN (a diverged loss) counts as 0: the clipped value must stay a bounded
        function of the data whatever the model does.
        """
        if not self.noised:
            return value
        self.privatized += 1
        if self.privatized > self.steps:
            raise ReleaseRefused(f"more than the {self.steps} scalars this release paid for")
        v = 0.0 if math.isnan(value) else value
        out = privatize_scalars(
            torch.tensor([v], dtype=torch.float64),
            clip_bound=self.clip,
            noise_multiplier=self.noise_multiplier,
        )
        return float(out[0])


class ReleaseGuard:
    """Clip, noise, account and durably debit each release of one node.

    Parameters
    ----------
    spec : PrivacySpec
        Genesis privacy settings (node-level clip, noise multiplier, budget, delta; the
        record-level budget and delta).
    store : Store
        Holds the ledger.
    metrics : Metrics or None, default None
        Gauges updated after every debit.
    record_kind : str or None, default None
        The learner's record-level mechanism (``dp_sgd``, ``dp_zo``) as the genesis names
        it; its parameters follow with :meth:`set_record_mechanism` once the data is
        loaded (the sample rate depends on the number of local examples).
    """

    def __init__(
        self,
        spec: PrivacySpec,
        store: Store,
        metrics: Metrics | None = None,
        *,
        record_kind: str | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.metrics = metrics
        self.record_kind = record_kind
        self.mechanism: RecordMechanism | None = None
        self.rows: list[LedgerRow] = []
        problem = ""
        try:
            self.rows = store.ledger_rows()
            store.ledger_verify()
        except (LedgerCorrupted, ValueError) as exc:
            problem = f"privacy ledger unusable: {exc}"
        try:
            self.node = self._account("node", spec.epsilon_budget, spec.delta)
            record_budget = math.inf if spec.sample_epsilon is None else spec.sample_epsilon
            self.record = self._account("record", record_budget, spec.sample_delta)
        except ValueError as exc:  # a corrupted row: never read it as a smaller spend
            problem = problem or f"privacy ledger unusable: {exc}"
            self.node = Account("node", spec.epsilon_budget, spec.delta, [])
            self.record = Account("record", math.inf, spec.sample_delta, [])
        if problem:
            self._stop(self.node, problem)
            self._stop(self.record, problem)
        elif spec.enabled and self.node.rows:
            # A restarted node whose stored ledger leaves no room for one more release says
            # so from the start (status, member record), not only at its next round.
            try:
                self.node.check(Release(spec.noise_multiplier, 1.0, 1))
            except BudgetExceeded as exc:
                self._stop(self.node, str(exc))
        self._gauges()

    def _account(self, scope: str, epsilon: float, delta: float) -> Account:
        return Account(scope, epsilon, delta, (r for r in self.rows if r.scope == scope))

    # --- state -----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Node-level privacy is on (releases are clipped, noised and debited)."""
        return self.spec.enabled

    @property
    def private(self) -> bool:
        """Some differential privacy guarantee is claimed for this node's data."""
        return self.spec.enabled or self.record_kind is not None

    def spent(self) -> float:
        """Node-level epsilon spent (at the genesis delta)."""
        return self.node.spent()

    def record_spent(self) -> float:
        """Record-level epsilon spent (at ``sample_delta``)."""
        return self.record.spent()

    @property
    def releasing(self) -> bool:
        """False once either budget stops this node's releases, or the ledger is unusable."""
        return self.node.active and self.record.active

    @property
    def reason(self) -> str:
        return self.node.reason or self.record.reason

    def set_record_mechanism(self, mechanism: RecordMechanism | None) -> None:
        """The learner's record-level mechanism for every later round (None: none)."""
        if mechanism is not None and mechanism.noise_multiplier <= 0:
            # Clip-only DP-SGD/DP-ZO has no finite epsilon: nothing to account, no claim.
            mechanism = None
        self.mechanism = mechanism
        if mechanism is not None and self.record_kind is None:
            self.record_kind = mechanism.kind

    def _stop(self, account: Account, reason: str) -> None:
        if account.active:
            what = "releases" if account.scope == "node" else "local training"
            log.warning("%s stopped: %s", what, reason)
        account.stop(reason)
        self._gauges()

    def _gauges(self) -> None:
        m = self.metrics
        if m is None:
            return
        m.epsilon_spent.set(self.node.spent())
        for account, on in ((self.node, self.enabled), (self.record, self.record_kind)):
            level = account.scope
            budget = account.budget.epsilon
            m.privacy_epsilon_spent.labels(level=level).set(account.spent())
            m.privacy_epsilon_remaining.labels(level=level).set(
                max(0.0, budget - account.spent()) if on and math.isfinite(budget) else 0.0
            )
            m.privacy_active.labels(level=level).set(1.0 if account.active else 0.0)

    # --- the three steps ---------------------------------------------------------------

    def open(self, kind: str, *, steps: int = 1) -> Ticket:
        """Permission to compute one release of ``steps`` node-level steps.

        Raises
        ------
        ReleaseRefused
            The release (node level) or the round's record-level steps would exceed
            their budget (the node stops for good), or the ledger is unusable.
        """
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        ticket = Ticket(
            kind, steps, self.spec.clip, 0.0, record=self.mechanism, known_seq=len(self.rows)
        )
        if not self.releasing and (self.enabled or self.mechanism is not None):
            raise ReleaseRefused(self.reason)
        if self.enabled:
            try:
                ticket.node_epsilon_after = self.node.check(
                    Release(self.spec.noise_multiplier, 1.0, steps)
                )
            except BudgetExceeded as exc:
                self._stop(self.node, str(exc))
                raise ReleaseRefused(self.reason) from None
            ticket.noise_multiplier = self.spec.noise_multiplier
        if self.mechanism is not None:
            try:
                ticket.record_epsilon_after = self.record.check(self.mechanism.release)
            except BudgetExceeded as exc:
                self._stop(self.record, f"record-level {exc}; local training stops")
                raise ReleaseRefused(self.reason) from None
        return ticket

    def commit(self, ticket: Ticket, digest: str) -> None:
        """Debit ``ticket`` durably; ``digest`` is the sha256 hex of the bytes to be sent.

        Blocking (SQL): call it from an executor. After it returns the caller may send.

        Raises
        ------
        ReleaseRefused
            The ledger changed underneath the node or does not verify (nothing stored).
        """
        if ticket.committed:
            raise ValueError("this ticket was committed already")
        pending: list[tuple[Account, LedgerRelease, Release]] = []
        if ticket.noised:
            assert ticket.node_epsilon_after is not None
            release = Release(ticket.noise_multiplier, 1.0, ticket.steps)
            pending.append(
                (
                    self.node,
                    _row(
                        ticket.kind,
                        "node",
                        ticket.node_epsilon_after,
                        self.spec.delta,
                        release,
                        digest,
                    ),
                    release,
                )
            )
        if ticket.record is not None:
            assert ticket.record_epsilon_after is not None
            release = ticket.record.release
            eps = ticket.record_epsilon_after
            pending.append(
                (
                    self.record,
                    _row(
                        ticket.record.kind, "record", eps, self.spec.sample_delta, release, digest
                    ),
                    release,
                )
            )
        if not pending:
            ticket.committed = True
            return
        known = ticket.known_seq
        if known != len(self.rows):
            raise ReleaseRefused("another release was debited since this ticket was opened")

        def check(tip: LedgerRow | None, _: LedgerRelease) -> None:
            # Another writer (there should be none: the data dir is locked) would make our
            # in-memory budgets stale; refuse rather than under-count.
            if (0 if tip is None else tip.seq) != known:
                raise ReleaseRefused("ledger changed underneath this node")

        try:
            rows = self.store.ledger_extend(
                [p[1] for p in pending],
                budget_check=check,
                event_detail={"kind": ticket.kind},
            )
        except (LedgerCorrupted, LedgerConflict) as exc:
            reason = f"privacy ledger unusable: {exc}"
            self._stop(self.node, reason)
            self._stop(self.record, reason)
            raise ReleaseRefused(reason) from None
        ticket.committed = True
        for (account, _, release), row in zip(pending, rows, strict=True):
            account.add(row, release)
        self.rows.extend(rows)
        self._gauges()

    def release(self, update: torch.Tensor, *, kind: str = "update") -> torch.Tensor:
        """Open, privatize and commit one vector release in one call; returns what to send.

        The digest is that of the privatized vector itself. Blocking (SQL).
        """
        ticket = self.open(kind)
        private = ticket.privatize_update(update.detach().to(torch.float32).reshape(-1))
        self.commit(ticket, tensor_digest(private))
        return private


def _row(
    kind: str, scope: str, epsilon_after: float, delta: float, r: Release, digest: str
) -> LedgerRelease:
    return LedgerRelease(
        epsilon_after=epsilon_after,
        delta=delta,
        noise_multiplier=r.noise_multiplier,
        sample_rate=r.sample_rate,
        steps=r.steps,
        release_kind=kind,
        release_digest=digest,
        scope=scope,
    )
