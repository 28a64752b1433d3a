"""Decentralized robustness benchmark in ByzFL's shape (issue 5), no server.

MNIST-1D, ``--honest`` honest nodes (default 10) on a Dirichlet(alpha) partition plus ``f``
omniscient Byzantine nodes, all-to-all exchange, every honest node merging with the rule under
test (:mod:`node.sim.byzantine`). For every rule, f and alpha the figure is the honest
nodes' final mean test accuracy under the *worst* of the attacks (default: sign flip, IPM with
eps=100 and ALIE with z=1.5, the parameters of ANCHORS' server-side ByzFL table). ``mean`` is
"no defence". One attack-free run (plain mean, f=0) per alpha is the reference.

Prints one table per rule (rows f, columns alpha, cell "worst (attack)") plus the command;
``--plots DIR`` writes one heatmap per rule (``robustness_<label>_<rule>.png``); ``--json`` writes
every run; ``--write-docs BLOCK`` replaces the block ``BLOCK`` of the "Robustness benchmark
(measured)" section of docs/aggregation.md (and only that block). Finished runs are appended to
``--cache`` (JSON lines) and reused, so an interrupted grid resumes.

Run (headline cell at ANCHORS' protocol):
    .venv/bin/python bench/bench_robustness.py --f 2 --alpha 0.5 --model cnn --rounds 40 \\
        --local-steps 20 --jobs 2 --label headline --write-docs headline
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from node.sim.byzantine import (
    ByzantineSimError,
    check_rule_preconditions,
    parse_attack,
    simulate_byzantine,
)
from node.training.datasets import TaskData, load_task
from node.training.spec import TaskSpec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "aggregation.md"
DEFAULT_RULES = (
    "mean",
    "nnm+trimmed_mean",
    "self_centered_clipping",
    "trimmed_mean",
    "geometric_median",
    "median",
    "centered_clipping",
    "multi_krum",
    "krum",
    "bulyan",
    "bristle",
)
DEFAULT_ATTACKS = ("sign_flip", "ipm:eps=100", "alie:z=1.5")

_DATA: TaskData | None = None


def _init_worker() -> None:
    global _DATA
    torch.set_num_threads(1)
    _DATA = load_task(TaskSpec(name="mnist1d"), 0)


def _run(job: dict[str, Any]) -> dict[str, Any]:
    """One simulation in a worker process; returns its JSON summary."""
    if _DATA is None:
        _init_worker()
    res = simulate_byzantine(**job, task_data=_DATA)
    out = res.as_dict()
    out.pop("final_accuracy", None)
    out["min_accuracy"] = min(res.final_accuracy)
    return out


def _key(job: dict[str, Any]) -> str:
    return json.dumps({k: job[k] for k in sorted(job)}, sort_keys=True)


def _load_cache(path: Path | None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if path is None or not path.exists():
        return found
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            found[rec["key"]] = rec["result"]
    return found


def _csv(text: str, cast: Any) -> list[Any]:
    return [cast(t) for t in text.split(",") if t.strip()]


def _jobs(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[tuple[str, int, str]]]:
    common = {
        "honest": args.honest,
        "model": args.model,
        "rounds": args.rounds,
        "local_steps": args.local_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
    }
    jobs: list[dict[str, Any]] = []
    skipped: list[tuple[str, int, str]] = []
    for alpha in args.alpha:
        jobs.append({**common, "rule": "mean", "f": 0, "attack": None, "alpha": alpha})
    # Rule-major order: an interrupted grid still has complete heatmaps for the first rules.
    for rule in args.rules:
        for f in args.f:
            try:
                check_rule_preconditions(rule, n=args.honest + f, f=f)
            except ByzantineSimError as exc:
                skipped.append((rule, f, str(exc)))
                continue
            for alpha in args.alpha:
                for attack in args.attacks:
                    jobs.append({**common, "rule": rule, "f": f, "attack": attack, "alpha": alpha})
    return jobs, skipped


def run_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run (or reuse from the cache) every job; return all results."""
    jobs, skipped = _jobs(args)
    for rule, f, why in skipped:
        print(f"skip {rule} f={f}: {why}", flush=True)
    cache_path = Path(args.cache) if args.cache else None
    cache = _load_cache(cache_path)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        k = _key(job)
        if k in cache:
            results[k] = cache[k]
        else:
            todo.append(job)
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} cached, {len(todo)} to run", flush=True)
    if args.cached_only:
        # Report what the cache holds; missing cells show as "not run".
        return [results[_key(job)] for job in jobs if _key(job) in results]
    t0 = time.perf_counter()

    def record(job: dict[str, Any], out: dict[str, Any]) -> None:
        k = _key(job)
        results[k] = out
        if cache_path is not None:
            with cache_path.open("a") as fh:
                fh.write(json.dumps({"key": k, "result": out}) + "\n")
        done = len(results)
        print(
            f"[{done}/{len(jobs)} {time.perf_counter() - t0:6.0f}s] {job['rule']} f={job['f']} "
            f"alpha={job['alpha']} {job['attack']}: {out['mean_accuracy']:.3f} "
            f"({out['seconds']:.0f}s wall, {out.get('cpu_seconds', 0):.0f}s cpu)",
            flush=True,
        )

    if args.jobs <= 1:
        _init_worker()
        for job in todo:
            record(job, _run(job))
    else:
        with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker) as pool:
            pending: dict[Future[dict[str, Any]], dict[str, Any]] = {
                pool.submit(_run, job): job for job in todo
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    record(pending.pop(fut), fut.result())
    return [results[_key(job)] for job in jobs]


def summarise(
    results: Iterable[dict[str, Any]], args: argparse.Namespace
) -> tuple[dict[float, float], dict[str, dict[tuple[int, float], tuple[float, str]]]]:
    """Clean accuracy per alpha, and per rule the worst (accuracy, attack) per (f, alpha)."""
    clean: dict[float, float] = {}
    seen: dict[tuple[str, int, float], dict[str, float]] = {}
    for res in results:
        if res["f"] == 0:
            clean[res["alpha"]] = res["mean_accuracy"]
        else:
            key = (res["rule"], res["f"], res["alpha"])
            seen.setdefault(key, {})[res["attack"]] = res["mean_accuracy"]
    worst: dict[str, dict[tuple[int, float], tuple[float, str]]] = {}
    for (rule, f, alpha), accs in seen.items():
        # A worst case over fewer than all attacks would overstate robustness: leave it out.
        if len(accs) == len(args.attacks):
            attack = min(accs, key=lambda a: accs[a])
            worst.setdefault(rule, {})[(f, alpha)] = (accs[attack], attack)
    return clean, worst


def per_attack_table(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: one row per (rule, f, alpha), one column per attack, plus the worst."""
    attacks = [str(parse_attack(a)) for a in args.attacks]
    head = "| rule | f | alpha | " + " | ".join(attacks) + " | worst |"
    lines = [head, "|---|---:|---:|" + "---:|" * (len(attacks) + 1)]
    by: dict[tuple[str, int, float], dict[str, float]] = {}
    for res in results:
        if res["f"] > 0:
            by.setdefault((res["rule"], res["f"], res["alpha"]), {})[res["attack"]] = res[
                "mean_accuracy"
            ]
    for (rule, f, alpha), accs in by.items():
        cells = [f"{accs[a]:.3f}" if a in accs else "-" for a in attacks]
        lines.append(
            f"| {rule} | {f} | {alpha:g} | "
            + " | ".join(cells)
            + (f" | {min(accs.values()):.3f} |" if len(accs) == len(attacks) else " | - |")
        )
    return "\n".join(lines)


def _missing(rule: str, f: int, args: argparse.Namespace) -> str:
    """Label of an empty cell: the rule's precondition fails ("n/a") or it was not run."""
    try:
        check_rule_preconditions(rule, n=args.honest + f, f=f)
    except ByzantineSimError:
        return "n/a"
    return "not run"


def rule_tables(
    clean: dict[float, float],
    worst: dict[str, dict[tuple[int, float], tuple[float, str]]],
    args: argparse.Namespace,
) -> str:
    """Markdown: one table per rule, rows f, columns alpha."""
    alphas = list(args.alpha)
    out = []
    head = "| f | " + " | ".join(f"alpha={a:g}" for a in alphas) + " |"
    sep = "|---:|" + "---|" * len(alphas)
    out.append(
        "attack-free (plain mean, f=0): "
        + ", ".join(f"alpha={a:g}: {clean[a]:.3f}" for a in alphas if a in clean)
    )
    if len(args.f) == 1 and len(args.alpha) == 1:
        return out[0]  # one cell: the per-attack table below says it all
    for rule in args.rules:
        out.append(f"\n**{rule}**" + (" (no defence)" if rule == "mean" else "") + "\n")
        out.append(head)
        out.append(sep)
        cells = worst.get(rule, {})
        for f in args.f:
            row = []
            for a in alphas:
                if (f, a) in cells:
                    acc, att = cells[(f, a)]
                    row.append(f"{acc:.3f} ({att})")
                else:
                    row.append(_missing(rule, f, args))
            out.append(f"| {f} | " + " | ".join(row) + " |")
    return "\n".join(out)


def plot(
    clean: dict[float, float],
    worst: dict[str, dict[tuple[int, float], tuple[float, str]]],
    args: argparse.Namespace,
    directory: Path,
) -> list[Path]:
    """One heatmap per rule: worst-case accuracy over (f, alpha); n/a cells blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    fs, alphas = list(args.f), list(args.alpha)
    for rule in args.rules:
        cells = worst.get(rule, {})
        grid = np.full((len(fs), len(alphas)), np.nan)
        for i, f in enumerate(fs):
            for j, a in enumerate(alphas):
                if (f, a) in cells:
                    grid[i, j] = cells[(f, a)][0]
        fig, ax = plt.subplots(figsize=(3.6, 3.4))
        ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdYlGn", origin="lower", aspect="auto")
        for i in range(len(fs)):
            for j in range(len(alphas)):
                text = (
                    _missing(rule, fs[i], args) if math.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
                )
                ax.text(j, i, text, ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_yticks(range(len(fs)), [str(f) for f in fs])
        ax.set_xlabel("Dirichlet alpha")
        ax.set_ylabel(f"f (Byzantine, + {args.honest} honest)")
        ref = ", ".join(f"{clean[a]:.2f}" for a in alphas if a in clean)
        ax.set_title(
            f"{rule}: worst of {len(args.attacks)} attacks\n"
            f"{args.model} {args.rounds}x{args.local_steps}; clean {ref}",
            fontsize=8,
        )
        fig.tight_layout()
        path = directory / f"robustness_{args.label}_{rule.replace('+', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plot_cell(
    results: Sequence[dict[str, Any]],
    clean: dict[float, float],
    args: argparse.Namespace,
    path: Path,
) -> Path:
    """Grouped bars for a single (f, alpha) cell: each rule under each attack, clean line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, alpha = args.f[0], args.alpha[0]
    acc = {
        (r["rule"], r["attack"]): r["mean_accuracy"]
        for r in results
        if r["f"] == f and r["alpha"] == alpha
    }
    rules = [r for r in args.rules if any((r, a) in acc for a in args.attacks)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(rules), 3.6))
    width = 0.8 / len(args.attacks)
    for k, attack in enumerate(args.attacks):
        xs = [i + (k - (len(args.attacks) - 1) / 2) * width for i in range(len(rules))]
        # Runs not made are NaN: no bar, rather than a bar at 0 that reads as a collapse.
        ax.bar(xs, [acc.get((r, attack), math.nan) for r in rules], width, label=attack)
    if alpha in clean:
        ax.axhline(clean[alpha], color="k", ls="--", lw=1, label=f"clean {clean[alpha]:.3f}")
    ax.set_xticks(range(len(rules)), rules, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("honest mean test accuracy")
    ax.set_title(
        f"f={f} + {args.honest} honest, alpha={alpha:g}, {args.model} "
        f"{args.rounds}x{args.local_steps}, no server",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper center", ncol=len(args.attacks) + 1, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_docs(block: str, text: str) -> None:
    """Replace ``block`` inside docs/aggregation.md's robustness section (re-read first)."""
    start, end = (
        f"<!-- bench:robustness:{block}:start -->",
        f"<!-- bench:robustness:{block}:end -->",
    )
    doc = DOCS.read_text()
    new = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        _old, tail = rest.split(end, 1)
        doc = head + new + tail
    else:
        title = "## Robustness benchmark (measured)"
        if title not in doc:
            doc = doc.rstrip() + f"\n\n{title}\n"
        # Append the new block at the end of our section: just before the next "## " heading.
        head, rest = doc.split(title, 1)
        nxt = rest.find("\n## ")
        if nxt < 0:
            doc = head + title + rest.rstrip() + "\n\n" + new + "\n"
        else:
            doc = head + title + rest[:nxt].rstrip() + "\n\n" + new + "\n" + rest[nxt:]
    DOCS.write_text(doc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rules", type=lambda s: _csv(s, str), default=list(DEFAULT_RULES))
    parser.add_argument("--f", type=lambda s: _csv(s, int), default=[1, 2, 3, 4])
    parser.add_argument("--alpha", type=lambda s: _csv(s, float), default=[0.1, 0.5, 1.0])
    parser.add_argument(
        "--attacks",
        type=lambda s: s.split(";") if ";" in s else s.split(" "),
        default=list(DEFAULT_ATTACKS),
        help="attacks separated by ';' or spaces, each name[:key=value,...]",
    )
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--local-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--honest", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1 thread each)")
    parser.add_argument("--cache", default="/tmp/fednode_robustness_runs.jsonl")
    parser.add_argument("--json", help="write all runs and summaries to this file")
    parser.add_argument("--plots", help="directory for heatmaps (e.g. docs/img)")
    parser.add_argument("--label", default="grid", help="name part of the PNG files")
    parser.add_argument("--write-docs", metavar="BLOCK", help="replace this docs block")
    parser.add_argument(
        "--cached-only", action="store_true", help="report cached runs only; run nothing"
    )
    args = parser.parse_args(argv)
    try:
        args.attacks = [str(parse_attack(a)) for a in args.attacks if a.strip()]
        for rule in args.rules:
            check_rule_preconditions(rule, n=args.honest + 1, f=0)
    except ByzantineSimError as exc:
        parser.error(str(exc))
    given = list(argv if argv is not None else sys.argv[1:])
    # The reproducing command is the one that runs the grid, not the cache-only assembly.
    command = ".venv/bin/python bench/bench_robustness.py " + " ".join(
        shlex.quote(a) for a in given if a != "--cached-only"
    )
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = run_grid(args)
    clean, worst = summarise(results, args)
    tables = rule_tables(clean, worst, args)
    detail = per_attack_table(results, args)
    protocol = (
        f"MNIST-1D {args.model.upper()}, {args.honest} honest nodes + f Byzantine, all-to-all, "
        f"{args.rounds} rounds x {args.local_steps} local Adam steps (lr {args.lr:g}, batch "
        f"{args.batch_size}), seed {args.seed}; attacks {', '.join(args.attacks)}; "
        f"figure = honest nodes' final mean test accuracy under the worst attack."
    )
    print("\n" + protocol + "\n")
    print(tables)
    print("\nPer attack:\n")
    print(detail)
    print(f"\nReproduce: {command}")
    wall = time.perf_counter() - t0
    print(f"wall {wall:.0f}s on 2 shared cores, 1-min load average at start {load:.1f}")
    if args.plots:
        if len(args.f) == 1 and len(args.alpha) == 1:
            path = Path(args.plots) / f"robustness_{args.label}.png"
            print(f"wrote {plot_cell(results, clean, args, path)}")
        else:
            for path in plot(clean, worst, args, Path(args.plots)):
                print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "command": command,
                    "protocol": protocol,
                    "clean": {str(k): v for k, v in clean.items()},
                    "worst": {
                        rule: {f"f={f},alpha={a:g}": v for (f, a), v in cells.items()}
                        for rule, cells in worst.items()
                    },
                    "runs": results,
                },
                indent=1,
            )
        )
    if args.write_docs:
        if args.cached_only:
            timing = (
                "tables assembled from the runs cached by that command (2 shared cores; "
                "per-run wall and CPU seconds are in its `--json` output)"
            )
        else:
            timing = f"2 shared cores, 1-min load average {load:.1f} at start; wall {wall:.0f} s"
        text = (
            f"{protocol}\n\nReproduce: `{command}`  \n({timing})\n\n{tables}\n\n"
            f"Per attack:\n\n{detail}\n"
        )
        write_docs(args.write_docs, text)
        print(f"updated {DOCS} block {args.write_docs!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
