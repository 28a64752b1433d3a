"""Options shared by several ``fednode`` commands, and how their values are resolved."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from node.base.datadir import DataDir, default_data_dir

__all__ = ["DataDirOpt", "FormatOpt", "OutputFormat", "comma_list", "open_data_dir"]


class OutputFormat(StrEnum):
    """``--format``: a human table (``text``) or a JSON document on stdout (``json``)."""

    text = "text"
    json = "json"


DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Node state directory \\[default: $FEDNODE_HOME, else ~/.local/share/fednode].",
        show_default=False,
    ),
]
"""``--data-dir/-d``: the node whose state a command reads or writes."""

FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format: text or json.")
]
"""``--format/-f``: text (default) or json."""


def open_data_dir(path: Path | None) -> DataDir:
    """The data directory ``--data-dir`` names, else ``$FEDNODE_HOME``, else the default.

    Parameters
    ----------
    path : Path or None
        The ``--data-dir`` value; ``~`` is expanded.
    """
    return DataDir((path or default_data_dir()).expanduser())


def comma_list(value: str | None) -> list[str] | None:
    """A comma-separated option as its non-empty, stripped items; None stays None."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]
