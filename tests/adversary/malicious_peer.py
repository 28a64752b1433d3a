"""A malicious peer built from fednode's own modules: it signs correctly and lies.

It talks to a real daemon over real gRPC with a real Ed25519 identity: either a *free key*
(generated on the spot, never joined the membership) or the key of a member (a daemon that
joined by gossip, whose identity file the test reads). Every message it sends is a validly
signed envelope (``node.wire.envelope.seal``); what it lies about is the content: who it is,
what it declares, how much it sends, how it encodes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc

from fednode_proto.v1 import node_pb2_grpc
from fednode_proto.v1.envelope_pb2 import Envelope, Receipt
from fednode_proto.v1.training_pb2 import (
    HistoryGossip,
    PullRequest,
    ScalarBatch,
    TensorChunk,
    TensorHeader,
)
from node.base.identity import Identity
from node.wire.envelope import SeqCounter, seal
from node.wire.exchange import CHUNK_BYTES

__all__ = ["Adversary", "CountingStream", "raw_header"]

#: The client's own limit: large enough for every attack stream's single messages.
_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def raw_header(
    payload: bytes, *, numel: int | None = None, dtype: str = "float32", round: int = 0
) -> TensorHeader:
    """A header for ``payload``; ``numel``/``dtype`` may lie about it."""
    count = len(payload) // 4 if numel is None else numel
    return TensorHeader(
        format=TensorHeader.RAW_LE,
        dtype=dtype,
        shape=[count],
        total_bytes=4 * count if numel is not None else len(payload),
        payload_sha256=hashlib.sha256(payload).digest(),
        round=round,
        base_round=round,
    )


@dataclass
class CountingStream:
    """A lazy request stream that records how many chunks gRPC actually pulled from it.

    A receiver that stops reading at the first bad byte makes the call end early; the
    count then stays far below ``len(chunks)``.
    """

    chunks: Iterable[TensorChunk]
    pulled: int = 0
    bytes_pulled: int = 0

    def __iter__(self) -> Iterator[TensorChunk]:
        for chunk in self.chunks:
            self.pulled += 1
            self.bytes_pulled += len(chunk.data)
            yield chunk


class Adversary:
    """One malicious identity aimed at one daemon.

    Parameters
    ----------
    identity : Identity
        The key it signs with (a free key, or a member's).
    network_id : bytes
        The target network (it speaks the right network: that is not what it lies about).
    address : str
        The target daemon's peer address.
    """

    def __init__(self, identity: Identity, network_id: bytes, address: str) -> None:
        self.identity = identity
        self.network_id = network_id
        self.channel = grpc.insecure_channel(address, options=_OPTIONS)
        self.stub = node_pb2_grpc.NodeStub(self.channel)
        self.seq = SeqCounter()

    def close(self) -> None:
        self.channel.close()

    def seal(self, kind: str, body: bytes, round: int = 0) -> Envelope:
        """A correctly signed envelope of ``kind``."""
        return seal(
            self.identity,
            self.network_id,
            kind,
            body,
            seq=self.seq.next(kind),
            round=round,
        )

    # --- updates -------------------------------------------------------------------------

    def update_stream(
        self,
        header: TensorHeader,
        payload: bytes,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        extra: Iterable[bytes] = (),
    ) -> CountingStream:
        """The stream of ``payload`` under ``header`` (signed), then ``extra`` chunks."""
        env = self.seal("update", header.SerializeToString(), round=header.round)

        def chunks() -> Iterator[TensorChunk]:
            yield TensorChunk(header=env, data=payload[:chunk_bytes])
            for start in range(chunk_bytes, len(payload), chunk_bytes):
                yield TensorChunk(data=payload[start : start + chunk_bytes])
            for data in extra:
                yield TensorChunk(data=data)

        return CountingStream(chunks())

    def push(
        self,
        stream: CountingStream,
        *,
        compression: grpc.Compression | None = None,
        timeout: float = 30.0,
    ) -> Receipt:
        """Send an update stream; returns the receipt or raises ``grpc.RpcError``."""
        receipt: Receipt = self.stub.PushUpdate(
            iter(stream), timeout=timeout, compression=compression
        )
        return receipt

    # --- the other paths -------------------------------------------------------------------

    def pull_checkpoint(self, timeout: float = 10.0) -> list[TensorChunk]:
        """Ask for the node's checkpoint (``Pull``, ``CHECKPOINT``)."""
        body = PullRequest(what=PullRequest.CHECKPOINT).SerializeToString()
        return list(self.stub.Pull(self.seal("request", body), timeout=timeout))

    def push_scalars(self, batch: ScalarBatch, round: int = 0) -> Receipt:
        receipt: Receipt = self.stub.PushScalars(
            self.seal("spsa", batch.SerializeToString(), round=round), timeout=10.0
        )
        return receipt

    def push_history(self, batch: HistoryGossip) -> Receipt:
        receipt: Receipt = self.stub.PushHistory(
            self.seal("history", batch.SerializeToString()), timeout=10.0
        )
        return receipt

    def raw(
        self, method: str, data: bytes, *, compression: grpc.Compression | None = None
    ) -> bytes:
        """Send ``data`` as the request bytes of ``/fednode.v1.Node/<method>``.

        The reply is read as a unary answer or as the first message of a stream (``Pull``).
        """
        if method in {"Pull", "PullScalars"}:
            stream = self.channel.unary_stream(f"/fednode.v1.Node/{method}")
            first: bytes = next(iter(stream(data, timeout=10.0, compression=compression)))
            return first
        call = self.channel.unary_unary(f"/fednode.v1.Node/{method}")
        reply: bytes = call(data, timeout=10.0, compression=compression)
        return reply
