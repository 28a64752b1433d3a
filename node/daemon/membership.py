"""Membership on the daemon: the gossip core over gRPC, with a persisted peer table.

Start-up: the incarnation is one above the last one this node used (kept in SQL), the
signed records of the peers it knew are restored from the peer table (verified again, so
a tampered table injects nothing), and the node joins through the bootstrap addresses
*and* those stored peers, so a restarted node rejoins even when every bootstrap is gone.
Every state change is written back to the peer table (off the event loop).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
from typing import TYPE_CHECKING, Any

from fednode_proto.v1 import gossip_pb2
from node.base.logs import log
from node.daemon.participation import capabilities_for, releases
from node.gossip import GossipConfig, Member, Membership, MembershipDriver, MemberState
from node.gossip.records import MemberRecord
from node.storage.records import PeerRecord
from node.wire.peer_channels import GrpcGossipTransport

if TYPE_CHECKING:
    from node.daemon.core import Daemon

__all__ = ["DaemonMembership", "start_membership"]

STATE_INCARNATION = "gossip.incarnation"


class DaemonMembership:
    """What the rest of the daemon sees of membership."""

    def __init__(self, daemon: Daemon, core: Membership, driver: MembershipDriver) -> None:
        self.daemon = daemon
        self.core = core
        self.driver = driver
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._exported: dict[str, int] = {}

    def members(self) -> list[Member]:
        return self.core.members()

    def get(self, node_id: bytes) -> Member | None:
        return self.core.get(node_id)

    def is_member(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is a live (alive or suspect) member of this node's view."""
        m = self.core.get(node_id)
        return m is not None and m.state in (MemberState.ALIVE, MemberState.SUSPECT)

    def standing_s(self, node_id: bytes) -> float | None:
        """Seconds since ``node_id`` entered this node's view; None if it is not a live member."""
        m = self.core.get(node_id)
        if m is None or m.state not in (MemberState.ALIVE, MemberState.SUSPECT):
            return None
        return max(0.0, self.driver.clock() - m.first_seen)

    def is_established(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is an established member (answered us, old enough).

        Established members are never evicted for newcomers and lead :meth:`sample`; see
        ``promotion_min_age`` in :mod:`node.gossip.config`.
        """
        m = self.core.get(node_id)
        return m is not None and m.established and m.state is MemberState.ALIVE

    def sample(self, k: int) -> list[Member]:
        """Up to ``k`` live members that release updates and are not banned, established first.

        Established members are drawn at random, weighted by their age in the view; only
        when fewer than ``k`` qualify is the rest filled with the oldest other members,
        so a burst of fresh identities cannot capture training's fan-out. A member that announced
        :data:`~node.daemon.participation.NO_RELEASE` would neither push nor answer: sampling it
        would only make this node wait for it.
        """
        from node.daemon.runtime import is_banned

        picked = self.core.sample(k + len(self.daemon.banned) + 4 + self.withdrawn())
        return [
            m for m in picked if releases(m.capabilities) and not is_banned(self.daemon, m.node_id)
        ][:k]

    def withdrawn(self) -> int:
        """Live members that announced they release no updates."""
        return sum(
            1
            for m in self.core.members(states=(MemberState.ALIVE, MemberState.SUSPECT))
            if not releases(m.capabilities)
        )

    def takes_part(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is a live member that still releases updates."""
        m = self.core.get(node_id)
        return (
            m is not None
            and m.state in (MemberState.ALIVE, MemberState.SUSPECT)
            and releases(m.capabilities)
        )

    @property
    def releasing(self) -> bool:
        """What this node's own record announces (False after :meth:`set_releasing`)."""
        return releases(self.core.capabilities)

    def set_releasing(self, releasing: bool) -> None:
        """Announce to every member whether this node still releases updates.

        Re-signs this node's record at a higher incarnation (stored, so a restart starts
        above it) with or without :data:`~node.daemon.participation.NO_RELEASE`.
        """
        caps = capabilities_for(self.core.capabilities, releasing=releasing)
        if not self.core.set_capabilities(self.driver.clock(), caps):
            return
        assert self.daemon.store is not None
        self.daemon.store.set_state(STATE_INCARNATION, self.core.incarnation)
        log.warning(
            "announced to peers: this node %s",
            "releases updates again" if releasing else "releases no more updates",
            extra={"fields": {"incarnation": self.core.incarnation}},
        )

    def start(self, addresses: list[str]) -> None:
        self._task = asyncio.create_task(self.driver.run(self._stop), name="membership")
        self.driver.join(addresses)

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(self.driver.leave(timeout=0.8), 1.0)
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 1.0)
            except (TimeoutError, asyncio.CancelledError, Exception):
                self._task.cancel()

    def update_gauges(self) -> None:
        counts = {s.value: 0 for s in MemberState}
        for m in self.core.members():
            counts[m.state.value] += 1
        for state, n in counts.items():
            self.daemon.metrics.peers.labels(state=state).set(n)
        for reason, n in self.core.rejected.items():
            # The core counts its own refusals; export the increase since last time.
            seen = self._exported.get(reason, 0)
            if n > seen:
                self.daemon.metrics.gossip_rejected.labels(reason=reason).inc(n - seen)
                self._exported[reason] = n


def _encode_record(record: MemberRecord) -> str:
    return base64.b64encode(record.to_pb().SerializeToString()).decode()


def _decode_record(text: str) -> MemberRecord | None:
    try:
        msg = gossip_pb2.MemberRecord()
        msg.ParseFromString(base64.b64decode(text, validate=True))
        return MemberRecord.from_pb(msg)
    except Exception:  # a damaged row is skipped, never fatal
        return None


def _report_write_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("peer table write failed: %s", fut.exception())


async def start_membership(daemon: Daemon) -> DaemonMembership:
    """Create the core and driver, hook them into the service, join the network."""
    assert daemon.identity is not None and daemon.store is not None and daemon.service is not None
    store = daemon.store
    loop = asyncio.get_running_loop()
    config = GossipConfig.profile(daemon.genesis.network.gossip_profile)
    stored_incarnation = store.get_state(STATE_INCARNATION)
    incarnation = 0 if stored_incarnation is None else int(stored_incarnation) + 1
    store.set_state(STATE_INCARNATION, incarnation)
    clock = time.monotonic
    core = Membership(
        daemon.identity,
        daemon.address,
        config,
        daemon.genesis.network_id,
        daemon.genesis.network.pow_difficulty,
        random.Random(),
        now=clock(),
        incarnation=incarnation,
        capabilities=capabilities_for(
            (daemon.genesis.learner.kind,),
            # A restarted node whose budget is already spent says so from its first record.
            releasing=daemon.guard is None or daemon.guard.releasing or not daemon.guard.private,
        ),
        wall_offset=time.time() - clock(),
    )
    stored = store.list_peers()
    records = [r for r in (_decode_record(p.capabilities.get("record", "")) for p in stored) if r]
    restored = core.restore(records)
    transport = GrpcGossipTransport(
        daemon.identity, daemon.genesis.network_id, daemon.channels, daemon.metrics
    )

    def persist(member: Member) -> None:
        record = core.record_of(member.node_id)  # the signed record, for the peer table
        row = PeerRecord(
            node_id=member.node_id.hex(),
            address=member.address,
            public_key=member.public_key,
            pow_nonce=record.pow_nonce if record is not None else 0,
            incarnation=member.incarnation,
            state=member.state.value,
            rtt_ms=member.rtt_ms,
            capabilities={"record": _encode_record(record)} if record is not None else {},
        )
        fut = loop.run_in_executor(None, store.upsert_peer, row)
        fut.add_done_callback(_report_write_failure)

    driver = MembershipDriver(core, transport, clock=clock, on_change=persist)
    membership = DaemonMembership(daemon, core, driver)
    daemon.membership = membership
    daemon.service.gossip = driver
    addresses = [a for a in daemon.bootstrap if a != daemon.address]
    log.info(
        "joining",
        extra={
            "fields": {
                "bootstrap": ",".join(addresses) or "-",
                "stored_peers": restored,
                "incarnation": incarnation,
                "profile": config_name(daemon),
            }
        },
    )
    membership.start(addresses)
    return membership


def config_name(daemon: Daemon) -> str:
    return daemon.genesis.network.gossip_profile
