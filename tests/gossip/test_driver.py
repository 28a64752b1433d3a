"""The asyncio driver over the in-memory async transport, in real (short) time."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time

import pytest

from fednode_proto.v1 import gossip_pb2 as pb
from node.gossip import (
    AsyncMemoryNetwork,
    GossipConfig,
    GossipRejected,
    GossipTransportError,
    Member,
    Membership,
    MembershipDriver,
    MemberState,
)
from node.gossip.transport import reply_sender_id
from node.sim.gossip import deterministic_identity

NET = hashlib.sha256(b"driver-test").digest()
CFG = GossipConfig.profile("test")


def make(i: int, net: AsyncMemoryNetwork, changes: list[tuple[bytes, Member]]) -> MembershipDriver:
    ident = deterministic_identity(b"drv-%d" % i)
    address = f"127.0.0.1:{7100 + i}"
    core = Membership(ident, address, CFG, NET, 0, random.Random(i), now=time.monotonic())
    driver = MembershipDriver(
        core, net.transport(core.node_id), on_change=lambda m: changes.append((core.node_id, m))
    )
    net.register(address, core.node_id, driver.handle)
    return driver


async def wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return bool(pred())


def full_view(drivers: list[MembershipDriver]) -> bool:
    for d in drivers:
        alive = {m.node_id for m in d.core.members(states=[MemberState.ALIVE])}
        if alive != {x.core.node_id for x in drivers if x is not d}:
            return False
    return True


def test_driver_join_failure_detection_and_leave() -> None:
    async def scenario() -> None:
        net = AsyncMemoryNetwork(latency=0.001)
        changes: list[tuple[bytes, Member]] = []
        drivers = [make(i, net, changes) for i in range(5)]
        stops = [asyncio.Event() for _ in drivers]
        tasks = [asyncio.create_task(d.run(s)) for d, s in zip(drivers, stops, strict=True)]
        for d in drivers[1:]:
            d.join([drivers[0].core.address])
        assert await wait_for(lambda: full_view(drivers), 5.0)
        # RTT of direct pings is measured.
        assert await wait_for(
            lambda: any(m.rtt_ms is not None for m in drivers[1].core.members()), 2.0
        )
        rtts = [m.rtt_ms for m in drivers[1].core.members() if m.rtt_ms is not None]
        assert all(0 < r < 1000 for r in rtts)
        # Crash node 4: the others mark it dead.
        victim = drivers[4]
        net.unregister(victim.core.address)
        stops[4].set()
        rest = drivers[:4]
        assert await wait_for(
            lambda: all(
                (m := d.core.get(victim.core.node_id)) is not None and m.state is MemberState.DEAD
                for d in rest
            ),
            10.0,
        )
        assert await wait_for(lambda: full_view(rest), 5.0)
        # Node 3 leaves gracefully: the others record "left", not "dead".
        await drivers[3].leave()
        stops[3].set()
        assert await wait_for(
            lambda: all(
                (m := d.core.get(drivers[3].core.node_id)) is not None
                and m.state is MemberState.LEFT
                for d in drivers[:3]
            ),
            5.0,
        )
        for s in stops:
            s.set()
        await asyncio.gather(*tasks)
        # on_change saw node 0 learn of every other node, then the death and the leave.
        seen_by_0 = {(m.node_id, m.state) for (obs, m) in changes if obs == drivers[0].core.node_id}
        assert (victim.core.node_id, MemberState.DEAD) in seen_by_0
        assert (drivers[3].core.node_id, MemberState.LEFT) in seen_by_0
        assert not drivers[0].core.rejected

    asyncio.run(scenario())


def test_driver_handle_refuses_bad_input_and_transport_reports_it() -> None:
    async def scenario() -> None:
        net = AsyncMemoryNetwork()
        changes: list[tuple[bytes, Member]] = []
        a = make(10, net, changes)
        with pytest.raises(GossipRejected) as err:
            await a.handle(b"\x01" * 32, b"not a protobuf \xff\xff")
        assert err.value.reason in {"malformed", "sender_mismatch"}
        b = make(11, net, changes)
        t = net.transport(b.core.node_id)
        with pytest.raises(GossipTransportError, match="refused"):
            await t.request(a.core.address, b"\x0a\x00", 0.5)
        with pytest.raises(GossipTransportError, match="no reply"):
            await t.request("127.0.0.1:1", b"", 0.05)
        assert sum(a.core.rejected.values()) == 2
        # What a real transport uses to bind a reply body to its envelope's signer.
        ping = await a.handle(
            b.core.node_id, b.core._message(ping=pb.Ping(seq=1, target_id=a.core.node_id))
        )
        assert reply_sender_id(ping) == a.core.node_id
        with pytest.raises(GossipTransportError):
            reply_sender_id(b"\xff\xff")

    asyncio.run(scenario())
