"""Reputation, quarantine, event log and node state."""

from __future__ import annotations

import base64

import pytest

from node.storage import SPSA_BATCH_KEY_PREFIX, SpsaBatchRecord, Store

A = "a" * 64
B = "b" * 64


def test_reputation_accumulates(store: Store) -> None:
    assert store.reputation_get(A) is None
    store.reputation_adjust(A, delta=1.0, accepted=1, now=10.0)
    store.reputation_adjust(A, delta=-0.25, rejected=2, now=11.0)
    rec = store.reputation_get(A)
    assert rec is not None
    assert (rec.score, rec.accepted, rec.rejected, rec.updated_at) == (0.75, 1, 2, 11.0)
    store.reputation_adjust(B, rejected=1)
    assert [r.node_id for r in store.reputation_all()] == [A, B]


def test_quarantine_window(store: Store) -> None:
    store.quarantine(A, until=100.0, now=50.0)
    assert store.is_quarantined(A, now=99.0)
    assert not store.is_quarantined(A, now=100.0)
    assert not store.is_quarantined(B, now=0.0)
    store.quarantine(A, until=None)
    assert not store.is_quarantined(A, now=60.0)


def test_bad_reputation_input(store: Store) -> None:
    with pytest.raises(ValueError, match="finite"):
        store.reputation_adjust(A, delta=float("inf"))
    with pytest.raises(ValueError, match=">= 0"):
        store.reputation_adjust(A, rejected=-1)
    with pytest.raises(ValueError, match="node_id"):
        store.quarantine("peer", until=1.0)
    assert store.reputation_all() == []


def test_events(store: Store) -> None:
    i1 = store.log_event("peer.joined", {"node": A}, ts=1.0)
    i2 = store.log_event("update.rejected", {"reason": "nan"}, level="warning", ts=2.0)
    i3 = store.log_event("peer.joined", {"node": B}, ts=3.0)
    assert i1 < i2 < i3
    assert [e.id for e in store.events()] == [i1, i2, i3]
    assert [e.detail["node"] for e in store.events(kind="peer.joined")] == [A, B]
    assert [e.id for e in store.events(after_id=i1, limit=1)] == [i2]
    assert store.events(after_id=i2)[0].level == "info"
    with pytest.raises(ValueError, match="level"):
        store.log_event("x", level="loud")
    with pytest.raises(ValueError, match="kind"):
        store.log_event("")


def test_node_state(store: Store) -> None:
    assert store.get_state("round", default=-1) == -1
    store.set_state("round", 3)
    store.set_states({"round": 4, "model_sha256": "ab" * 32, "info": {"a": [1, 2]}})
    assert store.get_state("round") == 4
    assert store.get_state("info") == {"a": [1, 2]}
    assert store.all_state()["model_sha256"] == "ab" * 32
    with pytest.raises(ValueError, match="reserved"):
        store.set_states({"ok": 1, "storage.x": 2})
    assert store.get_state("ok") is None  # the whole call stored nothing


def test_batches_are_not_node_state(store: Store) -> None:
    # Signed batches have their own table and API; node state neither shows nor takes them.
    store.set_states({"training.round": 8})
    store.append_spsa([], batches=[SpsaBatchRecord(12, A, b"\x00\x01")])
    assert [(b.round, b.origin, b.wire) for b in store.spsa_batches()] == [(12, A, b"\x00\x01")]
    assert store.all_state() == {"training.round": 8}
    assert store.get_state(f"{SPSA_BATCH_KEY_PREFIX}000000012.{A}", "none") == "none"


@pytest.mark.parametrize(
    "key",
    [
        f"{SPSA_BATCH_KEY_PREFIX}000000007.{B}",
        f"{SPSA_BATCH_KEY_PREFIX}7.{B}",
        SPSA_BATCH_KEY_PREFIX,
    ],
)
def test_batch_key_form_is_refused_and_stores_nothing(store: Store, key: str) -> None:
    # Where batches lived before they had a table: a caller still writing there would
    # store them where no reader looks, so the prefix is reserved.
    value = base64.b64encode(b"signed wire").decode()
    with pytest.raises(ValueError, match="append_spsa"):
        store.set_states({"round": 1, key: value})
    with pytest.raises(ValueError, match="reserved"):
        store.set_state(key, value)
    assert store.all_state() == {} and store.spsa_batch_count() == 0


def test_table_counts(store: Store) -> None:
    counts = store.table_counts()
    assert set(counts) >= {"peers", "spsa_batches", "privacy_ledger", "node_state"}
    assert all(v == 0 for v in counts.values())
    store.log_event("a")
    store.reputation_adjust(A, delta=1.0)
    counts = store.table_counts()
    assert counts["events"] == 1 and counts["reputation"] == 1 and counts["peers"] == 0
