"""``fednode testnet run`` and ``fednode testnet cleanup``: fault scenarios in namespaces."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from node.cli.options import FormatOpt, OutputFormat
from node.cli.output import console, err_console
from node.testnet.local import TestnetError
from node.testnet.netns import NS_PREFIX, NetnsError, cleanup

__all__ = ["cleanup_command", "register", "run_command"]

# node/cli/scenario.py -> the repository root, where deploy/scenarios/ ships.
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "deploy" / "scenarios"


def _resolve(path: Path) -> Path:
    """A scenario path, or the name of a shipped one (``partition-and-heal``)."""
    if path.exists():
        return path
    shipped = SCENARIO_DIR / f"{path.name.removesuffix('.toml')}.toml"
    return shipped if shipped.exists() else path


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def print_report(report: dict[str, Any]) -> None:
    """Render a scenario report as text tables."""
    console.print(
        f"[bold]{report['scenario']}[/]: {report['nodes']} nodes"
        + (f" + {len(report['byzantine'])} byzantine" if report["byzantine"] else "")
        + f", wall {report['wall_s']} s, startup {report['startup_s']} s, "
        f"full view after {report['full_view_s']} s"
    )
    if report["events"]:
        table = Table(title="events")
        table.add_column("t (s)", justify="right")
        table.add_column("action")
        table.add_column("detail")
        for ev in report["events"]:
            detail = {k: v for k, v in ev.items() if k not in {"t_s", "action"}}
            table.add_row(f"{ev['t_s']:.1f}", ev["action"], json.dumps(detail) if detail else "")
        console.print(table)
    if report["detections"]:
        table = Table(title="detection of killed nodes (seconds after SIGKILL)")
        for col in ("node", "observers", "first suspect", "median suspect", "all dead"):
            table.add_column(col, justify="right")
        for d in report["detections"]:
            table.add_row(
                str(d["node"]),
                str(d["observers"]),
                _fmt(d["first_suspect_s"]),
                _fmt(d["median_suspect_s"]),
                _fmt(d["all_dead_s"])
                + (" (restarted first)" if d["restarted_before_all_detected"] else ""),
            )
        console.print(table)
    if report["partitions"]:
        table = Table(title="partitions")
        for col in ("groups", "at", "views split after", "healed at", "re-merged after"):
            table.add_column(col, justify="right")
        for p in report["partitions"]:
            table.add_row(
                " | ".join(",".join(map(str, g)) for g in p["groups"]),
                _fmt(p["at_s"]),
                _fmt(p["views_split_s"]),
                _fmt(p["healed_at_s"]),
                _fmt(p["remerge_s"]),
            )
        console.print(table)
    if report["restarts"]:
        table = Table(title="restarted nodes: resumed from stored state?")
        cols = (
            "node", "stored round", "start round", "model hash", "ledger", "resumed", "caught up"
        )  # fmt: skip
        for col in cols:
            table.add_column(col, justify="right")
        for r in report["restarts"]:
            hash_note = (
                "match" if r["model_hash_checked"] and r["resumed"] else
                "differs" if r["model_hash_checked"] else "not compared"
            )  # fmt: skip
            table.add_row(
                str(r["node"]),
                _fmt(r["stored_round"]),
                _fmt(r["start_round"]),
                hash_note,
                _fmt(r["ledger_continuous"]),
                _fmt(r["resumed"]),
                (
                    "{} -> {} after {} s".format(*r["caught_up_rounds"], _fmt(r["caught_up_s"]))
                    if r.get("caught_up_rounds")
                    else "-"
                ),
            )
        console.print(table)
    timeline = report["honest_accuracy_timeline"]
    if timeline:
        console.print(
            "honest accuracy over time: "
            + ", ".join(f"{t:.0f}s {acc:.3f}" for t, acc, _ in timeline[-12:])
        )
    acc = report["honest_accuracy_final"]
    console.print(
        f"honest accuracy at the end: {_fmt(acc)}; bytes sent {report['bytes_sent']:,}, "
        f"received {report['bytes_received']:,}; rejected {report['messages_rejected']}; "
        f"most suspect peers seen while no node was down: {report['max_false_suspects']}"
    )


def run_command(
    scenario: Annotated[
        Path,
        typer.Argument(help="Scenario TOML file, or a shipped one's name (deploy/scenarios)."),
    ],
    nodes: Annotated[
        int | None, typer.Option(help="Override the scenario's node count.", show_default=False)
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep node state and logs here \\[default: a temporary dir, removed]."),
    ] = None,
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Run a fault scenario on a network-namespace testnet and print its report.

    Each node runs in its own network namespace (needs root, `ip` and `nft`); faults are
    nftables rules and delaying proxies between them; everything is torn down at the
    end, on Ctrl-C and on errors.

    Example: sudo fednode testnet run partition-and-heal --format json
    """
    # Imported here: the scenario runner loads the storage layer (SQLAlchemy), about as
    # much import time again as the rest of fednode (python -X importtime), for this
    # command only.
    from node.testnet.scenario import ScenarioError, load_scenario, run_scenario

    try:
        sc = load_scenario(_resolve(scenario))
    except ScenarioError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    root = workdir
    tmp = root is None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="fednode-scenario-"))

    def progress(line: str) -> None:
        if fmt == "text":
            err_console.print(line, highlight=False)

    try:
        report = run_scenario(sc, root, nodes=nodes, progress=progress)
    except (NetnsError, TestnetError, ScenarioError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        if tmp:
            shutil.rmtree(root, ignore_errors=True)
        raise typer.Exit(1) from None
    if tmp:
        shutil.rmtree(root, ignore_errors=True)
        report["workdir"] = None
    if fmt == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_report(report)
    if report["interrupted"]:
        raise typer.Exit(130)


def cleanup_command(
    tag: Annotated[
        str | None,
        typer.Option(help="Only the testnet with this tag (fnt-TAG-*) \\[default: every fnt-*]."),
    ] = None,
) -> None:
    """Remove every network namespace a namespace testnet left behind (fnt-*).

    Kills the processes still inside them first. Safe to run at any time: it touches
    nothing else, and does nothing when there is nothing to remove. Without --tag it
    also removes the namespaces of testnets still running.

    Example: sudo fednode testnet cleanup
    """
    removed = cleanup(f"{NS_PREFIX}{tag}-" if tag else NS_PREFIX)
    console.print(
        f"removed {len(removed)} namespace(s)" + (": " + ", ".join(removed) if removed else "")
    )


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``cleanup`` to the ``fednode testnet`` group."""
    app.command("run")(run_command)
    app.command("cleanup")(cleanup_command)
