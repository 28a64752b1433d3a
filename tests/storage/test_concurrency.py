"""Concurrent writers: threads sharing one store and two stores on one database."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from node.storage import LedgerRelease, MessageRecord, SpsaEntry, open_store

A = "a" * 64


def test_parallel_writers_keep_every_invariant(db_url: str, data_dir: Path) -> None:
    s1 = open_store(db_url, data_dir=data_dir)
    s2 = open_store(db_url, data_dir=data_dir)
    try:

        def work(worker: int) -> tuple[int, int]:
            store = s1 if worker % 2 else s2
            replays = 0
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
                # Every worker submits the same seeds and messages: exactly one wins each.
                store.append_spsa([SpsaEntry(f"seed-{i}-{k}", i, A, k, 1.0) for k in range(3)])
                msg = MessageRecord(A, "gossip", i, "n" * 64, "0" * 64, 1)
                replays += not store.record_message(msg)
            return worker, replays

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(work, range(4)))
        assert s1.ledger_verify() == 40
        assert [r.seq for r in s2.ledger_rows()] == list(range(1, 41))
        assert s1.spsa_count() == 30
        assert s2.count_messages() == 10
        assert sum(r for _, r in results) == 30  # 40 submissions, 10 accepted
    finally:
        s1.close()
        s2.close()
