"""Waiting for peers before round 0, and saying so while it lasts.

A node that starts its first round alone trains its first rounds alone; so both runtimes
wait until membership shows enough peers, at most the start-up allowance
:attr:`Genesis.start_wait_s` (``rounds.start_wait``, by default growing with the declared
``task.num_nodes``; one ``round_timeout`` was too short for peers started seconds later).
A silent wait looks like a hang, so it is logged when it starts, every
:data:`REPORT_EVERY_S` seconds, and when it ends; a node that gives up says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from node.base.logs import log

if TYPE_CHECKING:
    from node.training.genesis import Genesis

__all__ = ["REPORT_EVERY_S", "wait_for_peers"]

#: Seconds between two "waiting for peers" lines.
REPORT_EVERY_S = 5.0


async def wait_for_peers(
    have: Callable[[], int],
    want: int,
    genesis: Genesis,
    stopping: Callable[[], bool],
    *,
    timeout: float | None = None,
    then: str = "training alone",
    poll_s: float = 0.1,
) -> bool:
    """Wait until ``have() >= want``, at most ``genesis.start_wait_s`` seconds.

    Parameters
    ----------
    have : callable
        Peers available now (those training would sample).
    want : int
        Peers wanted; 0 returns at once.
    genesis : Genesis
        The network (its start-up allowance and peer counts, for the log lines).
    stopping : callable
        True once the node is shutting down (the wait ends).
    timeout : float, optional
        Seconds to wait [default: ``genesis.start_wait_s``].
    then : str, default "training alone"
        What the node does if the wait ends without enough peers (for the log lines).
    poll_s : float, default 0.1
        Seconds between two looks at membership.

    Returns
    -------
    bool
        True when ``want`` peers were found.
    """
    if timeout is None:
        timeout = genesis.start_wait_s
    t0 = time.monotonic()
    deadline = t0 + timeout
    reported = None
    while not stopping():
        n = have()
        if n >= want:
            if reported is not None:
                log.info(
                    "found enough peers: starting round 0",
                    extra={"fields": {"peers": n, "waited_s": round(time.monotonic() - t0, 1)}},
                )
            return True
        now = time.monotonic()
        if now >= deadline:
            log.warning(
                f"waited {timeout:.0f} s for {want} peers, {n} seen: {then}",
                extra={"fields": {"want": want, "have": n, "start_wait_s": timeout}},
            )
            return False
        if reported is None or now - reported >= REPORT_EVERY_S:
            reported = now
            log.info(
                f"waiting for {want} peers, {n} seen, {then} in {deadline - now:.0f} s",
                extra={
                    "fields": {
                        "want": want,
                        "have": n,
                        "gives_up_in_s": round(deadline - now, 1),
                        "why": f"min(rounds.peers_per_round, task.num_nodes - 1) = {want}",
                        "start_wait_s": timeout,
                    }
                },
            )
        await asyncio.sleep(poll_s)
    return False
