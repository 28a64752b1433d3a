"""Shared fixtures for the gossip tests: deterministic identities and cores."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest

from node.base.identity import Identity
from node.gossip import GossipConfig, Membership
from node.sim.gossip import deterministic_identity

NETWORK = hashlib.sha256(b"test-network").digest()


@pytest.fixture
def network_id() -> bytes:
    return NETWORK


@pytest.fixture
def ident() -> Callable[..., Identity]:
    def make(i: int, difficulty: int = 0) -> Identity:
        return deterministic_identity(b"ident-%d" % i, difficulty)

    return make


@pytest.fixture
def make_core(ident: Callable[..., Identity]) -> Callable[..., Membership]:
    def make(
        i: int,
        *,
        config: GossipConfig | None = None,
        difficulty: int = 0,
        network: bytes = NETWORK,
        **kw: object,
    ) -> Membership:
        return Membership(
            ident(i, difficulty),
            f"10.0.0.{i}:7000",
            config or GossipConfig.profile("lan"),
            network,
            difficulty,
            random.Random(i),
            **kw,  # type: ignore[arg-type]
        )

    return make


class Wire:
    """Synchronous zero-latency delivery between a few cores (unit tests of the core).

    Requests to addresses in ``down`` fail at once; every Send is logged in ``sent``.
    """

    def __init__(self, *cores: Membership) -> None:
        self.cores = {c.address: c for c in cores}
        self.down: set[str] = set()
        self.sent: list[tuple[float, str, str, str]] = []  # (now, from, to, kind)
        self._tokens = 0
        self._waiting: dict[int, tuple[Membership, int]] = {}

    def add(self, core: Membership) -> None:
        self.cores[core.address] = core

    def run(self, now: float, origin: Membership, actions: list) -> None:
        from node.gossip import GossipRejected, Reply, Send

        for a in actions:
            if isinstance(a, Reply):
                back = self._waiting.pop(a.token, None)
                if back is not None:
                    core, rid = back
                    self.run(now, core, core.on_reply(now, rid, a.body))
                continue
            assert isinstance(a, Send)
            self.sent.append((now, origin.address, a.address, a.kind))
            dest = self.cores.get(a.address)
            if dest is None or a.address in self.down or origin.address in self.down:
                self.run(now, origin, origin.on_failure(now, a.request_id))
                continue
            self._tokens += 1
            token = self._tokens
            self._waiting[token] = (origin, a.request_id)
            try:
                acts = dest.receive(now, origin.node_id, a.body, token)
            except GossipRejected:
                self._waiting.pop(token, None)
                self.run(now, origin, origin.on_failure(now, a.request_id))
                continue
            self.run(now, dest, acts)

    def tick(self, now: float) -> None:
        for c in list(self.cores.values()):
            if c.address not in self.down:
                self.run(now, c, c.tick(now))

    def advance(self, start: float, end: float, step: float) -> None:
        t = start
        while t <= end + 1e-9:
            self.tick(t)
            t += step


@pytest.fixture
def wire() -> type[Wire]:
    return Wire
