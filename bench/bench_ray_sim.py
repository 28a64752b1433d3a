"""Memory per node and time per round of ``fednode simulate --ray`` against the in-process run.

Each point is its own process: :func:`node.sim.rounds.simulate` on MNIST-1D (MLP of
15,210 parameters, iid shards, 10 Adam steps of batch 32 per round, one torch thread per
process), full participation (k = 3 push-pull), first without Ray and then with
:class:`node.sim.ray_hosts.RayHosts` on a local Ray instance of ``--cpus`` CPUs and
``--actors`` actors. The run with Ray must give the same accuracies (it asserts so).

Per point it prints the wall time per round (from the end of round 1 to the end of round
``1 + rounds``, over ``rounds``; every round evaluates), the setup (start to the end of
round 1), the driver's peak resident set (in-process run) and each actor's resident set
after the Ray run. Memory per node held in an actor is the slope of the
actor's resident set over the nodes it holds, between the smallest and the largest N.

Usage::

    .venv/bin/python bench/bench_ray_sim.py [--nodes 100,300,1000] [--rounds 2]
        [--actors 2] [--cpus 2] [--json out.json]

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


def one_point(n: int, rounds: int, actors: int, cpus: int, seed: int) -> dict[str, Any]:
    """Both runs of one N in this process; returns its row."""
    sys.path.insert(0, str(ROOT))
    import ray
    import torch

    from node.sim.ray_hosts import RayHosts, connect
    from node.sim.rounds import simulate
    from node.training.datasets import load_task
    from node.training.spec import LearnerSpec, RoundSpec, TaskSpec

    torch.set_num_threads(1)
    task = TaskSpec(name="mnist1d", num_nodes=n, batch_size=32, partition="iid")
    data = load_task(TaskSpec(name="mnist1d", num_nodes=1, batch_size=32), seed)
    learner = LearnerSpec(lr=1e-2, local_steps=10)
    row: dict[str, Any] = {"nodes": n, "actors": actors}
    accuracy: dict[str, float] = {}
    # Lazy imports and first-call costs, paid once per process, are no part of any N.
    simulate(
        task.model_copy(update={"num_nodes": 2}), learner, RoundSpec(), seed=seed,
        num_rounds=1, task_data=data,
    )  # fmt: skip
    spec = RoundSpec(peers_per_round=3, eval_every=1, round_timeout=5.0)
    for mode in ("in-process", "ray"):
        stamps: list[float] = []
        t0 = time.perf_counter()
        hosts = None
        if mode == "ray":
            connect("local", num_cpus=cpus)
            hosts = RayHosts(task, learner, seed=seed, actors=actors, task_data=data)
        res = simulate(
            task, learner, spec, seed=seed, num_rounds=1 + rounds, task_data=data, jitter=0.2,
            hosts=hosts, on_round=lambda r, accs, stamps=stamps: stamps.append(time.perf_counter()),
        )  # fmt: skip
        accuracy[mode] = res.mean_accuracy
        # Setup: start to the end of round 1 (hosts, task, models, one round); then rounds.
        row[f"{mode}_setup_s"] = stamps[0] - t0
        row[f"{mode}_s_per_round"] = (stamps[-1] - stamps[0]) / rounds
        if hosts is not None:
            row["actor_rss_mb"] = [b / 2**20 for b in hosts.actor_rss_bytes()]
            hosts.close()
            ray.shutdown()
        else:
            row["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if accuracy["ray"] != accuracy["in-process"]:
        raise AssertionError(f"Ray changed the result: {accuracy}")
    row["accuracy"] = accuracy["ray"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="100,300,1000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--point", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.point is not None:
        row = one_point(args.point, args.rounds, args.actors, args.cpus, args.seed)
        print(json.dumps(row))
        return
    rows = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for n in [int(x) for x in args.nodes.split(",")]:
        cmd = [
            sys.executable, __file__, "--point", str(n), "--rounds", str(args.rounds),
            "--actors", str(args.actors), "--cpus", str(args.cpus), "--seed", str(args.seed),
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"N={n:>5}  in-process {row['in-process_s_per_round']:6.2f} s/round  "
            f"ray {row['ray_s_per_round']:6.2f} s/round  setup {row['in-process_setup_s']:5.1f}"
            f" / {row['ray_setup_s']:5.1f} s  driver peak {row['driver_peak_rss_mb']:6.0f} MB  "
            f"actors {', '.join(f'{m:.0f}' for m in row['actor_rss_mb'])} MB  "
            f"accuracy {row['accuracy']:.3f}",
            flush=True,
        )
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        per_actor = [
            (max(hi["actor_rss_mb"]) - max(lo["actor_rss_mb"]))
            / ((hi["nodes"] - lo["nodes"]) / args.actors)
        ]
        print(f"actor memory per node held: {per_actor[0]:.3f} MB")
    print(f"load average at end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
