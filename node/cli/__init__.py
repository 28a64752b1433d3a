"""The ``fednode`` command line, assembled from one module per command group.

Each module defines its commands as plain functions (or a typer sub-app for a group);
this face only registers them, in the order ``fednode --help`` lists them:

- :mod:`~node.cli.identity`: ``init``
- :mod:`~node.cli.start`: ``start``
- :mod:`~node.cli.admin`: ``stop``, ``status``, ``peers``, ``ban``, ``unban``, ``privacy``
  (the operator API of a running node)
- :mod:`~node.cli.export`: ``export``
- :mod:`~node.cli.certs`: ``health`` and the ``certs`` group
- :mod:`~node.cli.simulate`: ``simulate``
- :mod:`~node.cli.genesis`: the ``genesis`` group
- :mod:`~node.cli.testnet`: the ``testnet`` group (with :mod:`~node.cli.scenario`'s
  ``run`` and ``cleanup``)

Shared options live in :mod:`~node.cli.options`, consoles and error lines in
:mod:`~node.cli.output`. ``python -m node`` and the ``fednode`` console script both
call :func:`main`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from node import __version__
from node.cli import admin, certs, export, genesis, identity, simulate, start, testnet
from node.cli.output import console

__all__ = ["app", "main"]

app = typer.Typer(
    name="fednode",
    help=(
        "fednode: a decentralized federated-learning node. Every participant runs the same "
        "daemon; nodes find each other by gossip, train on private data and merge updates "
        "peer to peer. There is no central server.\n\n"
        "Quick start: fednode init; fednode genesis new net.toml; "
        "fednode start --genesis net.toml; fednode status"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
"""The root typer app: every command and group of ``fednode``."""


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"fednode {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    pass


app.command()(identity.init)
app.command()(start.start)
app.command()(admin.stop)
app.command()(admin.status)
app.command()(admin.peers)
app.command()(admin.ban)
app.command()(admin.unban)
app.command()(admin.privacy)
app.command()(export.export)
app.command()(certs.health)
app.command()(simulate.simulate)
app.add_typer(genesis.genesis_app, name="genesis")
app.add_typer(testnet.testnet_app, name="testnet")
app.add_typer(certs.certs_app, name="certs")


def main() -> None:
    """Run ``fednode`` on ``sys.argv`` (the console script's entry point)."""
    app()
