"""Waiting for peers before round 0, and saying so while it lasts.

A node that starts its first round alone trains its first rounds alone; so both runtimes
wait until membership shows enough peers, at most the start-up allowance
:attr:`Genesis.start_wait_s` (``rounds.start_wait``, by default growing with the declared
``task.num_nodes``; one ``round_timeout`` was too short for peers started seconds later).
A silent wait looks like a hang, so it is logged when it starts, every
:data:`REPORT_EVERY_S` seconds, and when it ends; a node that gives up says so.

A node that already sees some peers stops waiting once no new one has appeared for
``settle_s`` (by default the per-node start-up allowance, 20 s): the declared
``task.num_nodes`` is the number of shards, not a promise that every shard's node runs (a
compose testnet starts 3 of its 4 declared nodes unless asked for the attacker), and the
whole allowance would then be spent waiting for a node that is not coming.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from node.base.logs import log
from node.training.genesis import START_WAIT_PER_NODE_S

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
    settle_s: float = START_WAIT_PER_NODE_S,
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
    settle_s : float, default ``START_WAIT_PER_NODE_S`` (20)
        With at least one peer but fewer than ``want``: seconds without a new peer after
        which the wait ends early.

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
    seen, changed = 0, t0
    while not stopping():
        n = have()
        if n != seen:
            seen, changed = n, time.monotonic()
        if n >= want:
            if reported is not None:
                log.info(
                    "found enough peers: starting round 0",
                    extra={"fields": {"peers": n, "waited_s": round(time.monotonic() - t0, 1)}},
                )
            return True
        now = time.monotonic()
        if n >= 1 and now - changed >= settle_s:
            log.info(
                f"no new peer for {settle_s:.0f} s: starting round 0 with {n} of {want} peers",
                extra={"fields": {"want": want, "have": n, "settle_s": settle_s}},
            )
            return False
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
