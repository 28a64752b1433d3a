"""Equivocation evidence on the wire: update sightings and proofs over ``PushEvidence``.

SPSA scalar batches are compared too (:meth:`EvidenceExchange.seen_batch`): every batch a
member pushes or we pull is checked against the batches of the same origin and round seen
before, a batch received straight from its origin is relayed as a sighting (like an update
header), and two different origin-signed batches become a proof spread and checked like an
update pair.

A node that equivocates sends different peers different updates for one round, so no
single receiver sees both. Every node therefore relays the signed *header* of each update
it receives from a member (a sighting: a few hundred bytes, never the payload) to
``fanout`` random members. A node holding two headers of one sender and round with
different payload hashes has a proof (:mod:`node.wire.equivocation`): it quarantines the
sender through the reputation book and pushes the pair to every member it knows (up to
``max_relay``); each node that verifies the pair does the same once, so the proof floods
the view while each node checks it at most once.

Bounded work: a relayed sighting costs one signature check and one table entry (bounded,
least recently seen evicted), a proof two checks and is ignored once its sender is
convicted; a relayed sighting is never relayed again. Evidence that does not verify is
refused with an ``evidence_*`` reason code and charged to the relay (an honest relay
verified it before relaying).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc

from fednode_proto.v1.envelope_pb2 import Envelope
from fednode_proto.v1.evidence_pb2 import Evidence
from fednode_proto.v1.training_pb2 import ScalarBatch, TensorHeader
from node.base.logs import log
from node.daemon.context import Convictor, MembershipView, NodeContext
from node.daemon.tasks import TaskSet
from node.wire.envelope import SeqCounter, Verified, seal
from node.wire.equivocation import (
    EquivocationBook,
    EquivocationError,
    Proof,
    Sighting,
    batch_sighting,
)
from node.wire.service import Rejected

__all__ = ["EvidenceExchange"]


class EvidenceExchange:
    """Detects equivocating senders and spreads the proof (one per daemon).

    Parameters
    ----------
    ctx : NodeContext
        Identity, channels, metrics and store.
    membership : MembershipView
        Who relays are sent to (members only).
    convictor : Convictor
        Quarantines a proven equivocator (the reputation book, through the peer policy).
    fanout : int, default 3
        Members each received update header is relayed to.
    max_relay : int, default 32
        Members a new proof is pushed to.
    """

    def __init__(
        self,
        ctx: NodeContext,
        membership: MembershipView,
        convictor: Convictor,
        *,
        fanout: int = 3,
        max_relay: int = 32,
    ) -> None:
        self.ctx = ctx
        self.membership = membership
        self.convictor = convictor
        self.book = EquivocationBook(ctx.network_id)
        self.fanout = fanout
        self.max_relay = max_relay
        self.seq = SeqCounter()
        self._tasks = TaskSet("evidence")
        self._rng = random.Random()

    # --- inbound ---------------------------------------------------------------------------

    def seen_update(self, env: Envelope, msg: Verified, header: TensorHeader) -> None:
        """An update header the service verified: check it against what we saw, relay it."""
        if header.round != msg.round or len(header.payload_sha256) != 32:
            return  # refused as bad_round/bad_hash by the runtime; proves nothing
        sighting = Sighting(msg.sender_id, int(msg.round), bytes(header.payload_sha256), env)
        proof = self.book.observe(sighting)
        if proof is not None:
            self._convict(proof, source="received")
            return
        if self.book.is_convicted(msg.sender_id):
            return
        # Only members' updates are relayed: a key outside the view cannot use us to
        # multiply its traffic (its contradictions are still found by whoever it reaches).
        if self.membership.is_member(msg.sender_id):
            self._push(Evidence(updates=[env]), self._targets(self.fanout, msg.sender_id))

    def seen_batch(self, batch: ScalarBatch, *, relay: bool = False) -> None:
        """An SPSA batch an admitted member pushed, or we pulled: compare it, maybe relay it.

        At most one signature check per distinct batch (repeats are recognised by their
        bytes first); a batch that does not verify proves nothing and is left to the SPSA
        runtime, which refuses it with its own reason. With ``relay`` (the batch came
        straight from its origin), it is relayed as a sighting to ``fanout`` members: in
        small networks origins push to every member themselves and nobody forwards, and a
        pull names the batches it holds by (round, origin) only, so without sightings an
        origin that shows two nodes two different batches is never caught and the two
        nodes' models drift apart.
        """
        origin = bytes(batch.origin_id)
        if self.book.is_convicted(origin) or self.book.seen(batch):
            return
        try:
            sighting = batch_sighting(batch, self.ctx.network_id)
        except EquivocationError:
            return
        proof = self.book.observe(sighting)
        if proof is not None:
            self._convict(proof, source="received")
        elif relay and self.membership.is_member(origin):
            self._push(Evidence(spsa_batches=[batch]), self._targets(self.fanout, origin))

    async def on_evidence(self, msg: Verified, evidence: Evidence) -> None:
        """A relayed sighting or proof; raise :class:`Rejected` if it proves nothing."""
        try:
            if evidence.spsa_batches:
                batches = evidence.spsa_batches
                if len(batches) > 2 or evidence.updates:
                    raise Rejected("evidence_malformed", "one or two SPSA batches, nothing else")
                if self.book.is_convicted(bytes(batches[0].origin_id)):
                    return  # known: nothing verified
                if len(batches) == 1:  # a sighting: never relayed again
                    if self.book.seen(batches[0]):
                        return
                    proof = self.book.observe(batch_sighting(batches[0], self.ctx.network_id))
                else:
                    proof = self.book.pair(
                        batch_sighting(batches[0], self.ctx.network_id),
                        batch_sighting(batches[1], self.ctx.network_id),
                    )
            elif len(evidence.updates) == 1:
                proof = self.book.sighting(evidence.updates[0])
            elif len(evidence.updates) == 2:
                proof = self.book.proof(evidence.updates[0], evidence.updates[1])
            else:
                raise Rejected("evidence_malformed", "one header (sighting) or two (proof)")
        except EquivocationError as exc:
            raise Rejected(exc.reason, str(exc)) from None
        if proof is not None:
            self._convict(proof, source=msg.sender_id.hex()[:16])

    # --- conviction ------------------------------------------------------------------------

    def _convict(self, proof: Proof, *, source: str) -> None:
        sender = proof.sender.hex()
        self.convictor.convict(sender, "equivocation")
        self.ctx.metrics.messages_rejected.labels(reason="equivocation").inc()
        detail = {
            "node_id": sender[:16],
            "round": proof.round,
            "kind": proof.kind,
            "source": source,
        }
        log.warning("equivocation proven", extra={"fields": detail})
        store = self.ctx.store
        fut = asyncio.get_running_loop().run_in_executor(
            None, lambda: store.log_event("equivocation", {**detail, "node_id": sender})
        )
        fut.add_done_callback(_log_failure)
        self._push(proof.evidence(), self._targets(self.max_relay, proof.sender))

    # --- outbound --------------------------------------------------------------------------

    def _targets(self, k: int, exclude: bytes) -> list[str]:
        if k <= 0:
            return []
        membership = self.membership
        own = self.ctx.identity.node_id
        addresses = [
            m.address
            for m in membership.members()
            if m.node_id not in (exclude, own) and membership.is_member(m.node_id)
        ]
        self._rng.shuffle(addresses)
        return addresses[:k]

    def _push(self, evidence: Evidence, addresses: list[str]) -> None:
        if not addresses:
            return
        env = seal(
            self.ctx.identity,
            self.ctx.network_id,
            "evidence",
            evidence.SerializeToString(),
            seq=self.seq.next("evidence"),
        )
        for address in addresses:
            self._tasks.spawn(self._send(address, env))

    async def _send(self, address: str, env: Envelope) -> None:
        try:
            receipt = await self.ctx.channels.stub(address).PushEvidence(env, timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            log.debug("evidence push failed", extra={"fields": {"code": exc.code().name}})
            return
        self.ctx.metrics.bytes.labels(direction="out", kind="evidence").inc(env.ByteSize())
        if not receipt.accepted:
            log.debug("peer refused evidence", extra={"fields": {"reason": receipt.reason}})


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("equivocation event write failed: %s", fut.exception())
