"""Authenticated faults lower reputation; repeated faults quarantine a peer, durably."""

from __future__ import annotations

from pathlib import Path

from node.daemon.reputation import ReputationBook
from node.storage import open_store

PEER = "ab" * 32
OTHER = "cd" * 32


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_quarantine_after_threshold_and_expiry(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    clock = Clock()
    book = ReputationBook(store, threshold=3, window_s=10, quarantine_s=60, clock=clock)
    book.fault(PEER, "nonfinite")
    book.fault(PEER, "nonfinite")
    assert not book.is_quarantined(PEER)
    clock.t += 20  # the window forgets old faults
    book.fault(PEER, "bad_shape")
    book.fault(PEER, "bad_shape")
    assert not book.is_quarantined(PEER)
    book.fault(PEER, "bad_shape")
    assert book.is_quarantined(PEER)
    assert not book.is_quarantined(OTHER)
    rec = store.reputation_get(PEER)
    assert rec is not None and rec.rejected == 5 and rec.score == -5.0
    # A restarted node remembers the quarantine...
    again = ReputationBook(store, threshold=3, window_s=10, quarantine_s=60, clock=clock)
    assert again.is_quarantined(PEER)
    # ...until it expires.
    clock.t += 61
    assert not again.is_quarantined(PEER)


def test_flood_of_ids_keeps_memory_and_table_bounded(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    clock = Clock()
    book = ReputationBook(
        store, threshold=2, window_s=60, quarantine_s=600, clock=clock, max_peers=8
    )
    # A member that keeps misbehaving is quarantined first, then 500 other ids fault once.
    book.fault(PEER, "nonfinite")
    book.fault(PEER, "nonfinite")
    assert book.is_quarantined(PEER)
    for i in range(500):
        clock.t += 0.01
        book.fault(f"{i:064x}", "malformed")
    assert book.tracked() <= 2 * 8
    assert store.reputation_count() <= 8 + 8 // 4 + 1
    # Eviction takes the quarantined peer last: it is still refused, in memory and on disk.
    assert book.is_quarantined(PEER)
    assert store.is_quarantined(PEER, now=clock.t)
    assert ReputationBook(store, clock=clock, max_peers=8).is_quarantined(PEER)


def test_prune_keeps_newest_and_quarantined_rows(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    store.quarantine(PEER, 10_000.0, now=1.0)
    for i in range(10):
        store.reputation_adjust(f"{i:064x}", delta=-1.0, rejected=1, now=100.0 + i)
    assert store.reputation_prune(3, now=50.0) == 8
    kept = {r.node_id for r in store.reputation_all()}
    assert kept == {PEER, f"{9:064x}", f"{8:064x}"}
    assert store.reputation_prune(3, now=50.0) == 0
