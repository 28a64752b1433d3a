"""Three real daemons on loopback: discovery, restart, and refusal of bad peer input."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fednode_proto.v1 import node_pb2_grpc
from fednode_proto.v1.envelope_pb2 import Envelope
from fednode_proto.v1.training_pb2 import TensorChunk, TensorHeader
from node.base.identity import Identity
from node.testnet.local import Testnet
from node.training.genesis import Genesis
from node.wire.envelope import seal

pytestmark = pytest.mark.slow

NO_TRAINING = {
    "network": {"name": "net3", "seed": 11, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 3},
}


@pytest.fixture(scope="module")
def net3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    root = tmp_path_factory.mktemp("net3")
    # --no-train: membership only, so these tests exercise the protocol, not learning.
    net = Testnet(
        root,
        Genesis.model_validate(NO_TRAINING),
        3,
        node_args={i: ["--no-train"] for i in range(3)},
    )
    with net.running():
        net.wait_full_view(timeout=60)
        yield net


def _metric(net: Testnet, index: int, name: str, label: str = "") -> float:
    info = net.nodes[index].runtime()
    assert info is not None
    with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_three_nodes_find_each_other_through_the_first(net3: Testnet) -> None:
    st = net3.statuses()
    assert sorted(st) == [0, 1, 2]
    ids = {s["node_id"] for s in st.values()}
    assert len(ids) == 3
    for i, s in st.items():
        assert s["peers_alive"] == 2, f"node {i} sees {s['peers_alive']} peers"
        assert s["network_id"] == net3.genesis.network_id_hex
    # Round-trip times appear once node 2 has probed each peer directly (one probe
    # interval each, round-robin), which may be a moment after the full view.
    deadline = time.monotonic() + 30
    while True:
        with net3.nodes[2].client() as client:
            peers = client.peers().peers
        if all(p.rtt_ms >= 0 for p in peers) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {p.node_id for p in peers} == ids - {st[2]["node_id"]}
    assert all(p.state == "alive" and p.rtt_ms >= 0 for p in peers)


def _stub(net: Testnet) -> tuple[grpc.Channel, node_pb2_grpc.NodeStub]:
    channel = grpc.insecure_channel(net.nodes[0].address)
    return channel, node_pb2_grpc.NodeStub(channel)


def _refused(call: object, *args: object, **kw: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=5, **kw)  # type: ignore[operator]
    return info.value


@pytest.fixture(scope="module")
def mallory() -> Identity:
    return Identity.generate(4)


def test_bad_peer_input_is_refused_and_counted(net3: Testnet, mallory: Identity) -> None:
    net_id = net3.genesis.network_id
    channel, stub = _stub(net3)
    before = _metric(net3, 0, "fednode_messages_rejected_total")
    with channel:
        # Another network.
        err = _refused(stub.Gossip, seal(mallory, b"\x09" * 32, "gossip", b"", seq=1))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "wrong_network" in err.details()
        _refused(stub.Gossip, seal(mallory, b"\x09" * 32, "gossip", b"", seq=9))
        # Bad signature.
        env = seal(mallory, net_id, "gossip", b"", seq=2)
        env.body = b"tampered"
        err = _refused(stub.Gossip, env)
        assert "bad_signature" in err.details()
        # Garbage body with a valid signature.
        err = _refused(stub.Gossip, seal(mallory, net_id, "gossip", b"\xff\x00garbage", seq=3))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Replay of an accepted-by-signature envelope.
        env = seal(mallory, net_id, "gossip", b"\xff", seq=4)
        _refused(stub.Gossip, env)
        err = _refused(stub.Gossip, env)
        assert "replay" in err.details()
        # Unknown fields in the envelope.
        raw = seal(mallory, net_id, "gossip", b"", seq=5).SerializeToString() + b"\xa8\x06\x01"
        odd = Envelope()
        odd.ParseFromString(raw)
        err = _refused(stub.Gossip, odd)
        assert "unknown_fields" in err.details()
        # Oversized message: refused by gRPC before parsing.
        big = seal(mallory, net_id, "gossip", b"x" * (5 * 1024 * 1024), seq=6)
        err = _refused(stub.Gossip, big)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Update streams and checkpoint pulls from a key that never joined: refused by
        # admission before any body is read (tests/adversary/ has the member attacks).
        header = TensorHeader(
            format=TensorHeader.RAW_LE,
            dtype="float32",
            shape=[10**12],
            total_bytes=4 * 10**12,
            payload_sha256=b"\x00" * 32,
        )
        env = seal(mallory, net_id, "update", header.SerializeToString(), seq=7)
        err = _refused(stub.PushUpdate, iter([TensorChunk(header=env, data=b"")]))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.details().startswith("not_member")
        env = seal(mallory, net_id, "request", b"", seq=8)
        err = _refused(lambda *a, **k: list(stub.Pull(*a, **k)), env)
        assert err.details().startswith("not_member")
    after = _metric(net3, 0, "fednode_messages_rejected_total")
    assert after - before >= 8
    assert _metric(net3, 0, "fednode_messages_rejected_total", 'reason="wrong_network"') >= 2
    # The operator is told once per foreign network, not once per message.
    log_text = net3.nodes[0].log_path.read_text(errors="replace")
    assert log_text.count("peer speaks another network") == 1
    assert ("09" * 8) in log_text
    # The node is healthy, its view unpolluted: still exactly its two real peers.
    st = net3.statuses()[0]
    assert st["state"] == "running" and st["peers_alive"] == 2
    assert net3.nodes[0].alive()


def test_health_service_reports_serving(net3: Testnet) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(net3.nodes[1].address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_restart_keeps_identity_and_rejoins_from_stored_peers(net3: Testnet) -> None:
    # Stop node 2 and node 0 (the bootstrap); restart node 2 with NO bootstrap address:
    # it must rejoin through the peer table it stored (node 1).
    ids = {i: s["node_id"] for i, s in net3.statuses().items()}
    n0, n1, n2 = net3.nodes
    assert net3.stop_node(n2) == 0
    assert net3.stop_node(n0) == 0
    net3.start_node(n2, None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = net3.statuses()
        if st.get(2, {}).get("peers_alive", 0) >= 1 and st[2]["node_id"] == ids[2]:
            break
        time.sleep(0.2)
    st = net3.statuses()
    assert st[2]["node_id"] == ids[2]
    with n2.client() as client:
        alive = {p.node_id for p in client.peers().peers if p.state == "alive"}
    assert ids[1] in alive
    # Bring node 0 back so the module's other tests see three nodes again.
    net3.start_node(n0, n1.address)
    net3.wait_full_view(timeout=30)


def test_ban_blocks_a_peer(net3: Testnet, tmp_path: Path) -> None:
    ids = {i: s["node_id"] for i, s in net3.statuses().items()}
    with net3.nodes[0].client() as client:
        reply = client.ban(ids[1][:10])
        assert reply.banned and reply.node_id == ids[1]
        peers = {p.node_id: p for p in client.peers().peers}
        assert peers[ids[1]].banned
        client.ban(ids[1], unban=True)
        peers = {p.node_id: p for p in client.peers().peers}
        assert not peers[ids[1]].banned
