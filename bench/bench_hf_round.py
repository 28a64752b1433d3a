"""Where the time of one Hugging Face text-classification round goes (one process).

Times, for the MiniLM tweet-sentiment task (or a genesis's HF task): tokenising the data
file (cold) and reading the tokenised cache (warm), building the model, one sgd round of
K steps, one SPSA round, and evaluation by test-set size, evaluation batch, autograd mode
(``no_grad`` vs ``inference_mode``) and torch threads. Prints a markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_hf_round.py --out /tmp/hf_round.json

Say the machine's load average beside the figures: they are wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from node.training.datasets import load_task, node_data
from node.training.evaluate import evaluate
from node.training.learners.sgd import SGDLearner
from node.training.learners.spsa import SPSALearner
from node.training.models import build_model
from node.training.spec import LearnerSpec, TaskSpec

CPU: list[float] = []


def timed(fn: Any, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls; the matching CPU time goes to ``CPU``."""
    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    CPU.append(cpu)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genesis", help="take the task from this genesis (default: sentiment)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--spsa-steps", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.genesis:
        from node.training.genesis import load_genesis

        g = load_genesis(Path(args.genesis))
        base, seed = g.task, g.network.seed
    else:
        base, seed = TaskSpec(name="sentiment", num_nodes=3), 0
    rows: list[tuple[str, float, float, str]] = []

    def row(what: str, seconds: float, note: str = "") -> None:
        cpu = CPU.pop() if CPU else float("nan")
        rows.append((what, seconds, cpu, note))
        print(f"{what}: {seconds:.3f} s wall, {cpu:.3f} s CPU {note}", flush=True)

    cache = Path(tempfile.mkdtemp(prefix="hf-round-cache-"))
    try:
        full = base.model_copy(
            update={"max_length": args.max_length, "batch_size": args.batch, "max_samples": None}
        )
        row(
            "tokenise whole data file (cold cache)",
            timed(lambda: load_task(full, seed, cache=cache)),
        )
        data_full = load_task(full, seed, cache=cache)
        row("read tokenised cache (warm)", timed(lambda: load_task(full, seed, cache=cache), 3))
        small = full.model_copy(update={"max_samples": 2000})
        data = load_task(small, seed, cache=cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    built: list[Any] = []
    row(
        "build model (folder hash, load, peft)",
        timed(lambda: built.append(build_model(small, seed, input_dim=0, num_classes=2))),
    )
    model = built[0]
    shard = node_data(small, seed, 0, task=data)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sgd = SGDLearner(
            LearnerSpec(kind="sgd", lr=3e-3, local_steps=args.steps),
            batch_size=args.batch,
            seed=seed,
            node="n",
        )
        row(
            f"sgd round: {args.steps} steps x batch {args.batch}, {threads} thread(s)",
            timed(lambda sgd=sgd: sgd.train_round(model, shard, 0)),
        )
        spsa = SPSALearner(
            LearnerSpec(kind="spsa", lr=1e-2, spsa_steps=args.spsa_steps),
            batch_size=args.batch,
            seed=seed,
            node="n",
        )
        row(
            f"spsa round: {args.spsa_steps} steps x 2 forwards, {threads} thread(s)",
            timed(lambda spsa=spsa: spsa.train_round(model, shard, 0)),
        )
    torch.set_num_threads(1)
    xt, yt = shard.x_test, shard.y_test
    xf, yf = torch.from_numpy(data_full.x_test), torch.from_numpy(data_full.y_test)
    for size, (x, y) in (("400 (max_samples 2000)", (xt, yt)), (f"{len(yf)} (all)", (xf, yf))):
        row(
            f"evaluate {size} tweets, batch 64, 1 thread",
            timed(lambda x=x, y=y: evaluate(model, x, y, batch_size=64)),
        )
    for bs in (16, 64, 256):
        row(
            f"evaluate 400, batch {bs}, 1 thread",
            timed(lambda bs=bs: evaluate(model, xt, yt, batch_size=bs)),
        )

    def no_grad_eval() -> None:
        with torch.no_grad():
            model.eval()
            for i in range(0, len(yt), 64):
                model(xt[i : i + 64])

    def autograd_eval() -> None:
        model.eval()
        for i in range(0, len(yt), 64):
            model(xt[i : i + 64])

    row("evaluate 400 under no_grad (batch 64)", timed(no_grad_eval))
    row("evaluate 400 with autograd on (batch 64)", timed(autograd_eval))
    torch.set_num_threads(2)
    row("evaluate 400, batch 64, 2 threads", timed(lambda: evaluate(model, xt, yt, batch_size=64)))
    torch.set_num_threads(1)
    lengths = (xt[:, 1].sum(1)).float()
    note = f"mean {float(lengths.mean()):.1f}, max {int(lengths.max())} of {args.max_length}"
    row("tokens per test tweet", 0.0, note)
    print()
    print(f"| step (load average {os.getloadavg()[0]:.1f}) | wall s | CPU s | note |")
    print("|---|---:|---:|---|")
    for what, sec, cpu, note in rows:
        print(f"| {what} | {sec:.3f} | {cpu:.3f} | {note} |")
    if args.out:
        Path(args.out).write_text(json.dumps([list(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
