"""`fednode status --format json`: the documented schema, numbers as numbers, the truth
after a kill -9 and restart (issue 15, item 3)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fednode_proto.v1 import admin_pb2
from node.cli.status_json import status_cell, status_document
from node.testnet.local import Testnet
from node.training.genesis import Genesis

Cli = Callable[..., Any]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PRIVACY_ONLY = {"epsilon_spent", "epsilon_budget", "releasing"}


def _documented() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("<!-- status-schema:start -->")[1].split("<!-- status-schema:end -->")[0]
    rows = re.findall(r"^\| `(\w+)` \| ([a-z ]+) \|", block, flags=re.M)
    assert len(rows) > 20
    return dict(rows)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check(doc: dict[str, Any], documented: dict[str, str]) -> None:
    for key, value in doc.items():
        assert key in documented, f"{key} is not documented in docs/operations.md"
        allowed = set(documented[key].split(" or "))
        got = _json_type(value)
        # A documented number may be integral; an integer must never be a string.
        assert got in allowed or (got == "integer" and "number" in allowed), (key, got)


def _reply(private: bool, evaluated: bool) -> admin_pb2.StatusReply:
    reply = admin_pb2.StatusReply(
        node_id="ab" * 32,
        network_id="cd" * 32,
        round=2**40,  # beyond what a double or a JSON-string round trip keeps exact
        bytes_sent=12345,
        bytes_received=678,
        messages_rejected=3,
        pid=42,
        epsilon_budget=8.0,
        epsilon_spent=1.5,
        releasing=True,
        state="running",
    )
    reply.bytes_sent_by_kind["gossip"] = 2**40
    reply.bytes_sent_by_kind["spsa"] = 275
    reply.node_privacy.enabled = private
    reply.node_privacy.steps = 7
    if evaluated:
        reply.last_accuracy = 0.75
        reply.history.append(admin_pb2.Evaluation(round=5, accuracy=0.75, loss=0.5))
    return reply


def test_schema_is_documented_and_numbers_are_numbers() -> None:
    documented = _documented()
    doc = status_document(_reply(private=True, evaluated=True))
    assert set(doc) == set(documented), set(doc) ^ set(documented)
    _check(doc, documented)
    assert doc["round"] == 2**40 and doc["bytes_sent"] == 12345
    assert doc["history"][0]["round"] == 5 and doc["node_privacy"]["steps"] == 7
    assert doc["bytes_sent_by_kind"] == {"gossip": 2**40, "spsa": 275}
    # What `jq '.round > 5'` needs: a number, which a string never compares as.
    assert json.loads(json.dumps(doc))["round"] > 5


def test_no_privacy_claims_without_privacy_and_no_accuracy_before_evaluation() -> None:
    doc = status_document(_reply(private=False, evaluated=False))
    assert PRIVACY_ONLY.isdisjoint(doc)
    assert doc["last_accuracy"] is None
    _check(doc, _documented())


def test_status_table_says_why_the_model_hash_is_empty() -> None:
    spsa = {"learner": "spsa", "model_hash": "", "spsa_digest": ""}
    assert "replaying the SPSA scalar log" in status_cell("model_hash", "", spsa)
    assert "replaying the SPSA scalar log" in status_cell("spsa_digest", "", spsa)
    sgd = {"learner": "sgd", "model_hash": "", "spsa_digest": ""}
    assert "loading" in status_cell("model_hash", "", sgd)
    assert status_cell("spsa_digest", "", sgd) == ""  # not an SPSA node: nothing to say
    assert status_cell("model_hash", "", {"learner": ""}) == "-"  # no training at all
    assert status_cell("model_hash", "ab12", sgd) == "ab12"
    assert status_cell("last_accuracy", None, sgd) == "-"


@pytest.mark.slow
@pytest.mark.parametrize("learner", ["sgd", "spsa"])
def test_first_status_after_kill_and_restart_reads_the_stored_state(
    tmp_path: Path, cli: Cli, testnet_factory: list[Testnet], learner: str
) -> None:
    # An SPSA node rebuilds its model by replaying its scalar log; its model hash and
    # digest used to read empty until then.
    genesis = Genesis.model_validate(
        {
            "network": {"name": "t", "seed": 7, "pow_difficulty": 4, "gossip_profile": "test"},
            "task": {"name": "digits", "num_nodes": 2},
            "learner": {"kind": learner},
            "rounds": {"round_timeout": 1.0, "eval_every": 1, "max_rounds": 400},
        }
    )
    net = Testnet(tmp_path / "net", genesis, 1)
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
    while before["round"] < 3 or not before["history"]:
        assert time.monotonic() < deadline, before
        time.sleep(0.5)
        before = status()
    assert isinstance(before["round"], int) and isinstance(before["bytes_sent"], int)
    assert PRIVACY_ONLY.isdisjoint(before)  # privacy is off in this genesis
    assert node.process is not None
    node.process.kill()  # kill -9: no graceful shutdown
    node.process.wait(10)
    net.spawn_node(node, None)
    first = None
    seen_starting = False
    deadline = time.monotonic() + 120
    while first is None:
        assert time.monotonic() < deadline
        out = cli("status", "--data-dir", dd, "--format", "json")
        if out.returncode == 0:
            doc = json.loads(out.stdout)
            if doc["state"] == "starting":
                seen_starting = True
            else:
                first = doc
        time.sleep(0.05)
    # The first answer of the restarted daemon already knows where it stopped.
    assert first["round"] >= before["round"], (first["round"], before["round"])
    assert first["model_hash"] and len(first["history"]) >= len(before["history"])
    if learner == "spsa":
        assert first["spsa_digest"]

    def curve(history: list[dict[str, Any]]) -> list[tuple[int, float]]:
        return [(h["round"], h["accuracy"]) for h in history]

    assert curve(first["history"])[: len(before["history"])] == curve(before["history"])
    assert first["last_accuracy"] == first["history"][-1]["accuracy"]
    assert seen_starting or first["uptime_s"] >= 0  # "starting" is shown when we poll in time


def test_status_says_starting_while_a_daemon_holds_the_data_dir(tmp_path: Path, cli: Cli) -> None:
    # What `fednode start` does first, before loading anything: take the lock.
    from node.base.datadir import DataDir

    dd = DataDir(tmp_path / "n1")
    fd = dd.acquire_lock()
    try:
        out = cli("status", "--data-dir", str(dd.root), "--format", "json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"state": "starting", "pid": os.getpid()}
        text = cli("status", "--data-dir", str(dd.root))
        assert text.returncode == 0 and "starting" in text.stdout
    finally:
        os.close(fd)
    # No daemon at all: a clear error, as before.
    gone = cli("status", "--data-dir", str(dd.root))
    assert gone.returncode != 0 and "no daemon is running" in gone.stderr
