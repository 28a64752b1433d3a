"""Sampled participation (MoDeST-style) against full participation, in simulation.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_sampling.py [--nodes 100,300]
        [--samples 10,30] [--rounds 30] [--unresponsive 0.8] [--json out.json]

For each N it runs :func:`node.sim.rounds.simulate` on MNIST-1D (MLP, iid shards) with
full participation (every node trains and push-pulls with ``--peers`` peers each round)
and with ``sample_trainers = s`` for each ``s`` (2 aggregators), and prints final mean
accuracy, vector bytes sent per node per round, and wall time. With ``--unresponsive p``
it also runs each sampled setting with a fraction ``p`` of the nodes crashed from the
start: once with the crashed nodes still in every member list (``listed``: samples draw
them and rounds lean on failed pushes and timeouts) and once after membership removed
them (``evicted``); accuracy is over the nodes that run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.sim.rounds import simulate  # noqa: E402
from node.training.datasets import load_task  # noqa: E402
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec  # noqa: E402


def run(
    n: int,
    s: int | None,
    args: argparse.Namespace,
    data: Any,
    *,
    dead: float = 0.0,
    detected: bool = True,
) -> dict[str, Any]:
    task = TaskSpec(name="mnist1d", num_nodes=n, batch_size=32, partition="iid")
    learner = LearnerSpec(lr=args.lr, local_steps=args.local_steps)
    spec = RoundSpec(
        peers_per_round=args.peers,
        eval_every=args.rounds,
        round_timeout=args.timeout,
        sample_trainers=s,
        sample_aggregators=None if s is None else args.aggregators,
    )
    unresponsive = sorted(random.Random(args.seed).sample(range(n), int(dead * n)))
    t0 = time.perf_counter()
    res = simulate(
        task,
        learner,
        spec,
        seed=args.seed,
        num_rounds=args.rounds,
        task_data=data,
        jitter=0.2,
        unresponsive=unresponsive,
        detected=detected,
    )
    wall = time.perf_counter() - t0
    return {
        "nodes": n,
        "mode": "full" if s is None else f"s={s},a={args.aggregators}",
        "unresponsive": len(unresponsive),
        "members": "-" if not unresponsive else ("evicted" if detected else "listed"),
        "accuracy": res.mean_accuracy,
        "bytes_per_node_round": res.bytes_sent / n / args.rounds,
        "wall_s": wall,
        "sim_s": res.sim_time,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="100,300")
    ap.add_argument("--samples", default="10,30")
    ap.add_argument("--aggregators", type=int, default=2)
    ap.add_argument("--peers", type=int, default=3, help="k of full participation")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--timeout", type=float, default=5.0, help="round_timeout (simulated s)")
    ap.add_argument("--unresponsive", type=float, default=0.0)
    ap.add_argument("--no-full", action="store_true", help="skip full participation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    base = TaskSpec(name="mnist1d", num_nodes=1, batch_size=32, partition="iid")
    data = load_task(base, args.seed)
    samples = [int(x) for x in args.samples.split(",") if x]
    print(
        f"MNIST-1D MLP, iid, {args.rounds} rounds x {args.local_steps} local steps, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')}, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(
        f"{'N':>5} {'mode':>10} {'dead':>5} {'members':>8} {'acc':>6} {'KB/node/rnd':>11} "
        f"{'wall s':>7}",
        flush=True,
    )

    def show(row: dict[str, Any]) -> None:
        rows.append(row)
        print(
            f"{row['nodes']:>5} {row['mode']:>10} {row['unresponsive']:>5} {row['members']:>8} "
            f"{row['accuracy']:6.3f} {row['bytes_per_node_round'] / 1e3:11.1f} "
            f"{row['wall_s']:7.1f}",
            flush=True,
        )

    for n in [int(x) for x in args.nodes.split(",") if x]:
        if not args.no_full:
            show(run(n, None, args, data))
        for s in samples:
            show(run(n, s, args, data))
            if args.unresponsive > 0:
                show(run(n, s, args, data, dead=args.unresponsive, detected=True))
                show(run(n, s, args, data, dead=args.unresponsive, detected=False))
    print(f"load after: {os.getloadavg()}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
