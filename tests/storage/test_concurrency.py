"""Concurrent writers: threads sharing one store and two stores on one database."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from node.storage import LedgerRelease, SpsaBatchRecord, SpsaEntry, open_store

A = "a" * 64


def test_parallel_writers_keep_every_invariant(db_url: str, data_dir: Path) -> None:
    s1 = open_store(db_url, data_dir=data_dir)
    s2 = open_store(db_url, data_dir=data_dir)
    try:

        def work(worker: int) -> dict[int, int]:
            store = s1 if worker % 2 else s2
            won: dict[int, int] = {}
            for i in range(10):
                store.ledger_append(
                    LedgerRelease(
                        0.1,
                        1e-5,
                        1.0,
                        1.0,
                        1,
                        "update",
                        hashlib.sha256(f"{worker}-{i}".encode()).hexdigest(),
                    )
                )
                # Every worker submits the same seeds with its own batch for round i:
                # exactly one wins each round, and its batch is stored with its entries.
                result = store.append_spsa(
                    [SpsaEntry(f"seed-{i}-{k}", i, A, k, 1.0) for k in range(3)],
                    batches=[SpsaBatchRecord(i, A, f"batch of worker {worker}".encode())],
                )
                if result.inserted:
                    assert len(result.inserted) == 3
                    won[i] = worker
            return won

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(work, range(4)))
        assert s1.ledger_verify() == 40
        assert [r.seq for r in s2.ledger_rows()] == list(range(1, 41))
        assert s1.spsa_count() == 30
        winners: dict[int, int] = {}
        for won in results:
            assert not winners.keys() & won.keys()  # one winner per round
            winners.update(won)
        assert sorted(winners) == list(range(10))
        stored = {b.round: b.wire for b in s2.spsa_batches()}
        assert stored == {i: f"batch of worker {w}".encode() for i, w in winners.items()}
    finally:
        s1.close()
        s2.close()
