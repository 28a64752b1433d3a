"""Status of a restarted SPSA node before its model is rebuilt (issue 15, item 3).

A restarted SPSA node rebuilds its model by replaying its scalar log once its task has
loaded; until then status answered round N (stored) but an empty model hash and digest.
Here the task cannot load after the restart (its factory refuses), so the node stays in
that state for good and status must report the hash and digest it stored with round N.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.testnet.local import Testnet
from node.training.genesis import Genesis

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
Cli = Callable[..., Any]

FACTORY = """
import os

from digits_task import make_task as _digits


def make_task(ctx):
    if os.environ.get("FEDNODE_TEST_TASK_GONE"):
        raise RuntimeError("this node's data is gone (test)")
    return _digits(ctx)
"""


def test_status_reports_the_stored_hash_until_the_model_is_rebuilt(
    tmp_path: Path, cli: Cli, testnet_factory: list[Testnet]
) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "gone_task.py").write_text(FACTORY)
    pythonpath = f"{tmp_path / 'code'}:{ROOT / 'examples' / 'python_task'}"
    genesis = Genesis.model_validate(
        {
            "network": {"name": "t", "seed": 7, "pow_difficulty": 4, "gossip_profile": "test"},
            "task": {"name": "python", "factory": "gone_task:make_task", "num_nodes": 2},
            "learner": {"kind": "spsa"},
            "rounds": {"round_timeout": 1.0, "eval_every": 1, "max_rounds": 400},
        }
    )
    net = Testnet(tmp_path / "net", genesis, 1, env={"PYTHONPATH": pythonpath})
    testnet_factory.append(net)
    net.start()
    node = net.nodes[0]
    dd = str(node.data_dir.root)

    def status() -> dict[str, Any]:
        out = cli("status", "--data-dir", dd, "--format", "json")
        assert out.returncode == 0, out.stderr
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    deadline = time.monotonic() + 120
    before = status()
    while before.get("round", 0) < 3:
        assert time.monotonic() < deadline, before
        time.sleep(0.5)
        before = status()
    assert node.process is not None
    node.process.kill()
    node.process.wait(10)
    net.env["FEDNODE_TEST_TASK_GONE"] = "1"
    net.spawn_node(node, None)
    deadline = time.monotonic() + 120
    while "spsa learner could not start" not in node.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, net.tail(node)
        time.sleep(0.5)
    after = status()
    assert after["state"] == "running" and after["learner"] == "spsa"
    assert after["round"] >= before["round"]
    # The hash and digest the node closed its last round with (its log says them).
    assert re.fullmatch(r"[0-9a-f]{64}", after["model_hash"]), after
    assert after["spsa_digest"], after
    closed = re.findall(
        rf"round closed .*round={after['round'] - 1} .*model_hash=(\w+)",
        node.log_path.read_text(errors="replace"),
    )
    assert closed and after["model_hash"].startswith(closed[-1]), (closed, after)
    text = cli("status", "--data-dir", dd)
    assert after["model_hash"] in text.stdout.replace("\n", "")
