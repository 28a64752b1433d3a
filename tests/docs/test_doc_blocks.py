"""Every one-host fenced block of README.md and docs/*.md runs as written (issue 15).

Which blocks, and how, is in tests/docs/doc_commands.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_commands import RUN_BLOCKS, Block, Runner, run_block, workspace

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: f"{b[0].doc}:{b[0].line}")
def test_doc_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    runner = Runner(workspace(tmp_path), {}, {})
    try:
        run_block(block, runner)
    finally:
        runner.close()
