"""Fault scenarios on a network-namespace testnet: each shipped scenario vs a fault-free run.

Usage (root; needs ``ip`` and ``nft``)::

    .venv/bin/python bench/bench_scenarios.py [--nodes 8] [--scenarios partition-and-heal,...]
        [--write-docs] [--json out.json]

For every scenario in ``deploy/scenarios`` (or those named) it runs the scenario with
``--nodes`` nodes and prints: honest accuracy at the end, the same for the fault-free run
of the same network (one baseline per distinct network), time for the other nodes to mark
killed nodes dead, time for partitioned views to re-merge after healing, and whether each
restarted node resumed from its stored state. ``--write-docs`` replaces the results
section of docs/faults.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.testnet.scenario import Scenario, load_scenario, run_scenario  # noqa: E402

SHIPPED = ["partition-and-heal", "churn-30", "bootstrap-loss", "loss-latency", "byzantine-join"]
MARK_BEGIN = "<!-- bench_scenarios:begin -->"
MARK_END = "<!-- bench_scenarios:end -->"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _baseline_key(sc: Scenario) -> str:
    base = sc.without_faults().model_dump()
    base.pop("name")
    base.pop("description")
    return json.dumps(base, sort_keys=True)


def summarize(report: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any]:
    dets = [d["all_dead_s"] for d in report["detections"] if d["all_dead_s"] is not None]
    sus = [d["median_suspect_s"] for d in report["detections"] if d["median_suspect_s"]]
    merges = [p["remerge_s"] for p in report["partitions"] if p["remerge_s"] is not None]
    splits = [p["views_split_s"] for p in report["partitions"] if p["views_split_s"] is not None]
    restarts = report["restarts"]
    resumed = [r["resumed"] for r in restarts if r["restarted_at_s"] is not None]
    return {
        "scenario": report["scenario"],
        "nodes": report["nodes"],
        "accuracy": report["honest_accuracy_final"],
        "baseline_accuracy": None if baseline is None else baseline["honest_accuracy_final"],
        "detect_suspect_s": max(sus) if sus else None,
        "detect_dead_s": max(dets) if dets else None,
        "killed": len(report["detections"]),
        "split_s": max(splits) if splits else None,
        "remerge_s": max(merges) if merges else None,
        "restarted": len(resumed),
        "resumed": (all(r is True for r in resumed) if resumed else None),
        "rejoined_s": max(
            (r["rejoined_s"] for r in restarts if r.get("rejoined_s") is not None), default=None
        ),
        "ledger_ok": (
            all(r["ledger_continuous"] for r in restarts if r["ledger_continuous"] is not None)
            if any(r.get("ledger_continuous") is not None for r in restarts)
            else None
        ),
        "caught_up": sum(1 for r in restarts if r.get("caught_up_rounds")),
        "restarted_rounds": [
            report["rounds_reached"].get(str(r["node"]))
            for r in restarts
            if r["restarted_at_s"] is not None
        ],
        "honest_rounds_median": _median(
            [v for k, v in report["rounds_reached"].items() if int(k) not in report["byzantine"]]
        ),
        "load_avg": _load(),
        "false_suspects": report["max_false_suspects"],
        "wall_s": report["wall_s"],
        "mb_sent": round(report["bytes_sent"] / 1e6, 1),
    }


HEADER = (
    "| scenario | nodes | honest acc. | fault-free acc. | killed: suspect / dead (s) "
    "| views split (s) | re-merge (s) | restarted resumed | caught up (final rounds) "
    "| rejoin (s) | MB sent | wall (s) | load |"
)


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def _load() -> float | None:
    try:
        return round(float(Path("/proc/loadavg").read_text().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        return None


def row(s: dict[str, Any]) -> str:
    if "failed" in s:
        return f"| {s['scenario']} | failed: {s['failed']} |" + " |" * 11
    detect = (
        f"{s['killed']}: {_fmt(s['detect_suspect_s'])} / {_fmt(s['detect_dead_s'])}"
        if s["killed"]
        else "-"
    )
    resumed = f"{s['restarted']}: {_fmt(s['resumed'])}" if s["restarted"] else "-"
    if s["restarted"] and s.get("ledger_ok") is not None:
        resumed += f", ledger {_fmt(s['ledger_ok'])}"
    caught = (
        f"{s['caught_up']}/{s['restarted']} ({', '.join(map(str, s['restarted_rounds']))}"
        f" vs {_fmt(s['honest_rounds_median'])})"
        if s["restarted"]
        else "-"
    )
    return (
        f"| {s['scenario']} | {s['nodes']} | {_fmt(s['accuracy'], 3)} "
        f"| {_fmt(s['baseline_accuracy'], 3)} | {detect} | {_fmt(s['split_s'])} "
        f"| {_fmt(s['remerge_s'])} | {resumed} | {caught} | {_fmt(s['rejoined_s'])} "
        f"| {s['mb_sent']} | {s['wall_s']} | {_fmt(s['load_avg'])} |"
    )


def write_docs(text: str) -> None:
    path = ROOT / "docs" / "faults.md"
    doc = path.read_text()
    if MARK_BEGIN not in doc or MARK_END not in doc:
        raise SystemExit(f"{path} lacks the {MARK_BEGIN} ... {MARK_END} markers")
    head, rest = doc.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(head + MARK_BEGIN + "\n" + text + "\n" + MARK_END + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--scenarios", default=",".join(SHIPPED))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    baselines: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    reports: dict[str, Any] = {}
    t_start = time.monotonic()
    for name in names:
        sc = load_scenario(ROOT / "deploy" / "scenarios" / f"{name}.toml")
        sc = Scenario.model_validate({**sc.model_dump(by_alias=True), "nodes": args.nodes})
        key = _baseline_key(sc)
        if not args.no_baseline and sc.train and key not in baselines:
            print(f"# fault-free baseline for {name} ...", flush=True)
            baselines[key] = run_scenario(sc.without_faults(), progress=print)
            reports[f"{name}-baseline"] = baselines[key]
            if baselines[key]["interrupted"]:
                return 130
        print(f"# scenario {name} ...", flush=True)
        try:
            report = run_scenario(sc, progress=print)
        except Exception as exc:  # one failed scenario must not cost the others' results
            print(f"# {name} failed: {exc}", flush=True)
            results.append({"scenario": name, "failed": str(exc).splitlines()[0]})
            continue
        reports[name] = report
        if report["interrupted"]:
            print("# interrupted: no table written", flush=True)
            return 130
        results.append(summarize(report, baselines.get(key)))
        print(row(results[-1]), flush=True)
    total = time.monotonic() - t_start
    cmd = "sudo .venv/bin/python bench/bench_scenarios.py " + " ".join(sys.argv[1:])
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on 2 shared CPU cores (other jobs running), "
        f"{total / 60:.0f} min in total. Command: `{cmd.strip()}`",
        "",
        HEADER,
        "|" + "---|" * (HEADER.count("|") - 1),
        *(row(s) for s in results),
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"summary": results, "reports": reports}, indent=2))
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
