"""Envelope sealing and the admission checks, without any network."""

from __future__ import annotations

import itertools
import time

import pytest

from fednode_proto.v1.envelope_pb2 import Envelope
from node.base.identity import Identity
from node.wire.envelope import EnvelopeError, ReplayWindow, SeqCounter, check_envelope, seal

NET = b"\x01" * 32
OTHER = b"\x02" * 32


@pytest.fixture(scope="module")
def ident() -> Identity:
    return Identity.generate(0)


def _roundtrip(env: Envelope) -> Envelope:
    out = Envelope()
    out.ParseFromString(env.SerializeToString())
    return out


def test_valid_envelope_passes(ident: Identity) -> None:
    env = _roundtrip(seal(ident, NET, "gossip", b"body", seq=7, round=3))
    v = check_envelope(env, NET, replay=ReplayWindow())
    assert (v.sender_id, v.kind, v.seq, v.round, v.body) == (ident.node_id, "gossip", 7, 3, b"body")


def _reason(env: Envelope, **kw: object) -> str:
    with pytest.raises(EnvelopeError) as info:
        check_envelope(env, NET, replay=kw.pop("replay", ReplayWindow()), **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_wrong_network(ident: Identity) -> None:
    assert _reason(seal(ident, OTHER, "gossip", b"", seq=1)) == "wrong_network"


@pytest.mark.parametrize("field", ["body", "kind", "seq", "round", "timestamp_ms"])
def test_any_changed_field_breaks_the_signature(ident: Identity, field: str) -> None:
    env = seal(ident, NET, "gossip", b"body", seq=5, round=1)
    if field == "body":
        env.body = b"bodY"
    elif field == "kind":
        env.kind = "update"
    else:
        setattr(env, field, getattr(env, field) + 1)
    assert _reason(env) == "bad_signature"


def test_sender_id_must_hash_public_key(ident: Identity) -> None:
    env = seal(ident, NET, "gossip", b"", seq=1)
    env.sender_id = b"\x00" * 32
    assert _reason(env) == "bad_sender_id"


def test_impersonation_with_own_key_is_detected(ident: Identity) -> None:
    mallory = Identity.generate(0)
    env = seal(mallory, NET, "gossip", b"", seq=1)
    env.sender_id = ident.node_id  # claims to be ident, signs with own key
    assert _reason(env) == "bad_sender_id"


def test_replay_and_window(ident: Identity) -> None:
    window = ReplayWindow(window=10)
    env = seal(ident, NET, "gossip", b"", seq=100)
    check_envelope(env, NET, replay=window)
    assert _reason(env, replay=window) == "replay"
    # Slightly out of order is fine, far below the window is not.
    check_envelope(seal(ident, NET, "gossip", b"", seq=95), NET, replay=window)
    assert _reason(seal(ident, NET, "gossip", b"", seq=80), replay=window) == "replay"
    # Kinds have separate sequences.
    check_envelope(seal(ident, NET, "update", b"", seq=100), NET, replay=window)


def test_forged_envelope_does_not_burn_sequence(ident: Identity) -> None:
    window = ReplayWindow()
    forged = seal(ident, NET, "gossip", b"x", seq=9)
    forged.body = b"y"
    with pytest.raises(EnvelopeError):
        check_envelope(forged, NET, replay=window)
    check_envelope(seal(ident, NET, "gossip", b"x", seq=9), NET, replay=window)


def test_stale_and_future(ident: Identity) -> None:
    now = int(time.time() * 1000)
    assert _reason(seal(ident, NET, "gossip", b"", seq=1, timestamp_ms=now - 10**6)) == "stale"
    assert _reason(seal(ident, NET, "gossip", b"", seq=1, timestamp_ms=now + 10**6)) == "future"


def test_kind_filter_and_malformed(ident: Identity) -> None:
    env = seal(ident, NET, "spsa", b"", seq=1)
    assert _reason(env, kinds=frozenset({"gossip"})) == "bad_kind"
    env = seal(ident, NET, "gossip", b"", seq=1)
    env.signature = b"\x00" * 10
    assert _reason(env) == "malformed"
    env.version = 99
    assert _reason(env) == "bad_version"


def test_seq_counter_strictly_increasing() -> None:
    c = SeqCounter()
    values = [c.next("gossip") for _ in range(1000)]
    assert all(b > a for a, b in itertools.pairwise(values))
    assert c.next("update") >= values[0]
