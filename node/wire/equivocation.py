"""Equivocation: one sender, one round, two different signed updates (sans-I/O).

The same holds for SPSA scalar batches: an origin signs one batch per round
(:mod:`node.wire.spsa_batch`), so two different origin-signed batches of one origin and round
prove equivocation just as two update headers do. Their sightings are kept apart from update
sightings (``Sighting.kind``); :func:`batch_sighting` verifies one.

An honest node releases one update per round and sends the same signed header (hence the
same ``payload_sha256``) to every peer it pushes to. A node that shows different peers
different updates for one round can bias each of them without ever looking like an
outlier to any single one. Two signed headers of the same sender and round with different
payload hashes prove it: anyone can check the pair with the sender's public key alone.

:class:`EquivocationBook` keeps the update headers this node saw (its own receipts and the
sightings relayed by peers), finds such pairs, and checks pairs relayed as proof. Work is
bounded before anything is stored: at most two Ed25519 verifications per message, a
bounded table of sightings (least recently seen evicted) and of convicted senders, and
duplicates are recognised before any signature is checked. The I/O (relaying sightings and
proofs, quarantining) lives in :mod:`node.daemon.evidence_gossip`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from fednode_proto.v1.envelope_pb2 import Envelope
from fednode_proto.v1.evidence_pb2 import Evidence
from fednode_proto.v1.training_pb2 import ScalarBatch, TensorHeader
from node.base.errors import ReasonError
from node.base.identity import node_id_for, verify_signature
from node.wire.envelope import EnvelopeError, check_envelope
from node.wire.spsa_signing import origin_signing_bytes

__all__ = [
    "EquivocationBook",
    "EquivocationError",
    "Proof",
    "Sighting",
    "batch_sighting",
    "check_sighting",
]

#: Envelope kinds whose (sender, round) must carry one payload only.
UPDATE_KINDS = frozenset({"update"})
#: Evidence is checked by signature, not by age: a proof stays a proof.
_ANY_AGE_MS = 2**62


class EquivocationError(
    ReasonError,
    ValueError,
    # Charged to the relay: an honest relay verifies evidence before relaying it.
    faults={
        "evidence_malformed",
        "evidence_bad_envelope",
        "evidence_bad_batch",
        "evidence_not_a_pair",
        "evidence_same_update",
    },
):
    """Evidence that proves nothing; ``reason`` is a stable code."""


@dataclass(frozen=True)
class Sighting:
    """One verified signed message: who, which round, which content.

    ``kind`` is ``"update"`` (``signed`` is the update's first-chunk Envelope, ``digest`` its
    header's payload hash) or ``"spsa"`` (``signed`` is the origin-signed ScalarBatch,
    ``digest`` the sha256 of its signed bytes).
    """

    sender: bytes
    round: int
    payload_sha256: bytes
    envelope: Envelope | ScalarBatch
    kind: str = "update"


@dataclass(frozen=True)
class Proof:
    """Two verified messages of one sender, round and kind with different contents."""

    sender: bytes
    round: int
    first: Envelope | ScalarBatch
    second: Envelope | ScalarBatch
    kind: str = "update"

    def envelopes(self) -> tuple[Envelope | ScalarBatch, Envelope | ScalarBatch]:
        return self.first, self.second

    def evidence(self) -> Evidence:
        """The pair as the ``Evidence`` message every node can verify on its own."""
        if self.kind == "spsa":
            assert isinstance(self.first, ScalarBatch) and isinstance(self.second, ScalarBatch)
            return Evidence(spsa_batches=[self.first, self.second])
        assert isinstance(self.first, Envelope) and isinstance(self.second, Envelope)
        return Evidence(updates=[self.first, self.second])


def check_sighting(env: Envelope, network_id: bytes) -> Sighting:
    """Verify one signed update header (signature, network, kind, header round).

    Raises
    ------
    EquivocationError
        ``evidence_bad_envelope`` (any envelope check, e.g. a bad signature) or
        ``evidence_malformed`` (the body is not a header of the signed round).
    """
    try:
        verified = check_envelope(
            env, network_id, replay=None, max_skew_ms=_ANY_AGE_MS, kinds=UPDATE_KINDS
        )
    except EnvelopeError as exc:
        raise EquivocationError("evidence_bad_envelope", f"{exc.reason}: {exc}") from None
    header = TensorHeader()
    try:
        header.ParseFromString(verified.body)
    except DecodeError:
        raise EquivocationError("evidence_malformed", "body is not a TensorHeader") from None
    if header.round != verified.round or len(header.payload_sha256) != 32:
        raise EquivocationError("evidence_malformed", "header round or payload hash is wrong")
    return Sighting(verified.sender_id, int(verified.round), bytes(header.payload_sha256), env)


def batch_sighting(wire: ScalarBatch, network_id: bytes) -> Sighting:
    """Verify who signed a batch for which round, as a sighting for equivocation evidence.

    Only what makes two batches comparable is checked (one Ed25519 verification): the
    origin key and id, one round across the entries, and the origin's signature bound to
    ``network_id`` (the bytes of :func:`node.wire.spsa_signing.origin_signing_bytes`). The
    content digest is the sha256 of the signed bytes: two batches with one digest are one
    release, two with different digests signed by one origin for one round are a proof
    (:class:`EquivocationBook`).

    Raises
    ------
    EquivocationError
        ``evidence_bad_batch`` with what failed.
    """
    if len(wire.origin_public_key) != 32 or len(wire.origin_signature) != 64:
        raise EquivocationError("evidence_bad_batch", "origin key or signature length")
    if node_id_for(wire.origin_public_key) != wire.origin_id:
        raise EquivocationError("evidence_bad_batch", "origin id is not the hash of its key")
    rounds = {int(e.round) for e in wire.entries}
    if len(rounds) != 1:
        raise EquivocationError("evidence_bad_batch", "a batch must hold exactly one round")
    signed = origin_signing_bytes(network_id, wire)
    if not verify_signature(wire.origin_public_key, wire.origin_signature, signed):
        raise EquivocationError("evidence_bad_batch", "origin signature does not verify")
    return Sighting(
        bytes(wire.origin_id), rounds.pop(), hashlib.sha256(signed).digest(), wire, kind="spsa"
    )


def _key(env: Envelope | ScalarBatch) -> bytes:
    return hashlib.sha256(env.SerializeToString(deterministic=True)).digest()


class EquivocationBook:
    """Sightings, proofs and convicted senders of one node (no clock, no sockets).

    Parameters
    ----------
    network_id : bytes
        Evidence from another network is refused.
    max_sightings : int, default 8192
        Most ``(sender, round)`` entries kept; the least recently seen is evicted.
    max_convicted : int, default 4096
        Most convicted senders remembered (their proofs are relayed once).
    """

    def __init__(
        self, network_id: bytes, *, max_sightings: int = 8192, max_convicted: int = 4096
    ) -> None:
        self.network_id = network_id
        self.max_sightings = max_sightings
        self.max_convicted = max_convicted
        self._seen: OrderedDict[tuple[bytes, int, str], Sighting] = OrderedDict()
        self._convicted: OrderedDict[bytes, Proof] = OrderedDict()
        self._recent: OrderedDict[bytes, None] = OrderedDict()  # envelopes already handled

    def is_convicted(self, sender: bytes) -> bool:
        return sender in self._convicted

    def convicted(self) -> list[bytes]:
        """Senders proven to equivocate, oldest first."""
        return list(self._convicted)

    def _duplicate(self, env: Envelope | ScalarBatch) -> bool:
        k = _key(env)
        if k in self._recent:
            return True
        self._recent[k] = None
        if len(self._recent) > 2 * self.max_sightings:
            self._recent.popitem(last=False)
        return False

    def observe(self, sighting: Sighting) -> Proof | None:
        """Record a verified sighting; a proof if it contradicts one seen before (new only).

        Returns None for a repeat of what was seen, for a sender already convicted, and
        the first time a ``(sender, round)`` is seen.
        """
        if sighting.sender in self._convicted:
            return None
        key = (sighting.sender, sighting.round, sighting.kind)
        old = self._seen.get(key)
        if old is None:
            self._seen[key] = sighting
            if len(self._seen) > self.max_sightings:
                self._seen.popitem(last=False)
            return None
        self._seen.move_to_end(key)
        if old.payload_sha256 == sighting.payload_sha256:
            return None
        proof = Proof(
            sighting.sender, sighting.round, old.envelope, sighting.envelope, sighting.kind
        )
        self._convict(proof)
        return proof

    def seen(self, signed: Envelope | ScalarBatch) -> bool:
        """Whether these exact bytes were handled before (then skip verifying them again)."""
        return self._duplicate(signed)

    def pair(self, a: Sighting, b: Sighting) -> Proof | None:
        """Two sightings verified by the caller, relayed as proof: a new :class:`Proof`.

        None if the sender is convicted already.

        Raises
        ------
        EquivocationError
            ``evidence_not_a_pair`` (other senders, rounds or kinds) or
            ``evidence_same_update`` (one content).
        """
        if a.sender in self._convicted:
            return None
        if a.sender != b.sender or a.round != b.round or a.kind != b.kind:
            raise EquivocationError(
                "evidence_not_a_pair", "messages of different senders, rounds or kinds"
            )
        if a.payload_sha256 == b.payload_sha256:
            raise EquivocationError("evidence_same_update", "both messages sign one content")
        proof = Proof(a.sender, a.round, a.envelope, b.envelope, a.kind)
        self._convict(proof)
        return proof

    def sighting(self, env: Envelope) -> Proof | None:
        """A relayed single header: verify it, then :meth:`observe` it.

        Raises
        ------
        EquivocationError
            If the header does not verify.
        """
        if self._duplicate(env):
            return None
        return self.observe(check_sighting(env, self.network_id))

    def proof(self, first: Envelope, second: Envelope) -> Proof | None:
        """A relayed pair: a new :class:`Proof` if it proves equivocation, None if known.

        Raises
        ------
        EquivocationError
            ``evidence_not_a_pair`` (other senders or rounds), ``evidence_same_update``
            (one payload), or a :func:`check_sighting` reason.
        """
        if first.sender_id in self._convicted:
            return None  # known: nothing verified, nothing stored
        return self.pair(
            check_sighting(first, self.network_id), check_sighting(second, self.network_id)
        )

    def _convict(self, proof: Proof) -> None:
        self._convicted[proof.sender] = proof
        if len(self._convicted) > self.max_convicted:
            self._convicted.popitem(last=False)
        # Its sightings are worthless now; drop them to keep the table for others.
        for key in [k for k in self._seen if k[0] == proof.sender]:
            del self._seen[key]
