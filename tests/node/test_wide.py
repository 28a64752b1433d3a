"""Tables never cut an id that operators compare across hosts (issue 15, item 6)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from node.cli.wide import print_wide

NODE_ID = "3fa2c1" + "0123456789abcdef" * 3 + "fedcba9876"  # 64 hex characters


def _table() -> Table:
    table = Table(title="peers")
    for col in ("node id", "address", "state", "incarnation", "last seen", "rtt", "banned"):
        table.add_column(col)
    table.add_row(NODE_ID, "[2001:db8::1234]:7420", "alive", "3", "0.1 s ago", "2.0 ms", "")
    return table


def test_a_table_wider_than_80_columns_is_printed_whole() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80)  # what a pipe or a CI log gets
    print_wide(console, _table())
    text = out.getvalue()
    assert NODE_ID in text and "[2001:db8::1234]:7420" in text and "…" not in text
    assert console.width == 80  # the console is left as it was


def test_plain_print_would_cut_the_id() -> None:
    # The failure print_wide exists for: rich shrinks the table to the terminal.
    out = io.StringIO()
    Console(file=out, width=80).print(_table())
    assert NODE_ID not in out.getvalue()
