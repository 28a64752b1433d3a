"""The signed-payload encoder: its rules, and every signer's bytes pinned.

The pinned digests and signatures were computed with the hand-written ``_lp`` encoders
that ``node.base.signing`` replaced (main at ee90587). If an encoding changes by one
byte, signatures already in peer tables, ledgers and other nodes stop verifying; these
tests fail first.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fednode_proto.v1.envelope_pb2 import Envelope
from fednode_proto.v1.training_pb2 import HistoryReport
from node.base.identity import Identity, verify_signature
from node.base.signing import SigningEncoder, lp
from node.daemon.history_gossip import report_signing_bytes
from node.gossip.records import MemberRecord, Statement, StatementKind
from node.wire.envelope import signing_bytes

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_PUB = _KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
IDENT = Identity(_KEY, _PUB, 12345, 0)
NET = bytes(range(100, 132))


def _envelope() -> bytes:
    env = Envelope(
        version=1,
        sender_id=IDENT.node_id,
        sender_public_key=_PUB,
        network_id=NET,
        kind="gossip",
        seq=2**60 + 5,
        round=17,
        timestamp_ms=-3,
        body=b"body" * 100,
    )
    return signing_bytes(env)


def _record() -> bytes:
    rec = MemberRecord(
        node_id=IDENT.node_id,
        public_key=_PUB,
        address="[::1]:7070",
        pow_nonce=12345,
        incarnation=9,
        network_id=NET,
        capabilities=("train", "spsa\u00e9"),
        timestamp_ms=1_700_000_000_000,
        signature=b"",
    )
    return rec.signing_bytes()


def _statement() -> bytes:
    st = Statement(
        kind=StatementKind.DEAD,
        target_id=b"\x05" * 32,
        incarnation=2**63 - 1,
        reporter_id=IDENT.node_id,
        network_id=NET,
        timestamp_ms=1_700_000_000_001,
        signature=b"",
    )
    return st.signing_bytes()


def _history() -> bytes:
    rep = HistoryReport(
        reporter_id=IDENT.node_id,
        reporter_public_key=_PUB,
        subject_id=b"\x06" * 32,
        round=42,
        vector=b"\x00\x00\x80\x3f" * 8,
        hops=3,
    )
    return report_signing_bytes(NET, rep)


# name -> (builder, length, sha256 of the bytes, Ed25519 signature made over the old bytes)
PINNED = {
    "envelope": (
        _envelope,
        162,
        "dd80800c8b47c17bb509f5bb1e5deceb839547c845b6347d47f6c77228b64d4d",
        "13c96ed87172cbb041bd0d7b6fbab669bbc2906e19a22d97889cc1e882fb0559"
        "570c485838dfac2264a4cf685b04e36b7043cd6957d4fc38c3c0df38da015700",
    ),
    "record": (
        _record,
        187,
        "04c3813d9412efaa9a308b9f3672521f18027da017c774b452d8fb3123bc803a",
        "d42f172bea0bbb876e5bff3b55083f1ecc3482994ec72fa7926fdbaa4ccaf756"
        "bfa58edfbf21a39c906f808a0ca36e27fa81c678d94843b77bdbad8c47599505",
    ),
    "statement": (
        _statement,
        146,
        "3637538f7fa9c64766a0d4c6955d021f6e330423856fd511a008498fef69bc25",
        "dfb6d980de0c31e4f57f502f131e69387e20efe53033d63aca92789d08556f8e"
        "7cb1a4d57ebd7cbcb6bb1f9627c4403ca6c3ddd3726a01d2da231453cf320a0f",
    ),
    "history": (
        _history,
        167,
        "27bf0cc0eb336e74f212df05276f94955ffac3e7f30984e527188a4cf3bd1b49",
        "4766b393c2d927357f1177e9ce40412781cbf776a8d7fc0d9efebfdb131059b3"
        "ddbaa96d359c3704dab4fa825f5d8cbe7914efdd0dc5178f0b87f5020f9e0501",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_signed_bytes_are_unchanged(name: str) -> None:
    build, length, digest, signature = PINNED[name]
    data = build()
    assert len(data) == length
    assert hashlib.sha256(data).hexdigest() == digest
    # A signature made before the encoder existed still verifies.
    assert verify_signature(_PUB, bytes.fromhex(signature), data)


def test_statement_layout_byte_by_byte() -> None:
    """The statement layout written out field by field, as documented in gossip.proto."""
    expected = b"".join(
        (
            b"fednode/v1/statement\x00",
            b"\x02",  # kind DEAD, u8
            b"\x20\x00\x00\x00" + NET,
            b"\x20\x00\x00\x00" + b"\x05" * 32,
            (2**63 - 1).to_bytes(8, "little"),
            b"\x20\x00\x00\x00" + IDENT.node_id,
            (1_700_000_000_001).to_bytes(8, "little", signed=True),
        )
    )
    assert _statement() == expected


def test_lp_prefixes_little_endian_u32_length() -> None:
    assert lp(b"") == b"\x00\x00\x00\x00"
    assert lp(b"abc") == b"\x03\x00\x00\x00abc"
    assert lp(b"x" * 258)[:4] == b"\x02\x01\x00\x00"


def test_encoder_chains_fields_in_order() -> None:
    out = (
        SigningEncoder(b"t\x00")
        .field(b"ab")
        .text("\u00e9")
        .pack("Bq", 1, -1)
        .digest(b"body")
        .finish()
    )
    assert out == (
        b"t\x00"
        + b"\x02\x00\x00\x00ab"
        + b"\x02\x00\x00\x00\xc3\xa9"
        + b"\x01"
        + b"\xff" * 8
        + hashlib.sha256(b"body").digest()
    )


def test_length_prefix_keeps_adjacent_fields_apart() -> None:
    """("ab", "c") and ("a", "bc") concatenate alike; their encodings must differ."""
    one = SigningEncoder(b"t\x00").field(b"ab").field(b"c").finish()
    two = SigningEncoder(b"t\x00").field(b"a").field(b"bc").finish()
    assert one != two


@pytest.mark.parametrize("domain", [b"", b"\x00", b"no-nul", b"a\x00b\x00"])
def test_domain_must_be_a_tag_ending_in_one_nul(domain: bytes) -> None:
    with pytest.raises(ValueError, match="NUL"):
        SigningEncoder(domain)


@pytest.mark.parametrize("fmt", ["<Q", ">Q", "!Q", "=Q", "@Q"])
def test_pack_refuses_a_byte_order(fmt: str) -> None:
    with pytest.raises(ValueError, match="byte order"):
        SigningEncoder(b"t\x00").pack(fmt, 1)


def test_pack_out_of_range_is_a_value_error() -> None:
    enc = SigningEncoder(b"t\x00")
    with pytest.raises(ValueError, match="Q"):
        enc.pack("Q", 2**64)
    assert enc.finish() == b"t\x00"  # nothing was appended
