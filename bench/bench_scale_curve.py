"""Time per round and memory as the simulated network grows, on this machine.

Each point is its own process (so its peak resident set size is its own) running
:func:`node.sim.rounds.simulate`, the daemon's round engines, policy and learner, on
MNIST-1D (MLP of 15,210 parameters, iid shards, 10 Adam steps of batch 32 per training
round, one torch thread) twice: 1 round and ``1 + rounds`` rounds. The difference over
``rounds`` is the time of one round without the setup (task load, N models built, first
evaluation-free round); the setup is the 1-round run's time. Sampled participation
(``sample_trainers = s``, 2 aggregators) for every N; full participation (``k = 3``
push-pull) up to ``--full-max`` nodes, since its traffic grows with N.

MNIST-1D has 4,000 training examples, so N stops at 4,000 (one example per node).

Usage::

    .venv/bin/python bench/bench_scale_curve.py [--nodes 100,300,1000,2000,4000]
        [--rounds 5] [--samples 10] [--full-max 300] [--json out.json] [--png curve.png]

Run it alone and say the load average beside the figures (it prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def one_point(n: int, mode: str, rounds: int, samples: int, seed: int) -> dict[str, Any]:
    """Run the two simulations of one point in this process and return its row."""
    sys.path.insert(0, str(ROOT))
    import torch

    from node.sim.rounds import simulate
    from node.training.datasets import load_task
    from node.training.spec import LearnerSpec, RoundSpec, TaskSpec

    torch.set_num_threads(1)
    task = TaskSpec(name="mnist1d", num_nodes=n, batch_size=32, partition="iid")
    data = load_task(TaskSpec(name="mnist1d", num_nodes=1, batch_size=32), seed)
    learner = LearnerSpec(lr=1e-2, local_steps=10)
    sampled = mode == "sampled"
    # Lazy imports and first-call costs, paid once per process, are no part of any N.
    simulate(
        task.model_copy(update={"num_nodes": 2}), learner, RoundSpec(), seed=seed,
        num_rounds=1, task_data=data,
    )  # fmt: skip
    times: list[float] = []
    accuracy = float("nan")
    sent = 0
    for r in (1, 1 + rounds):
        spec = RoundSpec(
            peers_per_round=3,
            eval_every=r,
            round_timeout=5.0,
            sample_trainers=samples if sampled else None,
            sample_aggregators=2 if sampled else None,
        )
        t0 = time.perf_counter()
        res = simulate(task, learner, spec, seed=seed, num_rounds=r, task_data=data, jitter=0.2)
        times.append(time.perf_counter() - t0)
        accuracy, sent = res.mean_accuracy, res.bytes_sent
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "nodes": n,
        "mode": f"s={samples}, a=2" if sampled else "full, k=3",
        "setup_s": times[0],
        "s_per_round": (times[1] - times[0]) / rounds,
        "peak_rss_mb": peak,
        "accuracy": accuracy,
        "bytes_per_node_round": sent / n / (1 + rounds),
    }


def _child(n: int, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--child", f"{n}:{mode}", "--rounds", str(args.rounds),
        "--samples", str(args.samples), "--seed", str(args.seed),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"point {n} {mode} failed: {tail}")
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def plot(rows: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in sorted({r["mode"] for r in rows}):
        pts = sorted((r["nodes"], r) for r in rows if r["mode"] == mode)
        xs = [n for n, _ in pts]
        ax1.plot(xs, [r["s_per_round"] for _, r in pts], marker="o", label=mode)
        ax2.plot(xs, [r["peak_rss_mb"] for _, r in pts], marker="o", label=mode)
    for ax, label in ((ax1, "seconds per round"), (ax2, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("simulated nodes")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("fednode simulate, MNIST-1D MLP, 1 core per process")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="100,300,1000,2000,4000")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds after the first")
    ap.add_argument("--samples", type=int, default=10, help="s of sampled participation")
    ap.add_argument("--full-max", type=int, default=300, help="largest N run with full mode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        n, mode = args.child.split(":")
        print(json.dumps(one_point(int(n), mode, args.rounds, args.samples, args.seed)))
        return 0
    print(f"load average at start {os.getloadavg()}", flush=True)
    print("| N | mode | setup s | s / round | peak RSS MB | KB / node / round | accuracy |")
    print("|---:|---|---:|---:|---:|---:|---:|", flush=True)
    rows: list[dict[str, Any]] = []
    for n in [int(x) for x in args.nodes.split(",") if x]:
        for mode in ("sampled", "full"):
            if mode == "full" and n > args.full_max:
                continue
            row = _child(n, mode, args)
            rows.append(row)
            print(
                f"| {n:,} | {row['mode']} | {row['setup_s']:.1f} | {row['s_per_round']:.2f} | "
                f"{row['peak_rss_mb']:.0f} | {row['bytes_per_node_round'] / 1e3:.1f} | "
                f"{row['accuracy']:.3f} |",
                flush=True,
            )
    print(f"load average at end {os.getloadavg()}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.png is not None:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
