"""Peer table, replay detection and received updates."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import text

from node.storage import (
    MessageRecord,
    PayloadCorrupted,
    PeerRecord,
    Store,
    open_store,
)

A = "a" * 64
B = "b" * 64
NET = "c" * 64


def peer(node_id: str = A, **kw: object) -> PeerRecord:
    fields: dict[str, object] = {
        "node_id": node_id,
        "address": "127.0.0.1:7000",
        "public_key": b"\x01" * 32,
        "pow_nonce": 5,
    }
    fields.update(kw)
    return PeerRecord(**fields)  # type: ignore[arg-type]


def msg(seq: int, sender: str = A, kind: str = "update", payload: bytes = b"x") -> MessageRecord:
    return MessageRecord(
        sender=sender,
        kind=kind,
        seq=seq,
        network_id=NET,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
        round=seq,
    )


def test_upsert_peer_inserts_then_updates_without_touching_ban_or_first_seen(store: Store) -> None:
    first = store.upsert_peer(peer(last_seen=100.0, capabilities={"learner": "spsa"}))
    assert first.first_seen == 100.0 and not first.banned
    assert store.set_banned(A) is True
    later = store.upsert_peer(
        peer(address="10.0.0.2:7001", incarnation=3, state="suspect", last_seen=200.0, rtt_ms=4.5)
    )
    assert later.address == "10.0.0.2:7001" and later.incarnation == 3
    assert later.state == "suspect" and later.rtt_ms == 4.5
    assert later.first_seen == 100.0  # kept
    assert later.banned is True  # a gossip upsert never unbans
    assert store.get_peer(A) == later
    assert store.get_peer(B) is None
    assert store.set_banned(B) is False


def test_list_peers_filters(store: Store) -> None:
    store.upsert_peer(peer(A))
    store.upsert_peer(peer(B, state="dead"))
    store.set_banned(B)
    assert [p.node_id for p in store.list_peers()] == [A, B]
    assert [p.node_id for p in store.list_peers(state="alive")] == [A]
    assert [p.node_id for p in store.list_peers(include_banned=False)] == [A]
    assert store.delete_peer(B) and not store.delete_peer(B)
    assert [p.node_id for p in store.list_peers()] == [A]


def test_full_range_pow_nonce_and_bytes_round_trip(store: Store) -> None:
    key = bytes(range(32))
    store.upsert_peer(peer(pow_nonce=2**64 - 1, public_key=key))
    got = store.get_peer(A)
    assert got is not None and got.pow_nonce == 2**64 - 1 and got.public_key == key
    store.upsert_peer(peer(pow_nonce=2**63))
    assert store.get_peer(A).pow_nonce == 2**63  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"node_id": "xyz"}, "node_id"),
        ({"node_id": "A" * 64}, "lower-case hex"),
        ({"state": "zombie"}, "state"),
        ({"pow_nonce": 2**64}, "pow_nonce"),
        ({"pow_nonce": -1}, "pow_nonce"),
    ],
)
def test_bad_peers_are_rejected_and_not_stored(
    store: Store, bad: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        store.upsert_peer(peer(**bad))
    assert store.list_peers() == []


def test_record_message_detects_replays(store: Store) -> None:
    assert store.record_message(msg(1)) is True
    assert store.record_message(msg(1)) is False  # same (sender, kind, seq)
    assert store.record_message(msg(1, payload=b"other")) is False  # even with another body
    assert store.record_message(msg(1, kind="gossip")) is True
    assert store.record_message(msg(1, sender=B)) is True
    assert store.record_message(msg(5)) is True
    assert store.count_messages() == 4
    assert store.count_messages(kind="update") == 3
    assert store.message_seen(A, "update", 1) and not store.message_seen(A, "update", 2)
    assert store.max_seq(A, "update") == 5
    assert store.max_seq(B, "gossip") is None


def test_bad_message_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="payload_sha256"):
        store.record_message(MessageRecord(A, "update", 1, NET, "nothex", 1))
    with pytest.raises(ValueError, match="seq"):
        store.record_message(msg(-1))
    assert store.count_messages() == 0


def _floats(n: int, start: float = 0.0) -> bytes:
    return torch.arange(start, start + n, dtype=torch.float32).numpy().tobytes()


def test_store_update_inline_and_tensor_round_trip(store: Store) -> None:
    payload = _floats(6)
    uid = store.store_update(3, A, payload, dtype="float32", shape=(2, 3))
    assert isinstance(uid, int)
    rejected = store.store_update(
        3, B, b"", dtype="float32", shape=(2, 3), accepted=False, reason="non-finite values"
    )
    assert rejected is not None
    (u,) = store.list_updates(3, accepted=True)
    assert u.payload == payload and not u.stored_in_file
    assert u.shape == (2, 3) and u.dtype == "float32"
    assert torch.equal(u.tensor(), torch.arange(6, dtype=torch.float32).reshape(2, 3))
    (r,) = store.list_updates(3, accepted=False)
    assert r.reason == "non-finite values" and r.sender == B
    assert len(store.list_updates(3)) == 2
    assert store.list_updates(4) == []
    assert [x.sender for x in store.list_updates(3, sender=B)] == [B]
    assert store.list_updates(3, with_payload=False)[0].payload is None


def test_large_update_goes_to_a_file_and_is_verified(db_url: str, data_dir: Path) -> None:
    with open_store(db_url, data_dir=data_dir, inline_limit=64) as s:
        payload = _floats(100)
        s.store_update(1, A, payload, dtype="float32", shape=(100,))
        (u,) = s.list_updates(1)
        assert u.stored_in_file and u.payload == payload
        files = list((data_dir / "updates").glob("*.bin"))
        assert len(files) == 1 and files[0].read_bytes() == payload
        files[0].write_bytes(_floats(100, start=1.0))
        with pytest.raises(PayloadCorrupted, match="sha256"):
            s.list_updates(1)


def test_inline_payload_corruption_is_detected(store: Store) -> None:
    store.store_update(1, A, _floats(4), dtype="float32", shape=(4,))
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE updates SET payload = :p"), {"p": _floats(4, 9.0)})
    with pytest.raises(PayloadCorrupted):
        store.list_updates(1)


def test_update_with_replayed_message_stores_nothing(store: Store) -> None:
    assert (
        store.store_update(1, A, _floats(2), dtype="float32", shape=(2,), message=msg(1))
        is not None
    )
    assert store.store_update(1, A, _floats(2), dtype="float32", shape=(2,), message=msg(1)) is None
    (u,) = store.list_updates(1)
    assert u.message_id is not None
    assert store.count_messages() == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "complex64", "shape": (2,)}, "dtype"),
        ({"dtype": "float32", "shape": (3,)}, "need 12"),
        ({"dtype": "float32", "shape": (-2,)}, "negative"),
    ],
)
def test_bad_updates_are_rejected_and_not_stored(
    store: Store, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        store.store_update(1, A, _floats(2), **kwargs)  # type: ignore[arg-type]
    assert store.list_updates(1) == []


def test_prune_updates_removes_rows_and_files(db_url: str, data_dir: Path) -> None:
    with open_store(db_url, data_dir=data_dir, inline_limit=8) as s:
        for rnd in range(4):
            s.store_update(rnd, A, _floats(8, float(rnd)), dtype="float32", shape=(8,))
        assert len(list((data_dir / "updates").glob("*.bin"))) == 4
        assert s.prune_updates(before_round=2) == 2
        assert s.list_updates(0) == [] and s.list_updates(1) == []
        assert len(s.list_updates(3)) == 1
        assert len(list((data_dir / "updates").glob("*.bin"))) == 2
