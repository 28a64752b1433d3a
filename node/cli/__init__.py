"""The ``fednode`` command line: typer commands, one module per command group."""

from node.cli.app import app, main

__all__ = ["app", "main"]
