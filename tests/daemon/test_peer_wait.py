"""The round-0 peer wait (node/daemon/peer_wait.py), without daemons."""

from __future__ import annotations

import asyncio
import time

from node.daemon.peer_wait import wait_for_peers
from node.training.genesis import Genesis


def _genesis(start_wait: float) -> Genesis:
    return Genesis.fresh(network={"name": "lab"}, rounds={"start_wait": start_wait})


def _wait(counts: list[int], want: int, start_wait: float, settle_s: float) -> tuple[bool, float]:
    calls = iter(counts)
    last = [0]

    def have() -> int:
        last[0] = next(calls, last[0])
        return last[0]

    t0 = time.monotonic()
    found = asyncio.run(
        wait_for_peers(
            have, want, _genesis(start_wait), lambda: False, poll_s=0.01, settle_s=settle_s
        )
    )
    return found, time.monotonic() - t0


def test_enough_peers_end_the_wait_at_once() -> None:
    found, took = _wait([3], want=3, start_wait=30, settle_s=10)
    assert found and took < 5
    found, took = _wait([0, 1, 2, 3], want=3, start_wait=30, settle_s=10)
    assert found and took < 5


def test_some_peers_and_none_new_for_settle_s_end_the_wait_early() -> None:
    # Two of three wanted peers, then nothing new: a declared node that is not coming must
    # not cost the whole start-up allowance.
    found, took = _wait([0, 1, 2], want=3, start_wait=30, settle_s=0.3)
    assert not found
    assert 0.3 <= took < 5


def test_alone_the_node_waits_the_whole_allowance() -> None:
    # No peer at all: settling does not apply (the others may still be importing torch).
    found, took = _wait([0], want=2, start_wait=0.5, settle_s=0.05)
    assert not found
    assert took >= 0.5


def test_a_new_peer_restarts_the_settle_clock() -> None:
    counts = [1] * 20 + [2]  # about 0.2 s with one peer, then a second
    found, took = _wait(counts, want=3, start_wait=30, settle_s=0.3)
    assert not found
    assert took >= 0.2 + 0.3 - 0.05
