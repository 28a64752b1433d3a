"""Lifeguard local health ("awareness"): how much this node distrusts its own timing.

A node that misses acks may be the slow one (CPU starved, a congested link), and
suspecting others on its own clock would then be wrong. The score rises when probes fail
or this node has to refute a suspicion about itself and falls when a probe is answered
directly; probe intervals and timeouts are multiplied by ``score + 1``. As memberlist's
``awareness.go``, without its lock: the membership core is single-threaded.
"""

from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    """A health score clamped to ``[0, max_multiplier - 1]``.

    Parameters
    ----------
    max_multiplier : int
        Largest factor a timeout is scaled by (``GossipConfig.awareness_max_multiplier``);
        1 disables scaling.

    Raises
    ------
    ValueError
        If ``max_multiplier`` is below 1.
    """

    __slots__ = ("_max", "_score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError(f"max_multiplier must be >= 1, got {max_multiplier}")
        self._max = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        """Current score, 0 when healthy."""
        return self._score

    def apply_delta(self, delta: int) -> None:
        """Raise (``delta > 0``) or lower the score, clamped to its range."""
        self._score = min(self._max - 1, max(0, self._score + delta))

    def scale(self, timeout: float) -> float:
        """``timeout`` stretched for the current health: ``timeout * (score + 1)``."""
        return timeout * (self._score + 1)
