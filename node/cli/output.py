"""Where every ``fednode`` command prints: consoles, one-line errors, JSON, sizes.

Results go to stdout (``console``, :func:`emit_json`), progress and errors to stderr
(``err_console``), so ``--format json`` output can be piped whatever else is printed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

__all__ = ["console", "emit_json", "err_console", "fail", "human_bytes"]

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise.

    Parameters
    ----------
    message : str
        One line naming what is wrong (no traceback reaches the operator).
    code : int, default 1
        The process exit code.

    Returns
    -------
    typer.Exit
        Raise it: ``raise fail("...") from None``.
    """
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def emit_json(data: Any) -> None:
    """Write ``data`` to stdout as indented JSON (values JSON cannot hold as ``str``)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def human_bytes(n: int) -> str:
    """``n`` bytes as ``"512 B"``, ``"1.5 KB"``, ``"3.2 MB"`` or ``"1.1 GB"`` (powers of 1024)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
