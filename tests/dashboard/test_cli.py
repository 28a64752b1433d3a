"""``fednode testnet up`` prints node 0's dashboard URL with its token.

(In its own module so it runs before test_live's testnet exists: fewer processes at once.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_testnet_up_prints_node_0_dashboard_url(tmp_path: Path) -> None:
    work = tmp_path / "work"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "testnet",
            "up",
            "--nodes",
            "1",
            "--task",
            "digits",
            "--rounds",
            "1",
            "--workdir",
            str(work),
            "--plot",
            str(tmp_path / "acc.png"),
            # Stop as soon as the nodes are up: the URL is printed before training.
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    token = (work / "node-0" / "admin.token").read_text().strip()
    match = re.search(r"dashboard of node 0: (http://127\.0\.0\.1:\d+/\?token=(\S+))", done.stdout)
    assert match, done.stdout
    assert match.group(2) == token
