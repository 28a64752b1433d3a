"""Per-peer reputation and automatic quarantine.

Only *authenticated* faults count: a message whose signature verified but whose content
was refused (malformed gossip, a NaN update, a wrong shape, a replayed or out-of-window
round...). Failures before the signature check are never charged to the claimed sender,
since anyone can forge a sender id. A peer with ``threshold`` faults within ``window_s``
seconds is quarantined for ``quarantine_s`` seconds: its messages are refused and it is
never sampled, exactly as if the operator had banned it, but the ban lifts by itself.
Counters and quarantine deadlines are persisted, so a restart does not forgive a peer.

State is bounded: only admitted members are charged (the daemon drops faults of senders
outside its view), at most ``max_peers`` peers are tracked in memory and at most
``max_peers`` rows kept in the ``reputation`` table. Beyond that the least recently
charged peers are forgotten first, quarantined peers last.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from node.base.logs import log
from node.storage import Store

__all__ = ["ReputationBook"]


class ReputationBook:
    """Fault counting and quarantine for one node.

    Parameters
    ----------
    store : Store
        Persists counters (``reputation`` table) and quarantine deadlines.
    threshold : int, default 20
        Faults within the window that trigger a quarantine.
    window_s : float, default 60.0
    quarantine_s : float, default 600.0
    clock : callable, default time.time
    max_peers : int, default 1024
        Peers tracked in memory and rows kept in the table.
    """

    def __init__(
        self,
        store: Store,
        *,
        threshold: int = 20,
        window_s: float = 60.0,
        quarantine_s: float = 600.0,
        clock: Callable[[], float] = time.time,
        max_peers: int = 1024,
    ) -> None:
        if max_peers < 1:
            raise ValueError(f"max_peers must be >= 1, got {max_peers}")
        self.store = store
        self.max_peers = max_peers
        self.threshold = threshold
        self.window_s = window_s
        self.quarantine_s = quarantine_s
        self.clock = clock
        self._faults: OrderedDict[str, deque[float]] = OrderedDict()
        self._until: dict[str, float] = {}
        now = clock()
        rows = store.reputation_all()
        for rec in sorted(rows, key=lambda r: r.quarantined_until or 0.0)[-max_peers:]:
            if rec.quarantined_until is not None and rec.quarantined_until > now:
                self._until[rec.node_id] = rec.quarantined_until
        self._rows = len(rows)

    def tracked(self) -> int:
        """Peers held in memory (fault windows and quarantines)."""
        return len(set(self._faults) | set(self._until))

    def _evict(self) -> None:
        while len(self._faults) > self.max_peers:
            self._faults.popitem(last=False)
        if len(self._until) > self.max_peers:
            # The quarantines ending first are dropped first.
            for node_id, _ in sorted(self._until.items(), key=lambda kv: kv[1])[
                : len(self._until) - self.max_peers
            ]:
                del self._until[node_id]

    def is_quarantined(self, node_id_hex: str) -> bool:
        until = self._until.get(node_id_hex)
        if until is None:
            return False
        if until <= self.clock():
            del self._until[node_id_hex]
            return False
        return True

    def convict(self, node_id_hex: str, reason: str) -> None:
        """Quarantine ``node_id_hex`` now for ``quarantine_s`` (misbehaviour proven at once).

        For offences a single piece of evidence proves, such as two signed updates for one
        round (node/wire/equivocation.py); counted faults are for ambiguous ones.
        """
        now = self.clock()
        already = self.is_quarantined(node_id_hex)
        self._until[node_id_hex] = max(self._until.get(node_id_hex, 0.0), now + self.quarantine_s)
        if not already:
            log.warning(
                "peer quarantined",
                extra={
                    "fields": {
                        "node_id": node_id_hex[:16],
                        "reason": reason,
                        "seconds": self.quarantine_s,
                    }
                },
            )
        self._persist(node_id_hex, True, now)

    def fault(self, node_id_hex: str, reason: str) -> None:
        """Charge one authenticated fault to ``node_id_hex`` (non-blocking)."""
        now = self.clock()
        faults = self._faults.pop(node_id_hex, None) or deque()
        self._faults[node_id_hex] = faults  # most recently charged last
        faults.append(now)
        while faults and faults[0] < now - self.window_s:
            faults.popleft()
        quarantine = len(faults) >= self.threshold and not self.is_quarantined(node_id_hex)
        if quarantine:
            self._until[node_id_hex] = now + self.quarantine_s
            faults.clear()
            log.warning(
                "peer quarantined",
                extra={
                    "fields": {
                        "node_id": node_id_hex[:16],
                        "reason": reason,
                        "seconds": self.quarantine_s,
                    }
                },
            )
        self._evict()
        self._persist(node_id_hex, quarantine, now)

    def _persist(self, node_id_hex: str, quarantine: bool, now: float) -> None:
        def work() -> None:
            self.store.reputation_adjust(node_id_hex, delta=-1.0, rejected=1)
            if quarantine:
                self.store.quarantine(node_id_hex, now + self.quarantine_s)
            # Counted approximately (a new row or not), pruned exactly: one COUNT per
            # max_peers/4 writes at most.
            self._rows += 1
            if self._rows > self.max_peers + max(1, self.max_peers // 4):
                self.store.reputation_prune(self.max_peers, now=now)
                self._rows = self.store.reputation_count()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work()
            return
        fut = loop.run_in_executor(None, work)
        fut.add_done_callback(_log_failure)


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("reputation write failed: %s", fut.exception())
