"""Signed envelopes: sealing outgoing messages and checking incoming ones.

Every peer message is an :class:`~fednode_proto.v1.envelope_pb2.Envelope` signed by its
sender over a domain-separated encoding of its fields (the body enters through its
SHA-256, so a large body is hashed once). Checking is pure: it takes the envelope, the
expected network id, the clock and a :class:`ReplayWindow`, and either returns the
verified sender or raises :class:`EnvelopeError` whose ``reason`` is a stable code used
in logs and in the ``fednode_messages_rejected_total{reason=...}`` metric.

Sequence numbers are ``max(last + 1, unix microseconds)``: strictly increasing per
sender and kind, and still increasing after a restart without storing a counter.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from fednode_proto.v1.envelope_pb2 import Envelope
from node.base.errors import ReasonError
from node.base.identity import Identity, node_id_for, verify_signature
from node.base.signing import SigningEncoder

__all__ = [
    "ENVELOPE_DOMAIN",
    "PROTOCOL_VERSION",
    "EnvelopeError",
    "ReplayWindow",
    "SeqCounter",
    "Verified",
    "check_envelope",
    "seal",
    "signing_bytes",
]

PROTOCOL_VERSION = 1
ENVELOPE_DOMAIN = b"fednode/v1/envelope\x00"


class EnvelopeError(
    ReasonError,
    # Raised before the sender is authenticated (or for a clock or replay problem an
    # honest peer can have), so no code is charged to the id the envelope claims.
    others={
        "bad_version",
        "wrong_network",
        "bad_kind",
        "malformed",
        "bad_sender_id",
        "stale",
        "future",
        "bad_signature",
        "replay",
    },
):
    """An envelope failed a check. ``reason`` is a stable code, ``str()`` a sentence."""


@dataclass(frozen=True)
class Verified:
    """An envelope that passed every check."""

    sender_id: bytes
    public_key: bytes
    kind: str
    seq: int
    round: int
    timestamp_ms: int
    body: bytes


def signing_bytes(env: Envelope) -> bytes:
    """The exact bytes an envelope's signature covers (documented in docs/protocol.md)."""
    return (
        SigningEncoder(ENVELOPE_DOMAIN)
        .pack("I", env.version)
        .field(env.sender_public_key)
        .field(env.network_id)
        .text(env.kind)
        .pack("QQq", env.seq, env.round, env.timestamp_ms)
        .digest(env.body)
        .finish()
    )


class SeqCounter:
    """Thread-safe per-kind sequence numbers: ``max(last + 1, unix microseconds)``."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, kind: str) -> int:
        with self._lock:
            value = max(self._last.get(kind, 0) + 1, time.time_ns() // 1000)
            self._last[kind] = value
            return value


def seal(
    identity: Identity,
    network_id: bytes,
    kind: str,
    body: bytes,
    *,
    seq: int,
    round: int = 0,
    timestamp_ms: int | None = None,
) -> Envelope:
    """Build and sign an envelope."""
    env = Envelope(
        version=PROTOCOL_VERSION,
        sender_id=identity.node_id,
        sender_public_key=identity.public_key,
        network_id=network_id,
        kind=kind,
        seq=seq,
        round=round,
        timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        body=body,
    )
    env.signature = identity.sign(signing_bytes(env))
    return env


class ReplayWindow:
    """Sliding-window replay detection per (sender, kind), as in IPsec's anti-replay.

    A sequence number is accepted once, and only if it is above ``highest - window``:
    concurrent RPCs may arrive slightly out of order, a replay never gets in twice.
    Memory is bounded by ``max_senders`` (least recently seen senders are forgotten; a
    forgotten sender's old messages are then still refused by the timestamp check).

    Parameters
    ----------
    window : int, default 4096
        How far below the highest seen sequence number a late message may be.
    max_senders : int, default 65536
        Number of (sender, kind) pairs remembered.
    """

    def __init__(self, window: int = 4096, max_senders: int = 65536) -> None:
        self.window = window
        self.max_senders = max_senders
        self._state: OrderedDict[tuple[bytes, str], tuple[int, set[int]]] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_record(self, sender: bytes, kind: str, seq: int) -> bool:
        """True (and remember ``seq``) when it has not been seen; False for a replay."""
        key = (sender, kind)
        with self._lock:
            highest, seen = self._state.get(key, (0, set()))
            if seq in seen or (highest and seq <= highest - self.window):
                return False
            if seq > highest:
                highest = seq
                # Forget sequence numbers that fell out of the window.
                seen = {s for s in seen if s > highest - self.window}
            seen.add(seq)
            self._state[key] = (highest, seen)
            self._state.move_to_end(key)
            while len(self._state) > self.max_senders:
                self._state.popitem(last=False)
            return True


def check_envelope(
    env: Envelope,
    network_id: bytes,
    *,
    replay: ReplayWindow | None,
    now_ms: int | None = None,
    max_skew_ms: int = 120_000,
    kinds: frozenset[str] | None = None,
) -> Verified:
    """Check an incoming envelope; return it verified or raise :class:`EnvelopeError`.

    The checks run cheapest first, and the replay window is only updated after the
    signature verified, so a forged envelope cannot burn a legitimate sequence number.

    Parameters
    ----------
    env : Envelope
        The received message.
    network_id : bytes
        This node's network id; anything else is refused.
    replay : ReplayWindow or None
        Replay detection state; None skips that check (for stateless reads).
    now_ms : int, optional
        Current time in unix ms (default: the wall clock).
    max_skew_ms : int, default 120000
        How far the sender's timestamp may be from ours, either way.
    kinds : frozenset of str, optional
        Allowed kinds for this RPC.
    """
    if env.version != PROTOCOL_VERSION:
        raise EnvelopeError("bad_version", f"unsupported protocol version {env.version}")
    if env.network_id != network_id:
        raise EnvelopeError(
            "wrong_network",
            f"message for network {env.network_id.hex()[:16] or '(none)'}, "
            f"this node is on {network_id.hex()[:16]}",
        )
    if kinds is not None and env.kind not in kinds:
        raise EnvelopeError("bad_kind", f"unexpected message kind {env.kind!r}")
    if len(env.sender_public_key) != 32 or len(env.signature) != 64:
        raise EnvelopeError("malformed", "public key or signature has the wrong length")
    if node_id_for(env.sender_public_key) != env.sender_id:
        raise EnvelopeError("bad_sender_id", "sender id is not the hash of its public key")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(env.timestamp_ms - now) > max_skew_ms:
        raise EnvelopeError(
            "stale" if env.timestamp_ms < now else "future",
            f"timestamp is {(env.timestamp_ms - now) / 1000:+.1f} s from this node's clock",
        )
    if not verify_signature(env.sender_public_key, env.signature, signing_bytes(env)):
        raise EnvelopeError("bad_signature", "signature does not verify")
    if replay is not None and not replay.check_and_record(env.sender_id, env.kind, env.seq):
        raise EnvelopeError("replay", f"sequence number {env.seq} already seen or too old")
    return Verified(
        sender_id=bytes(env.sender_id),
        public_key=bytes(env.sender_public_key),
        kind=env.kind,
        seq=env.seq,
        round=env.round,
        timestamp_ms=env.timestamp_ms,
        body=bytes(env.body),
    )
