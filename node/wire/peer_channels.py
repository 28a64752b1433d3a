"""Outbound gRPC to peers: a channel cache and the gossip transport over it.

Every outgoing message is sealed in a signed envelope; every reply is checked the same
way inbound requests are (network, signature, sender id, freshness, replay). The channel
options mirror the server's explicit limits.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import grpc

from fednode_proto.v1 import node_pb2_grpc
from node.base.identity import Identity
from node.base.logs import log
from node.base.metrics import Metrics
from node.gossip.transport import GossipTransportError, reply_sender_id
from node.wire.envelope import EnvelopeError, ReplayWindow, SeqCounter, check_envelope, seal
from node.wire.tls_hint import TlsHints, tls_mismatch_hint

__all__ = ["GrpcGossipTransport", "PeerCallError", "PeerChannels"]


class PeerCallError(GossipTransportError):
    """An outbound call failed (unreachable, timeout, refused, bad reply)."""


class PeerChannels:
    """A bounded LRU cache of ``grpc.aio`` channels to peer addresses.

    Parameters
    ----------
    options : list of (str, Any)
        Channel options (message size limits, keepalive).
    credentials : grpc.ChannelCredentials or None
        TLS credentials; None means plaintext (the server side must agree).
    max_channels : int, default 256
    """

    def __init__(
        self,
        options: list[tuple[str, Any]],
        credentials: grpc.ChannelCredentials | None = None,
        max_channels: int = 256,
    ) -> None:
        self.options = options
        self.credentials = credentials
        self.max_channels = max_channels
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def stub(self, address: str) -> node_pb2_grpc.NodeStub:
        channel = self._channels.get(address)
        if channel is None:
            if self.credentials is None:
                channel = grpc.aio.insecure_channel(address, options=self.options)
            else:
                channel = grpc.aio.secure_channel(address, self.credentials, options=self.options)
            self._channels[address] = channel
            while len(self._channels) > self.max_channels:
                _, old = self._channels.popitem(last=False)
                task = asyncio.ensure_future(old.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._channels.move_to_end(address)
        return node_pb2_grpc.NodeStub(channel)

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


class GrpcGossipTransport:
    """The membership transport over the ``Node.Gossip`` RPC.

    Implements ``request(address, body, timeout) -> bytes`` as the gossip driver expects:
    the body goes out sealed, the reply comes back verified, and any failure is one
    :class:`PeerCallError` (the driver treats it as a missed probe).
    """

    def __init__(
        self,
        identity: Identity,
        network_id: bytes,
        channels: PeerChannels,
        metrics: Metrics,
    ) -> None:
        self.identity = identity
        self.network_id = network_id
        self.channels = channels
        self.metrics = metrics
        self.seq = SeqCounter()
        self.replay = ReplayWindow()
        self._hints = TlsHints()

    async def request(self, address: str, body: bytes, timeout: float) -> bytes:
        env = seal(self.identity, self.network_id, "gossip", body, seq=self.seq.next("gossip"))
        self.metrics.bytes.labels(direction="out", kind="gossip").inc(env.ByteSize())
        try:
            reply = await self.channels.stub(address).Gossip(env, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            self._explain(address, exc)
            raise PeerCallError(f"{address}: {exc.code().name}: {exc.details()}") from None
        self.metrics.bytes.labels(direction="in", kind="gossip").inc(reply.ByteSize())
        try:
            verified = check_envelope(
                reply, self.network_id, replay=self.replay, kinds=frozenset({"gossip"})
            )
        except EnvelopeError as exc:
            self.metrics.messages_rejected.labels(reason=exc.reason).inc()
            raise PeerCallError(f"{address}: bad reply: {exc}") from None
        # The reply's member record must be the envelope signer's own: a peer must not
        # answer a probe with someone else's (replayed) record.
        if reply_sender_id(verified.body) != verified.sender_id:
            self.metrics.messages_rejected.labels(reason="reply_sender_mismatch").inc()
            raise PeerCallError(f"{address}: reply carries another member's record")
        return verified.body

    def _explain(self, address: str, exc: grpc.aio.AioRpcError) -> None:
        """Log a failure that looks like a TLS mismatch, with the fix (rate limited)."""
        tls = self.channels.credentials is not None
        hint = tls_mismatch_hint(address, exc.details() or "", tls=tls)
        if hint is not None and self._hints.due(address, time.monotonic()):
            log.warning(hint)
