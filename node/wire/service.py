"""The peer-to-peer ``Node`` gRPC service.

This layer does I/O and admission only: per-peer rate limits, size limits, envelope
checks (network, signature, sender id, freshness, replay), then one admission decision per
request (``node/wire/admission.py``: banned, quarantined, not a member) for every path except
membership gossip, before any body is read. What a message *means*
is decided by the protocol cores behind two small interfaces, :class:`GossipHandler` and
:class:`TrainingHandler`, so the same cores run over gRPC and over the in-memory
transport. A refused request gets a gRPC status whose details start with a stable reason
code, is counted in ``fednode_messages_rejected_total{reason}``, and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from fednode_proto.v1 import node_pb2_grpc
from fednode_proto.v1.envelope_pb2 import Envelope, Receipt
from fednode_proto.v1.evidence_pb2 import Evidence
from fednode_proto.v1.training_pb2 import (
    HistoryGossip,
    PullRequest,
    ScalarBatch,
    TensorChunk,
    TensorHeader,
)
from node.base.errors import ReasonError, fault_reasons
from node.base.identity import Identity
from node.base.logs import log
from node.base.metrics import Metrics
from node.base.ratelimit import RateLimiter
from node.gossip import GossipRejected
from node.wire.admission import AdmissionPolicy, Admit, MembershipView, SenderFacts, decide
from node.wire.envelope import (
    EnvelopeError,
    ReplayWindow,
    SeqCounter,
    Verified,
    check_envelope,
    seal,
)
from node.wire.equivocation import EquivocationError
from node.wire.update_header import MIN_CHUNK_BYTES, UpdateError, check_header

__all__ = [
    "FAULT_REASONS",
    "EvidenceHandler",
    "GossipHandler",
    "HistoryHandler",
    "NodeService",
    "Rejected",
    "TrainingHandler",
    "Undecodable",
    "add_node_service",
    "compression_of",
]


class Rejected(
    ReasonError,
    # Refusals that say the (authenticated) sender misbehaved. Honest peers also get
    # refused for being slow, early or busy (stale, future, done, duplicate, not ready):
    # those are not faults and never lower a reputation.
    faults=UpdateError.FAULTS  # the training runtime passes decode errors on
    | EquivocationError.FAULTS  # node/daemon/evidence_gossip.py passes these on
    | {
        # The update stream itself (this module).
        "malformed",
        "bad_hash",
        "too_many_chunks",
        # Update and SPSA batch contents (node/daemon/training_runtime.py, node/wire/spsa_batch.py).
        "bad_round",
        "unknown_seed",
        # History reports (node/daemon/history_gossip.py): an honest relay verifies before
        # it forwards, so a bad report is the relay's fault.
        "history_malformed",
        "history_bad_reporter",
        "history_bad_shape",
        "history_bad_signature",
    },
    others=(UpdateError.REASONS - UpdateError.FAULTS)
    | (EquivocationError.REASONS - EquivocationError.FAULTS)
    | {
        # Timing, gossip repetition and this node's own state.
        "not_ready",
        "self",
        "done",
        "future",
        "stale",
        "duplicate",
        "stale_round",
        "future_round",
        "not_training",
        "wrong_learner",
        "unsupported",
        # Update contents an honest peer may produce (a diverged model).
        "norm_exceeded",
        # SPSA batch checks (node/wire/spsa_batch.py, node/training/spsa/engine.py) that are
        # not charged to the sender (unlike bad_dtype, bad_shape, nonfinite and unknown_seed).
        "oversized",
        "bad_origin_id",
        "bad_origin_signature",
        "bad_scalar",
        "out_of_bounds",
        "duplicate_seed",
        "equivocation",
        "unknown_origin",
        "banned",
        # This node failed to process a message (a bug of ours, logged with its traceback).
        "internal",
        # Sampled participation (node/training/sampled.py): an update from a member this
        # node's view did not draw for that role; views can differ for a moment.
        "role",
    },
):
    """A handler refuses a message; ``reason`` is a stable code."""


#: The protobuf message a push carries (:meth:`NodeService._dispatch`).
_Body = TypeVar("_Body", bound=Message)
#: What a served stream yields (:meth:`NodeService._guarded`).
_Item = TypeVar("_Item")

FAULT_REASONS = Rejected.FAULTS | fault_reasons(GossipRejected, prefix="gossip_")
"""Reason codes charged to the authenticated sender (``on_fault``), derived from the error
classes' declarations; membership refusals are counted as ``gossip_<reason>``."""


class GossipHandler(Protocol):
    """Membership core behind the ``Gossip`` RPC."""

    async def handle(self, sender_id: bytes, body: bytes) -> bytes:
        """Answer one membership message; raise :class:`Rejected` or ValueError if bad."""
        ...


class HistoryHandler(Protocol):
    """Sybil-weighting history exchange behind ``PushHistory`` (node/daemon/history_gossip.py)."""

    async def on_history(self, msg: Verified, batch: HistoryGossip) -> None:
        """Take a verified batch of history reports; raise :class:`Rejected` to refuse it."""
        ...


class EvidenceHandler(Protocol):
    """Equivocation detection behind ``PushEvidence`` (node/daemon/evidence_gossip.py)."""

    def seen_update(self, env: Envelope, msg: Verified, header: TensorHeader) -> None:
        """Every update header the service verified (its signed first-chunk envelope)."""
        ...

    def seen_batch(self, batch: ScalarBatch, *, relay: bool = False) -> None:
        """Every SPSA scalar batch an admitted member pushed (its origin signature unchecked);
        ``relay`` when the pusher is the batch's origin."""
        ...

    async def on_evidence(self, msg: Verified, evidence: Evidence) -> None:
        """Take a verified sighting or proof; raise :class:`Rejected` to refuse it."""
        ...


class TrainingHandler(Protocol):
    """Training runtime behind the update/scalar RPCs.

    ``update_numel`` is the number of float32 values an update of this model has, or None
    when the learner takes no updates (SPSA): the service checks a stream's signed header
    against it before reading the body.
    """

    @property
    def update_numel(self) -> int | None: ...

    async def on_update(self, msg: Verified, header: TensorHeader, payload: bytes) -> str | None:
        """Take a verified, complete update; raise :class:`Rejected` to refuse it.

        Returns a note for the (accepted) receipt, e.g. that no answer will come.
        """
        ...

    async def on_scalars(self, msg: Verified, batch: ScalarBatch) -> None:
        """Take a verified SPSA scalar batch; raise :class:`Rejected` to refuse it."""
        ...

    def pull(self, msg: Verified, request: PullRequest) -> AsyncIterator[TensorChunk]:
        """Stream an update or checkpoint for a verified request."""
        ...

    def pull_scalars(self, msg: Verified, request: PullRequest) -> AsyncIterator[Envelope]:
        """Stream scalar batches since a round."""
        ...


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    """The rate-limit key of a request: the peer's host, or host and port on loopback.

    Every node of a local testnet dials from 127.0.0.1: one bucket per host would make
    them throttle each other. A process on this host can open connections at will anyway,
    so telling loopback peers apart by their connection costs no protection.
    """
    peer = context.peer() or ""
    # "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555" / "unix:..."
    kind, _, rest = peer.partition(":")
    if kind in {"ipv4", "ipv6"}:
        host = rest.rsplit(":", 1)[0]
        if host.startswith("127.") or host == "[::1]":
            return rest
        return host
    return peer


class Undecodable:
    """Stands for a request whose bytes are not the message the RPC expects.

    gRPC's default deserializer raises, which the library answers with UNKNOWN and no
    reason; the service answers this placeholder with INVALID_ARGUMENT ``undecodable``, or
    UNIMPLEMENTED ``compressed`` when ``compression`` names the algorithm the bytes are
    compressed with (see :func:`compression_of`).
    """

    __slots__ = ("compression", "size")

    def __init__(self, size: int, compression: str | None = None) -> None:
        self.size = size
        self.compression = compression


def compression_of(data: bytes) -> str | None:
    """The gRPC message compression ``data`` is framed in, if it looks compressed.

    The server is run with ``grpc.per_message_decompression`` off (node/daemon/core.py), so a
    peer's compressed message reaches the service as it was sent, never inflated. gRPC's
    ``gzip`` is RFC 1952 (magic ``1f 8b``: a first byte no protobuf message can start with,
    wire type 7) and its ``deflate`` is RFC 1950 zlib (method 8, window at most 32 KiB,
    header checksum divisible by 31). Only called on bytes that did not parse as the
    expected message, so a valid message is never mistaken for a compressed one.

    Parameters
    ----------
    data : bytes
        Request bytes that are not the RPC's protobuf message.

    Returns
    -------
    str or None
        ``"gzip"``, ``"deflate"``, or None for bytes that are just not the message.
    """
    if len(data) < 2:
        return None
    if data[0] == 0x1F and data[1] == 0x8B:
        return "gzip"
    if data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and ((data[0] << 8) | data[1]) % 31 == 0:
        return "deflate"
    return None


def _tolerant(parse: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def deserialize(data: bytes) -> object:
        try:
            return parse(data)
        except DecodeError:
            return Undecodable(len(data), compression_of(data))

    return deserialize


def add_node_service(service: NodeService, server: grpc.aio.Server) -> None:
    """Register ``service`` like ``add_NodeServicer_to_server``, with tolerant decoding."""
    env, chunk = Envelope.FromString, TensorChunk.FromString
    handlers = {
        "Gossip": grpc.unary_unary_rpc_method_handler(
            service.Gossip,
            request_deserializer=_tolerant(env),
            response_serializer=Envelope.SerializeToString,
        ),
        "PushUpdate": grpc.stream_unary_rpc_method_handler(
            service.PushUpdate,
            request_deserializer=_tolerant(chunk),
            response_serializer=Receipt.SerializeToString,
        ),
        "PushScalars": grpc.unary_unary_rpc_method_handler(
            service.PushScalars,
            request_deserializer=_tolerant(env),
            response_serializer=Receipt.SerializeToString,
        ),
        "Pull": grpc.unary_stream_rpc_method_handler(
            service.Pull,
            request_deserializer=_tolerant(env),
            response_serializer=TensorChunk.SerializeToString,
        ),
        "PullScalars": grpc.unary_stream_rpc_method_handler(
            service.PullScalars,
            request_deserializer=_tolerant(env),
            response_serializer=Envelope.SerializeToString,
        ),
        "PushHistory": grpc.unary_unary_rpc_method_handler(
            service.PushHistory,
            request_deserializer=_tolerant(env),
            response_serializer=Receipt.SerializeToString,
        ),
        "PushEvidence": grpc.unary_unary_rpc_method_handler(
            service.PushEvidence,
            request_deserializer=_tolerant(env),
            response_serializer=Receipt.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("fednode.v1.Node", handlers),)
    )


class NodeService(node_pb2_grpc.NodeServicer):
    """Admission control in front of the membership and training cores.

    Parameters
    ----------
    identity : Identity
        This node's key (signs replies).
    network_id : bytes
        Messages for any other network are refused.
    metrics : Metrics
    limiter : RateLimiter
        Per peer-address request budget.
    max_update_bytes : int
        Largest whole update stream accepted.
    is_banned : callable
        ``is_banned(sender_id) -> bool``; banned senders are refused.
    on_fault : callable, optional
        ``on_fault(sender_id, reason)`` for authenticated faults (the reputation book).
    is_quarantined : callable, optional
        ``is_quarantined(sender_id) -> bool``; quarantined senders are refused.
    admission : AdmissionPolicy, optional
        Parameters of :func:`node.wire.admission.decide`.

    Attributes
    ----------
    membership : MembershipView or None
        Set once membership runs; until then every non-gossip request is refused
        ``not_ready``.
    """

    def __init__(
        self,
        identity: Identity,
        network_id: bytes,
        *,
        metrics: Metrics,
        limiter: RateLimiter,
        max_update_bytes: int,
        is_banned: Callable[[bytes], bool],
        on_fault: Callable[[bytes, str], None] | None = None,
        is_quarantined: Callable[[bytes], bool] | None = None,
        admission: AdmissionPolicy | None = None,
    ) -> None:
        self.identity = identity
        self.network_id = network_id
        self.metrics = metrics
        self.limiter = limiter
        self.max_update_bytes = max_update_bytes
        self.is_banned = is_banned
        self.on_fault = on_fault
        self.is_quarantined = is_quarantined or (lambda _id: False)
        self.admission = admission or AdmissionPolicy()
        self.membership: MembershipView | None = None
        self.replay = ReplayWindow()
        self.seq = SeqCounter()
        # Foreign networks already warned about: one warning per network id, not per message.
        self._foreign_networks: set[bytes] = set()
        self.gossip: GossipHandler | None = None
        self.training: TrainingHandler | None = None
        self.history: HistoryHandler | None = None
        self.evidence: EvidenceHandler | None = None

    # --- admission -----------------------------------------------------------------------

    def _fault(self, sender: bytes | None, reason: str) -> None:
        # Only called once the sender's signature verified and it was admitted:
        # unauthenticated garbage is never charged to the id it claims, and only members
        # get a reputation row (a flood of throwaway keys cannot grow the table).
        if sender is not None and self.on_fault is not None and reason in FAULT_REASONS:
            self.on_fault(sender, reason)

    async def _refuse(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str, message: str
    ) -> None:
        self.metrics.messages_rejected.labels(reason=reason).inc()
        log.info(
            "refused peer message",
            extra={"fields": {"reason": reason, "peer": context.peer(), "detail": message}},
        )
        await context.abort(code, f"{reason}: {message}")

    async def _refuse_undecodable(
        self, context: grpc.aio.ServicerContext, request: object, message: str
    ) -> NoReturn:
        # Not charged to anyone: undecodable bytes carry no verified sender.
        compression = request.compression if isinstance(request, Undecodable) else None
        if compression is not None:
            await self._refuse(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                "compressed",
                f"message compression ({compression}) is not accepted; send uncompressed",
            )
        else:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "undecodable", message)
        raise AssertionError("unreachable")

    def _warn_foreign_network(self, env: Envelope, context: grpc.aio.ServicerContext) -> None:
        """Say once per foreign network id that someone speaks another genesis.

        Every such message is refused (and counted); the usual cause is an operator error
        (a different genesis file, or a fednode version whose genesis has other fields), which
        silently isolates nodes unless it is said loudly once.
        """
        theirs = bytes(env.network_id[:32])
        if theirs in self._foreign_networks or len(self._foreign_networks) >= 64:
            return
        self._foreign_networks.add(theirs)
        log.warning(
            "peer speaks another network (different genesis file or fednode version); "
            "its messages are refused",
            extra={
                "fields": {
                    "peer": context.peer(),
                    "their_network": theirs.hex()[:16],
                    "our_network": self.network_id.hex()[:16],
                }
            },
        )

    async def _admit(
        self, env: object, context: grpc.aio.ServicerContext, kinds: frozenset[str]
    ) -> Verified:
        if not self.limiter.allow(_peer_host(context)):
            self.metrics.rate_limited.inc()
            await self._refuse(
                context, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited", "slow down"
            )
        if not isinstance(env, Envelope):
            await self._refuse_undecodable(
                context, env, "request bytes are not a protobuf Envelope"
            )
        if len(UnknownFieldSet(env)) > 0:
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unknown_fields",
                "envelope has fields this protocol version does not define",
            )
        try:
            verified = check_envelope(env, self.network_id, replay=self.replay, kinds=kinds)
        except EnvelopeError as exc:
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if exc.reason in {"wrong_network", "bad_signature", "bad_sender_id"}
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            if exc.reason == "wrong_network":
                self._warn_foreign_network(env, context)
            await self._refuse(context, code, exc.reason, str(exc))
            raise AssertionError("unreachable") from exc
        if "gossip" in kinds:
            # Gossip is how identities become members: node/gossip/ checks proof of work
            # and records; only bans and quarantines apply here.
            if self.is_banned(verified.sender_id) or self.is_quarantined(verified.sender_id):
                await self._refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "banned",
                    f"node {verified.sender_id.hex()[:16]} is banned here",
                )
        else:
            await self._admit_member(verified, context)
        self.metrics.messages_received.labels(kind=verified.kind).inc()
        self.metrics.bytes.labels(direction="in", kind=verified.kind).inc(env.ByteSize())
        return verified

    async def _admit_member(self, verified: Verified, context: grpc.aio.ServicerContext) -> None:
        """The one admission decision (node/wire/admission.py) for a non-gossip request."""
        if self.membership is None:
            self.metrics.admission_refused.labels(reason="not_ready", kind=verified.kind).inc()
            await self._refuse(
                context, grpc.StatusCode.UNAVAILABLE, "not_ready", "membership is starting"
            )
            return
        sender = verified.sender_id
        member = self.membership.is_member(sender)
        facts = SenderFacts(
            member=member,
            standing_s=self.membership.standing_s(sender) if member else None,
            banned=self.is_banned(sender),
            quarantined=self.is_quarantined(sender),
        )
        decision = decide(verified.kind, facts, self.admission)
        if isinstance(decision, Admit):
            return
        self.metrics.admission_refused.labels(reason=decision.reason, kind=verified.kind).inc()
        await self._refuse(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            decision.reason,
            f"{decision.message} (node {sender.hex()[:16]})",
        )

    def _reply(self, kind: str, body: bytes, round: int = 0) -> Envelope:
        env = seal(self.identity, self.network_id, kind, body, seq=self.seq.next(kind), round=round)
        self.metrics.bytes.labels(direction="out", kind=kind).inc(env.ByteSize())
        return env

    # --- RPCs ----------------------------------------------------------------------------

    async def Gossip(
        self, request: Envelope | Undecodable, context: grpc.aio.ServicerContext
    ) -> Envelope:
        verified = await self._admit(request, context, frozenset({"gossip"}))
        if self.gossip is None:
            await self._refuse(context, grpc.StatusCode.UNAVAILABLE, "not_ready", "starting up")
            raise AssertionError("unreachable")
        try:
            body = await self.gossip.handle(verified.sender_id, verified.body)
        except TimeoutError:
            await self._refuse(
                context, grpc.StatusCode.DEADLINE_EXCEEDED, "timeout", "no reply in time"
            )
            raise AssertionError("unreachable") from None
        except (Rejected, ValueError) as exc:
            reason = getattr(exc, "reason", None)
            self._fault(verified.sender_id, f"gossip_{reason or 'malformed'}")
            if isinstance(reason, str):
                await self._refuse(
                    context, grpc.StatusCode.INVALID_ARGUMENT, f"gossip_{reason}", str(exc)
                )
                raise AssertionError("unreachable") from exc
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(exc))
            raise AssertionError("unreachable") from exc
        except DecodeError as exc:
            self._fault(verified.sender_id, "malformed")
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(exc))
            raise AssertionError("unreachable") from exc
        except grpc.aio.AbortError:
            raise
        except Exception:
            await self._abort_internal(context, verified)
        return self._reply("gossip", body)

    async def PushUpdate(
        self,
        request_iterator: AsyncIterator[TensorChunk | Undecodable],
        context: grpc.aio.ServicerContext,
    ) -> Receipt:
        # Work is bounded by what the signed header may declare: the header is checked
        # against this node's model before any body byte is kept, the stream is refused at
        # the first byte past its declared size, and at most max_chunks chunks are read.
        verified: Verified | None = None
        first_env: Envelope | None = None
        header = TensorHeader()
        digest = hashlib.sha256()
        payload = bytearray()
        chunks = 0
        max_chunks = 1
        async for chunk in request_iterator:
            if not isinstance(chunk, TensorChunk):
                await self._refuse_undecodable(
                    context, chunk, "stream chunk is not a protobuf TensorChunk"
                )
            chunks += 1
            if verified is None:
                first_env = chunk.header
                verified = await self._admit(chunk.header, context, frozenset({"update"}))
                max_chunks = await self._check_update_header(verified, header, context)
            elif chunk.HasField("header"):
                await self._refuse_fault(
                    context, verified, "malformed", "only the first chunk may carry a header"
                )
            if chunks > max_chunks:
                await self._refuse_fault(
                    context,
                    verified,
                    "too_many_chunks",
                    f"more than {max_chunks} chunks for {header.total_bytes} bytes",
                    code=grpc.StatusCode.RESOURCE_EXHAUSTED,
                )
            if len(payload) + len(chunk.data) > header.total_bytes:
                await self._refuse_fault(
                    context, verified, "size_mismatch", "stream longer than its declared size"
                )
            payload += chunk.data
            digest.update(chunk.data)
        if verified is None:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", "empty")
            raise AssertionError("unreachable")
        self.metrics.bytes.labels(direction="in", kind="update").inc(len(payload))
        if len(payload) != header.total_bytes:
            return self._receipt_refused(
                "size_mismatch", "stream shorter than declared", verified.sender_id
            )
        if digest.digest() != header.payload_sha256:
            return self._receipt_refused(
                "bad_hash", "payload does not match its signed hash", verified.sender_id
            )
        if self.evidence is not None and first_env is not None:
            self.evidence.seen_update(first_env, verified, header)
        assert self.training is not None  # _check_update_header refused otherwise
        try:
            note = await self.training.on_update(verified, header, bytes(payload))
        except Rejected as exc:
            return self._receipt_refused(exc.reason, str(exc), verified.sender_id)
        except Exception:
            return self._internal_error(verified)
        return Receipt(accepted=True, reason=note or "")

    async def _check_update_header(
        self, verified: Verified, header: TensorHeader, context: grpc.aio.ServicerContext
    ) -> int:
        """Parse and check a stream's signed header before its body; return the chunk cap."""
        try:
            header.ParseFromString(verified.body)
        except DecodeError:
            await self._refuse_fault(context, verified, "malformed", "bad header")
        if header.total_bytes > self.max_update_bytes:
            await self._refuse(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "oversized",
                f"update of {header.total_bytes} bytes exceeds {self.max_update_bytes}",
            )
        if self.training is None:
            await self._refuse(
                context, grpc.StatusCode.UNAVAILABLE, "not_training", "this node runs no learner"
            )
            raise AssertionError("unreachable")
        numel = self.training.update_numel
        if numel is None:
            await self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "wrong_learner",
                "this network's learner exchanges no update vectors",
            )
        try:
            check_header(header, numel)
        except UpdateError as exc:
            await self._refuse_fault(context, verified, exc.reason, str(exc))
        # The first chunk may be empty; every other one carries at least MIN_CHUNK_BYTES
        # except the last, so an honest stream never needs more.
        return 2 + -(-header.total_bytes // MIN_CHUNK_BYTES)

    async def _refuse_fault(
        self,
        context: grpc.aio.ServicerContext,
        verified: Verified,
        reason: str,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
    ) -> None:
        """Refuse an authenticated, admitted sender's bad request (charged as a fault)."""
        self._fault(verified.sender_id, reason)
        await self._refuse(context, code, reason, message)
        raise AssertionError("unreachable")

    def _receipt_refused(self, reason: str, message: str, sender: bytes | None = None) -> Receipt:
        self.metrics.messages_rejected.labels(reason=reason).inc()
        self._fault(sender, reason)
        # Gossip re-deliveries are refused as duplicates all the time: not worth INFO.
        level = logging.DEBUG if reason in {"duplicate", "done", "stale_round"} else logging.INFO
        log.log(level, "refused message", extra={"fields": {"reason": reason, "detail": message}})
        return Receipt(accepted=False, reason=f"{reason}: {message}")

    async def _dispatch(
        self,
        verified: Verified,
        message_type: type[_Body],
        malformed: tuple[str, str],
        handler: Callable[[Verified, _Body], Awaitable[None]] | None,
        missing: tuple[str, str],
    ) -> Receipt:
        """Parse an admitted push's body and hand it to ``handler``; answer with a receipt.

        Parameters
        ----------
        verified : Verified
            The admitted envelope.
        message_type : protobuf message class
            What the body must parse as.
        malformed : (reason, detail)
            The refusal of a body that does not parse (a fault of the sender).
        handler : callable or None
            The component that takes the message; None while this node has none.
        missing : (reason, detail)
            The refusal when ``handler`` is None (not the sender's fault).

        Returns
        -------
        Receipt
            Accepted, or refused with the handler's :class:`Rejected` reason (a fault of
            the sender when the reason is one of :data:`FAULT_REASONS`).
        """
        message = message_type()
        try:
            message.ParseFromString(verified.body)
        except DecodeError:
            return self._receipt_refused(*malformed, verified.sender_id)
        if handler is None:
            return self._receipt_refused(*missing)
        try:
            await handler(verified, message)
        except Rejected as exc:
            return self._receipt_refused(exc.reason, str(exc), verified.sender_id)
        except Exception:
            return self._internal_error(verified)
        return Receipt(accepted=True)

    def _internal_error(self, verified: Verified) -> Receipt:
        """Log this node's own failure on a message and answer it with ``internal``.

        Without this gRPC answers a bare UNKNOWN and nothing is logged. Call from an
        ``except`` block. The sender is not charged: the failure is not the message's.
        """
        log.exception(
            "failed to process a message",
            extra={"fields": {"kind": verified.kind, "sender": verified.sender_id.hex()[:12]}},
        )
        return self._receipt_refused("internal", "the node failed to process the message")

    async def _abort_internal(
        self, context: grpc.aio.ServicerContext, verified: Verified
    ) -> NoReturn:
        """End a call this node failed to serve with INTERNAL ``internal``, logged.

        The unary-receipt paths answer such failures with a receipt
        (:meth:`_internal_error`); calls that return a body or a stream abort instead.
        Call from an ``except`` block; the sender is not charged.
        """
        self._internal_error(verified)
        await context.abort(grpc.StatusCode.INTERNAL, "internal: the node failed to serve the call")
        raise AssertionError("unreachable")

    async def PushHistory(
        self, request: Envelope | Undecodable, context: grpc.aio.ServicerContext
    ) -> Receipt:
        verified = await self._admit(request, context, frozenset({"history"}))
        return await self._dispatch(
            verified,
            HistoryGossip,
            ("malformed", "body is not a HistoryGossip"),
            self.history.on_history if self.history is not None else None,
            ("not_training", "this node keeps no Sybil histories"),
        )

    async def PushEvidence(
        self, request: Envelope | Undecodable, context: grpc.aio.ServicerContext
    ) -> Receipt:
        verified = await self._admit(request, context, frozenset({"evidence"}))
        return await self._dispatch(
            verified,
            Evidence,
            ("evidence_malformed", "body is not an Evidence"),
            self.evidence.on_evidence if self.evidence is not None else None,
            ("not_ready", "starting up"),
        )

    async def PushScalars(
        self, request: Envelope | Undecodable, context: grpc.aio.ServicerContext
    ) -> Receipt:
        verified = await self._admit(request, context, frozenset({"spsa"}))
        return await self._dispatch(
            verified,
            ScalarBatch,
            ("malformed", "body is not a ScalarBatch"),
            self._take_scalars if self.training is not None else None,
            ("not_training", "this node runs no learner"),
        )

    async def _take_scalars(self, verified: Verified, batch: ScalarBatch) -> None:
        if self.evidence is not None:
            # Before the learner: an origin convicted here has its batch refused there.
            self.evidence.seen_batch(batch, relay=verified.sender_id == batch.origin_id)
        assert self.training is not None  # PushScalars passes this handler only then
        await self.training.on_scalars(verified, batch)

    async def _admit_pull(
        self, request: Envelope | Undecodable, context: grpc.aio.ServicerContext
    ) -> tuple[Verified, PullRequest]:
        """Admit a pull request envelope; aborts the call on any refusal."""
        verified = await self._admit(request, context, frozenset({"request"}))
        req = PullRequest()
        try:
            req.ParseFromString(verified.body)
        except DecodeError:
            await self._refuse(
                context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", "bad request"
            )
        if self.training is None:
            await self._refuse(context, grpc.StatusCode.UNAVAILABLE, "not_training", "no learner")
        return verified, req

    async def Pull(
        self, request: Envelope | Undecodable, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[TensorChunk]:
        verified, req = await self._admit_pull(request, context)
        assert self.training is not None  # _admit_pull aborts the call otherwise
        async for chunk in self._guarded(self.training.pull(verified, req), context, verified):
            yield chunk

    async def PullScalars(
        self, request: Envelope | Undecodable, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Envelope]:
        verified, req = await self._admit_pull(request, context)
        assert self.training is not None  # _admit_pull aborts the call otherwise
        stream = self.training.pull_scalars(verified, req)
        async for env in self._guarded(stream, context, verified):
            yield env

    async def _guarded(
        self,
        stream: AsyncIterator[_Item],
        context: grpc.aio.ServicerContext,
        verified: Verified,
    ) -> AsyncIterator[_Item]:
        """Relay ``stream``; a failure of this node's own ends the call INTERNAL, logged."""
        try:
            async for item in stream:
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception:
            await self._abort_internal(context, verified)
