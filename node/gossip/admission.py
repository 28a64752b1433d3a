"""Admission of identities new to this node: budgets and a fair queue (sans-I/O).

Every identity that enters the member table costs a slot, a signature check and fan-out
share, and fresh identities cost an attacker only a proof of work. :class:`IntroductionQueue`
decides when a record of an identity *new to this node* may enter:

* a **global budget** (token bucket, ``rate_global``/s, burst ``burst_global``) bounds
  how fast new identities enter through every path together (direct contact, gossip,
  push-pull), so a flood of fresh identities is slowed no matter how many contacts it
  uses (a per-contact limit never triggers when each fake is its own contact);
* a **per-introducer budget** (``rate_per_introducer``/s, burst ``burst_per_introducer``)
  bounds what one member can bring in by relaying records of others;
* records over either budget are **deferred, not dropped**: they wait in one FIFO per
  introducer and :meth:`IntroductionQueue.drain` serves the FIFOs round-robin as the
  budgets refill (fair queueing, so one flooding introducer cannot starve honest ones).
  The queue is bounded (``max_pending``); when it is full the newest record of the
  longest FIFO is dropped ("longest queue drop"), which again hits the flooder first.

Before this module a refused record was simply discarded and only came back if some
member happened to re-gossip it; in a 512-node join through one bootstrap many never did
(views stuck at 271 of 511 for minutes). Deferral makes honest joins converge after an
admission delay of at most ``max(0, (n - 1 - burst_global) / rate_global - join window)``
seconds (see docs/gossip.md), while a flood of k fresh identities needs
``(k - burst_global) / rate_global`` seconds to enter.

The caller passes ``now`` (any monotonic clock); nothing here does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

__all__ = ["IntroductionQueue", "TokenBucket", "Verdict"]

T = TypeVar("T")


class Verdict(StrEnum):
    """What :meth:`IntroductionQueue.offer` did with a record."""

    ADMIT = "admit"
    """Budgets allowed it: the caller enters it now."""
    DEFERRED = "deferred"
    """Queued (or refreshed in the queue); :meth:`IntroductionQueue.drain` returns it later."""
    DROPPED = "dropped"
    """The queue is full and this introducer's FIFO is the longest: not kept."""


@dataclass(slots=True)
class TokenBucket:
    """A token bucket with an explicit clock: ``rate`` tokens/s up to ``burst``."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, got {self}")
        if self.tokens < 0:
            self.tokens = self.burst

    def level(self, now: float) -> float:
        """Tokens available at ``now`` (refills since the last call)."""
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now
        return self.tokens

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        if self.level(now) >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class _Fifo(Generic[T]):
    bucket: TokenBucket
    items: OrderedDict[bytes, T] = field(default_factory=OrderedDict)


class IntroductionQueue(Generic[T]):
    """Global and per-introducer admission budgets with a fair queue of deferred records.

    Parameters
    ----------
    rate_global, burst_global : float
        New identities per second (and burst) admitted through every path together.
    rate_per_introducer, burst_per_introducer : float
        New identities per second (and burst) one introducer may bring in.
    max_pending : int
        Deferred records kept in total (longest-queue drop beyond it).
    max_introducers : int
        Introducer budgets remembered; the least recently used idle one is forgotten
        beyond it (its bucket restarts full, which only matters for a member that was
        idle long enough to refill anyway).
    """

    def __init__(
        self,
        *,
        rate_global: float,
        burst_global: float,
        rate_per_introducer: float,
        burst_per_introducer: float,
        max_pending: int,
        max_introducers: int,
    ) -> None:
        if max_pending < 1 or max_introducers < 1:
            raise ValueError("max_pending and max_introducers must be >= 1")
        self.global_bucket = TokenBucket(rate_global, burst_global)
        self.rate_per_introducer = rate_per_introducer
        self.burst_per_introducer = burst_per_introducer
        self.max_pending = max_pending
        self.max_introducers = max_introducers
        self.dropped = 0
        self._fifos: OrderedDict[Hashable, _Fifo[T]] = OrderedDict()
        self._where: dict[bytes, Hashable] = {}  # node id -> introducer whose FIFO holds it
        self._rr: list[Hashable] = []  # round-robin order of non-empty FIFOs
        self._rr_pos = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._where

    def get(self, node_id: bytes) -> T | None:
        """The deferred item of ``node_id`` (None if not pending)."""
        intro = self._where.get(node_id)
        return None if intro is None else self._fifos[intro].items.get(node_id)

    def _fifo(self, introducer: Hashable) -> _Fifo[T]:
        f = self._fifos.get(introducer)
        if f is None:
            f = _Fifo(TokenBucket(self.rate_per_introducer, self.burst_per_introducer))
            self._fifos[introducer] = f
            if len(self._fifos) > self.max_introducers:
                for key, old in self._fifos.items():
                    if not old.items and key != introducer:
                        del self._fifos[key]
                        break
        else:
            self._fifos.move_to_end(introducer)
        return f

    def offer(self, now: float, introducer: Hashable, node_id: bytes, item: T) -> Verdict:
        """A record of the new identity ``node_id`` arrived through ``introducer``.

        A record already pending is refreshed in place (the caller decides which of two
        records is newer and offers only that one) and stays where it is in the queue.
        """
        where = self._where.get(node_id)
        if where is not None:
            self._fifos[where].items[node_id] = item
            return Verdict.DEFERRED
        f = self._fifo(introducer)
        # Records already waiting for this introducer go first (FIFO order).
        if not f.items and f.bucket.level(now) >= 1.0 and self.global_bucket.take(now):
            f.bucket.take(now)
            return Verdict.ADMIT
        if len(self._where) >= self.max_pending and not self._drop_longest(introducer):
            self.dropped += 1
            return Verdict.DROPPED
        if not f.items:
            self._rr.append(introducer)
        f.items[node_id] = item
        self._where[node_id] = introducer
        return Verdict.DEFERRED

    def _drop_longest(self, offering: Hashable) -> bool:
        longest = max(self._rr, key=lambda k: len(self._fifos[k].items), default=None)
        if longest is None:
            return False
        mine = self._fifos.get(offering)
        if longest == offering or (
            mine is not None and len(mine.items) >= len(self._fifos[longest].items)
        ):
            return False
        victim, _ = self._fifos[longest].items.popitem(last=True)
        del self._where[victim]
        self.dropped += 1
        if not self._fifos[longest].items:
            self._unlink(longest)
        return True

    def _unlink(self, introducer: Hashable) -> None:
        i = self._rr.index(introducer)
        del self._rr[i]
        if i < self._rr_pos:
            self._rr_pos -= 1
        if self._rr_pos >= len(self._rr):
            self._rr_pos = 0

    def discard(self, node_id: bytes) -> None:
        """Forget a pending record (its identity entered by another path, or is gone)."""
        intro = self._where.pop(node_id, None)
        if intro is None:
            return
        f = self._fifos[intro]
        f.items.pop(node_id, None)
        if not f.items:
            self._unlink(intro)

    def drain(self, now: float, limit: int | None = None) -> list[tuple[bytes, T]]:
        """Deferred records whose turn has come, round-robin over introducers.

        Stops when the global budget is empty, when every non-empty FIFO's introducer is
        out of budget, or after ``limit`` records.
        """
        out: list[tuple[bytes, T]] = []
        stalled = 0
        while self._rr and stalled < len(self._rr):
            if limit is not None and len(out) >= limit:
                break
            if self.global_bucket.level(now) < 1.0:
                break
            if self._rr_pos >= len(self._rr):
                self._rr_pos = 0
            intro = self._rr[self._rr_pos]
            f = self._fifos[intro]
            if not f.bucket.take(now):
                stalled += 1
                self._rr_pos += 1
                continue
            self.global_bucket.take(now)
            stalled = 0
            node_id, item = f.items.popitem(last=False)
            del self._where[node_id]
            out.append((node_id, item))
            if f.items:
                self._rr_pos += 1
            else:
                self._unlink(intro)
        return out

    def next_ready(self, now: float) -> float | None:
        """Earliest time :meth:`drain` may return something (None: nothing pending)."""
        if not self._rr:
            return None
        need = 1.0 - self.global_bucket.level(now)
        t_global = now if need <= 0 else now + need / self.global_bucket.rate
        t_intro = min(
            now + max(0.0, 1.0 - self._fifos[k].bucket.level(now)) / self.rate_per_introducer
            for k in self._rr
        )
        return max(t_global, t_intro)
