"""Signing and checking member records and statements; every rejection counted."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable

import pytest

from node.base.identity import Identity, pow_check
from node.gossip import (
    MemberRecord,
    RecordError,
    RecordVerifier,
    StatementKind,
    sign_record,
    sign_statement,
)
from node.gossip.records import RECORD_DOMAIN


def _record(ident: Identity, network: bytes, **kw: object) -> MemberRecord:
    args: dict[str, object] = {
        "address": "10.0.0.1:7000",
        "incarnation": 3,
        "network_id": network,
        "timestamp_ms": 1_700_000_000_000,
        "capabilities": ("spsa", "lora"),
    }
    args.update(kw)
    return sign_record(ident, **args)  # type: ignore[arg-type]


def test_record_roundtrip_and_explicit_layout(
    ident: Callable[..., Identity], network_id: bytes
) -> None:
    me = ident(1)
    rec = _record(me, network_id)
    v = RecordVerifier(network_id, 0)
    assert v.check_record(rec) is rec
    assert MemberRecord.from_bytes(rec.to_bytes()) == rec
    sb = rec.signing_bytes()
    # The layout is explicit: domain, then length-prefixed network id, node id, key...
    assert sb.startswith(RECORD_DOMAIN + struct.pack("<I", 32) + network_id)
    assert sb.endswith(struct.pack("<I", 4) + b"lora")
    assert not v.rejected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"address": "10.6.6.6:7000"}, "bad_signature"),
        ({"incarnation": 99}, "bad_signature"),
        ({"capabilities": ("admin",)}, "bad_signature"),
        ({"network_id": hashlib.sha256(b"other").digest()}, "wrong_network"),
        ({"node_id": bytes(32)}, "bad_node_id"),
        ({"address": "no-port"}, "bad_address"),
    ],
)
def test_tampered_records_are_rejected_and_counted(
    ident: Callable[..., Identity], network_id: bytes, change: dict[str, object], reason: str
) -> None:
    rec = dataclasses.replace(_record(ident(1), network_id), **change)  # type: ignore[arg-type]
    v = RecordVerifier(network_id, 0)
    with pytest.raises(RecordError) as err:
        v.check_record(rec)
    assert err.value.reason == reason
    assert v.rejected == {reason: 1}


def test_record_signed_by_someone_else_is_forgery(
    ident: Callable[..., Identity], network_id: bytes
) -> None:
    victim, attacker = ident(1), ident(2)
    forged = dataclasses.replace(
        _record(victim, network_id),
        signature=attacker.sign(_record(victim, network_id).signing_bytes()),
    )
    v = RecordVerifier(network_id, 0)
    with pytest.raises(RecordError, match="owner signature"):
        v.check_record(forged)
    assert v.rejected["bad_signature"] == 1


def test_proof_of_work_is_required_at_network_difficulty(
    ident: Callable[..., Identity], network_id: bytes
) -> None:
    cheap = ident(3, 0)
    rec = _record(cheap, network_id)
    strict = RecordVerifier(network_id, 12)
    assert not pow_check(cheap.public_key, rec.pow_nonce, 12)  # true for this fixed key
    with pytest.raises(RecordError) as err:
        strict.check_record(rec)
    assert err.value.reason == "bad_pow"
    stamped = ident(4, 12)
    assert strict.check_record(_record(stamped, network_id)).pow_nonce == stamped.pow_nonce


def test_statements_are_signed_by_their_reporter(
    ident: Callable[..., Identity], network_id: bytes
) -> None:
    reporter, other = ident(1), ident(2)
    st = sign_statement(
        reporter,
        StatementKind.SUSPECT,
        target_id=other.node_id,
        incarnation=4,
        network_id=network_id,
        timestamp_ms=1,
    )
    v = RecordVerifier(network_id, 0)
    assert v.check_statement(st, reporter.public_key) is st
    # A relay cannot pass the statement off as someone else's, nor alter it.
    with pytest.raises(RecordError):
        v.check_statement(st, other.public_key)
    with pytest.raises(RecordError):
        v.check_statement(dataclasses.replace(st, kind=StatementKind.DEAD), reporter.public_key)
    with pytest.raises(RecordError) as err:
        v.check_statement(st, None)
    assert err.value.reason == "unknown_reporter"
    assert v.rejected == {"bad_signature": 2, "unknown_reporter": 1}


def test_only_a_member_itself_can_leave(ident: Callable[..., Identity], network_id: bytes) -> None:
    a, b = ident(1), ident(2)
    st = sign_statement(
        a,
        StatementKind.LEFT,
        target_id=b.node_id,
        incarnation=0,
        network_id=network_id,
        timestamp_ms=1,
    )
    v = RecordVerifier(network_id, 0)
    with pytest.raises(RecordError, match="only a member itself"):
        v.parse_statement(st.to_pb())
    assert v.rejected["malformed"] == 1


def test_malformed_bytes_give_a_clear_error() -> None:
    with pytest.raises(RecordError, match="not a MemberRecord"):
        MemberRecord.from_bytes(b"\xff\xff\xff")
    with pytest.raises(RecordError, match="length"):
        MemberRecord.from_bytes(b"")
