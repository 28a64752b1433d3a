"""Sentiment with FFA-LoRA: wire bytes to reach a target accuracy, spsa vs sgd vs full model.

Issue 4 asks for the total bytes on the wire (all nodes, envelopes and signatures
included) until the network reaches a target test accuracy, for

* ``spsa``: nodes publish (seed id, int8 scalar) batches, every batch reaches every node;
* ``sgd``: nodes exchange their LoRA trainable vector (B factors + head, 37,634 float32);
* exchanging the full model (every MiniLM weight + LoRA + head, ~22.8M float32),

plus the bytes of one SPSA step. Training runs in one process (no sockets); the bytes are
the sizes of the *real* signed messages the daemon sends for the same content:

* spsa: each round, every node's batch is turned into the daemon's wire ``ScalarBatch``
  (``batch_to_wire``: origin key + origin signature) inside a signed ``spsa`` envelope
  (``seal``); the exact ``ByteSize`` is counted once per receiving node (``N - 1`` copies,
  ideal dissemination) and, as an upper bound of the daemon's push gossip, ``N * k`` copies
  (origin pushes to ``k`` peers, every other node forwards a new batch once to ``k``).
* sgd: the exact size of one ``PushUpdate`` stream (signed ``update`` envelope with the
  tensor header + raw float32 payload, ``encode_update`` / ``chunks_for``) times the
  messages the round engines sent (``simulate``: push to ``k`` peers, push-pull replies).
* full model: the same stream for a vector of all the model's parameters (computed from
  the parameter count with the same framing, not trained), times sgd's messages to target.

gRPC/HTTP2 framing is not counted in any row.

The SPSA run mirrors :func:`node.sim.rounds.simulate_spsa` (same learner, wire
codec, :class:`ScalarLog` validation and ``apply_round``) but keeps *one* model: every node
applies the same sorted entry set, so all nodes' models are bit-identical (what
``simulate_spsa`` checks, max |dw| = 0) and one copy represents them all; that lets the
run stop when the target is reached and evaluate once instead of N times.

Usage (each part writes JSON into --out; ``report`` renders the table)::

    C="--max-length 16 --batch 8"
    .venv/bin/python bench/bench_sentiment.py sizes --out /tmp/bs $C
    .venv/bin/python bench/bench_sentiment.py sgd --out /tmp/bs $C --sgd-rounds 6
    .venv/bin/python bench/bench_sentiment.py spsa --out /tmp/bs-spsa $C --spsa-lr 1.2e-2
    .venv/bin/python bench/bench_sentiment.py report --out /tmp/bs --spsa-out /tmp/bs-spsa

MiniLM forwards dominate: one spsa step is two forwards of one minibatch, one sgd step a
forward and a backward; set ``torch`` to one thread (done here) on shared machines.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednode_proto.v1.training_pb2 import TensorChunk
from node.base.identity import Identity
from node.sim.rounds import simulate
from node.training.datasets import TaskData, load_task, node_data
from node.training.evaluate import evaluate
from node.training.learners.spsa import ScalarBatch, ScalarLog, SPSALearner, apply_round
from node.training.models import build_model
from node.training.params import flatten, load_vector
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec
from node.wire.envelope import seal
from node.wire.exchange import chunks_for, encode_update
from node.wire.spsa_batch import batch_to_wire

SEED = 0
NET_ID = b"\x42" * 32


def task_spec(args: argparse.Namespace) -> TaskSpec:
    return TaskSpec(
        name="sentiment",
        model="lora",
        num_nodes=args.nodes,
        partition="iid",
        batch_size=args.batch,
        max_samples=args.max_samples,
        max_length=args.max_length,
    )


def update_stream_bytes(numel: int) -> int:
    """Exact protobuf size of one PushUpdate stream carrying ``numel`` float32 values."""
    ident = Identity.generate(0)
    header, payload = encode_update(torch.zeros(numel), round=3, num_samples=400)
    env = seal(ident, NET_ID, "update", header.SerializeToString(), seq=1, round=3)
    return sum(TensorChunk.ByteSize(c) for c in chunks_for(env, payload))


def spsa_envelope_bytes(batch: ScalarBatch, ident: Identity, seq: int) -> int:
    """Exact protobuf size of the signed ``spsa`` envelope carrying ``batch``."""
    wire = batch_to_wire(batch, ident, NET_ID)
    env = seal(ident, NET_ID, "spsa", wire.SerializeToString(), seq=seq, round=batch.round)
    return int(env.ByteSize())


# --- parts ------------------------------------------------------------------------------


def run_sizes(args: argparse.Namespace) -> dict[str, Any]:
    task = task_spec(args)
    data = load_task(task, SEED)
    model = build_model(task, SEED, input_dim=data.input_dim, num_classes=data.num_classes)
    trainable = flatten(model).numel()
    total = sum(p.numel() for p in model.parameters())
    shard = node_data(task, SEED, 0, task=data)
    ident = Identity.generate(0)
    per_steps = {}
    for steps in (1, 4, 16, 64):
        spec = LearnerSpec(kind="spsa", spsa_steps=steps, lr=1e-3)
        learner = SPSALearner(spec, batch_size=4, seed=SEED, node=ident.node_id_hex)
        # 4-example batches: only the message size matters here, not the estimate.
        small = node_data(task, SEED, 0, task=data)
        batch = learner.train_round(model, small, 0)
        per_steps[steps] = spsa_envelope_bytes(batch, ident, 1)
    del shard
    return {
        "trainable": trainable,
        "total_params": total,
        "spsa_envelope": per_steps,
        "sgd_update": update_stream_bytes(trainable),
        "full_update": update_stream_bytes(total),
    }


def run_sgd(args: argparse.Namespace) -> dict[str, Any]:
    task = task_spec(args)
    data = load_task(task, SEED)
    learner = LearnerSpec(kind="sgd", lr=args.sgd_lr, local_steps=args.sgd_steps, optimizer="adam")
    rounds = RoundSpec(peers_per_round=args.peers, eval_every=1, round_timeout=30.0)
    t0 = time.monotonic()
    trace: list[dict[str, Any]] = []

    def on_round(r: int, accs: list[float]) -> None:
        row = {
            "round": r + 1,
            "mean_acc": sum(accs) / len(accs),
            "accs": accs,
            "wall_s": time.monotonic() - t0,
        }
        trace.append(row)
        print(json.dumps(row), flush=True)

    res = simulate(
        task,
        learner,
        rounds,
        seed=SEED,
        num_rounds=args.sgd_rounds,
        task_data=data,
        on_round=on_round,
    )
    return {
        "trace": trace,
        "messages": res.messages,
        "rounds": args.sgd_rounds,
        "messages_per_round": res.messages / args.sgd_rounds,
        "majority": majority(data),
        "settings": {"lr": args.sgd_lr, "local_steps": args.sgd_steps, "peers": args.peers},
        "wall_s": time.monotonic() - t0,
    }


def majority(data: TaskData) -> float:
    y = np.asarray(data.y_test)
    return float(max((y == c).mean() for c in range(int(y.max()) + 1)))


def run_spsa(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(SEED)
    task = task_spec(args)
    data = load_task(task, SEED)
    n = args.nodes
    idents = [Identity.generate(0) for _ in range(n)]
    ids = [i.node_id_hex for i in idents]
    spec = LearnerSpec(
        kind="spsa", lr=args.spsa_lr, spsa_eps=args.spsa_eps, spsa_steps=args.spsa_steps
    )
    model = build_model(task, SEED, input_dim=data.input_dim, num_classes=data.num_classes)
    shards = [node_data(task, SEED, i, task=data) for i in range(n)]
    learners = [
        SPSALearner(spec, batch_size=task.batch_size, seed=SEED, node=ids[i]) for i in range(n)
    ]
    log = ScalarLog(SEED, schedule=spec.spsa_seed_schedule, steps_per_round=spec.spsa_steps)
    test_x, test_y = shards[0].x_test, shards[0].y_test
    t0 = time.monotonic()
    env_bytes = 0  # sum over rounds of every node's envelope size (one copy each)
    seq = 0
    trace: list[dict[str, Any]] = []
    first = evaluate(model, test_x, test_y)
    trace.append(
        {"round": 0, "acc": first.accuracy, "loss": first.loss, "env_bytes": 0, "wall_s": 0.0}
    )
    print(json.dumps(trace[-1]), flush=True)
    reached: int | None = None
    losses: list[float] = []
    for r in range(args.spsa_rounds):
        batches = [learners[i].train_round(model, shards[i], r) for i in range(n)]
        for i, b in enumerate(batches):
            seq += 1
            env_bytes += spsa_envelope_bytes(b, idents[i], seq)
            log.add(ScalarBatch.decode(b.encode()))
        losses += [b.loss for b in batches]
        w = apply_round(
            flatten(model),
            log.round_entries(r),
            spec.lr,
            schedule=spec.spsa_seed_schedule,
            distribution=spec.spsa_distribution,
            num_nodes=n,
        )
        load_vector(model, w)
        if (r + 1) % args.spsa_eval_every == 0:
            res = evaluate(model, test_x, test_y)
            row = {
                "round": r + 1,
                "acc": res.accuracy,
                "loss": res.loss,
                "train_loss": sum(losses) / len(losses),
                "env_bytes": env_bytes,
                "wall_s": time.monotonic() - t0,
            }
            losses = []
            trace.append(row)
            print(json.dumps(row), flush=True)
            save(args, "spsa", {"trace": trace, "partial": True, **spsa_meta(args, n)})
            if res.accuracy >= args.target and reached is None:
                reached = r + 1
                if not args.keep_going:
                    break
    return {
        "trace": trace,
        "reached": reached,
        "entries": len(log),
        "partial": False,
        **spsa_meta(args, n),
    }


def spsa_meta(args: argparse.Namespace, n: int) -> dict[str, Any]:
    return {
        "settings": {
            "lr": args.spsa_lr,
            "eps": args.spsa_eps,
            "steps": args.spsa_steps,
            "nodes": n,
            "peers": args.peers,
        }
    }


# --- report -----------------------------------------------------------------------------


def save(args: argparse.Namespace, name: str, obj: dict[str, Any]) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(obj, indent=1))


def load(args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    p = Path(args.out) / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def first_reach(trace: list[dict[str, Any]], key: str, target: float) -> dict[str, Any] | None:
    return next((row for row in trace if row[key] >= target), None)


def report(args: argparse.Namespace) -> str:
    sizes, sgd = load(args, "sizes"), load(args, "sgd")
    spsa = load(argparse.Namespace(out=args.spsa_out or args.out), "spsa")
    if sizes is None or sgd is None or spsa is None:
        raise SystemExit("run the sizes, sgd and spsa parts first")
    n, k = spsa["settings"]["nodes"], args.gossip_k
    steps = spsa["settings"]["steps"]
    target = args.target
    lines = [f"Target: test accuracy >= {target} (majority class: {sgd['majority']:.3f}).", ""]
    sg = first_reach(sgd["trace"], "mean_acc", target)
    sp = first_reach(spsa["trace"], "acc", target)
    mpr = sgd["messages_per_round"]
    lines += [
        "| method | rounds to target | messages | bytes per message | total bytes |",
        "|---|---:|---:|---:|---:|",
    ]
    sgd_total = full_total = None
    if sg is not None:
        msgs = mpr * sg["round"]
        sgd_total = msgs * sizes["sgd_update"]
        full_total = msgs * sizes["full_update"]
        lines.append(
            f"| sgd, LoRA vector ({sizes['trainable']:,} float32) | {sg['round']} | "
            f"{msgs:,.0f} | {sizes['sgd_update']:,} | {sgd_total:,.0f} |"
        )
        lines.append(
            f"| full model ({sizes['total_params']:,} float32), sgd's rounds | "
            f"{sg['round']} | {msgs:,.0f} | {sizes['full_update']:,} | "
            f"{full_total:,.0f} |"
        )
    else:
        lines.append(f"| sgd | not reached in {sgd['rounds']} | | | |")
    row = sp if sp is not None else spsa["trace"][-1]
    per_copy = row["env_bytes"]
    batches = max(1, n * row["round"])
    spsa_total = per_copy * (n - 1)
    gossip = per_copy * n * k
    when = str(row["round"]) if sp is not None else f"not reached in {row['round']}"
    lines.append(
        f"| spsa, {steps} int8 steps/node/round, N-1 copies | {when} | "
        f"{batches * (n - 1):,} | {per_copy / batches:,.0f} | {spsa_total:,.0f} |"
    )
    lines.append(
        f"| spsa, push-gossip bound N*k copies (k={k}) | {when} | "
        f"{batches * n * k:,} | {per_copy / batches:,.0f} | {gossip:,.0f} |"
    )
    lines.append("")
    spsa_round = per_copy / max(1, row["round"]) * (n - 1)
    sgd_round = mpr * sizes["sgd_update"]
    lines.append(
        f"Per round: sgd {sgd_round:,.0f} B ({mpr:.1f} messages), spsa {spsa_round:,.0f} B "
        f"(N-1 copies) = {sgd_round / spsa_round:,.0f}x less, or "
        f"{spsa_round * n * k / (n - 1):,.0f} B (gossip bound) = "
        f"{sgd_round * (n - 1) / (spsa_round * n * k):,.0f}x less."
    )
    if sgd_total:
        budget = sgd_total / 10
        lines.append(
            f"For >= 10x fewer bytes than sgd, spsa may take at most "
            f"{budget / spsa_round:,.0f} rounds (N-1 copies) or "
            f"{budget / (spsa_round * n * k / (n - 1)):,.0f} rounds (gossip bound)."
        )
    if sgd_total and sp is not None:
        lines.append(
            f"sgd / spsa total bytes: {sgd_total / spsa_total:,.0f}x (N-1 copies), "
            f"{sgd_total / gossip:,.0f}x (gossip bound); full model / spsa: "
            f"{(full_total or 0) / spsa_total:,.0f}x."
        )
    env = sizes["spsa_envelope"]
    lines.append(
        "Bytes of one signed SPSA envelope: "
        + ", ".join(f"{s} step(s) {b:,} B ({b / int(s):,.1f} B/step)" for s, b in env.items())
        + "."
    )
    lines.append("")
    lines.append(
        "SPSA accuracy by round: "
        + ", ".join(f"{r['round']}: {r['acc']:.3f}" for r in spsa["trace"])
        + "."
    )
    lines.append(
        "sgd mean accuracy by round: "
        + ", ".join(f"{r['round']}: {r['mean_acc']:.3f}" for r in sgd["trace"])
        + "."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["sizes", "sgd", "spsa", "report"])
    ap.add_argument("--out", default="/tmp/bench_sentiment")
    ap.add_argument("--spsa-out", default=None, help="report: read spsa.json from here")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--peers", type=int, default=1, help="k: peers per round of sgd")
    ap.add_argument(
        "--gossip-k", type=int, default=3, help="fan-out of the spsa push-gossip bound (report)"
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-samples", type=int, default=2000)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--target", type=float, default=0.75)
    ap.add_argument("--sgd-lr", type=float, default=3e-3)
    ap.add_argument("--sgd-steps", type=int, default=10)
    ap.add_argument("--sgd-rounds", type=int, default=6)
    ap.add_argument("--spsa-lr", type=float, default=1e-3)
    ap.add_argument("--spsa-eps", type=float, default=1e-3)
    ap.add_argument("--spsa-steps", type=int, default=8)
    ap.add_argument("--spsa-rounds", type=int, default=200)
    ap.add_argument("--spsa-eval-every", type=int, default=5)
    ap.add_argument("--keep-going", action="store_true", help="do not stop at the target")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.part == "report":
        print(report(args))
        return
    result = {"sizes": run_sizes, "sgd": run_sgd, "spsa": run_spsa}[args.part](args)
    result["argv"] = vars(args)
    save(args, args.part, result)
    print(json.dumps({k: v for k, v in result.items() if k != "trace"}, indent=1))


if __name__ == "__main__":
    main()
