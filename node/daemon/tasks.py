"""The background tasks of one daemon component: a main loop, in-flight work, a wake-up.

Each learner runtime runs one long loop (its round clock) and spawns short tasks (a
training round, a push to a peer, an anti-entropy pull). Stopping must end all of them,
and a task that crashes must say so in the log instead of vanishing with its exception
(asyncio only warns about it when the task is garbage-collected, if ever).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Set
from typing import Any

from node.base.logs import log

__all__ = ["TaskSet"]


class TaskSet:
    """Named background tasks of one component, stopped together.

    Parameters
    ----------
    label : str
        Names the component in log lines (``"<label> task failed"``).
    brief : tuple of exception types, default ()
        Failures logged as one line without a traceback: errors that are the operator's
        to fix (for example user code that raised), whose traceback says nothing more.

    Notes
    -----
    The set holds no loop of its own; it must be used from the event loop that runs its
    tasks. After :meth:`stop`, :meth:`start` and :meth:`spawn` refuse new work.
    """

    def __init__(self, label: str, *, brief: tuple[type[BaseException], ...] = ()) -> None:
        self.label = label
        self.brief = brief
        self._main: asyncio.Task[Any] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (loops check it between steps)."""
        return self._stopping

    @property
    def inflight(self) -> Set[asyncio.Task[Any]]:
        """The spawned tasks that have not finished yet (a snapshot)."""
        return frozenset(self._inflight)

    def start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as the component's main loop (one per set).

        Raises
        ------
        RuntimeError
            A main loop is already running, or the set is stopping.
        """
        if self._stopping:
            coro.close()
            raise RuntimeError(f"{self.label}: stopping, not starting {name}")
        if self._main is not None and not self._main.done():
            coro.close()
            raise RuntimeError(f"{self.label}: main loop already running")
        self._main = asyncio.create_task(coro, name=name)
        self._main.add_done_callback(self._log_failure)
        return self._main

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; :meth:`stop` cancels it if it is still running.

        While stopping, ``coro`` is closed unstarted and the returned task is already
        cancelled, so late callbacks (a push answered after stop) start nothing.
        """
        task = asyncio.create_task(coro, name=name)
        if self._stopping:
            task.cancel()
            return task
        self._inflight.add(task)
        task.add_done_callback(self._done)
        return task

    def wake(self) -> None:
        """Cut the main loop's current :meth:`nap` short (new input to act on)."""
        self._wake.set()

    async def nap(self, timeout: float) -> None:
        """Sleep at most ``timeout`` seconds, less if :meth:`wake` is called meanwhile.

        A wake-up that came before the nap started is forgotten: the caller has just acted
        on the state it announced.
        """
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def stop(self, timeout: float = 1.0) -> None:
        """Cancel the main loop and every in-flight task; wait at most ``timeout`` for them.

        Tasks still running after ``timeout`` seconds (stuck in a cancellation handler) are
        left to the event loop; the daemon's shutdown does not wait for them.
        """
        self._stopping = True
        self._wake.set()
        tasks = [t for t in (self._main, *self._inflight) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        self._log_failure(task)

    def _log_failure(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, self.brief):
            log.error("%s task failed: %s", self.label, exc)
        else:
            log.error("%s task failed", self.label, exc_info=exc)
