"""Sampled participation (MoDeST-style) against full participation, in simulation.

Usage (one torch thread)::

    .venv/bin/python bench/bench_sampling.py [--nodes 100,300]
        [--samples 10,30] [--rounds 30] [--unresponsive 0.8] [--json out.json]

For each N it runs :func:`node.sim.rounds.simulate` on MNIST-1D (MLP, iid shards, or
Dirichlet(``--alpha``) label shards) with
full participation (every node trains and push-pulls with ``--peers`` peers each round)
and with ``sample_trainers = s`` for each ``s`` (2 aggregators), and prints final mean
accuracy, vector bytes sent per node per round, and wall time. With ``--unresponsive p``
it also runs each setting with a fraction ``p`` of the nodes crashed from the
start: once with the crashed nodes still in every member list (``listed``: samples draw
them and rounds lean on failed pushes and timeouts) and once after membership removed
them (``evicted``, as SWIM's failure detector, or MoDeST's contacting of candidates in rank
order, leaves the sample); accuracy and traffic are over the nodes that run. ``models`` is
vector sends per running node and round.
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

import torch  # noqa: E402

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
    task = TaskSpec(
        name="mnist1d",
        num_nodes=n,
        batch_size=32,
        partition="iid" if args.alpha is None else "dirichlet",
        alpha=0.5 if args.alpha is None else args.alpha,
    )
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
    live = n - len(unresponsive)
    model_bytes = res.final_vectors[0].numel() * 4
    return {
        "nodes": n,
        "mode": "full" if s is None else f"s={s},a={args.aggregators}",
        "unresponsive": len(unresponsive),
        "members": "-" if not unresponsive else ("evicted" if detected else "listed"),
        "accuracy": res.mean_accuracy,
        # Over the nodes that run: the crashed ones send nothing.
        "bytes_per_node_round": res.bytes_sent / live / args.rounds,
        "models_per_node_round": res.bytes_sent / live / args.rounds / model_bytes,
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
    ap.add_argument(
        "--only-faults", action="store_true", help="with --unresponsive: skip fault-free runs"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="Dirichlet(alpha) label partition over the nodes (default: iid shards)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # 2 shared cores: one thread per process
    rows: list[dict[str, Any]] = []
    base = TaskSpec(name="mnist1d", num_nodes=1, batch_size=32, partition="iid")
    data = load_task(base, args.seed)
    samples = [int(x) for x in args.samples.split(",") if x]
    print(
        f"MNIST-1D MLP, {'iid' if args.alpha is None else f'Dirichlet({args.alpha})'}, "
        f"{args.rounds} rounds x {args.local_steps} local steps, "
        f"1 torch thread, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(
        f"{'N':>5} {'mode':>10} {'dead':>5} {'members':>8} {'acc':>6} {'KB/node/rnd':>11} "
        f"{'models':>6} {'wall s':>7}",
        flush=True,
    )

    def show(row: dict[str, Any]) -> None:
        rows.append(row)
        print(
            f"{row['nodes']:>5} {row['mode']:>10} {row['unresponsive']:>5} {row['members']:>8} "
            f"{row['accuracy']:6.3f} {row['bytes_per_node_round'] / 1e3:11.1f} "
            f"{row['models_per_node_round']:6.2f} {row['wall_s']:7.1f}",
            flush=True,
        )

    settings: list[int | None] = ([] if args.no_full else [None]) + samples
    for n in [int(x) for x in args.nodes.split(",") if x]:
        for mode in settings:
            if not args.only_faults:
                show(run(n, mode, args, data))
            if args.unresponsive > 0:
                show(run(n, mode, args, data, dead=args.unresponsive, detected=True))
                show(run(n, mode, args, data, dead=args.unresponsive, detected=False))
    print(f"load after: {os.getloadavg()}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
