"""Rounds against the asynchronous mode on real daemons, with and without stragglers.

Each run is one ``python -m node testnet up`` (real node processes on loopback, real gRPC):
``--nodes`` MNIST-1D CNN nodes, defaults otherwise (k = 3, ``mean``), stopped after
``--budget`` seconds or when every node has done its rounds. In the straggler runs,
``--slow-nodes`` nodes are each held by a Linux cgroup to a fair share of the machine's CPUs
divided by ``--slowdown`` once every node runs (``testnet up --slow-nodes``; root needed).
The asynchronous runs use ``testnet up --asynchronous --gossip-rate R``; their ``--rounds``
counts local trainings and is set high enough that they train for the whole budget.

The figure of a cell is the mean, over the nodes that are *not* stragglers, of each node's
last evaluated accuracy by that time (seconds since the testnet command started, node
start-up included), read from the testnet's ``timeline``; "rounds" is the range of their
rounds (local trainings in the asynchronous mode) at that time. The stragglers' own mean
is printed last.

Run (about 15 minutes on 2 cores; run alone, the figures depend on the load):
    .venv/bin/python bench/bench_daemon_stragglers.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIMES = (60, 90, 120, 150, 180, 210)


def run(args: argparse.Namespace, *, asynchronous: bool, slow: bool) -> dict[str, Any]:
    rounds = args.async_trainings if asynchronous else args.rounds
    cmd = [
        sys.executable, "-m", "node", "testnet", "up",
        "--nodes", str(args.nodes), "--task", "mnist1d", "--rounds", str(rounds),
        "--timeout", str(args.budget), "--format", "json",
    ]  # fmt: skip
    if asynchronous:
        cmd += ["--asynchronous", "--gossip-rate", str(args.gossip_rate)]
    if slow:
        cmd += ["--slow-nodes", str(args.slow_nodes), "--slowdown", str(args.slowdown)]
    with tempfile.TemporaryDirectory(prefix="bench-stragglers-") as tmp:
        cmd += ["--plot", str(Path(tmp) / "acc.png")]
        print("$", " ".join(cmd[2:]), flush=True)
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"testnet up failed ({out.returncode}):\n{out.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(out.stdout)
    return summary


def at(summary: dict[str, Any], t: float, stragglers: bool) -> tuple[float, int, int]:
    """Mean last accuracy by ``t`` and the (min, max) round of one group of nodes."""
    slow = {str(n["node"]) for n in summary["per_node"] if n.get("slow")}
    accs: list[float] = []
    rounds: list[int] = []
    for node, points in summary["timeline"].items():
        if (node in slow) != stragglers:
            continue
        seen = [p for p in points if p[0] <= t]
        accs.append(seen[-1][2] if seen else 0.0)
        rounds.append(int(seen[-1][1]) if seen else 0)
    if not accs:
        return float("nan"), 0, 0
    return statistics.mean(accs), min(rounds), max(rounds)


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=30, help="round mode: rounds per node")
    ap.add_argument(
        "--async-trainings", type=int, default=60, help="asynchronous mode: local trainings"
    )
    ap.add_argument("--gossip-rate", type=float, default=6.0)
    ap.add_argument("--slow-nodes", type=int, default=4)
    ap.add_argument("--slowdown", type=float, default=4.0)
    ap.add_argument("--budget", type=float, default=210.0, help="seconds per run at most")
    ap.add_argument("--json", type=Path, help="also write every summary here")
    args = ap.parse_args()
    runs: dict[str, dict[str, Any]] = {}
    for asynchronous in (False, True):
        for slow in (False, True):
            name = (
                f"{'async, gossip ' + format(args.gossip_rate, 'g') if asynchronous else 'rounds'}"
                f" / {'stragglers' if slow else 'none'}"
            )
            t0, before = time.strftime("%H:%M:%S"), load()
            runs[name] = run(args, asynchronous=asynchronous, slow=slow)
            runs[name]["bench"] = {"start": t0, "load_before": before, "load_after": load()}
            time.sleep(15)  # let the previous run's processes go
    head = " | ".join(f"t = {t} s" for t in TIMES)
    print(f"\n| mode / stragglers | {head} | load before, after |")
    print("|---|" + "---:|" * len(TIMES) + "---|")
    for name, summary in runs.items():
        cells = []
        for t in TIMES:
            acc, lo, hi = at(summary, t, stragglers=False)
            cells.append(f"{acc:.3f} ({lo}-{hi})")
        b = summary["bench"]
        print(f"| {name} | {' | '.join(cells)} | {b['load_before']}, {b['load_after']} |")
    print("\nstragglers' own mean accuracy (rounds) at the same times:")
    for name, summary in runs.items():
        if any(n.get("slow") for n in summary["per_node"]):
            cells = ["{:.3f} ({}-{})".format(*at(summary, t, stragglers=True)) for t in TIMES]
            print(f"  {name}: {', '.join(cells)}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
