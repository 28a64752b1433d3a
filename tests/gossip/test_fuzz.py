"""Arbitrary input to the core never raises anything but GossipRejected."""

from __future__ import annotations

import hashlib
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fednode_proto.v1 import gossip_pb2 as pb
from node.gossip import GossipConfig, GossipRejected, Membership
from node.sim.gossip import deterministic_identity

NET = hashlib.sha256(b"fuzz").digest()
CFG = GossipConfig.profile(
    "lan",
    inbound_rate=1e9,
    inbound_burst=1e9,
    introductions_rate_global=1e9,
    introductions_burst_global=1e9,
    introductions_rate_per_introducer=1e9,
    introductions_burst_per_introducer=1e9,
    join_rate_per_peer=1e9,
    join_burst_per_peer=1e9,
)
ME = deterministic_identity(b"fuzz-me")
PEER = deterministic_identity(b"fuzz-peer")


def core() -> Membership:
    return Membership(ME, "10.0.0.1:1", CFG, NET, 0, random.Random(0))


PEER_RECORD = Membership(PEER, "10.0.0.2:1", CFG, NET, 0, random.Random(1)).record.to_pb()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes(body: bytes) -> None:
    c = core()
    try:
        c.receive(0.0, PEER.node_id, body, token=1)
    except GossipRejected as exc:
        assert exc.reason in c.rejected


blobs = st.binary(max_size=40)
statements = st.builds(
    pb.Statement,
    kind=st.integers(0, 5),
    target_id=blobs,
    incarnation=st.integers(0, 2**64 - 1),
    reporter_id=blobs,
    network_id=st.sampled_from([NET, b"", bytes(32)]),
    signature=blobs,
)
records = st.builds(
    pb.MemberRecord,
    node_id=blobs,
    public_key=blobs,
    address=st.text(max_size=30),
    pow_nonce=st.integers(0, 2**64 - 1),
    incarnation=st.integers(0, 2**64 - 1),
    network_id=st.sampled_from([NET, b""]),
    capabilities=st.lists(st.text(max_size=80), max_size=40),
    signature=blobs,
)
updates = st.one_of(
    st.builds(lambda r: pb.Update(alive=r), records),
    st.builds(lambda s: pb.Update(statement=s), statements),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["ping", "ping_req", "gossip", "push_pull", "join", "ack"]),
    ups=st.lists(updates, max_size=6),
    states=st.lists(st.builds(pb.MemberState, record=records, statement=statements), max_size=4),
    target=blobs,
    address=st.text(max_size=20),
    timeout_ms=st.integers(0, 2**32 - 1),
)
def test_structured_garbage(
    kind: str,
    ups: list[pb.Update],
    states: list[pb.MemberState],
    target: bytes,
    address: str,
    timeout_ms: int,
) -> None:
    c = core()
    msg = pb.GossipMessage(sender=PEER_RECORD)
    if kind == "ping":
        msg.ping.target_id = target
    elif kind == "ping_req":
        msg.ping_req.CopyFrom(
            pb.PingReq(seq=1, target_id=target, target_address=address, timeout_ms=timeout_ms)
        )
    elif kind == "push_pull":
        msg.push_pull.states.extend(states)
    else:
        getattr(msg, kind).SetInParent()
    msg.updates.extend(ups)
    try:
        c.receive(0.0, PEER.node_id, msg.SerializeToString(), token=1)
    except GossipRejected as exc:
        assert exc.reason in c.rejected
    # Whatever came in, the garbage did not become members (only the real peer may).
    assert {m.node_id for m in c.members()} <= {PEER.node_id}
    c.tick(1.0)
