"""A bug in a handler is answered with a reason and logged, never a bare gRPC UNKNOWN.

A peer cannot tell a node's own failure from a refusal unless the receipt says so, and an
operator cannot find it unless it is logged with its traceback. The sender is not charged:
the failure is this node's, not the message's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from fednode_proto.v1.evidence_pb2 import Evidence
from node.base.identity import Identity
from node.base.metrics import Metrics
from node.base.ratelimit import RateLimiter
from node.wire.envelope import Verified
from node.wire.service import FAULT_REASONS, NodeService, Rejected


def _service(faults: list[tuple[bytes, str]]) -> NodeService:
    return NodeService(
        Identity.generate(0),
        b"n" * 32,
        metrics=Metrics(),
        limiter=RateLimiter(rate=100.0, burst=100),
        max_update_bytes=1 << 20,
        is_banned=lambda _id: False,
        on_fault=lambda sender, reason: faults.append((sender, reason)),
    )


def _verified() -> Verified:
    return Verified(
        sender_id=b"s" * 32,
        public_key=b"k" * 32,
        kind="evidence",
        seq=1,
        round=0,
        timestamp_ms=0,
        body=Evidence().SerializeToString(),
    )


async def _broken(_verified: Verified, _message: Evidence) -> None:
    raise KeyError("a bug of ours")


def test_a_failing_handler_answers_internal_logs_the_traceback_and_charges_nobody(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults: list[tuple[bytes, str]] = []
    service = _service(faults)
    with caplog.at_level(logging.ERROR, logger="fednode"):
        receipt = asyncio.run(
            service._dispatch(
                _verified(), Evidence, ("malformed", "bad"), _broken, ("not_ready", "none")
            )
        )
    assert not receipt.accepted
    assert receipt.reason.startswith("internal:")
    assert faults == []
    assert "internal" in Rejected.REASONS and "internal" not in FAULT_REASONS
    failed = [r.exc_info[1] for r in caplog.records if r.exc_info is not None]
    assert failed and "a bug of ours" in str(failed[0])
    counted = service.metrics.messages_rejected.labels(reason="internal")._value.get()
    assert counted == 1


class _Context:
    """What the handlers use of a gRPC servicer context: the peer and ``abort``."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


class _BrokenGossip:
    async def handle(self, _sender: bytes, _body: bytes) -> bytes:
        raise KeyError("a bug of ours")


class _BrokenTraining:
    async def pull(self, _verified: Verified, _req: object) -> AsyncIterator[object]:
        yield b"first chunk"
        raise KeyError("a bug of ours")

    async def pull_scalars(self, _verified: Verified, _req: object) -> AsyncIterator[object]:
        raise KeyError("a bug of ours")
        yield b"unreachable"


@pytest.mark.parametrize("rpc", ["Gossip", "Pull", "PullScalars"])
def test_a_failing_gossip_or_pull_aborts_internal_and_logs_the_traceback(
    rpc: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults: list[tuple[bytes, str]] = []
    service = _service(faults)
    verified = _verified()

    async def admitted(*_args: object) -> Verified:
        return verified

    async def admitted_pull(*_args: object) -> tuple[Verified, object]:
        return verified, object()

    monkeypatch.setattr(service, "_admit", admitted)
    monkeypatch.setattr(service, "_admit_pull", admitted_pull)
    service.gossip = _BrokenGossip()
    service.training = _BrokenTraining()  # type: ignore[assignment]
    context = _Context()
    got: list[object] = []

    async def call() -> None:
        handler = getattr(service, rpc)
        if rpc == "Gossip":
            got.append(await handler(object(), context))
            return
        async for item in handler(object(), context):
            got.append(item)

    with caplog.at_level(logging.ERROR, logger="fednode"), pytest.raises(grpc.aio.AbortError):
        asyncio.run(call())
    assert context.aborted is not None
    code, details = context.aborted
    assert code == grpc.StatusCode.INTERNAL and details.startswith("internal:")
    assert got == ([b"first chunk"] if rpc == "Pull" else [])
    assert faults == []
    failed = [r.exc_info[1] for r in caplog.records if r.exc_info is not None]
    assert failed and "a bug of ours" in str(failed[0])
