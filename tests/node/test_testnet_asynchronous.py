"""The asynchronous mode on real daemons: no rounds, Poisson clocks, merges as models come.

Three daemons over real gRPC. A push signs its model version as its round, so the check that
matters is the receivers': no node may ever be proven to equivocate (two models under one
version), also not a node killed with SIGKILL and restarted mid-run.
"""

from __future__ import annotations

import json
import re
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.cli import testnet as testnet_cli
from node.daemon.training_runtime import STATE_ASYNC_VERSION
from node.storage import open_store
from node.storage.engine import sqlite_url_for
from node.testnet.local import Testnet

pytestmark = pytest.mark.slow

Cli = Callable[..., Any]


def _wait(net: Testnet, ok: Callable[[dict[int, dict[str, Any]]], bool], what: str) -> None:
    deadline = time.monotonic() + 180
    last: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        last = net.statuses()
        if len(last) == len(net.nodes) and ok(last):
            return
        time.sleep(0.3)
    brief = {i: (s.get("round"), s.get("last_accuracy")) for i, s in last.items()}
    raise AssertionError(f"{what}: not within 180 s; last (round, accuracy) {brief}")


def test_asynchronous_daemons_train_merge_and_survive_a_kill(tmp_path: Path) -> None:
    trainings = 16
    genesis = testnet_cli.testnet_genesis(
        nodes=3, task="digits", rounds=trainings, seed=4, gossip_rate=4.0
    )
    assert genesis.rounds.asynchronous is not None
    net = Testnet(tmp_path / "net", genesis, 3)
    try:
        net.start()
        net.wait_full_view(timeout=60)
        victim = net.nodes[2]
        _wait(
            net,
            lambda st: (
                int(st[2]["round"]) >= 4 and int(st[2]["bytes_sent_by_kind"].get("update", 0)) > 0
            ),
            "node 2 trains and pushes",
        )
        before = net.statuses()[2]
        net.signal_node(victim, signal.SIGKILL)
        assert victim.process is not None
        victim.process.wait(10)
        store = open_store(sqlite_url_for(victim.data_dir.root), migrate_schema=False)
        try:
            pushed = int(store.get_state(STATE_ASYNC_VERSION, -1))  # its last version
        finally:
            store.close()
        assert pushed >= 0  # it pushed before it was killed
        net.start_node(victim, net.nodes[0].address)
        _wait(
            net, lambda st: all(int(s["round"]) >= trainings for s in st.values()), "all trainings"
        )
        final = net.statuses()
    finally:
        net.stop(timeout=10)
    # The restart resumed from its checkpoint (a local training's count), not from zero.
    assert int(final[2]["round"]) == trainings and int(before["round"]) >= 4
    logs = {n.index: n.log_path.read_text() for n in net.nodes}
    restarted = logs[2].split("training ready")[-1].split("\n")[0]
    assert "start_round=0" not in restarted, restarted
    # It starts above every version it pushed: no version of it names two models.
    version = re.search(r"version=(\d+)", restarted)
    assert version is not None and int(version.group(1)) > pushed, (restarted, pushed)
    # Nobody was proven to equivocate, and the models were merged (updates accepted).
    for i, text in logs.items():
        assert "equivocation proven" not in text, f"node {i}: {text[-2000:]}"
    for i, s in final.items():
        # digits: chance is 0.1
        assert s["last_accuracy"] > 0.6, (i, s["last_accuracy"], s["history"])
    # Models were exchanged (the restarted node's counters start again at its restart, when
    # the others may have finished).
    for i in (0, 1):
        assert int(final[i]["bytes_received_by_kind"].get("update", 0)) > 0


def test_testnet_up_asynchronous_prints_local_trainings(cli: Cli, tmp_path: Path) -> None:
    out = cli(
        "testnet", "up", "--nodes", "2", "--task", "digits", "--rounds", "4",
        "--asynchronous", "--gossip-rate", "3", "--format", "json",
        "--plot", str(tmp_path / "acc.png"), "--workdir", str(tmp_path / "w"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["per_node"]
    assert [r["round"] for r in rows] == [4, 4]
    written = tomllib.loads((tmp_path / "w" / "genesis.toml").read_text())
    assert written["rounds"]["asynchronous"]["gossip_rate"] == 3.0


def test_the_spsa_learner_refuses_the_asynchronous_mode() -> None:
    with pytest.raises(ValueError, match=r"rounds\.asynchronous cannot be used with learner"):
        testnet_cli.testnet_genesis(nodes=3, task="digits", learner="spsa", gossip_rate=2.0)
