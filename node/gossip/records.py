"""Signed member records and signed suspect/dead/left statements.

A :class:`MemberRecord` is a member's self-description signed by the member (its owner);
a :class:`Statement` is a claim about a member signed by whoever makes it (the reporter).
The signatures cover explicit byte layouts (:meth:`MemberRecord.signing_bytes`,
:meth:`Statement.signing_bytes`, documented in ``gossip.proto``), never a protobuf
serialization, so any implementation can reproduce them.

:class:`RecordVerifier` runs every check (shape, network, node id, proof of work,
signature) cheapest first and counts each rejection by reason in ``rejected``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from fednode_proto.v1 import gossip_pb2 as pb
from node.base.address import parse_host_port
from node.base.errors import ReasonError
from node.base.identity import node_id_for, pow_check, verify_signature
from node.base.signing import SigningEncoder

__all__ = [
    "MAX_ADDRESS_LEN",
    "MAX_CAPABILITIES",
    "MAX_CAPABILITY_LEN",
    "MAX_INCARNATION",
    "RECORD_DOMAIN",
    "STATEMENT_DOMAIN",
    "MemberRecord",
    "RecordError",
    "RecordVerifier",
    "Signer",
    "Statement",
    "StatementKind",
    "Verify",
    "sign_record",
    "sign_statement",
]

RECORD_DOMAIN = b"fednode/v1/member\x00"
STATEMENT_DOMAIN = b"fednode/v1/statement\x00"
MAX_ADDRESS_LEN = 262
MAX_CAPABILITIES = 32
MAX_CAPABILITY_LEN = 64
MAX_INCARNATION = 2**63 - 1
"""Highest valid incarnation: a signed 64-bit integer, what the peer table's column holds.

Records and statements above it are ``bad_incarnation``. The wire field is u64, so the
bound is checked on parse; before it existed a statement at 2**64-1 made its target's
refutation (``incarnation + 1``) overflow the signing layout and silenced the target.
"""

Verify = Callable[[bytes, bytes, bytes], bool]
"""``verify(public_key, signature, message) -> bool`` (default: Ed25519)."""


class Signer(Protocol):
    """What the membership needs of an identity (``node.base.identity.Identity`` fits)."""

    @property
    def public_key(self) -> bytes: ...

    @property
    def pow_nonce(self) -> int: ...

    def sign(self, message: bytes) -> bytes: ...


class RecordError(
    ReasonError,
    ValueError,
    faults={"malformed", "bad_address", "wrong_network", "bad_pow", "bad_signature"},
    # A bad node id or an incarnation out of range is refused without blaming the peer
    # that passed the record on; an unknown reporter is a gap in this node's own table.
    others={"bad_node_id", "bad_incarnation", "unknown_reporter"},
):
    """A record or statement failed a check; ``reason`` is a stable metrics label."""


class StatementKind(IntEnum):
    """What a statement claims (values are the protobuf enum's)."""

    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member's signed self-description (see ``gossip.proto``)."""

    node_id: bytes
    public_key: bytes
    address: str
    pow_nonce: int
    incarnation: int
    network_id: bytes
    capabilities: tuple[str, ...]
    timestamp_ms: int
    signature: bytes

    def signing_bytes(self) -> bytes:
        """The exact bytes the owner signs."""
        enc = (
            SigningEncoder(RECORD_DOMAIN)
            .field(self.network_id)
            .field(self.node_id)
            .field(self.public_key)
            .text(self.address)
            .pack(
                "QQqI", self.pow_nonce, self.incarnation, self.timestamp_ms, len(self.capabilities)
            )
        )
        for capability in self.capabilities:
            enc.text(capability)
        return enc.finish()

    def to_pb(self) -> pb.MemberRecord:
        """Protobuf form."""
        return pb.MemberRecord(
            node_id=self.node_id,
            public_key=self.public_key,
            address=self.address,
            pow_nonce=self.pow_nonce,
            incarnation=self.incarnation,
            network_id=self.network_id,
            capabilities=list(self.capabilities),
            timestamp_ms=self.timestamp_ms,
            signature=self.signature,
        )

    def to_bytes(self) -> bytes:
        """Protobuf serialization (for the peer table; not what is signed)."""
        return self.to_pb().SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes) -> MemberRecord:
        """Inverse of :meth:`to_bytes`; raises :class:`RecordError` (``malformed``)."""
        msg = pb.MemberRecord()
        try:
            msg.ParseFromString(data)
        except Exception:  # protobuf raises DecodeError, not a ValueError subclass
            raise RecordError("malformed", "member record: not a MemberRecord message") from None
        return cls.from_pb(msg)

    @classmethod
    def from_pb(cls, msg: pb.MemberRecord) -> MemberRecord:
        """Structural conversion (no signature check); raises :class:`RecordError`."""
        if len(msg.node_id) != 32 or len(msg.public_key) != 32 or len(msg.signature) != 64:
            raise RecordError("malformed", "member record: node id, key or signature length")
        if len(msg.capabilities) > MAX_CAPABILITIES or any(
            len(c) > MAX_CAPABILITY_LEN for c in msg.capabilities
        ):
            raise RecordError("malformed", "member record: too many or too long capabilities")
        if not msg.address or len(msg.address) > MAX_ADDRESS_LEN:
            raise RecordError("bad_address", "member record: missing or overlong address")
        if msg.incarnation > MAX_INCARNATION:
            raise RecordError("bad_incarnation", "member record: incarnation above 2**63-1")
        return cls(
            node_id=bytes(msg.node_id),
            public_key=bytes(msg.public_key),
            address=msg.address,
            pow_nonce=msg.pow_nonce,
            incarnation=msg.incarnation,
            network_id=bytes(msg.network_id),
            capabilities=tuple(msg.capabilities),
            timestamp_ms=msg.timestamp_ms,
            signature=bytes(msg.signature),
        )


@dataclass(frozen=True, slots=True)
class Statement:
    """A signed claim ``kind`` about ``target_id`` at ``incarnation`` by ``reporter_id``."""

    kind: StatementKind
    target_id: bytes
    incarnation: int
    reporter_id: bytes
    network_id: bytes
    timestamp_ms: int
    signature: bytes

    def signing_bytes(self) -> bytes:
        """The exact bytes the reporter signs."""
        return (
            SigningEncoder(STATEMENT_DOMAIN)
            .pack("B", int(self.kind))
            .field(self.network_id)
            .field(self.target_id)
            .pack("Q", self.incarnation)
            .field(self.reporter_id)
            .pack("q", self.timestamp_ms)
            .finish()
        )

    def to_pb(self) -> pb.Statement:
        """Protobuf form."""
        return pb.Statement(
            kind=int(self.kind),  # type: ignore[arg-type]
            target_id=self.target_id,
            incarnation=self.incarnation,
            reporter_id=self.reporter_id,
            network_id=self.network_id,
            timestamp_ms=self.timestamp_ms,
            signature=self.signature,
        )

    @classmethod
    def from_pb(cls, msg: pb.Statement) -> Statement:
        """Structural conversion (no signature check); raises :class:`RecordError`."""
        if msg.kind not in (1, 2, 3):
            raise RecordError("malformed", f"statement: unknown kind {msg.kind}")
        if len(msg.target_id) != 32 or len(msg.reporter_id) != 32 or len(msg.signature) != 64:
            raise RecordError("malformed", "statement: id or signature length")
        kind = StatementKind(msg.kind)
        if kind is StatementKind.LEFT and msg.target_id != msg.reporter_id:
            raise RecordError("malformed", "statement: only a member itself can leave")
        if msg.incarnation > MAX_INCARNATION:
            raise RecordError("bad_incarnation", "statement: incarnation above 2**63-1")
        return cls(
            kind=kind,
            target_id=bytes(msg.target_id),
            incarnation=msg.incarnation,
            reporter_id=bytes(msg.reporter_id),
            network_id=bytes(msg.network_id),
            timestamp_ms=msg.timestamp_ms,
            signature=bytes(msg.signature),
        )


def sign_record(
    signer: Signer,
    *,
    address: str,
    incarnation: int,
    network_id: bytes,
    timestamp_ms: int,
    capabilities: tuple[str, ...] = (),
) -> MemberRecord:
    """Build and sign the record of ``signer`` (the owner)."""
    unsigned = MemberRecord(
        node_id=node_id_for(signer.public_key),
        public_key=signer.public_key,
        address=address,
        pow_nonce=signer.pow_nonce,
        incarnation=incarnation,
        network_id=network_id,
        capabilities=tuple(capabilities),
        timestamp_ms=timestamp_ms,
        signature=b"",
    )
    sig = signer.sign(unsigned.signing_bytes())
    return dataclasses.replace(unsigned, signature=sig)


def sign_statement(
    signer: Signer,
    kind: StatementKind,
    *,
    target_id: bytes,
    incarnation: int,
    network_id: bytes,
    timestamp_ms: int,
) -> Statement:
    """Build and sign a statement reported by ``signer``."""
    unsigned = Statement(
        kind=kind,
        target_id=target_id,
        incarnation=incarnation,
        reporter_id=node_id_for(signer.public_key),
        network_id=network_id,
        timestamp_ms=timestamp_ms,
        signature=b"",
    )
    sig = signer.sign(unsigned.signing_bytes())
    return dataclasses.replace(unsigned, signature=sig)


class RecordVerifier:
    """Checks records and statements for one network; counts rejections by reason.

    Parameters
    ----------
    network_id : bytes
        Records and statements of any other network are refused (``wrong_network``).
    difficulty : int
        Proof-of-work bits every record's stamp must have (``bad_pow``).
    verify : callable, default Ed25519 ``verify_signature``
        ``verify(public_key, signature, message)``; replace only in large simulations.
    rejected : Counter, optional
        Where rejections are counted (a fresh Counter by default).
    """

    def __init__(
        self,
        network_id: bytes,
        difficulty: int,
        *,
        verify: Verify = verify_signature,
        rejected: Counter[str] | None = None,
    ) -> None:
        self.network_id = network_id
        self.difficulty = difficulty
        self.verify = verify
        self.rejected: Counter[str] = Counter() if rejected is None else rejected

    def _reject(self, reason: str, message: str) -> RecordError:
        self.rejected[reason] += 1
        return RecordError(reason, message)

    def check_record(self, record: MemberRecord) -> MemberRecord:
        """Return ``record`` when valid, else count and raise :class:`RecordError`."""
        if record.network_id != self.network_id:
            raise self._reject("wrong_network", "member record is for another network")
        if node_id_for(record.public_key) != record.node_id:
            raise self._reject("bad_node_id", "member record: node id is not sha256(key)")
        try:
            parse_host_port(record.address)
        except ValueError as exc:
            raise self._reject("bad_address", f"member record: {exc}") from None
        if not pow_check(record.public_key, record.pow_nonce, self.difficulty):
            raise self._reject("bad_pow", f"member record: PoW below {self.difficulty} bits")
        if not self.verify(record.public_key, record.signature, record.signing_bytes()):
            raise self._reject("bad_signature", "member record: owner signature is invalid")
        return record

    def check_statement(self, statement: Statement, reporter_key: bytes | None) -> Statement:
        """Check a statement whose reporter has public key ``reporter_key`` (None: unknown)."""
        if statement.network_id != self.network_id:
            raise self._reject("wrong_network", "statement is for another network")
        if reporter_key is None:
            raise self._reject("unknown_reporter", "statement by a reporter this node lacks")
        if not self.verify(reporter_key, statement.signature, statement.signing_bytes()):
            raise self._reject("bad_signature", "statement: reporter signature is invalid")
        return statement

    def parse_record(self, msg: pb.MemberRecord) -> MemberRecord:
        """:meth:`MemberRecord.from_pb` that counts structural rejections."""
        try:
            return MemberRecord.from_pb(msg)
        except RecordError as exc:
            self.rejected[exc.reason] += 1
            raise

    def parse_statement(self, msg: pb.Statement) -> Statement:
        """:meth:`Statement.from_pb` that counts structural rejections."""
        try:
            return Statement.from_pb(msg)
        except RecordError as exc:
            self.rejected[exc.reason] += 1
            raise
