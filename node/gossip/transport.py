"""The transport the asyncio driver needs, and an in-memory asyncio implementation of it.

A transport performs one request/reply exchange of gossip bodies with the node at an
address. The daemon implements it over gRPC (each body wrapped in a signed envelope of
kind ``gossip``); :class:`AsyncMemoryNetwork` implements it in memory so the driver can
be tested without gRPC, with latency, loss, partitions and crashed nodes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from google.protobuf.message import DecodeError

from fednode_proto.v1 import gossip_pb2 as pb
from node.base.identity import node_id_for

from .core import GossipRejected

__all__ = [
    "AsyncMemoryNetwork",
    "GossipTransport",
    "GossipTransportError",
    "Handler",
    "MemoryTransport",
    "reply_sender_id",
]

Handler = Callable[[bytes, bytes], Awaitable[bytes]]
"""``handler(sender_id, body) -> reply body`` (``MembershipDriver.handle`` fits)."""


class GossipTransportError(Exception):
    """A request failed: unreachable, refused, timed out, or the reply did not verify."""


class GossipTransport(Protocol):
    """One request/reply exchange with the node at ``address``.

    Implementations must raise :class:`GossipTransportError` on any failure, including
    the timeout, and must check the reply's envelope (network id, signature, freshness)
    before returning its body; the membership core then checks that the body's sender
    record belongs to the member it asked.
    """

    async def request(self, address: str, body: bytes, timeout: float) -> bytes:
        """Send ``body`` to ``address`` and return the reply body within ``timeout`` s."""
        ...


def reply_sender_id(body: bytes) -> bytes:
    """Node id of the member record a gossip reply claims to come from.

    A real transport compares it with the verified reply envelope's ``sender_id`` so a
    peer cannot answer with someone else's (replayed) record.

    Raises
    ------
    GossipTransportError
        The body is not a gossip message with a well-formed sender record.
    """
    msg = pb.GossipMessage()
    try:
        msg.ParseFromString(body)
        return node_id_for(bytes(msg.sender.public_key))
    except (DecodeError, ValueError):
        raise GossipTransportError("reply is not a gossip message with a sender") from None


class AsyncMemoryNetwork:
    """Routes requests between in-process drivers by address (real time, asyncio).

    Parameters
    ----------
    latency : float, default 0.0
        One-way delay in seconds added to every request and reply.
    loss : float, default 0.0
        Probability that a request or its reply is lost (the caller then times out).
    seed : int, default 0
        Seed of the loss draws.
    """

    def __init__(self, *, latency: float = 0.0, loss: float = 0.0, seed: int = 0) -> None:
        if latency < 0 or not 0 <= loss < 1:
            raise ValueError("latency must be >= 0 and loss in [0, 1)")
        self.latency = latency
        self.loss = loss
        self.rng = random.Random(seed)
        self._handlers: dict[str, Handler] = {}
        self._groups: dict[str, int] | None = None
        self._address_of: dict[bytes, str] = {}

    def register(self, address: str, node_id: bytes, handler: Handler) -> None:
        """Serve ``handler`` at ``address`` for the node ``node_id``."""
        self._handlers[address] = handler
        self._address_of[node_id] = address

    def unregister(self, address: str) -> None:
        """Stop serving ``address`` (a crashed or stopped node)."""
        self._handlers.pop(address, None)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Drop traffic between addresses of different groups."""
        self._groups = {a: i for i, g in enumerate(groups) for a in g}

    def heal(self) -> None:
        """Remove the partition."""
        self._groups = None

    def transport(self, node_id: bytes) -> MemoryTransport:
        """The transport the node ``node_id`` sends with."""
        return MemoryTransport(self, node_id)

    def _blocked(self, src: bytes, dst: str) -> bool:
        if self._groups is None:
            return False
        a = self._address_of.get(src, "")
        return self._groups.get(a, -1) != self._groups.get(dst, -1)

    async def _call(self, src: bytes, address: str, body: bytes) -> bytes:
        if self.latency:
            await asyncio.sleep(self.latency)
        handler = self._handlers.get(address)
        if handler is None or self._blocked(src, address) or self.rng.random() < self.loss:
            await asyncio.Event().wait()  # silence: the caller's timeout fires
        assert handler is not None
        try:
            reply = await handler(src, body)
        except GossipRejected as exc:
            raise GossipTransportError(f"refused by {address}: {exc.reason}") from None
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.rng.random() < self.loss or address not in self._handlers:
            await asyncio.Event().wait()
        return reply


class MemoryTransport:
    """:class:`GossipTransport` of one node on an :class:`AsyncMemoryNetwork`."""

    def __init__(self, network: AsyncMemoryNetwork, node_id: bytes) -> None:
        self.network = network
        self.node_id = node_id

    async def request(self, address: str, body: bytes, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(self.network._call(self.node_id, address, body), timeout)
        except TimeoutError:
            raise GossipTransportError(f"no reply from {address} in {timeout:.3f} s") from None
