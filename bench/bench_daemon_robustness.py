"""Robustness on real daemons: every rule against every colluding attack, and each rule clean.

Each cell is one ``python -m node testnet up`` (real node processes on loopback, real gRPC,
signatures, norm checks): ``--nodes`` processes of which ``--byzantine`` collude through the
testnet's rendezvous (node/testnet/collusion.py) and attack; the rule is configured for ``--f``
Byzantine peers. The clean column runs the honest nodes alone (``nodes - byzantine``
processes) with the same rule and the same ``f``: what the rule costs with no attacker. One
more run, plain ``mean`` clean, is the reference. The figure of a cell is the honest nodes'
final mean test accuracy; "rows" is the mean number of rows a node merged per round (its
own plus ``merged_peers``, read from the nodes' "round finished" log lines).

Prints a table per task and the command; writes a heatmap (``--heatmap``). Finished cells are
appended to ``--cache`` (JSON lines) and reused, so a long grid resumes; ``--quick`` runs a
small subset (digits; mean, nnm+trimmed_mean with and without observed f,
self_centered_clipping; clean, ipm, alie, dissensus). A rule written ``rule@observed`` runs
with ``--observed-f``. On 2 shared cores a 12-node digits cell takes about 4 minutes.

Run (quick subset):
    .venv/bin/python bench/bench_daemon_robustness.py --quick
Full grid (hours on 2 cores):
    .venv/bin/python bench/bench_daemon_robustness.py --tasks digits,mnist1d
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.testnet.collusion import COLLUDING_ATTACKS  # noqa: E402

DEFAULT_RULES = (
    "mean",
    "nnm+trimmed_mean",
    "self_centered_clipping",
    "trimmed_mean",
    "median",
    "geometric_median",
    "centered_clipping",
    "multi_krum",
    "krum",
)
DEFAULT_ATTACKS = tuple(sorted(COLLUDING_ATTACKS))
QUICK_RULES = ("mean", "nnm+trimmed_mean", "nnm+trimmed_mean@observed", "self_centered_clipping")
#: ``rule@observed``: the rule with ``--observed-f`` (f lowered per merge to the rows that
#: look Byzantine, node/training/robust_defaults.py).
OBSERVED = "@observed"
QUICK_ATTACKS = ("ipm", "alie", "dissensus")
CLEAN = "clean"
ROUNDS = {"digits": 15, "mnist1d": 20}
_MERGED = re.compile(r"round finished .*merged_peers=(\d+)")


def _cell_args(task: str, rule: str, attack: str, a: argparse.Namespace) -> list[str]:
    nodes = a.nodes - a.byzantine if attack == CLEAN else a.nodes
    args = ["--task", task, "--nodes", str(nodes), "--rounds", str(a.rounds or ROUNDS[task])]
    name = rule.removesuffix(OBSERVED)
    args += ["--rule", name, "--f", str(a.f if name != "mean" else 0), "--seed", str(a.seed)]
    if rule.endswith(OBSERVED):
        args.append("--observed-f")
    if a.peers is not None:
        args += ["--peers", str(a.peers)]
    if attack != CLEAN:
        args += ["--byzantine", str(a.byzantine), "--attack", attack]
    return args


def _rows_per_merge(workdir: Path, honest: int) -> float | None:
    seen: list[int] = []
    for i in range(honest):
        log = workdir / f"node-{i}" / "daemon.log"
        if log.exists():
            seen += [int(m.group(1)) for m in _MERGED.finditer(log.read_text(errors="replace"))]
    return 1 + sum(seen) / len(seen) if seen else None


def run_cell(task: str, rule: str, attack: str, a: argparse.Namespace) -> dict[str, Any]:
    """One testnet run; returns its summary (accuracy, rows per merge, wall seconds)."""
    args = _cell_args(task, rule, attack, a)
    with tempfile.TemporaryDirectory(prefix="fednode-drob-") as tmp:
        work = Path(tmp) / "net"
        cmd = [sys.executable, "-m", "node", "testnet", "up", *args, "--format", "json"]
        cmd += ["--workdir", str(work), "--plot", str(Path(tmp) / "acc.png")]
        cmd += ["--timeout", str(a.run_timeout), "--start-timeout", "600"]
        t0 = time.monotonic()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        wall = time.monotonic() - t0
        if out.returncode != 0:
            return {"error": out.stderr[-2000:], "args": args, "wall_s": round(wall, 1)}
        summary = json.loads(out.stdout)
        honest = [r for r in summary["per_node"] if not r["byzantine"]]
        rows = _rows_per_merge(work, len(honest))
    accs = [r["accuracy"] for r in honest]
    return {
        "args": args,
        "accuracy": summary["honest_mean_accuracy"],
        "min_accuracy": min(accs) if accs else None,
        "rounds_done": min(r["round"] for r in honest) if honest else 0,
        "rows_per_merge": rows,
        "wall_s": round(wall, 1),
        "load_avg": round(os.getloadavg()[0], 1),
    }


def _key(task: str, rule: str, attack: str, a: argparse.Namespace) -> str:
    return " ".join(_cell_args(task, rule, attack, a))


def _load(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                found[rec["key"]] = rec["result"]
    return found


def _fmt(res: dict[str, Any] | None) -> str:
    if res is None:
        return "-"
    if "error" in res or res.get("accuracy") is None:
        return "err"
    return f"{res['accuracy']:.3f}"


def _table(task: str, rules: list[str], attacks: list[str], got: dict[str, Any], a: Any) -> str:
    cols = [CLEAN, *attacks]
    lines = [
        f"### {task}: {a.nodes - a.byzantine} honest + {a.byzantine} colluding Byzantine, "
        f"f={a.f} (mean: f=0)" + (f", {a.peers} peers per round" if a.peers else ""),
        "",
        "| rule | " + " | ".join(cols) + " | worst | rows/merge (clean) |",
        "|---|" + "---:|" * (len(cols) + 2),
    ]
    for rule in rules:
        cells = [got.get(_key(task, rule, c, a)) for c in cols]
        accs = [c["accuracy"] for c in cells[1:] if c and c.get("accuracy") is not None]
        worst = f"{min(accs):.3f}" if accs else "-"
        rows = cells[0].get("rows_per_merge") if cells[0] else None
        lines.append(
            f"| {rule} | " + " | ".join(_fmt(c) for c in cells) + f" | {worst} | {rows:.1f} |"
            if rows
            else f"| {rule} | " + " | ".join(_fmt(c) for c in cells) + f" | {worst} | - |"
        )
    return "\n".join(lines)


def _heatmap(
    path: Path, tasks: list[str], rules: list[str], attacks: list[str], got: dict[str, Any], a: Any
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [CLEAN, *attacks]
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(1.1 * len(cols) * len(tasks) + 2, 0.5 * len(rules) + 2)
    )
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks, strict=True):
        grid = np.full((len(rules), len(cols)), np.nan)
        for i, rule in enumerate(rules):
            for j, col in enumerate(cols):
                res = got.get(_key(task, rule, col, a))
                if res and res.get("accuracy") is not None:
                    grid[i, j] = res["accuracy"]
        im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        for i in range(len(rules)):
            for j in range(len(cols)):
                if not np.isnan(grid[i, j]):
                    color = "white" if grid[i, j] < 0.5 else "black"
                    ax.text(
                        j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color
                    )
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(rules)), rules, fontsize=8)
        ax.set_title(f"{task}: {a.nodes - a.byzantine} honest + {a.byzantine} Byzantine daemons")
    fig.subplots_adjust(wspace=0.9)
    fig.colorbar(im, ax=list(axes), label="honest mean accuracy")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="digits")
    p.add_argument("--rules", default=",".join(DEFAULT_RULES))
    p.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS))
    p.add_argument("--nodes", type=int, default=12)
    p.add_argument("--byzantine", type=int, default=2)
    p.add_argument("--f", type=int, default=2, help="the rules' f (mean always runs f=0)")
    p.add_argument("--rounds", type=int, default=None, help="default: 15 digits, 20 mnist1d")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--peers", type=int, default=None, help="rounds.peers_per_round (default: the testnet's 3)"
    )
    p.add_argument("--quick", action="store_true", help="digits, 4 rules, 3 attacks")
    p.add_argument("--cache", type=Path, default=Path("bench-daemon-robustness.jsonl"))
    p.add_argument("--heatmap", type=Path, default=ROOT / "docs/img/daemon_robustness.png")
    p.add_argument("--run-timeout", type=float, default=1800.0)
    p.add_argument("--table-only", action="store_true", help="print what the cache holds")
    a = p.parse_args(argv)
    tasks = a.tasks.split(",")
    rules = a.rules.split(",")
    attacks = a.attacks.split(",")
    if a.quick:
        tasks, rules, attacks = ["digits"], list(QUICK_RULES), list(QUICK_ATTACKS)
    unknown = [x for x in attacks if x.partition(":")[0] not in COLLUDING_ATTACKS]
    if unknown:
        p.error(f"unknown attacks {unknown}; known: {sorted(COLLUDING_ATTACKS)}")
    got = _load(a.cache)
    # Column by column: the clean costs and the first attack come first.
    cells = [(t, r, c) for t in tasks for c in [CLEAN, *attacks] for r in rules]
    if not a.table_only:
        for t, r, c in cells:
            key = _key(t, r, c, a)
            if key in got and "error" not in got[key]:
                continue
            print(f"running {key}", file=sys.stderr, flush=True)
            res = run_cell(t, r, c, a)
            for _ in range(2):
                # On a loaded machine node processes may start slower than the testnet's
                # 90 s: try again rather than lose the cell.
                if "did not start" not in res.get("error", ""):
                    break
                time.sleep(30)
                res = run_cell(t, r, c, a)
            got[key] = res
            with a.cache.open("a") as fh:
                fh.write(json.dumps({"key": key, "result": res}) + "\n")
            print(f"  -> {_fmt(res)} ({res['wall_s']} s)", file=sys.stderr, flush=True)
    for t in tasks:
        print(_table(t, rules, attacks, got, a) + "\n")
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} now")
    if any(got.get(_key(t, r, c, a)) for t, r, c in cells):
        _heatmap(a.heatmap, tasks, rules, attacks, got, a)
        print(f"heatmap: {a.heatmap}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
