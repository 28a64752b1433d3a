"""Peer table: upserts that keep bans and first contact, filters, full-range nonces."""

from __future__ import annotations

from typing import Any

import pytest

from node.storage import PeerRecord, Store

A = "a" * 64
B = "b" * 64


def peer(node_id: str = A, **kw: object) -> PeerRecord:
    fields: dict[str, object] = {
        "node_id": node_id,
        "address": "127.0.0.1:7000",
        "public_key": b"\x01" * 32,
        "pow_nonce": 5,
    }
    fields.update(kw)
    return PeerRecord(**fields)  # type: ignore[arg-type]


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
