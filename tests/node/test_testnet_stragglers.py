"""Stragglers that are real: ``testnet up --slow-nodes`` holds nodes to a CPU quota (cgroups)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.testnet.cpulimit import CpuLimiter, CpuLimitError

Cli = Callable[..., Any]

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"


def test_a_limited_process_gets_no_more_cpu_than_its_quota() -> None:
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    limiter = CpuLimiter(f"test-{os.getpid()}")
    try:
        group = limiter.limit(0, proc.pid, 0.2)
        assert group.name in Path(f"/proc/{proc.pid}/cgroup").read_text()
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu_s() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        c0, t0 = cpu_s(), time.monotonic()
        time.sleep(2.0)
        share = (cpu_s() - c0) / (time.monotonic() - t0)
        assert share < 0.3  # 0.2 CPU plus a tick of accounting slack; unlimited it is ~1
        with pytest.raises(CpuLimitError, match="must be in"):
            limiter.limit(1, proc.pid, 0.0)
    finally:
        proc.kill()
        proc.wait()
        limiter.close()
    assert not group.exists()  # removed once its process exited


def test_testnet_up_slow_nodes_throttles_the_stragglers(cli: Cli, tmp_path: Path) -> None:
    out = cli(
        "testnet", "up", "--nodes", "2", "--task", "digits", "--rounds", "2",
        "--slow-nodes", "1", "--slowdown", "4", "--format", "json",
        "--plot", str(tmp_path / "acc.png"), "--timeout", "240",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    rows = summary["per_node"]
    assert [r["slow"] for r in rows] == [True, False]
    assert rows[0]["cpu_limit"] == pytest.approx((os.cpu_count() or 1) / 2 / 4)
    assert rows[0]["throttled_s"] > 0  # the kernel held it back
    assert all(r["round"] == 2 for r in rows)
    for points in summary["timeline"].values():
        times = [p[0] for p in points]
        assert times == sorted(times) and points[-1][1] == 2


def test_slow_nodes_beyond_the_network_are_refused(cli: Cli) -> None:
    out = cli("testnet", "up", "--nodes", "2", "--slow-nodes", "3", "--task", "digits")
    assert out.returncode != 0 and "--slow-nodes cannot exceed --nodes" in out.stderr
