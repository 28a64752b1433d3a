"""Bytes on the wire per SPSA entry past 32 nodes: push gossip vs the spanning tree (issue 16).

N :class:`~node.training.spsa.SpsaEngine` objects (the daemon's engine, sans I/O) are
driven by a simulated network in one process: no sockets, a simulated clock, seeded
delivery delays. What travels is what a daemon sends: each origin's batch is a real
signed wire ``ScalarBatch`` (``batch_to_wire``, Ed25519 origin signature, checked once by
``check_batch``), and every push is counted at the size of its signed ``spsa`` envelope
(``PushScalars``); every anti-entropy pull at the size of its signed ``request`` envelope
(``PullRequest`` with its ``have`` list) plus one ``spsa`` envelope per batch served.
Envelope sizes are exact (``Envelope.ByteSize`` with a 64-byte signature field) without
signing each copy.

The ideal is every node receiving every batch exactly once: ``(N - 1)`` envelopes per
batch. The table gives bytes per entry delivered (total bytes / (entries x (N - 1))) and
the ratio to the ideal, for ``gossip`` (each node forwards a batch it sees first to k
random members) and ``tree`` (each batch along a k-ary spanning tree, see
``SpsaEngine.tree_children``), and checks that every node ends with the same entry set
(after the sweeps of whole-log pulls that a finished daemon makes, counted in the bytes).

Usage::

    .venv/bin/python bench/bench_spsa_dissemination.py                # N = 64, 256, 1024
    .venv/bin/python bench/bench_spsa_dissemination.py --nodes 64 256 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fednode_proto.v1 import training_pb2 as pb
from fednode_proto.v1.envelope_pb2 import Envelope
from node.base.identity import Identity
from node.training.learners.spsa import ScalarBatch, quantize, seed_id
from node.training.spsa import (
    Action,
    CheckedBatch,
    ComputeBatch,
    LedgerSpec,
    PeerView,
    Phase,
    RequestBatches,
    SendBatch,
    SpsaEngine,
    SpsaSettings,
)
from node.wire.envelope import PROTOCOL_VERSION
from node.wire.spsa_batch import batch_to_wire, check_batch, have_key

SEED = 7
NETWORK_ID = hashlib.sha256(b"bench-spsa-dissemination").digest()
DIM = 8  # the model's size does not change a byte on the wire
TIMESTAMP_MS = 1_765_000_000_000


def _identity(i: int) -> Identity:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"node{i}".encode()).digest())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Identity(key, public, 0, 0)


def _envelope_size(kind: str, body: bytes, seq: int, round_idx: int) -> int:
    env = Envelope(
        version=PROTOCOL_VERSION,
        sender_id=b"\x01" * 32,
        sender_public_key=b"\x02" * 32,
        network_id=NETWORK_ID,
        kind=kind,
        seq=seq,
        round=round_idx,
        timestamp_ms=TIMESTAMP_MS,
        body=body,
        signature=b"\x03" * 64,
    )
    return env.ByteSize()


@dataclass
class Sim:
    engines: dict[str, SpsaEngine]
    batches: dict[tuple[int, str], CheckedBatch]
    rng: random.Random
    delay: float
    now: float = 0.0
    queue: list[tuple[float, int, str, str, tuple[int, str]]] = field(default_factory=list)
    bytes: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    seq: Counter[str] = field(default_factory=Counter)
    by_wire: dict[bytes, tuple[int, str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    _n: int = 0
    _size: dict[tuple[int, int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_wire = {b.wire: k for k, b in self.batches.items()}
        self.order = sorted(self.engines)

    def _spsa_size(self, sender: str, key: tuple[int, str]) -> int:
        self.seq[sender] += 1
        seq = self.seq[sender]
        body = self.batches[key].wire
        cache = (len(body), key[0], seq.bit_length())
        size = self._size.get(cache)
        if size is None:
            size = self._size[cache] = _envelope_size("spsa", body, seq, key[0])
        return size

    def handle(self, node: str, actions: list[Action]) -> None:
        engine = self.engines[node]
        for action in actions:
            if isinstance(action, ComputeBatch):
                own = self.batches[(action.round, node)]
                assert engine.claim(own) is None
                assert engine.on_stored(own) == []
                self.handle(node, engine.on_own_batch(action.round, own.wire, self.now))
            elif isinstance(action, SendBatch):
                batch = self.batches[self.by_wire[action.wire]]
                peers = action.peers
                if peers is None:
                    # As Membership.sample: k distinct members outside exclude (drawing a
                    # few more than k from the sorted ids and filtering is the same draw
                    # without sorting N ids per send).
                    skip = action.exclude | {node}
                    pick = self.rng.sample(self.order, action.fanout + len(skip))
                    peers = tuple([p for p in pick if p not in skip][: action.fanout])
                for peer in peers:
                    self._n += 1
                    self.bytes["push"] += self._spsa_size(node, batch.key)
                    self.counts["push"] += 1
                    at = self.now + self.rng.uniform(0.1 * self.delay, self.delay)
                    heapq.heappush(self.queue, (at, self._n, peer, node, batch.key))
            elif isinstance(action, RequestBatches):
                self.pull(node, action.since, action.until)

    def pull(self, node: str, since: int, until: int | None) -> None:
        engine = self.engines[node]
        peer = node
        while peer == node:
            peer = self.rng.choice(self.order)
        src = self.engines[peer]
        have = [have_key(*k) for k in engine.held_keys(since)]
        request = pb.PullRequest(
            what=pb.PullRequest.SCALARS_SINCE, since_round=since, have=have, until_round=until or 0
        )
        self.seq[node] += 1
        self.bytes["pull_request"] += _envelope_size(
            "request", request.SerializeToString(), self.seq[node], 0
        )
        self.counts["pull"] += 1
        mine = set(engine.held_keys(since))
        got = [
            self.batches[k]
            for k in src.held_keys(since)
            if k not in mine and (until is None or k[0] < until)
        ]
        for b in got:
            self.bytes["pull_served"] += self._spsa_size(peer, b.key)
        self.counts["pulled_batches"] += len(got)
        self.handle(node, engine.on_pulled_stored(engine.fresh(got)))

    def run(self, tick: float, until: float) -> None:
        order = sorted(self.engines)
        while self.now < until:
            for node in order:
                self.handle(node, self.engines[node].tick(self.now))
            self.now += tick
            while self.queue and self.queue[0][0] <= self.now:
                _, _, to, sender, key = heapq.heappop(self.queue)
                batch = self.batches[key]
                engine = self.engines[to]
                refused = engine.admit(batch, sender=sender, envelope_round=batch.round)
                if refused is None:
                    self.handle(to, engine.on_stored(batch, sender=sender))
                else:
                    self.counts[f"refused_{refused.reason}"] += 1
            if not self.queue and all(e.phase is Phase.DONE for e in self.engines.values()):
                return


def make_batches(
    idents: list[Identity], rounds: int, steps: int
) -> dict[tuple[int, str], CheckedBatch]:
    out = {}
    for ident in idents:
        origin = ident.node_id_hex
        for r in range(rounds):
            rng = random.Random(f"{origin}:{r}")
            codes, scale = quantize([rng.uniform(-2, 2) for _ in range(steps)], "int8")
            st = tuple(range(steps))
            learner = ScalarBatch(
                round=r,
                node=origin,
                schedule="per_node",
                dtype="int8",
                steps=st,
                seed_ids=tuple(seed_id(SEED, r, origin, s) for s in st),
                codes=codes,
                scale=scale,
            )
            wire = batch_to_wire(learner, ident, NETWORK_ID)
            checked = check_batch(
                wire,
                network_id=NETWORK_ID,
                genesis_seed=SEED,
                schedule="per_node",
                dtype="int8",
                steps_per_round=steps,
            )
            out[checked.key] = checked
    return out


def run_one(
    n: int, mode: str, rounds: int, steps: int, fanout: int, delay: float, seed: int
) -> dict[str, float]:
    idents = [_identity(i) for i in range(n)]
    ids = [i.node_id_hex for i in idents]
    batches = make_batches(idents, rounds, steps)
    spec = LedgerSpec(lr=0.01, weight=1 / n)
    every = frozenset(ids)
    view = PeerView(every, every, every, every)
    engines = {}
    for node in ids:
        settings = SpsaSettings(
            node_id=node,
            steps_per_round=steps,
            round_timeout=5.0,
            past=rounds + 1,  # nothing becomes final: no model is computed (bytes only)
            future=1,
            fanout=fanout,
            max_rounds=rounds,
            dissemination=mode,  # type: ignore[arg-type]
        )
        e = SpsaEngine(settings, spec.ledger(torch.zeros(DIM)), spec)
        e.on_membership(view)
        e.set_ready()
        engines[node] = e
    sim = Sim(engines, batches, random.Random(seed), delay)
    sim.run(tick=0.05, until=rounds * 10.0)
    # A finished daemon pulls whole logs from random peers until it agrees (_idle).
    sweeps = 0
    while len({e.ledger.digest() for e in engines.values()}) > 1 and sweeps < 10:
        for node in ids:
            sim.pull(node, 0, None)
        sweeps += 1
    agree = len({e.ledger.digest() for e in engines.values()}) == 1
    entries = n * rounds * steps
    ideal = sum(_envelope_size("spsa", b.wire, 1000, b.round) * (n - 1) for b in batches.values())
    total = sum(sim.bytes.values())
    return {
        "bytes_per_entry": total / (entries * (n - 1)),
        "ideal_per_entry": ideal / (entries * (n - 1)),
        "ratio": total / ideal,
        "push_share": sim.bytes["push"] / total,
        "pull_share": (sim.bytes["pull_request"] + sim.bytes["pull_served"]) / total,
        "dup": sim.counts["refused_duplicate"] / max(1, sim.counts["push"]),
        "sweeps": sweeps,
        "agree": float(agree),
        "sim_time": sim.now,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--modes", nargs="+", default=["gossip", "tree"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=16, help="entries per batch (spsa_steps)")
    p.add_argument("--fanout", type=int, default=3, help="peers_per_round")
    p.add_argument("--delay", type=float, default=0.05, help="longest hop delay, seconds")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rows = []
    for n in a.nodes:
        for mode in a.modes:
            t0 = time.process_time()
            print(f"N={n} {mode}: running {a.rounds} rounds ...", flush=True)
            r = run_one(n, mode, a.rounds, a.steps, a.fanout, a.delay, a.seed)
            cpu = time.process_time() - t0
            print(f"  done in {cpu:.1f} s CPU, ratio {r['ratio']:.2f}", flush=True)
            rows.append((n, mode, r, cpu))
    load = os.getloadavg()[0]
    print()
    print(
        f"steps={a.steps} rounds={a.rounds} fanout={a.fanout} delay<={a.delay}s, "
        f"load average {load:.1f}"
    )
    print(
        "| N | scheme | B/entry | ideal B/entry | x ideal | push % | pull % | dup pushes "
        "| sweeps | agree | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, mode, r, cpu in rows:
        print(
            f"| {n} | {mode} | {r['bytes_per_entry']:.1f} | {r['ideal_per_entry']:.1f} "
            f"| {r['ratio']:.2f} | {100 * r['push_share']:.0f} | {100 * r['pull_share']:.0f} "
            f"| {100 * r['dup']:.0f}% | {r['sweeps']} | {'yes' if r['agree'] else 'NO'} "
            f"| {cpu:.0f} |"
        )


if __name__ == "__main__":
    main()
