"""A real member daemon that records every update and scalar batch pushed to it.

Run as a script next to the node under test (the *subject*): it joins the network through
the ordinary membership protocol, so the subject samples it and pushes to it like to any
peer, over real gRPC, signed and admitted by the real ``NodeService``. It trains nothing and
sends nothing back. For each push it appends one JSON line to ``OUT/pushes.jsonl``:

``{"kind", "sender", "round", "digest", "values", "ledger": {...}}``

* ``digest``: sha256 hex of what the subject's ledger must record for it: the raw float32
  payload for an update (equal to its signed ``payload_sha256``), the origin-signed bytes
  for a scalar batch (:func:`node.wire.spsa_batch.release_digest`);
* ``values``: the released numbers as decoded from the wire (vector or scalars);
* ``ledger``: read from the subject's SQLite file the moment the push arrived: the rows
  whose ``release_digest`` equals ``digest`` and the total row count. A row present here
  was committed before the bytes left the subject.

Usage: ``python tests/node/wiretap.py --data-dir D --genesis G [--bootstrap ADDR] --out DIR
--watch SUBJECT_DB``. Start it first and bootstrap the subject from it, so the subject
sees it before its first round.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from fednode_proto.v1 import training_pb2 as pb
from node.base.datadir import DataDir
from node.base.logs import configure_logging
from node.base.settings import NodeSettings
from node.daemon.core import Daemon
from node.training.genesis import load_genesis
from node.training.trainer import make_trainer
from node.wire.envelope import Verified
from node.wire.spsa_batch import release_digest


def ledger_at(db: Path, digest: str) -> dict[str, Any]:
    """Rows of the subject's ledger with ``digest``, read now (committed data only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT * FROM privacy_ledger WHERE release_digest = ? ORDER BY seq", (digest,)
        )
        names = [c[0] for c in rows.description]
        matching = [dict(zip(names, r, strict=True)) for r in rows.fetchall()]
        total = conn.execute("SELECT COUNT(*) FROM privacy_ledger").fetchone()[0]
    finally:
        conn.close()
    return {"rows": matching, "total": int(total)}


class Tap:
    """``TrainingHandler`` that records pushes and refuses nothing."""

    def __init__(self, out: Path, watch: Path, network_id: bytes, update_numel: int | None) -> None:
        self.out = out
        self.watch = watch
        self.network_id = network_id
        # The service checks a stream's header against this before reading its body.
        self.update_numel = update_numel

    def _record(
        self, kind: str, msg: Verified, rnd: int, digest: str, values: list[float], **extra: Any
    ) -> None:
        entry = {
            **extra,
            "kind": kind,
            "sender": msg.sender_id.hex(),
            "round": rnd,
            "digest": digest,
            "values": values,
            "ledger": ledger_at(self.watch, digest),
            "t": time.time(),
        }
        with open(self.out / "pushes.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    async def on_update(self, msg: Verified, header: pb.TensorHeader, payload: bytes) -> None:
        values = np.frombuffer(payload, dtype="<f4").astype(float).tolist()
        digest = hashlib.sha256(payload).hexdigest()
        self._record(
            "update", msg, int(header.round), digest, values, num_samples=int(header.num_samples)
        )

    async def on_scalars(self, msg: Verified, batch: pb.ScalarBatch) -> None:
        if batch.dtype == "int8":
            s = np.float32(batch.scale)
            values = [float(np.float32(e.q) * s) for e in batch.entries]
        else:
            values = [float(e.value) for e in batch.entries]
        digest = release_digest(self.network_id, batch)
        self._record("spsa", msg, int(batch.entries[0].round), digest, values)

    async def pull(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[pb.TensorChunk]:
        return
        yield

    async def pull_scalars(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[Any]:
        return
        yield


class TapDaemon(Daemon):
    def __init__(self, *args: Any, out: Path, watch: Path, **kw: Any) -> None:
        super().__init__(*args, train=False, **kw)
        self.out = out
        self.watch = watch

    async def _start_components(self) -> None:
        await super()._start_components()
        assert self.service is not None and self.identity is not None
        g = self.genesis
        numel = None
        if g.learner.kind != "spsa":  # SPSA subjects push scalars only
            trainer = make_trainer(
                g.task,
                g.learner,
                seed=g.network.seed,
                node_index=0,
                node_id=self.identity.node_id_hex,
            )
            numel = trainer.layout.numel
        self.service.training = Tap(self.out, self.watch, g.network_id, numel)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--genesis", required=True, type=Path)
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--watch", required=True, type=Path)
    a = p.parse_args(argv)
    configure_logging("text", "INFO")
    a.out.mkdir(parents=True, exist_ok=True)
    settings = NodeSettings(listen="127.0.0.1:0", metrics="off", dashboard="off")
    daemon = TapDaemon(
        DataDir(a.data_dir),
        load_genesis(a.genesis),
        settings,
        bootstrap=[a.bootstrap] if a.bootstrap else [],
        out=a.out,
        watch=a.watch,
    )
    return asyncio.run(daemon.run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
