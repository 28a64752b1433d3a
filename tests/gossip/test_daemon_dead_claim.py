"""Issue 12 on real daemons: a dead-claim nobody can outbid must not silence a node.

A fresh identity with a valid PoW stamp sends, over real gRPC, ``dead`` statements about
node 1 at incarnations 2**64-1, 2**63-1 and ``max_incarnation_step`` to every node,
including node 1 itself. Before the fix node 1's refutation overflowed (``struct.error``,
answered UNKNOWN, nothing logged) and the others kept it dead for good. Now the first two
are refused as ``bad_incarnation`` / ``incarnation_jump``, the third is refuted, and node 1
is alive in every view within 5 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from fednode_proto.v1 import gossip_pb2 as pb
from fednode_proto.v1 import node_pb2_grpc
from node.base.identity import Identity
from node.gossip import GossipConfig, StatementKind, sign_record, sign_statement
from node.testnet.local import Testnet
from node.training.genesis import Genesis
from node.wire.envelope import seal

pytestmark = pytest.mark.slow

GENESIS = {
    "network": {"name": "deadclaim", "seed": 12, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 3},
}


@pytest.fixture(scope="module")
def net3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    root = tmp_path_factory.mktemp("deadclaim")
    net = Testnet(
        root, Genesis.model_validate(GENESIS), 3, node_args={i: ["--no-train"] for i in range(3)}
    )
    with net.running():
        net.wait_full_view(timeout=60)
        yield net


def _views_of(net: Testnet, node_id: str) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for i, n in enumerate(net.nodes):
        if i == 1:
            continue
        with n.client() as client:
            states = {p.node_id: p.state for p in client.peers().peers}
        out[i] = states.get(node_id)
    return out


def test_dead_claims_at_huge_incarnations_leave_the_victim_alive(net3: Testnet) -> None:
    net_id = net3.genesis.network_id
    liar = Identity.generate(4)
    victim_hex = net3.statuses()[1]["node_id"]
    victim = bytes.fromhex(victim_hex)
    step = GossipConfig.profile("test").max_incarnation_step
    record = sign_record(
        liar, address="127.0.0.1:9", incarnation=0, network_id=net_id, timestamp_ms=0
    )
    claims = [
        pb.Update(
            statement=sign_statement(
                liar,
                StatementKind.DEAD,
                target_id=victim,
                incarnation=inc,
                network_id=net_id,
                timestamp_ms=0,
            ).to_pb()
        )
        for inc in (2**64 - 1, 2**63 - 1, step)
    ]
    msg = pb.GossipMessage(sender=record.to_pb(), updates=claims)
    msg.gossip.SetInParent()
    body = msg.SerializeToString()
    t0 = time.monotonic()
    for seq, n in enumerate(net3.nodes, start=1):
        with grpc.insecure_channel(n.address) as channel:
            stub = node_pb2_grpc.NodeStub(channel)
            # Answered normally (was UNKNOWN on the victim): the bad claims are skipped.
            stub.Gossip(seal(liar, net_id, "gossip", body, seq=seq), timeout=5)
    deadline = t0 + 5.0
    views = _views_of(net3, victim_hex)
    while time.monotonic() < deadline and set(views.values()) != {"alive"}:
        time.sleep(0.1)
        views = _views_of(net3, victim_hex)
    assert set(views.values()) == {"alive"}, views
    # And the victim is still reachable and running.
    assert net3.statuses()[1]["state"] == "running"
