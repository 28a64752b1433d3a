"""A scenario end to end through the CLI: real daemons in namespaces, real faults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.testnet.netns import NS_PREFIX, list_namespaces

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_tiny_scenario_partition_kill_restart(netns_ready: None, tmp_path: Path) -> None:
    before = set(list_namespaces(NS_PREFIX))
    done = subprocess.run(
        [
            sys.executable, "-m", "node", "testnet", "run", str(HERE / "tiny.toml"),
            "--format", "json", "--workdir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    # Every namespace this run made is gone (others' running testnets are not ours).
    assert set(list_namespaces(NS_PREFIX)) <= before
    assert report["interrupted"] is False
    assert [e["action"] for e in report["events"]] == [
        "partition", "heal", "kill", "restart [2]",
    ]  # fmt: skip

    # The partition really cut traffic: each side marked the other suspect/dead ...
    (part,) = report["partitions"]
    assert part["groups"] == [[0], [1, 2]]
    assert part["views_split_s"] is not None
    # ... and healing merged the views again.
    assert part["remerge_s"] is not None and part["remerge_s"] < 30

    # The SIGKILLed node was marked dead by both survivors.
    (det,) = report["detections"]
    assert det["node"] == 2 and det["observers"] == 2
    assert det["all_dead_s"] is not None and det["marked_dead_by"] == 2
    assert det["first_suspect_s"] <= det["all_dead_s"]

    # It came back with the same identity and rejoined every peer.
    (restart,) = report["restarts"]
    assert restart["same_identity"] is True
    assert restart["rejoined_s"] is not None
    assert report["bytes_sent"] > 0
    assert report["rounds_reached"].keys() == {"0", "1", "2"}
