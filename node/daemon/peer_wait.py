"""Waiting for peers before round 0, and saying so while it lasts.

A node that starts its first round alone trains its first rounds alone; so both runtimes
wait until membership shows enough peers, at most one ``round_timeout``. A silent wait of
half a minute looks like a hang, so it is logged when it starts, every
:data:`REPORT_EVERY_S` seconds, and when it ends.
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
    poll_s: float = 0.1,
) -> bool:
    """Wait until ``have() >= want``, at most ``rounds.round_timeout`` seconds.

    Parameters
    ----------
    have : callable
        Peers available now (those training would sample).
    want : int
        Peers wanted; 0 returns at once.
    genesis : Genesis
        The network (its round timeout, task size and bootstrap list, for the log lines).
    stopping : callable
        True once the node is shutting down (the wait ends).
    poll_s : float, default 0.1
        Seconds between two looks at membership.

    Returns
    -------
    bool
        True when ``want`` peers were found.
    """
    timeout = genesis.rounds.round_timeout
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
            return False
        if reported is None or now - reported >= REPORT_EVERY_S:
            reported = now
            log.info(
                "waiting for peers before round 0",
                extra={
                    "fields": {
                        "want": want,
                        "have": n,
                        "gives_up_in_s": round(deadline - now, 1),
                        "why": f"min(rounds.peers_per_round, task.num_nodes - 1) = {want}",
                    }
                },
            )
        await asyncio.sleep(poll_s)
    return False
