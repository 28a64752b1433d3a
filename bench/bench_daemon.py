"""Daemon footprint: start-up time, idle RSS and idle CPU of real node processes.

Usage::

    .venv/bin/python bench/bench_daemon.py [--nodes 3] [--idle 30]

Starts N membership-only daemons (``--no-train``) on loopback with the ``lan`` gossip
profile, measures each one's start-up time (process spawn to servers up and
``daemon.json`` written), then samples RSS and CPU time over an idle window in which the
nodes only gossip. Also reports the same for one node with the default learner loaded
(torch model and dataset in memory) after its rounds are done.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.testnet.local import Testnet  # noqa: E402
from node.training.genesis import Genesis  # noqa: E402


def measure(nodes: int, idle: float, train: bool) -> list[dict[str, float]]:
    genesis = Genesis.model_validate(
        {
            "network": {"name": "bench", "seed": 1, "pow_difficulty": 8, "gossip_profile": "lan"},
            "task": {"name": "digits", "num_nodes": max(nodes, 1)},
            "rounds": {"max_rounds": 2, "eval_every": 1},
        }
    )
    args = {} if train else {i: ["--no-train"] for i in range(nodes)}
    with tempfile.TemporaryDirectory() as tmp:
        net = Testnet(Path(tmp), genesis, nodes, node_args=args, log_level="WARNING")
        spawn: dict[int, float] = {}
        net.prepare()
        t0 = time.time()
        net.start_node(net.nodes[0], None)
        spawn[0] = t0
        for node in net.nodes[1:]:
            spawn[node.index] = time.time()
            net.spawn_node(node, net.nodes[0].address)
        net.wait_started(net.nodes[1:])
        try:
            net.wait_full_view(60)
            if train:
                deadline = time.time() + 120
                while time.time() < deadline:
                    st = net.statuses()
                    if all(int(s.get("round", 0)) >= 2 for s in st.values()):
                        break
                    time.sleep(0.5)
            procs = {n.index: psutil.Process(n.process.pid) for n in net.nodes if n.process}
            cpu0 = {i: p.cpu_times() for i, p in procs.items()}
            time.sleep(idle)
            rows = []
            for node in net.nodes:
                p = procs[node.index]
                c1 = p.cpu_times()
                c0 = cpu0[node.index]
                info = node.runtime() or {}
                rows.append(
                    {
                        "node": node.index,
                        "startup_s": float(info.get("ready_at", 0.0)) - spawn[node.index],
                        "rss_mb": p.memory_info().rss / 2**20,
                        "cpu_pct": 100.0 * ((c1.user + c1.system) - (c0.user + c0.system)) / idle,
                    }
                )
        finally:
            net.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30.0)
    ns = parser.parse_args()
    print(f"fednode daemon footprint, {psutil.cpu_count()} cores, idle window {ns.idle:.0f} s")
    print(f"{'setup':<28} {'node':>4} {'start-up s':>10} {'idle RSS MB':>12} {'idle CPU %':>10}")
    for label, nodes, train in (
        (f"{ns.nodes} nodes, membership only", ns.nodes, False),
        ("1 node, digits MLP loaded", 1, True),
    ):
        for row in measure(nodes, ns.idle, train):
            print(
                f"{label:<28} {row['node']:>4} {row['startup_s']:>10.2f} "
                f"{row['rss_mb']:>12.1f} {row['cpu_pct']:>10.2f}"
            )
    print(
        f"reproduce: .venv/bin/python bench/bench_daemon.py --nodes {ns.nodes} --idle {ns.idle:.0f}"
    )


if __name__ == "__main__":
    main()
