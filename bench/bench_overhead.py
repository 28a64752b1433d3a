"""Overhead of the network: wall time of a testnet round vs the same local steps alone.

Issue 4: "wall time of an 8-node testnet round vs the same local steps without
networking, as a ratio".

1. **Local**: one process, one torch thread, node 0's trainer (mnist1d MLP, the genesis'
   learner ``sgd`` with K local steps) runs R rounds of ``train`` + ``evaluate`` (the
   testnet evaluates every round too) with no networking at all.
2. **Testnet**: ``node.testnet.local.Testnet`` with N real daemon processes (gossip membership,
   signed update streams over gRPC, aggregation, SQL persistence) runs R rounds of the same
   learner. A node's round time is taken from its status history (``eval_every = 1``, one
   ``unix_time`` per round): ``(t[last] - t[first]) / (rounds between)``, so start-up and
   the first round (which waits for membership) are excluded.

The N node processes share the machine's cores, so the fair reference for one network
round is not the local round but ``N x local / cores`` (the same total compute spread over
the cores); both ratios are printed. CPU seconds are also read from ``/proc`` for every node
process over the measured rounds: ``node CPU per round / local CPU per round`` is the extra
work a node does per round (networking, signatures, SQL, gossip), independent of how
loaded the machine is.

Usage::

    .venv/bin/python bench/bench_overhead.py                       # 8 nodes, 10 rounds, K=60
    .venv/bin/python bench/bench_overhead.py --nodes 4 --rounds 6  # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from node.testnet.local import Testnet
from node.training.datasets import load_task
from node.training.genesis import Genesis
from node.training.trainer import make_trainer

SEED = 3
_TICK = os.sysconf("SC_CLK_TCK")


def genesis(nodes: int, rounds: int, steps: int, peers: int, timeout: float) -> Genesis:
    return Genesis.model_validate(
        {
            "network": {
                "name": "bench-overhead",
                "seed": SEED,
                "pow_difficulty": 4,
                "gossip_profile": "test",
            },
            "task": {
                "name": "mnist1d",
                "model": "mlp",
                "num_nodes": nodes,
                "partition": "dirichlet",
                "alpha": 0.5,
            },
            "learner": {"kind": "sgd", "lr": 1e-2, "local_steps": steps, "optimizer": "adam"},
            "rounds": {
                "max_rounds": rounds,
                "eval_every": 1,
                "round_timeout": timeout,
                "peers_per_round": peers,
            },
        }
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (Linux /proc), in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def run_local(g: Genesis, rounds: int) -> dict[str, float]:
    """R rounds of node 0's local steps + evaluation, no networking."""
    torch.set_num_threads(1)
    data = load_task(g.task, g.network.seed)
    trainer = make_trainer(
        g.task, g.learner, seed=g.network.seed, node_index=0, node_id="local", task_data=data
    )
    trainer.train(0)  # warm-up (allocator, first Adam step), as the testnet's round 0
    times: list[float] = []
    c0 = time.process_time()
    for r in range(1, rounds + 1):
        t = time.perf_counter()
        trainer.train(r)
        trainer.evaluate()
        times.append(time.perf_counter() - t)
    cpu = (time.process_time() - c0) / rounds
    return {
        "wall_per_round": statistics.median(times),
        "mean_wall": statistics.mean(times),
        "cpu_per_round": cpu,
    }


def run_testnet(g: Genesis, nodes: int, rounds: int, skip: int, timeout: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    net = Testnet(root, g, nodes)
    out: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        net.start(timeout=300)
        out["startup_s"] = time.monotonic() - t0
        pids = [n.process.pid for n in net.nodes if n.process is not None]
        cpu_start: list[float] | None = None
        t_cpu0 = t_cpu1 = 0.0
        cpu_end: list[float] = []
        st: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = net.statuses()
            rounds_now = [int(s.get("round", 0)) for s in st.values()]
            if cpu_start is None and len(st) == nodes and min(rounds_now) >= skip:
                cpu_start, t_cpu0 = [cpu_seconds(p) for p in pids], time.monotonic()
                r_cpu0 = min(rounds_now)
            # A node that caught up by jumping has fewer evaluations: ask for the last one.
            done = len(st) == nodes and all(
                max((int(h.get("round", 0)) for h in s.get("history", [])), default=0) >= rounds
                for s in st.values()
            )
            if done:
                cpu_end, t_cpu1 = [cpu_seconds(p) for p in pids], time.monotonic()
                break
            time.sleep(0.25)
        per_node: list[float] = []
        for s in st.values():
            hist = sorted(s.get("history", []), key=lambda h: int(h.get("round", 0)))
            if len(hist) >= skip + 2:
                # Skip the first rounds: they include waiting for membership and for nodes
                # that are still starting (a node alone trains without any exchange).
                a, b = hist[skip], hist[-1]
                span = int(b["round"]) - int(a["round"])
                per_node.append((float(b["unix_time"]) - float(a["unix_time"])) / span)
        out["per_node_round_s"] = per_node
        out["round_s"] = statistics.median(per_node) if per_node else float("nan")
        out["accuracy"] = [float(s.get("last_accuracy", 0.0)) for _, s in sorted(st.items())]
        out["bytes_sent"] = sum(int(s.get("bytes_sent", 0)) for s in st.values())
        if cpu_start is not None and cpu_end:
            measured = rounds - r_cpu0
            out["cpu_per_node_round"] = (sum(cpu_end) - sum(cpu_start)) / nodes / max(1, measured)
            out["cpu_window_s"] = t_cpu1 - t_cpu0
        out["completed"] = bool(cpu_end)
    finally:
        net.stop()
        shutil.rmtree(root, ignore_errors=True)
    return out


def render(
    args: argparse.Namespace,
    local: dict[str, float],
    net: dict[str, Any],
    load: tuple[float, float],
) -> str:
    cores = args.cores
    fair = args.nodes * local["wall_per_round"] / cores
    idle = args.nodes * local["cpu_per_round"] / cores
    per = net["per_node_round_s"] or [float("nan")]
    rows = [
        (
            "local round (K steps + eval, 1 process, 1 thread), median",
            f"{local['wall_per_round'] * 1e3:,.1f} ms",
        ),
        ("local CPU per round", f"{local['cpu_per_round'] * 1e3:,.1f} ms"),
        (f"testnet round, median over {args.nodes} nodes", f"{net['round_s'] * 1e3:,.0f} ms"),
        (
            "testnet round, slowest / fastest node",
            f"{max(per) * 1e3:,.0f} / {min(per) * 1e3:,.0f} ms",
        ),
        (
            "**ratio testnet round / local round**",
            f"**{net['round_s'] / local['wall_per_round']:,.1f}x**",
        ),
        (f"fair reference: {args.nodes} x local / {cores} cores", f"{fair * 1e3:,.1f} ms"),
        ("**ratio testnet round / fair reference**", f"**{net['round_s'] / fair:,.1f}x**"),
        (
            f"idle-machine reference: {args.nodes} x local CPU / {cores} cores",
            f"{idle * 1e3:,.1f} ms",
        ),
        ("ratio testnet round / idle-machine reference", f"{net['round_s'] / idle:,.1f}x"),
    ]
    if "cpu_per_node_round" in net:
        rows += [
            (
                "node CPU per round (all work of one daemon)",
                f"{net['cpu_per_node_round'] * 1e3:,.0f} ms",
            ),
            (
                "**CPU ratio node round / local round**",
                f"**{net['cpu_per_node_round'] / local['cpu_per_round']:,.1f}x**",
            ),
        ]
    rows += [
        ("testnet start-up (all nodes serving)", f"{net['startup_s']:.0f} s"),
        ("bytes sent, all nodes (updates, gossip, pulls)", f"{net['bytes_sent']:,}"),
        ("final accuracy per node", ", ".join(f"{a:.3f}" for a in net["accuracy"])),
        ("load average (1 min) before / after", f"{load[0]:.1f} / {load[1]:.1f}"),
    ]
    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60, help="local steps K per round")
    ap.add_argument("--peers", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2, help="cores the nodes share")
    ap.add_argument("--timeout", type=float, default=1500.0, help="whole testnet run limit")
    ap.add_argument(
        "--round-timeout",
        type=float,
        default=120.0,
        help="genesis round_timeout: nodes wait this long for peers before round 0",
    )
    ap.add_argument("--skip", type=int, default=2, help="first rounds left out of the timing")
    args = ap.parse_args()
    # SIGTERM ends the run through the `finally` that stops the node processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    g = genesis(args.nodes, args.rounds, args.steps, args.peers, args.round_timeout)
    load0 = os.getloadavg()[0]
    local = run_local(g, args.rounds)
    net = run_testnet(g, args.nodes, args.rounds, args.skip, args.timeout)
    load1 = os.getloadavg()[0]
    print(render(args, local, net, (load0, load1)))
    print()
    print(
        "Command: .venv/bin/python bench/bench_overhead.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k in {"nodes", "rounds", "steps", "peers", "round_timeout", "skip"}
        )
    )
    if not net.get("completed"):
        print(f"NOTE: not every node finished {args.rounds} rounds within the timeout")


if __name__ == "__main__":
    main()
