"""A malicious member daemon built from fednode's own modules (catch-up and equivocation).

It joins the network through the ordinary membership protocol with a valid proof of work,
so the honest nodes see it as a member, sample it and push their updates to it. It trains
nothing. It builds the genesis' model once to learn its size, then attacks:

``--mode lag``
    Every second it pushes to every member a correctly signed update for round ``--claim``
    (far beyond everyone's window) holding a forged model (all zeros), and it serves that
    forged model, signed, as its checkpoint at round ``--claim`` to anyone who pulls.
    Before the catch-up defence this made a node that was not behind adopt the forgery.

``--mode equivocate``
    For each round in which it receives an honest update it signs *two different* updates
    for that round (the honest vector plus two different small perturbations, so both
    pass the norm check) and sends the first to the members listed in ``--to-a`` and the
    second to those in ``--to-b``.

Every push it makes is appended to ``OUT/attacks.jsonl``. Usage: ``python
tests/node/attacker.py --data-dir D --genesis G --bootstrap ADDR --out DIR --mode lag``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch

from fednode_proto.v1 import training_pb2 as pb
from node.base.datadir import DataDir
from node.base.logs import configure_logging
from node.base.settings import NodeSettings
from node.daemon.core import Daemon
from node.training.genesis import load_genesis
from node.training.params import encode_state
from node.wire.envelope import SeqCounter, Verified, seal
from node.wire.exchange import chunks_for, encode_update


class Attack:
    """``TrainingHandler`` of the attacker: learns the layout, serves its forged checkpoint."""

    def __init__(self, daemon: AttackerDaemon) -> None:
        self.d = daemon
        self.numel: int | None = None
        self.honest: dict[int, torch.Tensor] = {}  # round -> an honest vector seen

    @property
    def update_numel(self) -> int | None:
        """The service checks each stream's header against it before reading the body."""
        return self.numel

    async def on_update(self, msg: Verified, header: pb.TensorHeader, payload: bytes) -> None:
        vec = torch.from_numpy(np.frombuffer(payload, dtype="<f4").copy())
        if len(self.honest) < 64:
            self.honest.setdefault(int(header.round), vec)

    async def on_scalars(self, msg: Verified, batch: pb.ScalarBatch) -> None:
        return None

    async def pull(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[pb.TensorChunk]:
        if self.numel is None or request.what != pb.PullRequest.CHECKPOINT:
            return
        d = self.d
        assert d.identity is not None
        data = encode_state({"vector": torch.zeros(self.numel)})
        import hashlib

        header = pb.TensorHeader(
            format=pb.TensorHeader.SAFETENSORS,
            dtype="float32",
            shape=[self.numel],
            total_bytes=len(data),
            payload_sha256=hashlib.sha256(data).digest(),
            round=d.claim,
            base_round=d.claim,
        )
        env = seal(
            d.identity,
            d.genesis.network_id,
            "checkpoint",
            header.SerializeToString(),
            seq=d.seq.next("checkpoint"),
            round=d.claim,
        )
        d.record({"kind": "checkpoint_served", "to": msg.sender_id.hex(), "round": d.claim})
        for chunk in chunks_for(env, data):
            yield chunk

    async def pull_scalars(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[Any]:
        return
        yield


class AttackerDaemon(Daemon):
    def __init__(
        self,
        *args: Any,
        out: Path,
        mode: str,
        claim: int,
        to_a: list[str],
        to_b: list[str],
        **kw: Any,
    ) -> None:
        super().__init__(*args, train=False, **kw)
        self.out = out
        self.mode = mode
        self.claim = claim
        self.to_a = to_a
        self.to_b = to_b
        self.seq = SeqCounter()
        self.attack: Attack | None = None
        self._loop_task: asyncio.Task[None] | None = None

    def record(self, entry: dict[str, Any]) -> None:
        entry["t"] = time.time()
        with open(self.out / "attacks.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    async def _start_components(self) -> None:
        await super()._start_components()
        assert self.service is not None
        self.attack = Attack(self)
        self.service.training = self.attack
        # The genesis names the task: the attacker builds the model to learn its size,
        # so it attacks from the moment it joins.
        from node.training.trainer import make_trainer

        g = self.genesis
        trainer = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: make_trainer(
                g.task, g.learner, seed=g.network.seed, node_index=0, node_id="attacker"
            ),
        )
        self.attack.numel = int(trainer.layout.numel)
        self._loop_task = asyncio.create_task(self._attack_loop())

    async def _push(self, address: str, round_idx: int, vector: torch.Tensor) -> str:
        assert self.identity is not None
        header, payload = encode_update(vector, round=round_idx, num_samples=1)
        env = seal(
            self.identity,
            self.genesis.network_id,
            "update",
            header.SerializeToString(),
            seq=self.seq.next("update"),
            round=round_idx,
        )
        try:
            receipt = await self.channels.stub(address).PushUpdate(
                chunks_for(env, payload), timeout=10.0
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "accepted" if receipt.accepted else receipt.reason[:60]

    def _addresses(self, ids: list[str] | None) -> list[tuple[str, str]]:
        assert self.membership is not None and self.identity is not None
        out = []
        for m in self.membership.members():
            hexid = m.node_id.hex()
            if hexid == self.identity.node_id_hex:
                continue
            if ids is None or any(hexid.startswith(i) for i in ids):
                out.append((hexid, m.address))
        return out

    async def _attack_loop(self) -> None:
        assert self.attack is not None
        done: set[int] = set()
        while True:
            await asyncio.sleep(1.0)
            if self.attack.numel is None or self.membership is None:
                continue
            if self.mode == "lag":
                forged = torch.zeros(self.attack.numel)
                targets = self._addresses(None)
                results = await asyncio.gather(
                    *(self._push(address, self.claim, forged) for _, address in targets)
                )
                for (hexid, _), got in zip(targets, results, strict=True):
                    self.record({"kind": "future_update", "to": hexid, "result": got})
            elif self.mode == "equivocate":
                for r, honest in list(self.attack.honest.items()):
                    if r in done:
                        continue
                    done.add(r)
                    a = honest + 1e-3
                    b = honest - 1e-3
                    for vec, ids, side in ((a, self.to_a, "a"), (b, self.to_b, "b")):
                        for hexid, address in self._addresses(ids):
                            got = await self._push(address, r, vec)
                            self.record(
                                {
                                    "kind": "equivocation",
                                    "side": side,
                                    "to": hexid,
                                    "round": r,
                                    "result": got,
                                }
                            )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--genesis", required=True, type=Path)
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--mode", choices=["lag", "equivocate"], required=True)
    p.add_argument("--claim", type=int, default=10**6)
    p.add_argument("--to-a", default="")
    p.add_argument("--to-b", default="")
    a = p.parse_args(argv)
    configure_logging("text", "INFO")
    a.out.mkdir(parents=True, exist_ok=True)
    settings = NodeSettings(listen="127.0.0.1:0", metrics="off", dashboard="off")
    daemon = AttackerDaemon(
        DataDir(a.data_dir),
        load_genesis(a.genesis),
        settings,
        bootstrap=[a.bootstrap] if a.bootstrap else [],
        out=a.out,
        mode=a.mode,
        claim=a.claim,
        to_a=[x for x in a.to_a.split(",") if x],
        to_b=[x for x in a.to_b.split(",") if x],
    )
    return asyncio.run(daemon.run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
