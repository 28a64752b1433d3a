"""The ``fednode`` command line as assembled by ``node.cli``: every command, every help.

No daemon is started: these check the assembly (which command lives where), that every
argument's and option's help reaches ``--help`` (typer loses positional help on some
click versions, and an unescaped ``[default: ...]`` is swallowed as rich markup), and
that loading the CLI loads neither torch nor the daemon (every node process imports it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from node.cli import app
from node.cli import scenario as scenario_cli

REPO = Path(__file__).resolve().parents[2]

EXPECTED = {
    "init": "node.cli.identity",
    "start": "node.cli.start",
    "stop": "node.cli.admin",
    "status": "node.cli.admin",
    "peers": "node.cli.admin",
    "ban": "node.cli.admin",
    "unban": "node.cli.admin",
    "privacy": "node.cli.admin",
    "export": "node.cli.export",
    "health": "node.cli.certs",
    "simulate": "node.cli.simulate",
    "genesis new": "node.cli.genesis",
    "genesis show": "node.cli.genesis",
    "testnet up": "node.cli.testnet",
    "testnet run": "node.cli.scenario",
    "testnet cleanup": "node.cli.scenario",
    "certs init": "node.cli.certs",
    "certs issue": "node.cli.certs",
    "certs show": "node.cli.certs",
}


def _leaves(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found.update(_leaves(command, f"{path} "))
        else:
            found[path] = command
    return found


COMMANDS = _leaves(typer.main.get_command(app))  # type: ignore[arg-type]


def _help(path: str) -> str:
    # Wide enough that rich wraps no help text: each one is then found on one line.
    result = CliRunner().invoke(
        app, [*path.split(), "--help"], env={"COLUMNS": "3000", "TERM": "dumb"}
    )
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _source_module(command: click.Command) -> str:
    callback: object = command.callback
    while hasattr(callback, "__wrapped__"):  # typer wraps each command's function
        callback = callback.__wrapped__
    return str(getattr(callback, "__module__", ""))


def test_every_command_is_assembled_from_its_group_module() -> None:
    assert set(COMMANDS) == set(EXPECTED)
    for path, command in COMMANDS.items():
        assert _source_module(command) == EXPECTED[path], path


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_every_argument_and_option_help_is_shown(path: str) -> None:
    shown = _help(path)
    for param in COMMANDS[path].params:
        if getattr(param, "hidden", False):
            continue
        text = getattr(param, "help", None)
        assert text, f"fednode {path}: {param.name} has no help"
        # typer's "\[" escapes rich markup; the operator reads "[".
        expected = " ".join(text.replace("\\[", "[").split())
        assert expected in shown, f"fednode {path} --help lost {param.name}'s help: {expected!r}"


def test_positional_arguments_show_their_help() -> None:
    assert "Node id (a unique hex prefix is enough)." in _help("ban")
    assert "Genesis TOML file." in _help("genesis show")
    assert "The network's genesis file." in _help("simulate")


def test_root_help_lists_every_command_and_group() -> None:
    shown = _help("")
    for name in {path.split()[0] for path in EXPECTED}:
        assert f" {name} " in shown, name


def test_shipped_scenarios_are_found_by_name() -> None:
    assert scenario_cli.SCENARIO_DIR == REPO / "deploy" / "scenarios"
    resolved = scenario_cli._resolve(Path("partition-and-heal"))
    assert resolved == REPO / "deploy" / "scenarios" / "partition-and-heal.toml"
    assert resolved.is_file()


def test_the_cli_loads_neither_torch_nor_the_daemon() -> None:
    # Every node process is `python -m node start`: a membership-only daemon must not pay
    # for torch, and `fednode status` must not load the daemon it only talks to.
    code = (
        "import sys, node.cli;"
        " print(sorted(m for m in ('torch', 'node.daemon.core', 'node.sim.byzantine')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_python_dash_m_node_is_the_console_script() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "node", "--version"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    from node import __version__

    assert out.stdout.strip() == f"fednode {__version__}"
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fednode"] == "node.cli:main"
