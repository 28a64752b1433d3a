"""Fixtures for daemon components without processes: a real store, identity and context."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.base.identity import Identity
from node.base.metrics import Metrics
from node.base.settings import NodeSettings
from node.daemon.context import NodeContext
from node.daemon.core import grpc_server_options
from node.daemon.participation import capabilities_for
from node.gossip import Member, MemberState
from node.storage import Store, open_store
from node.training.genesis import Genesis
from node.wire.peer_channels import PeerChannels


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(data_dir=tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="session")
def identity() -> Identity:
    return Identity.generate(0)


def make_context(identity: Identity, store: Store, genesis: Genesis | None = None) -> NodeContext:
    """A context like the daemon's, on a real SQLite store (no server listens)."""
    settings = NodeSettings(listen="127.0.0.1:0", metrics="off", dashboard="off")
    return NodeContext(
        identity=identity,
        genesis=genesis or Genesis(),
        settings=settings,
        store=store,
        metrics=Metrics(),
        channels=PeerChannels(grpc_server_options(settings)),
        address="127.0.0.1:7000",
    )


@pytest.fixture
def ctx(identity: Identity, store: Store) -> NodeContext:
    return make_context(identity, store)


def member(
    identity: Identity,
    state: MemberState = MemberState.ALIVE,
    *,
    address: str = "",
    releasing: bool = True,
) -> Member:
    """A membership snapshot row for ``identity``."""
    now = time.monotonic()
    return Member(
        node_id=identity.node_id,
        public_key=identity.public_key,
        address=address or f"10.0.0.{identity.node_id[0]}:7000",
        state=state,
        incarnation=1,
        last_seen=now - 2.0,
        rtt_ms=3.5,
        capabilities=capabilities_for(("sgd",), releasing=releasing),
        state_since=now,
        first_seen=now - 60.0,
    )


class FakeMembership:
    """A fixed view implementing :class:`node.daemon.context.MembershipView`."""

    def __init__(self, members: list[Member]) -> None:
        self.rows = members
        self.announced: list[bool] = []

    def members(self) -> list[Member]:
        return list(self.rows)

    def get(self, node_id: bytes) -> Member | None:
        return next((m for m in self.rows if m.node_id == node_id), None)

    def is_member(self, node_id: bytes) -> bool:
        m = self.get(node_id)
        return m is not None and m.state in (MemberState.ALIVE, MemberState.SUSPECT)

    def standing_s(self, node_id: bytes) -> float | None:
        return 60.0 if self.is_member(node_id) else None

    def sample(self, k: int) -> list[Member]:
        return [m for m in self.rows if self.is_member(m.node_id)][:k]

    def takes_part(self, node_id: bytes) -> bool:
        return self.is_member(node_id)

    def withdrawn(self) -> int:
        return 0

    def set_releasing(self, releasing: bool) -> None:
        self.announced.append(releasing)
