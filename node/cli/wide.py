"""Print tables at their natural width, so no id or address is cut.

Rich shrinks a table to the terminal (80 columns when output is not a terminal), cutting
network ids, node ids and addresses with an ellipsis; operators compare those across
hosts (docs/deploy.md). A table wider than the terminal is printed whole instead (the
terminal wraps the lines; a pipe or file keeps them intact).
"""

from __future__ import annotations

import io

from rich.console import Console, RenderableType

__all__ = ["print_wide"]

_MEASURE_WIDTH = 1000


def print_wide(console: Console, renderable: RenderableType) -> None:
    """Print ``renderable`` on ``console`` at least as wide as it needs, never cut.

    Parameters
    ----------
    console : Console
        Where to print.
    renderable : RenderableType
        Usually a ``rich.table.Table``.
    """
    probe = Console(file=io.StringIO(), width=_MEASURE_WIDTH)
    need = min(probe.measure(renderable).maximum, _MEASURE_WIDTH)
    if need <= console.width:
        console.print(renderable)
        return
    # print(width=...) is capped at the console's width: widen the console itself.
    before = console.width
    console.width = need
    try:
        console.print(renderable)
    finally:
        console.width = before
