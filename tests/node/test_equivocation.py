"""Equivocation evidence: the sans-I/O book (node/wire/equivocation.py) with real signatures."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fednode_proto.v1.envelope_pb2 import Envelope
from node.base.identity import Identity
from node.wire.envelope import SeqCounter, seal
from node.wire.equivocation import (
    EquivocationBook,
    EquivocationError,
    batch_sighting,
    check_sighting,
)
from node.wire.exchange import encode_update

NET = b"n" * 32


@pytest.fixture(scope="module")
def liar() -> Identity:
    return Identity.generate(4)


def header_env(who: Identity, round_idx: int, value: float, seq: SeqCounter) -> Envelope:
    header, _ = encode_update(torch.full((8,), value), round=round_idx, num_samples=1)
    return seal(
        who, NET, "update", header.SerializeToString(), seq=seq.next("update"), round=round_idx
    )


def test_two_payloads_for_one_round_are_a_proof(liar: Identity) -> None:
    seq = SeqCounter()
    book = EquivocationBook(NET)
    a, b = header_env(liar, 5, 1.0, seq), header_env(liar, 5, 2.0, seq)
    assert book.sighting(a) is None  # first sight of (liar, 5)
    assert book.sighting(header_env(liar, 5, 1.0, seq)) is None  # same payload, new seq: honest
    assert book.sighting(header_env(liar, 6, 9.0, seq)) is None  # another round
    proof = book.sighting(b)
    assert proof is not None and proof.sender == liar.node_id and proof.round == 5
    assert book.is_convicted(liar.node_id)
    # Another node verifies the pair on its own and convicts; a repeat changes nothing.
    other = EquivocationBook(NET)
    got = other.proof(proof.first, proof.second)
    assert got is not None and other.convicted() == [liar.node_id]
    assert other.proof(proof.first, proof.second) is None


def test_bad_evidence_is_refused_and_stores_nothing(liar: Identity) -> None:
    seq = SeqCounter()
    honest = Identity.generate(4)
    book = EquivocationBook(NET)
    a = header_env(liar, 5, 1.0, seq)
    same = header_env(liar, 5, 1.0, seq)
    with pytest.raises(EquivocationError) as e:
        book.proof(a, same)
    assert e.value.reason == "evidence_same_update"
    with pytest.raises(EquivocationError) as e:
        book.proof(a, header_env(liar, 6, 2.0, seq))
    assert e.value.reason == "evidence_not_a_pair"
    with pytest.raises(EquivocationError) as e:
        book.proof(a, header_env(honest, 5, 2.0, SeqCounter()))
    assert e.value.reason == "evidence_not_a_pair"
    # A forged second header (payload changed after signing) fails its signature.
    forged = Envelope()
    forged.CopyFrom(a)
    forged.body = header_env(liar, 5, 3.0, SeqCounter()).body
    with pytest.raises(EquivocationError) as e:
        book.proof(a, forged)
    assert e.value.reason == "evidence_bad_envelope"
    with pytest.raises(EquivocationError) as e:
        check_sighting(header_env(liar, 5, 1.0, seq), b"x" * 32)
    assert e.value.reason == "evidence_bad_envelope"
    wrong_kind = seal(liar, NET, "history", a.body, seq=1, round=5)
    with pytest.raises(EquivocationError):
        check_sighting(wrong_kind, NET)
    assert book.convicted() == []


def test_the_book_is_bounded(liar: Identity) -> None:
    seq = SeqCounter()
    book = EquivocationBook(NET, max_sightings=4)
    for r in range(10):
        book.sighting(header_env(liar, r, 1.0, seq))
    assert len(book._seen) == 4
    # Round 0 was evicted: a contradicting header for it is a first sight again.
    assert book.sighting(header_env(liar, 0, 2.0, seq)) is None
    assert book.sighting(header_env(liar, 9, 2.0, seq)) is not None


# --- SPSA scalar batches ---------------------------------------------------------------------


def spsa_batch(who: Identity, round_idx: int, values: list[float], net: bytes = NET) -> Any:
    from fednode_proto.v1 import training_pb2 as pb
    from node.wire.spsa_signing import origin_signing_bytes

    batch = pb.ScalarBatch(
        origin_id=who.node_id,
        dtype="float32",
        scale=1.0,
        origin_public_key=who.public_key,
        entries=[
            pb.ScalarEntry(seed_id=100 + s, round=round_idx, step=s, value=v)
            for s, v in enumerate(values)
        ],
    )
    batch.origin_signature = who.sign(origin_signing_bytes(net, batch))
    return batch


def test_two_spsa_batches_for_one_round_are_a_proof(liar: Identity) -> None:
    book = EquivocationBook(NET)
    a, b = spsa_batch(liar, 7, [0.5, 1.0]), spsa_batch(liar, 7, [0.5, -1.0])
    assert book.observe(batch_sighting(a, NET)) is None
    assert book.observe(batch_sighting(spsa_batch(liar, 7, [0.5, 1.0]), NET)) is None  # resent
    assert book.observe(batch_sighting(spsa_batch(liar, 8, [3.0]), NET)) is None  # next round
    proof = book.observe(batch_sighting(b, NET))
    assert proof is not None and proof.kind == "spsa" and proof.round == 7
    evidence = proof.evidence()
    assert len(evidence.spsa_batches) == 2 and not evidence.updates
    # Another node checks the pair from the evidence alone.
    other = EquivocationBook(NET)
    first, second = evidence.spsa_batches
    got = other.pair(batch_sighting(first, NET), batch_sighting(second, NET))
    assert got is not None and other.convicted() == [liar.node_id]


def test_update_and_spsa_sightings_of_one_round_are_not_compared(liar: Identity) -> None:
    book = EquivocationBook(NET)
    assert book.sighting(header_env(liar, 4, 1.0, SeqCounter())) is None
    assert book.observe(batch_sighting(spsa_batch(liar, 4, [1.0]), NET)) is None
    assert not book.is_convicted(liar.node_id)


def test_bad_spsa_evidence_is_refused(liar: Identity) -> None:
    a = spsa_batch(liar, 7, [0.5, 1.0])
    forged = spsa_batch(liar, 7, [0.5, 1.0])
    forged.entries[0].value = 9.0  # the signature no longer covers it
    other_net = spsa_batch(liar, 7, [2.0], net=b"m" * 32)
    two_rounds = spsa_batch(liar, 7, [1.0, 2.0])
    two_rounds.entries[1].round = 8
    stranger = spsa_batch(liar, 7, [1.0])
    stranger.origin_id = Identity.generate(0).node_id
    for bad in (forged, other_net, two_rounds, stranger):
        with pytest.raises(EquivocationError) as info:
            batch_sighting(bad, NET)
        assert info.value.reason == "evidence_bad_batch"
    book = EquivocationBook(NET)
    with pytest.raises(EquivocationError) as same:
        book.pair(batch_sighting(a, NET), batch_sighting(spsa_batch(liar, 7, [0.5, 1.0]), NET))
    assert same.value.reason == "evidence_same_update"
    with pytest.raises(EquivocationError) as apart:
        book.pair(batch_sighting(a, NET), batch_sighting(spsa_batch(liar, 8, [0.5]), NET))
    assert apart.value.reason == "evidence_not_a_pair"
    assert book.convicted() == []
