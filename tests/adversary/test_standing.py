"""Admission's ``min_standing_s`` on real daemons: a fresh member waits before it counts.

Node 0 (the victim) trains with ``min_standing_s = {update = S, request = S}`` in its
``node.toml``; node 1 joins by gossip with a valid proof of work and trains nothing. The test
signs with node 1's key (a member, but a fresh one) and pushes well-formed updates and
checkpoint requests from the moment node 1 is in node 0's view: they are refused
``no_standing`` until node 1 has been a member for S seconds, then admitted.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from malicious_peer import Adversary, raw_header

from node.base.identity import Identity
from node.testnet.local import Testnet
from node.training.genesis import Genesis
from node.training.trainer import make_trainer

pytestmark = pytest.mark.slow

STANDING_S = 8.0

GENESIS = {
    "network": {"name": "standing", "seed": 29, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 1, "partition": "iid"},
    "aggregation": {"rule": "mean"},
    "rounds": {"peers_per_round": 1, "min_updates": 1, "round_timeout": 1.0, "eval_every": 50},
}


def _metric(net: Testnet, name: str, *labels: str) -> float:
    info = net.nodes[0].runtime()
    assert info is not None
    with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and all(lab in line for lab in labels)
    )


@pytest.fixture(scope="module")
def standing_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Testnet, float]]:
    """The running network and the monotonic time just before node 1 was started."""
    genesis = Genesis.model_validate(GENESIS)
    net = Testnet(tmp_path_factory.mktemp("standing"), genesis, 2, node_args={1: ["--no-train"]})
    net.prepare()
    Path(net.nodes[0].data_dir.root / "node.toml").write_text(
        f"min_standing_s = {{update = {STANDING_S}, request = {STANDING_S}}}\n", encoding="utf-8"
    )
    try:
        net.start_node(net.nodes[0], None)
        spawned = time.monotonic()
        net.spawn_node(net.nodes[1], net.nodes[0].address)
        net.wait_started([net.nodes[1]])
        yield net, spawned
    finally:
        net.stop()


def test_a_fresh_member_is_refused_no_standing_until_it_stood_long_enough(
    standing_net: tuple[Testnet, float],
) -> None:
    net, spawned = standing_net
    g = net.genesis
    numel = make_trainer(g.task, g.learner, seed=0, node_index=0, node_id="00" * 32).layout.numel
    payload = np.zeros(int(numel), dtype="<f4").tobytes()
    member = Adversary(
        Identity.load(net.nodes[1].data_dir.identity), g.network_id, net.nodes[0].address
    )
    waits: list[float] = []  # the standing each no_standing refusal reported
    first_member = admitted_at = None
    refused_pulls = 0
    try:
        deadline = time.monotonic() + 60 + STANDING_S
        while time.monotonic() < deadline:
            rnd = int(net.statuses()[0].get("round", 0))
            try:
                receipt = member.push(member.update_stream(raw_header(payload, round=rnd), payload))
            except grpc.RpcError as exc:
                reason = (exc.details() or "").split(":", 1)[0]
                if reason == "not_member":  # node 0 has not heard of node 1 yet
                    time.sleep(0.2)
                    continue
                assert reason == "no_standing", exc.details()
                assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
                first_member = first_member or time.monotonic()
                found = re.search(r"member ([0-9.]+)s, update needs 8s", exc.details() or "")
                assert found, exc.details()
                waits.append(float(found.group(1)))
                try:
                    member.pull_checkpoint()
                except grpc.RpcError as pull_exc:
                    assert (pull_exc.details() or "").startswith("no_standing")
                    refused_pulls += 1
                time.sleep(0.5)
                continue
            admitted_at = time.monotonic()
            # Admitted: the update itself is judged on its content from now on.
            assert receipt.accepted or receipt.reason.split(":")[0] in {"stale", "future"}, (
                receipt.reason
            )
            break
        assert admitted_at is not None, f"never admitted; standing reported: {waits}"
        assert first_member is not None, "admitted without ever being refused no_standing"
        # Standing counts from the moment node 0 saw node 1, which is after node 1 started.
        assert admitted_at - spawned >= STANDING_S
        assert admitted_at - first_member <= STANDING_S + 3.0
        assert waits == sorted(waits) and waits[-1] < STANDING_S
        assert refused_pulls >= 1
        # Once standing, the checkpoint is served too.
        chunks = member.pull_checkpoint()
        assert chunks and chunks[0].HasField("header")
    finally:
        member.close()
    refused = _metric(net, "fednode_admission_refused_total", 'reason="no_standing"')
    assert refused == len(waits) + refused_pulls
