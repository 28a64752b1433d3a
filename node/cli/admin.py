"""Commands that talk to a running node through its operator API (``node.wire.admin_client``).

``status``, ``peers``, ``ban``, ``unban``, ``privacy`` and ``stop``: each reads the
operator token from the node's data dir and calls the daemon over its loopback or Unix
socket; none loads the daemon itself.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from node.base.datadir import DataDir
from node.cli.options import DataDirOpt, FormatOpt, OutputFormat, open_data_dir
from node.cli.output import console, emit_json, err_console, fail
from node.cli.status_json import message_to_json, status_cell, status_document
from node.cli.wide import print_wide
from node.wire.admin_client import AdminClient, AdminUnavailable

__all__ = ["ban", "call", "connect", "peers", "privacy", "status", "stop", "unban"]

_T = TypeVar("_T")


def stop(
    data_dir: DataDirOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the daemon to exit.")] = 10.0,
) -> None:
    """Ask the daemon on this data dir to stop gracefully, and wait until it has.

    Example: fednode stop -d ./node1
    """
    dd = open_data_dir(data_dir)
    try:
        with AdminClient(dd) as client:
            client.stop()
    except AdminUnavailable as exc:
        raise fail(str(exc)) from None
    deadline = time.monotonic() + wait
    while dd.runtime.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if dd.runtime.exists():
        raise fail(f"daemon on {dd.root} did not stop within {wait:.0f} s")
    console.print(f"stopped the node on {dd.root}")


def connect(data_dir: Path | None) -> AdminClient:
    """The operator API client of the node on ``data_dir``; exits with one line if none runs."""
    try:
        return AdminClient(open_data_dir(data_dir))
    except AdminUnavailable as exc:
        raise fail(str(exc)) from None


def call(fn: Callable[[], _T]) -> _T:
    """``fn()``, exiting with one line when the node stops answering."""
    try:
        return fn()
    except AdminUnavailable as exc:
        raise fail(str(exc)) from None


def status(data_dir: DataDirOpt = None, fmt: FormatOpt = OutputFormat.text) -> None:
    """Show the running node: identity, network, round, peers, privacy budget.

    Example: fednode status -d ./node1 --format json
    """
    dd = open_data_dir(data_dir)
    starting = _starting_pid(dd)
    if starting is not None:
        # The daemon holds the data dir but has not written daemon.json yet.
        if fmt is OutputFormat.json:
            emit_json({"state": "starting", "pid": starting})
        else:
            console.print(f"starting: the daemon on {dd.root} (pid {starting}) is starting up")
        return
    with connect(data_dir) as client:
        reply = call(client.status)
    data = status_document(reply)
    if fmt is OutputFormat.json:
        emit_json(data)
        return
    table = Table(show_header=False, title="fednode status")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    history = data.pop("history", [])
    for key in ("node_privacy", "record_privacy"):
        data.pop(key, None)
    for key, value in data.items():
        table.add_row(key, status_cell(key, value, data))
    table.add_row("node privacy", _privacy_line(reply.node_privacy))
    table.add_row("record privacy", _privacy_line(reply.record_privacy))
    table.add_row("evaluations", str(len(history)))
    print_wide(console, table)


def _starting_pid(dd: DataDir) -> int | None:
    """The pid of a daemon that holds ``dd`` but has not finished starting, else None."""
    if dd.runtime.exists() or not dd.lock_path.exists():
        return None
    try:
        fd = os.open(dd.lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = dd.lock_path.read_text().strip()
        return int(text) if text.isdigit() else 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def peers(data_dir: DataDirOpt = None, fmt: FormatOpt = OutputFormat.text) -> None:
    """List the members this node knows: state, incarnation, last seen, round-trip time.

    Example: fednode peers -d ./node1
    """
    dd = open_data_dir(data_dir)
    starting = _starting_pid(dd)
    if starting is not None:
        err_console.print(f"starting: the daemon on {dd.root} (pid {starting}) is starting up")
        if fmt is OutputFormat.json:
            emit_json([])
        return
    with connect(data_dir) as client:
        reply = call(client.peers)
    rows = [message_to_json(p) for p in reply.peers]
    if fmt is OutputFormat.json:
        emit_json(rows)
        return
    table = Table(title=f"{len(rows)} peers")
    for col in ("node id", "address", "state", "incarnation", "last seen", "rtt", "banned"):
        table.add_column(col, overflow="fold")
    style = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim"}
    for p in reply.peers:
        table.add_row(
            p.node_id,
            p.address,
            f"[{style.get(p.state, 'white')}]{p.state}[/]"
            + (" [dim](no release)[/]" if p.no_release else ""),
            str(p.incarnation),
            "never" if p.last_seen_s < 0 else f"{p.last_seen_s:.1f} s ago",
            "-" if p.rtt_ms < 0 else f"{p.rtt_ms:.1f} ms",
            "yes" if p.banned else "",
        )
    print_wide(console, table)


def ban(
    node_id: Annotated[str, typer.Argument(help="Node id (a unique hex prefix is enough).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Ban a peer: its messages are refused and it is never sampled.

    Example: fednode ban 3fa2c1
    """
    with connect(data_dir) as client:
        reply = call(lambda: client.ban(node_id))
    console.print(f"banned {reply.node_id}")


def unban(
    node_id: Annotated[str, typer.Argument(help="Node id (a unique hex prefix is enough).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Lift a ban.

    Example: fednode unban 3fa2c1
    """
    with connect(data_dir) as client:
        reply = call(lambda: client.ban(node_id, unban=True))
    console.print(f"unbanned {reply.node_id}")


def privacy(data_dir: DataDirOpt = None, fmt: FormatOpt = OutputFormat.text) -> None:
    """Show the differential-privacy budget: spent, left and the release history.

    Example: fednode privacy -d ./node1
    """
    with connect(data_dir) as client:
        reply = call(client.privacy)
    data = message_to_json(reply)
    if fmt is OutputFormat.json:
        emit_json(data)
        return
    console.print(f"node-level:   {_privacy_line(reply.node)}")
    console.print(f"record-level: {_privacy_line(reply.record)}")
    table = Table(title=f"{len(reply.releases)} ledger rows")
    for col in ("seq", "time", "level", "kind", "noise", "sample rate", "steps", "epsilon after"):
        table.add_column(col)
    for r in reply.releases:
        table.add_row(
            str(r.seq),
            time.strftime("%H:%M:%S", time.gmtime(r.created_at)),
            r.scope or "node",
            r.kind,
            f"{r.noise_multiplier:g}",
            f"{r.sample_rate:g}",
            str(r.steps),
            f"{r.epsilon_after:.3f}",
        )
    print_wide(console, table)


def _privacy_line(level: Any) -> str:
    """One line for a PrivacyLevel: spent, budget, left, delta and whether it still runs."""
    if not level.enabled:
        return "off" + (f" ({level.reason})" if level.reason else "")
    budget = (
        f"of {level.epsilon_budget:.3f} (left {level.epsilon_remaining:.3f})"
        if level.has_budget
        else "(no budget set)"
    )
    what = "releasing" if level.level == "node" else "training"
    state = what if level.active else f"[red]not {what}[/]: {level.reason}"
    return (
        f"{level.mechanism}: epsilon {level.epsilon_spent:.3f} {budget}, delta "
        f"{level.delta:g}, {level.steps} steps; {state}"
    )
