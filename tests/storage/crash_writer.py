"""Writer process for the crash tests (run as a script, killed by the test).

    python crash_writer.py URL DATA_DIR MODE [N]

Each iteration ``i`` makes three store calls, each one transaction, and reports it on
stdout only after the call returned (i.e. after the commit):

1. ``ledger_append`` of release ``i`` with a ``privacy.release`` event  -> ``L i``
2. ``append_spsa`` of 5 entries with the signed batch that carried them  -> ``S i``
3. ``save_checkpoint_bytes`` of a small model for round ``i``                  -> ``C i``

MODE ``loop`` iterates until killed. MODE ``exit-ledger`` / ``exit-spsa`` /
``exit-checkpoint`` commits ``N`` full iterations, then arms an SQLAlchemy ``after_flush``
hook that calls ``os._exit(17)`` and makes the corresponding call: the process dies inside
the transaction after its rows were sent to the database but before the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys

from sqlalchemy import event
from sqlalchemy.orm import Session

from node.storage import LedgerRelease, SpsaBatchRecord, SpsaEntry, open_store

SENDER = "5" * 64


def release(i: int) -> LedgerRelease:
    return LedgerRelease(
        epsilon_after=0.1 * (i + 1),
        delta=1e-5,
        noise_multiplier=1.0,
        sample_rate=1.0,
        steps=1,
        release_kind="update",
        release_digest=hashlib.sha256(f"r{i}".encode()).hexdigest(),
    )


def batch(i: int) -> tuple[list[SpsaEntry], SpsaBatchRecord]:
    entries = [SpsaEntry(f"seed-{i}-{k}", i, SENDER, k, float(k) - 2.0, 0.5) for k in range(5)]
    return entries, SpsaBatchRecord(i, SENDER, hashlib.sha256(str(i).encode()).digest() * 4)


def model(i: int) -> bytes:
    """A 64x64 float32 tensor ``w`` filled with ``i``, as safetensors bytes.

    Built by hand so the writer never imports torch (keeps each spawn fast).
    """
    data = struct.pack("<f", float(i)) * (64 * 64)
    header = json.dumps({"w": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, len(data)]}})
    head = header.encode() + b" " * (-len(header) % 8)
    return struct.pack("<Q", len(head)) + head + data


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def die_inside_transaction(*_args: object) -> None:
    os._exit(17)


def main() -> None:
    url, data_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    store = open_store(url, data_dir=data_dir)
    start = len(store.ledger_rows())
    # Finish the iteration a previous writer was killed in, so every table reaches `start`.
    for j in range(store.spsa_batch_count(), start):
        entries, signed = batch(j)
        store.append_spsa(entries, batches=[signed])
    for j in range(len(store.list_checkpoints()), start):
        store.save_checkpoint_bytes(j, model(j), spsa_seq=store.spsa_last_seq())
    say(f"ready {start}")
    i = start
    while mode == "loop" or i < start + n:
        store.ledger_append(release(i), event_detail={"i": i})
        say(f"L {i}")
        entries, signed = batch(i)
        store.append_spsa(entries, batches=[signed])
        say(f"S {i}")
        store.save_checkpoint_bytes(i, model(i), spsa_seq=store.spsa_last_seq())
        say(f"C {i}")
        i += 1
    event.listen(Session, "after_flush", die_inside_transaction)
    if mode == "exit-ledger":
        store.ledger_append(release(i), event_detail={"i": i})
    elif mode == "exit-spsa":
        entries, signed = batch(i)
        store.append_spsa(entries, batches=[signed])
    elif mode == "exit-checkpoint":
        store.save_checkpoint_bytes(i, model(i))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    raise SystemExit("the after_flush hook did not fire")


if __name__ == "__main__":
    main()
