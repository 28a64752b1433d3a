"""The operator ``Admin`` service and its token check.

The admin server is a separate gRPC server bound to a Unix socket or a loopback port; it
is never on the peer port. Every call must carry ``authorization: Bearer <token>`` with
the token from the data dir's ``admin.token`` (0600); the comparison is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc

from fednode_proto.v1 import admin_pb2, admin_pb2_grpc
from node.base.logs import log

__all__ = ["AdminBackend", "AdminService", "TokenInterceptor", "check_node_id_prefix"]

_HEX = frozenset("0123456789abcdef")
NODE_ID_HEX_CHARS = 64


def check_node_id_prefix(text: str) -> str:
    """Normalize an operator-typed node id (or prefix of one); raise ValueError if implausible.

    A node id is the SHA-256 of an Ed25519 public key: 64 lowercase hex characters. A
    prefix of at least 4 of them names a known node; anything else is refused with a
    sentence saying what is wrong.
    """
    value = text.strip().lower()
    bad = sorted(set(value) - _HEX)
    if bad:
        raise ValueError(
            f"a node id is hexadecimal (0-9, a-f); {text.strip()[:80]!r} contains "
            f"{''.join(bad)[:16]!r}"
        )
    if len(value) > NODE_ID_HEX_CHARS:
        raise ValueError(
            f"a node id has {NODE_ID_HEX_CHARS} hex characters; this one has {len(value)}"
        )
    if len(value) < 4:
        raise ValueError("give at least 4 hex characters of the node id")
    return value


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuse every admin call whose bearer token is missing or wrong."""

    def __init__(self, token: str, on_reject: Callable[[], None] | None = None) -> None:
        self._expected = f"Bearer {token}".encode()
        self._on_reject = on_reject

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong admin token (see admin.token in the data dir)",
            )

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        supplied = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                supplied = value.encode() if isinstance(value, str) else value
        if hmac.compare_digest(supplied, self._expected):
            return await continuation(handler_call_details)
        if self._on_reject is not None:
            self._on_reject()
        log.warning(
            "admin call refused: bad token",
            extra={"fields": {"method": handler_call_details.method}},
        )
        return self._deny


class AdminBackend(Protocol):
    """What the daemon exposes to operators."""

    def status(self) -> admin_pb2.StatusReply: ...

    def peers(self) -> admin_pb2.PeersReply: ...

    def ban(self, node_id_prefix: str, unban: bool) -> admin_pb2.BanReply: ...

    def export(self) -> admin_pb2.ExportReply: ...

    def privacy(self) -> admin_pb2.PrivacyReply: ...

    def request_stop(self) -> None: ...


class AdminService(admin_pb2_grpc.AdminServicer):
    """Thin gRPC adapter over an :class:`AdminBackend`."""

    def __init__(self, backend: AdminBackend) -> None:
        self.backend = backend

    async def Status(
        self, request: admin_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StatusReply:
        return self.backend.status()

    async def Peers(
        self, request: admin_pb2.PeersRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.PeersReply:
        return self.backend.peers()

    async def Ban(
        self, request: admin_pb2.BanRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.BanReply:
        try:
            node_id = check_node_id_prefix(request.node_id)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        try:
            return self.backend.ban(node_id, request.unban)
        except LookupError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise

    async def Export(
        self, request: admin_pb2.ExportRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ExportReply:
        try:
            return self.backend.export()
        except LookupError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise

    async def Stop(
        self, request: admin_pb2.StopRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StopReply:
        self.backend.request_stop()
        return admin_pb2.StopReply(stopping=True)

    async def Privacy(
        self, request: admin_pb2.PrivacyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.PrivacyReply:
        return self.backend.privacy()
