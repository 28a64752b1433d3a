"""Asyncio driver: runs a sans-I/O :class:`Membership` over a real transport.

The driver owns the timing and the concurrency the core leaves out: it calls ``tick`` when
``next_deadline`` says so, performs every :class:`Send` as its own task with the timeout
the core asked for (so one slow peer never delays a probe of another), feeds results back,
and serves inbound requests through :meth:`MembershipDriver.handle`, which the gRPC
service calls with the verified envelope's sender id and body.

All calls into the core happen on the event loop thread, so the core needs no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable

from .core import Action, GossipRejected, Member, Membership, Reply, Send
from .transport import GossipTransport, GossipTransportError

__all__ = ["MembershipDriver"]

log = logging.getLogger("fednode.gossip")

# The loop re-checks the core at least this often even when nothing is due, which bounds
# the effect of a wrong next_deadline or of clock steps.
MAX_SLEEP = 0.5


class MembershipDriver:
    """Drive ``core`` with ``transport`` on the running event loop.

    Parameters
    ----------
    core : Membership
        The state machine; the driver passes ``clock()`` as ``now``.
    transport : GossipTransport
        Performs requests (gRPC in the daemon, :class:`AsyncMemoryNetwork` in tests).
    clock : callable, default time.monotonic
        Must be the clock the core was created with.
    on_change : callable, optional
        Called with each :class:`Member` whose state, incarnation or address changed
        (persistence of the peer table, metrics). Must not block.
    max_in_flight : int, default 256
        Concurrent outgoing requests; beyond it sends wait their turn.
    """

    def __init__(
        self,
        core: Membership,
        transport: GossipTransport,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Member], None] | None = None,
        max_in_flight: int = 256,
    ) -> None:
        self.core = core
        self.transport = transport
        self.clock = clock
        self.on_change = on_change
        self._sem = asyncio.Semaphore(max_in_flight)
        self._tokens = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ public
    async def run(self, stop_event: asyncio.Event) -> None:
        """Tick the core on schedule until ``stop_event`` is set; then cancel sends."""
        try:
            while not stop_event.is_set():
                try:
                    self._dispatch(self.core.tick(self.clock()))
                except Exception:  # keep the node in the network; the bug is logged
                    log.exception("gossip tick failed")
                delay = min(MAX_SLEEP, max(0.0, self.core.next_deadline() - self.clock()))
                self._wake.clear()
                waits = [
                    asyncio.ensure_future(stop_event.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                try:
                    await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            await self.close()

    def join(self, addresses: Iterable[str]) -> None:
        """Start joining through ``addresses`` (retries are the core's business)."""
        self._dispatch(self.core.join(self.clock(), list(addresses)))

    async def leave(self, timeout: float = 1.0) -> None:
        """Announce a graceful leave and wait up to ``timeout`` s for it to go out."""
        self._dispatch(self.core.leave(self.clock()))
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def handle(self, sender_id: bytes, body: bytes) -> bytes:
        """Serve one inbound request; returns the reply body.

        Raises
        ------
        GossipRejected
            The core refused the request (reason in ``.reason``; counted in
            ``core.rejected``). The service maps it to an error status.
        TimeoutError
            No reply was ready within the configured ``request_timeout``.
        """
        token = next(self._tokens)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut
        try:
            actions = self.core.receive(self.clock(), sender_id, body, token)
        except GossipRejected:
            self._waiting.pop(token, None)
            raise
        except Exception:
            # A bug in the core must not become a silent UNKNOWN status (an overflow once
            # went unnoticed that way): log it with the sender, then propagate.
            self._waiting.pop(token, None)
            log.exception("gossip request from %s failed in the core", sender_id.hex()[:16])
            raise
        self._dispatch(actions)
        try:
            return await asyncio.wait_for(fut, self.core.config.request_timeout)
        finally:
            self._waiting.pop(token, None)

    async def close(self) -> None:
        """Cancel outgoing requests still in flight."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()

    # ------------------------------------------------------------------ internals
    def _dispatch(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                task = asyncio.ensure_future(self._perform(a))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(a, Reply):
                fut = self._waiting.pop(a.token, None)
                if fut is not None and not fut.done():
                    fut.set_result(a.body)
        changes = self.core.drain_changes()
        if self.on_change is not None:
            for m in changes:
                try:
                    self.on_change(m)
                except Exception:  # a faulty callback must not stop the membership
                    log.exception("gossip on_change callback failed")
        # Something may now be due earlier (a new suspicion, a retry): let run() re-plan.
        self._wake.set()

    async def _perform(self, send: Send) -> None:
        async with self._sem:
            try:
                # The transport enforces the timeout; the outer bound catches one that
                # does not.
                body = await asyncio.wait_for(
                    self.transport.request(send.address, send.body, send.timeout),
                    send.timeout + 1.0,
                )
            except (GossipTransportError, TimeoutError, OSError) as exc:
                log.debug("gossip %s to %s failed: %s", send.kind, send.address, exc)
                self._dispatch(self.core.on_failure(self.clock(), send.request_id))
                return
            except Exception:  # a transport bug: still tell the core, never leak the probe
                log.exception("gossip transport raised unexpectedly")
                self._dispatch(self.core.on_failure(self.clock(), send.request_id))
                return
        self._dispatch(self.core.on_reply(self.clock(), send.request_id, body))
