"""Authenticated faults lower reputation; repeated faults quarantine a peer, durably."""

from __future__ import annotations

from pathlib import Path

from node.reputation import ReputationBook
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
