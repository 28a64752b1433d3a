"""Rounds against the asynchronous mode when some nodes are slow (simulation).

:func:`node.sim.rounds.simulate` (the daemon's round engine, or the asynchronous mode's
:class:`~node.training.asynchronous.AsyncEngine`, with the daemon's learner and merge
policy) on MNIST-1D (MLP, iid shards, 10 Adam steps of batch 32 per local training),
for a fixed budget of simulated time. A local training takes 1 simulated second
(jitter 0.2), a message 0.01 s; a straggler's training takes ``--slow-factor`` times as
long. Runs per N:

- ``rounds``: push-pull rounds with k = 3 peers and ``--round-timeout`` seconds;
- ``async@G``: ``[rounds.asynchronous]`` with ``--compute-rate`` and gossip rate ``G``
  (one run per rate in ``--gossip-rates``);

each with every node at speed 1 and with a quarter of the nodes (every 4th) slow.

It prints, per run, the nodes' mean accuracy (each node's last evaluation by then) at
four points of the budget, the local trainings done by fast and slow nodes, and the
model bytes sent per node; ``--png`` draws accuracy against simulated time.

Usage::

    .venv/bin/python bench/bench_async.py [--nodes 16,100] [--budget 60]
        [--gossip-rates 3,9] [--json out.json] [--png docs/img/async_stragglers.png]

Run it alone and say the load average beside the figures (it prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def accuracy_at(timeline: list[tuple[float, int, int, float]], n: int, t: float) -> float:
    """Mean over the nodes of each node's last accuracy evaluated by time ``t``."""
    last: dict[int, float] = {}
    for at, node, _, acc in timeline:
        if at > t:
            break
        last[node] = acc
    if not last:
        return float("nan")
    return sum(last.values()) / n if len(last) == n else float("nan")


def run(n: int, mode: str, stragglers: bool, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    """One simulation; ``mode`` is ``rounds`` or ``async@G`` (gossip rate G)."""
    from node.sim.rounds import simulate
    from node.training.spec import AsyncRates, LearnerSpec, RoundSpec, TaskSpec

    task = TaskSpec(name="mnist1d", num_nodes=n, batch_size=32, partition="iid")
    learner = LearnerSpec(lr=1e-2, local_steps=10)
    if mode.startswith("async@"):
        rates = AsyncRates(compute_rate=args.compute_rate, gossip_rate=float(mode[6:]))
        spec = RoundSpec(
            eval_every=1,
            max_staleness=args.max_staleness,
            staleness_discount=args.staleness_discount,
            asynchronous=rates,
        )
    else:
        spec = RoundSpec(peers_per_round=3, eval_every=1, round_timeout=args.round_timeout)
    slow = [args.slow_factor if stragglers and i % 4 == 0 else 1.0 for i in range(n)]
    t0 = time.perf_counter()
    res = simulate(
        task, learner, spec, seed=args.seed, num_rounds=100_000, task_data=data,
        jitter=0.2, slowdown=slow, until=args.budget,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    steps = [s["rounds"] for s in res.stats]
    fast = [steps[i] for i in range(n) if slow[i] == 1.0]
    slowed = [steps[i] for i in range(n) if slow[i] != 1.0]
    points = [args.budget * q for q in (0.25, 0.5, 0.75, 1.0)]
    return {
        "nodes": n,
        "mode": mode,
        "stragglers": stragglers,
        "accuracy": {f"{p:g}": accuracy_at(res.timeline, n, p) for p in points},
        "curve": [
            (t, accuracy_at(res.timeline, n, t))
            for t in [args.budget * k / 40 for k in range(1, 41)]
        ],
        "trainings_fast": sum(fast) / len(fast),
        "trainings_slow": sum(slowed) / len(slowed) if slowed else None,
        "mb_sent_per_node": res.bytes_sent / n / 2**20,
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="16,100")
    ap.add_argument("--budget", type=float, default=60.0, help="simulated seconds")
    ap.add_argument("--slow-factor", type=float, default=4.0)
    ap.add_argument("--round-timeout", type=float, default=5.0)
    ap.add_argument("--compute-rate", type=float, default=10.0)
    ap.add_argument(
        "--gossip-rates", default="3,9", help="one asynchronous run per rate (pushes/s)"
    )
    ap.add_argument("--max-staleness", type=int, default=5)
    ap.add_argument("--staleness-discount", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--rounds-mode",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the round mode (--no-rounds-mode: asynchronous runs only)",
    )
    ap.add_argument(
        "--stragglers",
        choices=("both", "none", "only"),
        default="both",
        help="runs with equal speeds and with a quarter of the nodes slow (both), equal "
        "speeds only (none) or the slow runs only (only)",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args()
    import torch

    from node.training.datasets import load_task
    from node.training.spec import TaskSpec

    torch.set_num_threads(1)
    data = load_task(TaskSpec(name="mnist1d", num_nodes=1, batch_size=32), args.seed)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    for n in [int(x) for x in args.nodes.split(",")]:
        for stragglers in {"both": (False, True), "none": (False,), "only": (True,)}[
            args.stragglers
        ]:
            modes = ["rounds"] if args.rounds_mode else []
            for mode in modes + [f"async@{g}" for g in args.gossip_rates.split(",") if g]:
                row = run(n, mode, stragglers, args, data)
                rows.append(row)
                accs = "  ".join(f"t={k}: {v:.3f}" for k, v in row["accuracy"].items())
                slow = row["trainings_slow"]
                slow = "" if slow is None else f" / slow {slow:.1f}"
                print(
                    f"N={n:>4} {mode:<8} {'1/4 slow' if stragglers else 'no stragglers':<13} "
                    f"{accs}  trainings fast {row['trainings_fast']:.1f}{slow}  "
                    f"{row['mb_sent_per_node']:.1f} MB/node  ({row['wall_s']:.0f} s)",
                    flush=True,
                )
    print(f"load average at end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.png:
        plot(rows, args)


def plot(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["nodes"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4), squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=True):
        for r in (r for r in rows if r["nodes"] == n):
            ts, accs = zip(*r["curve"], strict=True)
            label = f"{r['mode']}, {'1/4 nodes 4x slower' if r['stragglers'] else 'equal speeds'}"
            ax.plot(ts, accs, linestyle="--" if r["stragglers"] else "-", label=label)
        ax.set_title(f"MNIST-1D, {n} nodes (simulation)")
        ax.set_xlabel("simulated seconds (a local training: 1 s)")
        ax.set_ylabel("mean test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
