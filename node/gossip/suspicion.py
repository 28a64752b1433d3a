"""Lifeguard suspicion: a timer that independent confirmations shorten.

When a member is suspected it has until the timer ends to refute; then it is declared
dead. The timer starts at the maximum timeout and every distinct member that suspects the
same incarnation (a confirmation) brings it closer to the minimum, logarithmically, so a
member many nodes cannot reach is declared dead quickly while a lone suspicion, perhaps by
a slow node, waits longest. The timeout formula is ``GossipConfig.suspicion_timeout``; as
memberlist's ``suspicion.go``, but the caller owns the clock (no timer goroutine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .config import GossipConfig

__all__ = ["Suspicion"]


@dataclass(slots=True)
class Suspicion:
    """The suspicion of one member.

    Attributes
    ----------
    start : float
        When it began (caller's clock).
    n : int
        Members in the view (this node included) when it began; fixes the timeouts.
    k : int
        Confirmations that bring the timeout down to its minimum.
    deadline : float
        When the member is declared dead unless it refutes first.
    timeout : callable
        ``timeout(n, confirmations) -> seconds`` (``GossipConfig.suspicion_timeout``).
    confirmations : set of bytes
        Ids of the members whose suspicions counted.
    """

    start: float
    n: int
    k: int
    deadline: float
    timeout: Callable[[int, int], float]
    confirmations: set[bytes] = field(default_factory=set)

    @classmethod
    def begin(cls, now: float, n: int, config: GossipConfig) -> Suspicion:
        """A suspicion raised at ``now`` in a view of ``n`` members."""
        return cls(
            start=now,
            n=n,
            k=config.suspicion_confirmations(n),
            deadline=now + config.suspicion_timeout(n, 0),
            timeout=config.suspicion_timeout,
        )

    def confirm(self, reporter: bytes) -> bool:
        """Count ``reporter``'s suspicion; True if it was not counted before.

        The deadline only ever moves earlier: to ``start + timeout(n, confirmations)``.
        """
        new = reporter not in self.confirmations
        self.confirmations.add(reporter)
        self.deadline = min(
            self.deadline, self.start + self.timeout(self.n, len(self.confirmations))
        )
        return new

    def due(self, now: float) -> bool:
        """True once the member should be declared dead."""
        return self.deadline <= now
