"""Sybil-weighting history reports: signing and checking, and real daemons exchanging them.

The network test runs three daemons (A, B, C) with ``sybil_weighting = true``. A bans B
before B joins, so A never receives B's updates; C does, and A must learn B's history
through C's signed reports. Then a test client pushes forged, tampered, oddly shaped and
unattributable reports to A.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from fednode_proto.v1 import node_pb2_grpc
from fednode_proto.v1.training_pb2 import HistoryGossip, HistoryReport
from node.base.identity import Identity
from node.daemon.history_gossip import MAX_HOPS, check_report, sign_report
from node.storage import open_store
from node.storage.engine import sqlite_url_for
from node.testnet.local import Testnet
from node.training.genesis import Genesis
from node.wire.envelope import seal
from node.wire.service import Rejected

NET = b"\x05" * 32


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate(0)


def _report(alice: Identity, subject: bytes, dim: int = 8, **kw: Any) -> HistoryReport:
    return sign_report(alice, NET, subject, torch.arange(dim, dtype=torch.float32), 3, **kw)


def test_report_round_trips(alice: Identity) -> None:
    subject = b"\x01" * 32
    checked = check_report(_report(alice, subject, hops=2), network_id=NET, vector_dim=8)
    assert checked.reporter == alice.node_id_hex and checked.subject == subject.hex()
    assert checked.round == 3 and checked.hops == 2
    assert torch.equal(checked.vector, torch.arange(8, dtype=torch.float32))


def _refused(report: HistoryReport, *, dim: int = 8, net: bytes = NET) -> str:
    with pytest.raises(Rejected) as info:
        check_report(report, network_id=net, vector_dim=dim)
    return info.value.reason


def test_every_tamper_is_refused(alice: Identity) -> None:
    subject = b"\x01" * 32
    good = _report(alice, subject)

    def tampered(**fields: Any) -> HistoryReport:
        r = HistoryReport()
        r.CopyFrom(good)
        for k, v in fields.items():
            setattr(r, k, v)
        return r

    other = Identity.generate(0)
    # A relay altering anything the reporter signed.
    assert _refused(tampered(subject_id=b"\x02" * 32)) == "history_bad_signature"
    assert _refused(tampered(round=4)) == "history_bad_signature"
    vec = bytearray(good.vector)
    vec[0] ^= 1
    assert _refused(tampered(vector=bytes(vec))) == "history_bad_signature"
    # Attributing the report to another reporter (its key and id, the old signature).
    swapped = tampered(reporter_id=other.node_id, reporter_public_key=other.public_key)
    assert _refused(swapped) == "history_bad_signature"
    assert _refused(tampered(reporter_id=other.node_id)) == "history_bad_reporter"
    # Signed for another network.
    assert _refused(good, net=b"\x06" * 32) == "history_bad_signature"
    # Structure.
    assert _refused(tampered(reporter_signature=b"x" * 10)) == "history_malformed"
    assert _refused(tampered(subject_id=b"x")) == "history_malformed"
    assert _refused(good, dim=9) == "history_bad_shape"
    nan = sign_report(alice, NET, subject, torch.tensor([float("nan")] * 8), 3)
    assert _refused(nan) == "nonfinite"
    assert _refused(_report(alice, alice.node_id)) == "history_bad_reporter"
    assert _refused(tampered(hops=0)) == "history_malformed"
    assert _refused(tampered(hops=MAX_HOPS + 1)) == "history_malformed"


def test_hops_are_not_signed(alice: Identity) -> None:
    # Relays raise the hop count as they forward; that must not break the signature.
    r = _report(alice, b"\x01" * 32, hops=1)
    r.hops = 5
    assert check_report(r, network_id=NET, vector_dim=8).hops == 5


# --- real daemons --------------------------------------------------------------------------

GENESIS = {
    "network": {"name": "hist-net", "seed": 5, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 3, "partition": "iid"},
    "learner": {"kind": "sgd", "local_steps": 40},
    "rounds": {
        "max_rounds": 40,
        "eval_every": 20,
        # Nodes start a few rounds apart on busy cores: accept each other's updates anyway.
        "max_staleness": 40,
        "max_future": 40,
        # Nodes wait (up to round_timeout) for a peer before their first round; rounds
        # themselves end as soon as one peer update arrived.
        "round_timeout": 30.0,
        "peers_per_round": 1,
        "min_updates": 1,
    },
    "aggregation": {"sybil_weighting": True},
}


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


@pytest.fixture(scope="module")
def hist_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    net = Testnet(tmp_path_factory.mktemp("hist"), Genesis.model_validate(GENESIS), 3)
    net.prepare()
    b_id = Identity.load(net.nodes[1].data_dir.identity).node_id_hex
    # A's operator banned B before A started (a stored ban): A never takes an update from
    # B, so whatever A knows of B's history came from C.
    a = net.nodes[0]
    store = open_store(data_dir=a.data_dir.root, url=sqlite_url_for(a.data_dir.root))
    store.set_state("banned", [b_id])
    store.close()
    try:
        # C first; A and B join through C (A refuses B's own join as banned, but learns
        # of B from C's membership gossip). C waits for a peer before its first round.
        c = net.nodes[2]
        net.start_node(c, None, timeout=120)
        for node in net.nodes[:2]:
            net.spawn_node(node, c.address)
        net.wait_started(net.nodes[:2], timeout=120)
        yield net
    finally:
        net.stop(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_learns_bs_history_through_c(hist_net: Testnet) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _metric(hist_net, 0, "fednode_history_reports_total", 'outcome="merged"') >= 1:
            break
        time.sleep(0.5)
    # A holds a gossiped record (about B: its only non-neighbour) and no direct one of B.
    assert _metric(hist_net, 0, "fednode_history_reports_total", 'outcome="merged"') >= 1
    assert _metric(hist_net, 0, "fednode_history_records", 'source="gossip"') >= 1
    assert _metric(hist_net, 2, "fednode_history_reports_total", 'outcome="sent"') >= 1
    # B's updates to A were refused as banned, so A's history of B is C's report.
    assert _metric(hist_net, 0, "fednode_messages_rejected_total", 'reason="banned"') >= 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_forged_and_tampered_reports_are_refused_and_counted(
    hist_net: Testnet, tmp_path: Path
) -> None:
    a, b, c = (Identity.load(n.data_dir.identity) for n in hist_net.nodes)
    mallory = Identity.generate(hist_net.genesis.network.pow_difficulty)
    dim = 2048  # digits MLP has > 4096 parameters: histories are sketched to 2048
    vec = torch.ones(dim)
    # Admission (node/wire/admission.py) takes history batches only from members: the attacker
    # relays through a member daemon of its own (joined by gossip, trains nothing).
    relay_net = Testnet(tmp_path / "relay", hist_net.genesis, 1, node_args={0: ["--no-train"]})
    relay_net.prepare()
    relay = Identity.load(relay_net.nodes[0].data_dir.identity)
    relay_net.start_node(relay_net.nodes[0], hist_net.nodes[2].address, timeout=120)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with hist_net.nodes[0].client() as client:
                if any(p.node_id == relay.node_id_hex for p in client.peers().peers):
                    break
            time.sleep(0.2)
        _forged_reports(hist_net, relay, mallory, a, b, c, vec)
    finally:
        relay_net.stop()


def _forged_reports(
    hist_net: Testnet,
    relay: Identity,
    mallory: Identity,
    a: Identity,
    b: Identity,
    c: Identity,
    vec: torch.Tensor,
) -> None:
    net_id = hist_net.genesis.network_id
    dim = vec.numel()

    def push(reports: list[HistoryReport], seq: int, sender: Identity = relay) -> Any:
        env = seal(
            sender, net_id, "history", HistoryGossip(reports=reports).SerializeToString(), seq=seq
        )
        with grpc.insecure_channel(hist_net.nodes[0].address) as channel:
            return node_pb2_grpc.NodeStub(channel).PushHistory(env, timeout=10)

    # From a key that never joined: refused before the batch is read.
    with pytest.raises(grpc.RpcError) as refused:
        push([sign_report(mallory, net_id, b.node_id, vec, 1)], 1, sender=mallory)
    assert refused.value.details().startswith("not_member")
    before = _metric(hist_net, 0, "fednode_messages_rejected_total", 'reason="history_bad')
    # A report claiming C as reporter with a made-up signature.
    forged = HistoryReport(
        reporter_id=c.node_id,
        reporter_public_key=c.public_key,
        subject_id=b.node_id,
        round=1,
        vector=b"\x00" * 4 * dim,
        reporter_signature=b"\x01" * 64,
        hops=1,
    )
    receipt = push([forged], 1)
    assert not receipt.accepted and receipt.reason.startswith("history_bad_signature")
    # C's genuine report whose vector a relay altered.
    genuine = sign_report(c, net_id, b.node_id, vec, 1)
    genuine.vector = bytes([genuine.vector[0] ^ 1]) + genuine.vector[1:]
    receipt = push([genuine], 2)
    assert not receipt.accepted and receipt.reason.startswith("history_bad_signature")
    # Wrong history length.
    receipt = push([sign_report(c, net_id, b.node_id, torch.ones(10), 1)], 3)
    assert not receipt.accepted and receipt.reason.startswith("history_bad_shape")
    after = _metric(hist_net, 0, "fednode_messages_rejected_total", 'reason="history_bad')
    assert after - before >= 3
    # A well-signed report by an identity A does not know as a member: accepted, unused.
    unknown_before = _metric(
        hist_net, 0, "fednode_history_reports_total", 'outcome="unknown_reporter"'
    )
    receipt = push([sign_report(mallory, net_id, b.node_id, vec, 1)], 4)
    assert receipt.accepted
    assert (
        _metric(hist_net, 0, "fednode_history_reports_total", 'outcome="unknown_reporter"')
        == unknown_before + 1
    )
    # A report about A itself by C is dropped without harm; A keeps running.
    receipt = push([sign_report(c, net_id, a.node_id, vec, 1)], 5)
    assert receipt.accepted
    assert hist_net.nodes[0].alive()
