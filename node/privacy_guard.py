"""The release guard: every value that leaves the node computed from its data passes here.

A *release* is one message-sized value computed from the node's data: a vector update
(learners ``sgd`` and ``flower``; the same vector sent to k peers in a round is one
release) or one SPSA scalar batch (learner ``spsa``). A round goes through the guard in
three steps:

1. :meth:`ReleaseGuard.open` *before* any local computation: refuses (raises
   :class:`ReleaseRefused`) when the release would overrun the node-level budget, or
   when the ledger cannot be trusted. A refused node does not train that round.
2. The learner computes; everything it publishes passes through the returned
   :class:`Ticket`: :meth:`Ticket.privatize_update` (joint L2 clip to ``clip`` and
   Gaussian noise of std ``noise_multiplier * clip`` on every coordinate) or
   :meth:`Ticket.privatize_scalar` (per-scalar clip to ``[-clip, clip]`` and Gaussian
   noise of the same std). With privacy disabled both are the identity.
3. :meth:`ReleaseGuard.commit` with the sha256 of the exact bytes that will go on the
   wire: the ledger row (release kind, ``Release(z, 1.0, steps)``, cumulative epsilon,
   digest) is written in one SQL transaction whose budget check runs inside it. Only then
   does the caller send.

Accounting: a vector update is one Gaussian mechanism of sensitivity ``clip`` (one step);
a batch of ``m`` scalars is one Gaussian mechanism on an m-vector of L2 sensitivity
``clip * sqrt(m)`` with per-coordinate noise ``z * clip``, which is exactly ``m`` steps at
multiplier ``z`` (docs/privacy.md). A crash after the commit and before the send
over-counts; nothing can under-count. When the next release would exceed the budget the
node stops releasing for good (the runtimes then stop training: nothing computed from
the data is needed any more) and says so in status and logs. A ledger whose hash chain
does not verify stops releases too, with the reason, and is never reset.

What the node keeps is post-processing of what it released: the runtimes replace their
own contribution by the released value (vector learners) or only ever apply released
scalars (SPSA), so checkpoints they serve are built from released values only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from privacy import BudgetExceeded, PrivacyBudget, Release, privatize_scalars, privatize_update

from .genesis import PrivacySpec
from .logs import log
from .storage import Store
from .storage.errors import LedgerConflict, LedgerCorrupted
from .storage.records import LedgerRelease, LedgerRow

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["ReleaseGuard", "ReleaseRefused", "Ticket", "tensor_digest"]


class ReleaseRefused(Exception):
    """The node may not release (budget exhausted or ledger unusable)."""


def tensor_digest(vector: torch.Tensor) -> str:
    """sha256 hex of a vector as sent on the wire (flat little-endian float32).

    Equal to ``TensorHeader.payload_sha256`` of the update that carries it.
    """
    flat = vector.detach().to(torch.float32).reshape(-1).contiguous().numpy()
    return hashlib.sha256(flat.astype("<f4", copy=False).tobytes()).hexdigest()


@dataclass
class Ticket:
    """Permission for one release, obtained before the computation.

    Attributes
    ----------
    kind : str
        What is released (``update``, ``spsa``).
    steps : int
        Gaussian-mechanism steps this release debits (1 per update, m per SPSA batch).
    clip : float
        Node-level clip C (L2 for updates, per scalar for SPSA).
    noise_multiplier : float
        Node-level z; 0 when node-level privacy is off (then nothing is noised).
    """

    kind: str
    steps: int
    clip: float
    noise_multiplier: float
    node_epsilon_after: float | None = None
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


@dataclass
class _State:
    releasing: bool = True
    reason: str = ""


class ReleaseGuard:
    """Clip, noise, account and durably debit each release of one node.

    Parameters
    ----------
    spec : PrivacySpec
        Genesis privacy settings (clip, noise multiplier, budget, delta).
    store : Store
        Holds the ledger.
    metrics : Metrics or None, default None
        Gauges updated after every debit.
    """

    def __init__(self, spec: PrivacySpec, store: Store, metrics: Metrics | None = None) -> None:
        self.spec = spec
        self.store = store
        self.metrics = metrics
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
        self._gauges()

    @property
    def enabled(self) -> bool:
        """Node-level privacy is on (releases are clipped, noised and debited)."""
        return self.spec.enabled

    @property
    def private(self) -> bool:
        """Some differential privacy guarantee is claimed for this node's data."""
        return self.spec.enabled

    def spent(self) -> float:
        return self.budget.spent() if self.rows else 0.0

    @property
    def releasing(self) -> bool:
        return self.state.releasing

    @property
    def reason(self) -> str:
        return self.state.reason

    def _stop(self, reason: str) -> None:
        if self.state.releasing:
            log.warning("releases stopped: %s", reason)
        self.state = _State(False, reason)
        self._gauges()

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.epsilon_spent.set(self.spent())

    # --- the three steps ---------------------------------------------------------------

    def open(self, kind: str, *, steps: int = 1) -> Ticket:
        """Permission to compute one release of ``steps`` mechanism steps.

        Raises
        ------
        ReleaseRefused
            Node-level privacy is on and the release would exceed the budget (releases
            stop for good), or the ledger is unusable.
        """
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        ticket = Ticket(kind, steps, self.spec.clip, 0.0, known_seq=len(self.rows))
        if not self.enabled:
            return ticket
        if not self.state.releasing:
            raise ReleaseRefused(self.state.reason)
        release = Release(self.spec.noise_multiplier, 1.0, steps)
        try:
            ticket.node_epsilon_after = self.budget.check(release)
        except BudgetExceeded as exc:
            self._stop(str(exc) if "exhausted" in str(exc) else f"privacy budget exhausted: {exc}")
            raise ReleaseRefused(self.state.reason) from None
        ticket.noise_multiplier = self.spec.noise_multiplier
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
        if not ticket.noised:
            ticket.committed = True
            return
        assert ticket.node_epsilon_after is not None
        known = ticket.known_seq
        if known != len(self.rows):
            raise ReleaseRefused("another release was debited since this ticket was opened")

        def check(tip: LedgerRow | None, _: LedgerRelease) -> None:
            # Another writer (there should be none: the data dir is locked) would make our
            # in-memory budget stale; refuse rather than under-count.
            if (0 if tip is None else tip.seq) != known:
                raise ReleaseRefused("ledger changed underneath this node")

        release = Release(ticket.noise_multiplier, 1.0, ticket.steps)
        try:
            row = self.store.ledger_append(
                LedgerRelease(
                    epsilon_after=ticket.node_epsilon_after,
                    delta=self.spec.delta,
                    noise_multiplier=ticket.noise_multiplier,
                    sample_rate=1.0,
                    steps=ticket.steps,
                    release_kind=ticket.kind,
                    release_digest=digest,
                ),
                budget_check=check,
                event_detail={"kind": ticket.kind, "steps": ticket.steps},
            )
        except (LedgerCorrupted, LedgerConflict) as exc:
            self._stop(f"privacy ledger unusable: {exc}")
            raise ReleaseRefused(self.state.reason) from None
        ticket.committed = True
        self.rows.append(row)
        self.budget = self.budget.with_release(release)
        self._gauges()

    def release(self, update: torch.Tensor, *, kind: str = "update") -> torch.Tensor:
        """Open, privatize and commit one vector release in one call; returns what to send.

        The digest is that of the privatized vector itself. Blocking (SQL).
        """
        ticket = self.open(kind)
        private = ticket.privatize_update(update.detach().to(torch.float32).reshape(-1))
        self.commit(ticket, tensor_digest(private))
        return private
