"""Speed of fednode's aggregation rules vs floors, flwr's numpy rules and ByzFL.

For n in {16, 64} vectors of d in {1e5, 1e6} float32 (f = 3 for n = 16, f = 8 for n = 64) it
times, on the same input in the same process:

- floors: one read (``x.sum()``), the Gram product ``x @ x.T``, a sort along the node axis;
- every rule in ``aggregation.RULES`` (plus the bare NNM pre-aggregator);
- flwr's ``aggregate_krum`` (Krum and multi-Krum), ``aggregate_median``,
  ``aggregate_trimmed_avg`` on the same data as lists of numpy arrays;
- ByzFL's aggregators, loaded from the installed wheel without running ``byzfl/__init__``
  (which imports torchvision); skipped with a note if byzfl is not installed.

It also compares the geometric-median objective ``sum_i ||x_i - z||`` of ours and ByzFL's.

Run (2 threads, the whole build machine)::

    .venv/bin/python bench/bench_aggregation_speed.py [--quick | --only 64x1e6] [--write-docs]

``--write-docs`` replaces the results block of docs/aggregation.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aggregation import RULES, geometric_median_objective, nnm

COMMAND = ".venv/bin/python bench/bench_aggregation_speed.py --write-docs"
GOALS_COMMAND = ".venv/bin/python bench/bench_aggregation_speed.py --goals-only --write-docs"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "aggregation.md"
START, END = "<!-- bench:speed:start -->", "<!-- bench:speed:end -->"
GSTART, GEND = "<!-- bench:goals:start -->", "<!-- bench:goals:end -->"
COORDINATEWISE = {"median", "trimmed_mean", "bulyan", "nnm+median", "nnm+trimmed_mean"}


def load_byzfl() -> Any | None:
    """Import ``byzfl.aggregators`` without executing ``byzfl/__init__.py``."""
    spec = importlib.util.find_spec("byzfl")
    if spec is None or spec.submodule_search_locations is None:
        return None
    pkg = types.ModuleType("byzfl")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("byzfl", pkg)
    return importlib.import_module("byzfl.aggregators")


def timeit(fn: Callable[[], Any], *, budget_s: float = 1.0, max_runs: int = 5) -> tuple[float, Any]:
    """Best wall time over up to ``max_runs`` runs (fewer if one run exceeds ``budget_s``)."""
    best, out = float("inf"), None
    for _ in range(max_runs):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        if dt > budget_s:
            break
    return best, out


def bench_config(n: int, d: int, f: int, byzfl: Any | None) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(n * 7 + d)
    # Non-i.i.d.-looking honest updates (4 clusters) plus f far-away rows, so selections are
    # non-trivial and the geometric median is not simply the mean.
    centres = torch.randn(4, d, generator=g) * 0.5
    x = torch.randn(n, d, generator=g) + centres[torch.arange(n) % 4]
    x[:f] = x[:f] * 10.0 + 3.0
    ref = torch.randn(d, generator=g) * 0.1
    rows: list[dict[str, Any]] = []

    def gram() -> Any:
        return x @ x.T

    def sort() -> Any:
        return torch.sort(x, dim=0)

    def add(group: str, name: str, fn: Callable[[], Any], **extra: Any) -> Any:
        # The cores are shared with other processes, so each measurement is paired with a
        # fresh measurement of its floor taken right before it; ratios use the paired floor.
        gram_ms = timeit(gram, max_runs=3)[0] * 1e3
        sort_ms = timeit(sort, max_runs=2)[0] * 1e3 if name in COORDINATEWISE else None
        t, out = timeit(fn)
        rows.append(
            {"group": group, "name": name, "ms": t * 1e3, "gram": gram_ms, "sort": sort_ms} | extra
        )
        return out

    add("floor", "read x.sum()", lambda: x.sum())
    add("floor", "Gram x @ x.T", gram)
    add("floor", "sort along nodes", sort)

    special: dict[str, dict[str, Any]] = {
        "self_centered_clipping": {"reference": ref},
        "bristle": {"reference": ref, "score_fn": lambda v: -float(v.norm())},
        "nnm+self_centered_clipping": {"reference": ref},
        "nnm+bristle": {"reference": ref, "score_fn": lambda v: -float(v.norm())},
    }
    ours_gm = None
    wanted = [
        "mean", "median", "trimmed_mean", "krum", "multi_krum", "geometric_median",
        "centered_clipping", "bulyan", "self_centered_clipping", "bristle",
        "nnm+trimmed_mean", "nnm+krum", "nnm+multi_krum", "nnm+geometric_median", "nnm+median",
    ]  # fmt: skip

    def call(name: str) -> Callable[[], torch.Tensor]:
        rule, params = RULES[name], special.get(name, {})
        return lambda: rule(x, f=f, **params)

    for name in wanted:
        out = add("fednode", name, call(name))
        if name == "geometric_median":
            ours_gm = out
    add("fednode", "nnm (mixed (n,d) stack)", lambda: nnm(x, f=f))

    results = [([row.numpy()], 1) for row in x]
    from flwr.server.strategy.aggregate import (
        aggregate_krum,
        aggregate_median,
        aggregate_trimmed_avg,
    )

    add("flwr", "krum", lambda: aggregate_krum(results, num_malicious=f, to_keep=0))
    add("flwr", "multi_krum", lambda: aggregate_krum(results, num_malicious=f, to_keep=n - f))
    add("flwr", "median", lambda: aggregate_median(results))
    add("flwr", "trimmed_mean", lambda: aggregate_trimmed_avg(results, proportiontocut=f / n))

    if byzfl is not None:
        add("byzfl", "krum", lambda: byzfl.Krum(f=f)(x))
        add("byzfl", "multi_krum", lambda: byzfl.MultiKrum(f=f)(x))
        add("byzfl", "median", lambda: byzfl.Median()(x))
        add("byzfl", "trimmed_mean", lambda: byzfl.TrMean(f=f)(x))
        add("byzfl", "centered_clipping", lambda: byzfl.CenteredClipping()(x))
        add("byzfl", "nnm+trimmed_mean", lambda: byzfl.TrMean(f=f)(byzfl.NNM(f=f)(x)))
        bz_gm = add("byzfl", "geometric_median", lambda: byzfl.GeometricMedian()(x))
        if ours_gm is not None:
            rows.append(
                {
                    "group": "objective",
                    "name": "sum_i ||x_i - z||: fednode / byzfl",
                    "ours": geometric_median_objective(x, ours_gm),
                    "byzfl": geometric_median_objective(x, bz_gm),
                }
            )
    return rows


def goal_check(n: int, d: int, f: int, byzfl: Any | None, rounds: int) -> list[str]:
    """Issue 5's goals, measured interleaved: every round times each operation once, and each
    operation keeps its best round, so a load spike from other processes hits all alike."""
    g = torch.Generator().manual_seed(n * 7 + d)
    centres = torch.randn(4, d, generator=g) * 0.5
    x = torch.randn(n, d, generator=g) + centres[torch.arange(n) % 4]
    x[:f] = x[:f] * 10.0 + 3.0
    fast: dict[str, Callable[[], Any]] = {
        "Gram": lambda: x @ x.T,
        "krum": lambda: RULES["krum"](x, f=f),
        "multi_krum": lambda: RULES["multi_krum"](x, f=f),
        "nnm+krum": lambda: RULES["nnm+krum"](x, f=f),
        "nnm+multi_krum": lambda: RULES["nnm+multi_krum"](x, f=f),
        "nnm (mixed stack)": lambda: nnm(x, f=f),
        "geometric_median": lambda: RULES["geometric_median"](x, f=f),
    }
    if byzfl is not None:
        fast["byzfl geometric_median"] = lambda: byzfl.GeometricMedian()(x)
    slow: dict[str, Callable[[], Any]] = {
        "sort": lambda: torch.sort(x, dim=0),
        "median": lambda: RULES["median"](x, f=f),
        "trimmed_mean": lambda: RULES["trimmed_mean"](x, f=f),
    }
    best = {k: float("inf") for k in [*fast, *slow]}
    for r in range(rounds):
        for ops in (fast, slow) if r < max(2, rounds // 2) else (fast,):
            for k, fn in ops.items():
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
    out = [f"Goals at n={n}, d={d:.0e}, f={f} (best of {rounds} interleaved rounds):", ""]
    for k in ("krum", "multi_krum", "nnm+krum", "nnm+multi_krum", "nnm (mixed stack)"):
        ratio = best[k] / best["Gram"]
        verdict = "met" if ratio <= 1.5 else "missed"
        out.append(f"- {k}: {best[k] * 1e3:.0f} ms = {ratio:.2f}x Gram (goal <= 1.5x): {verdict}")
    if "byzfl geometric_median" in best:
        speed = best["byzfl geometric_median"] / best["geometric_median"]
        out.append(
            f"- geometric_median: {best['geometric_median'] * 1e3:.0f} ms, "
            f"{speed:.1f}x faster than ByzFL's {best['byzfl geometric_median'] * 1e3:.0f} ms "
            f"(goal >= 3x): {'met' if speed >= 3 else 'missed'}"
        )
    for k in ("median", "trimmed_mean"):
        ratio = best[k] / best["sort"]
        verdict = "met" if ratio <= 3 else "missed"
        out.append(f"- {k}: {best[k] * 1e3:.0f} ms = {ratio:.2f}x sort (goal <= 3x): {verdict}")
    out.append(f"- floors: Gram {best['Gram'] * 1e3:.0f} ms, sort {best['sort'] * 1e3:.0f} ms")
    return out


def ms(row: dict[str, Any]) -> float:
    return float(row["ms"])


def render(all_rows: dict[tuple[int, int, int], list[dict[str, Any]]], note: str) -> str:
    lines = [
        f"Machine: {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. {note}",
        "",
        f"Reproduce: `{COMMAND}`",
        "",
    ]
    for (n, d, f), rows in all_rows.items():
        by = {(r["group"], r["name"]): r for r in rows if "ms" in r}
        sort_floor = ms(by[("floor", "sort along nodes")])
        lines += [
            f"### n={n}, d={d:.0e}, f={f}",
            "",
            "| implementation | rule | time (ms) | / Gram (paired) | / sort | fednode speed-up |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            if "ms" not in r:
                continue
            speedup = ""
            if r["group"] in ("flwr", "byzfl") and ("fednode", r["name"]) in by:
                speedup = f"{ms(r) / ms(by[('fednode', r['name'])]):.1f}x"
            sort_ratio = ms(r) / (r["sort"] if r["sort"] else sort_floor)
            star = " (paired)" if r["sort"] else ""
            lines.append(
                f"| {r['group']} | {r['name']} | {ms(r):.1f} | {ms(r) / r['gram']:.2f} | "
                f"{sort_ratio:.2f}{star} | {speedup} |"
            )
        for r in rows:
            if r["group"] == "objective":
                rel = (r["ours"] - r["byzfl"]) / r["byzfl"]
                lines += [
                    "",
                    f"Geometric-median objective sum_i ||x_i - z|| (lower is better): fednode "
                    f"{r['ours']:.9g}, ByzFL {r['byzfl']:.9g}, relative difference {rel:+.2e}.",
                ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only n=16, d=1e5")
    parser.add_argument("--write-docs", action="store_true", help="update docs/aggregation.md")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--goals-only", action="store_true", help="skip the full tables")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved goal-check rounds")
    parser.add_argument(
        "--only", default=None, help="run one configuration, e.g. 64x1000000 (n x d)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    byzfl = load_byzfl()
    note = "" if byzfl is not None else "byzfl not installed: its rows are missing."
    load = os.getloadavg()[0]
    note += f" 1-min load average at start: {load:.2f} (other helpers share the 2 cores)."
    configs = [(16, 10**5), (64, 10**5), (16, 10**6), (64, 10**6)]
    if args.quick:
        configs = configs[:1]
    if args.only:
        n_s, d_s = args.only.lower().split("x")
        configs = [(int(n_s), int(float(d_s)))]
    all_rows: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    goal_lines = [note.strip(), "", f"Reproduce: `{GOALS_COMMAND}`", ""]
    for n, d in configs:
        f = 3 if n == 16 else 8
        print(f"running n={n} d={d:.0e} f={f} ...", file=sys.stderr, flush=True)
        if not args.goals_only:
            all_rows[(n, d, f)] = bench_config(n, d, f, byzfl)
        goal_lines += [*goal_check(n, d, f, byzfl, args.rounds), ""]
    goals_text = "\n".join(goal_lines)
    text = render(all_rows, note) if all_rows else ""
    print(text)
    print(goals_text)
    if args.write_docs:
        doc = DOCS.read_text()
        if text:
            doc = replace_block(doc, START, END, text)
        DOCS.write_text(replace_block(doc, GSTART, GEND, goals_text))
        print(f"wrote {DOCS}", file=sys.stderr)


def replace_block(doc: str, start: str, end: str, text: str) -> str:
    if start not in doc or end not in doc:
        raise SystemExit(f"{DOCS} lacks the {start} ... {end} markers")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{text}\n{end}{tail}"


if __name__ == "__main__":
    main()
