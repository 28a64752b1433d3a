"""The transmit-limited broadcast queue."""

from __future__ import annotations

from node.gossip.broadcast import BroadcastQueue

A, B, C, D = (bytes([i]) * 32 for i in range(1, 5))


def _queue(*keys: bytes, size: int = 10) -> BroadcastQueue:
    q = BroadcastQueue()
    for k in keys:
        q.enqueue(k, k[:1] * size, source=None, about=None)
    return q


def test_newest_first_then_least_transmitted() -> None:
    q = _queue(A, B, C)
    assert q.take(max_count=2, budget=1000, limit=10) == [C[:1] * 10, B[:1] * 10]
    # A has been sent least now; then the newest of the rest.
    assert q.take(max_count=2, budget=1000, limit=10) == [A[:1] * 10, C[:1] * 10]
    assert {k: q[k].transmits for k in q} == {A: 1, B: 1, C: 2}


def test_dropped_after_limit_transmissions() -> None:
    q = _queue(A)
    for _ in range(3):
        assert q.take(max_count=5, budget=1000, limit=3) == [A[:1] * 10]
    assert len(q) == 0 and not q.take(max_count=5, budget=1000, limit=3)


def test_a_newer_update_about_a_member_replaces_the_older() -> None:
    q = _queue(A)
    q.take(max_count=1, budget=1000, limit=3)
    q.enqueue(A, b"new", source=None, about=None)
    assert len(q) == 1 and q[A].transmits == 0
    assert q.take(max_count=1, budget=1000, limit=3) == [b"new"]


def test_byte_budget_skips_what_does_not_fit() -> None:
    q = BroadcastQueue()
    q.enqueue(A, b"s" * 5, source=None, about=None)
    q.enqueue(B, b"L" * 50, source=None, about=None)  # newest, but too large
    assert q.take(max_count=5, budget=20, limit=3) == [b"s" * 5]
    assert q[B].transmits == 0


def test_not_echoed_to_its_source_or_its_subject() -> None:
    q = BroadcastQueue()
    q.enqueue(A, b"told by C", source=C, about=None)
    q.enqueue(B, b"record of D", source=None, about=D)
    assert q.take(max_count=5, budget=1000, limit=3, to=C) == [b"record of D"]
    assert q.take(max_count=5, budget=1000, limit=3, to=D) == [b"told by C"]
    assert {k: q[k].transmits for k in q} == {A: 1, B: 1}


def test_discard_and_zero_count() -> None:
    q = _queue(A, B)
    q.discard(A)
    q.discard(A)  # absent: nothing happens
    assert list(q) == [B]
    assert q.take(max_count=0, budget=1000, limit=3) == []
    assert q[B].transmits == 0
