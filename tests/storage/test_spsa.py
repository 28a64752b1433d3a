"""SPSA scalar log and signed batches: idempotent appends, catch-up queries, digest."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from node.storage import (
    EMPTY_SEED_SET_DIGEST,
    SeedSetDigest,
    SpsaBatchRecord,
    SpsaEntry,
    Store,
    open_store,
    seed_set_digest,
)

A = "a" * 64
B = "b" * 64


def entry(seed: str, rnd: int = 0, step: int = 0, scalar: float = 0.5) -> SpsaEntry:
    return SpsaEntry(seed_id=seed, round=rnd, sender=A, step=step, scalar=scalar, scale=0.01)


def test_append_is_idempotent_and_reports_duplicates(store: Store) -> None:
    first = store.append_spsa([entry("s1"), entry("s2"), entry("s1")])
    assert first.inserted == ("s1", "s2")
    assert first.duplicates == ("s1",)
    second = store.append_spsa([entry("s2", scalar=9.0), entry("s3")])
    assert second.inserted == ("s3",) and second.duplicates == ("s2",)
    assert store.spsa_count() == 3
    log = store.spsa_since()
    assert [e.seed_id for e in log] == ["s1", "s2", "s3"]
    # The first scalar stays: a duplicate never overwrites.
    assert log[1].scalar == 0.5 and log[1].scale == 0.01
    assert second.last_seq == log[-1].seq
    assert store.append_spsa([]).inserted == ()


def test_spsa_since_round_and_seq(store: Store) -> None:
    store.append_spsa([entry(f"r{r}s{s}", rnd=r, step=s) for r in range(4) for s in range(3)])
    assert {e.round for e in store.spsa_since(round=2)} == {2, 3}
    assert len(store.spsa_since(round=2)) == 6
    log = store.spsa_since()
    cut = log[4].seq
    assert cut is not None
    after = store.spsa_since(after_seq=cut)
    assert [e.seed_id for e in after] == [e.seed_id for e in log[5:]]
    assert len(store.spsa_since(after_seq=cut, limit=2)) == 2
    assert store.spsa_last_seq() == log[-1].seq
    assert store.spsa_has(["r0s0", "nope", "r3s2"]) == {"r0s0", "r3s2"}


def test_digest_is_order_independent_and_matches_the_pure_function(
    db_url: str, new_db_url: Callable[[], str], tmp_path: Path
) -> None:
    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:24] for i in range(300)]
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    with open_store(db_url, data_dir=tmp_path / "one") as s:
        assert s.spsa_digest() == EMPTY_SEED_SET_DIGEST
        # Arrive in three batches in one order ...
        for part in (ids[:100], ids[100:250], ids[250:]):
            s.append_spsa([entry(i) for i in part])
        forward = s.spsa_digest()
        # ... and a prefix digest equals the digest of that prefix.
        seq_100 = s.spsa_since()[99].seq
        assert s.spsa_digest(up_to_seq=seq_100) == seed_set_digest(ids[:100])
    with open_store(new_db_url(), data_dir=tmp_path / "two") as s2:
        s2.append_spsa([entry(i) for i in shuffled])
        assert s2.spsa_digest() == forward
    assert forward == seed_set_digest(reversed(ids))
    assert forward != seed_set_digest(ids[:-1])


def test_seed_set_digest_incremental_and_count_bound() -> None:
    d = SeedSetDigest()
    d.add("x")
    d.update(["y", "z"])
    assert d.count == 3
    assert d.hexdigest() == seed_set_digest(["z", "x", "y"])
    assert seed_set_digest(["x"]) != seed_set_digest(["x", "x"])  # multiplicity counts
    with pytest.raises(ValueError, match="non-empty str"):
        d.add("")


def signed(rnd: int, origin: str = B, wire: bytes = b"signed batch") -> SpsaBatchRecord:
    return SpsaBatchRecord(rnd, origin, wire + bytes([rnd % 256]))


def test_batches_are_stored_with_their_entries_and_the_first_stays(store: Store) -> None:
    result = store.append_spsa([entry("p", rnd=3), entry("q", rnd=3)], batches=[signed(3)])
    assert result.inserted == ("p", "q")
    [stored] = store.spsa_batches()
    assert (stored.round, stored.origin, stored.wire) == (3, B, b"signed batch\x03")
    assert stored.stored_at is not None and stored.stored_at > 1.7e9
    # A second batch for (round, origin) is not stored over the first, in one call or later.
    store.append_spsa([], batches=[signed(3, wire=b"other"), signed(4), signed(4, wire=b"x")])
    assert [(b.round, b.wire) for b in store.spsa_batches()] == [
        (3, b"signed batch\x03"),
        (4, b"signed batch\x04"),
    ]
    assert store.spsa_batch_count() == 2
    assert [b.round for b in store.spsa_batches(round=4)] == [4]


def test_batches_order_by_round_then_origin(store: Store) -> None:
    store.append_spsa([], batches=[signed(2, B), signed(1, B), signed(2, A), signed(10, A)])
    assert [(b.round, b.origin) for b in store.spsa_batches()] == [
        (1, B),
        (2, A),
        (2, B),
        (10, A),
    ]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (SpsaBatchRecord(-1, B, b"w"), "round"),
        (SpsaBatchRecord(1, "B" * 64, b"w"), "origin"),
        (SpsaBatchRecord(1, B, b""), "wire"),
        (SpsaBatchRecord(1, B, "text"), "wire"),  # type: ignore[arg-type]
        (SpsaBatchRecord(1, B, b"w" * (4 * 1024 * 1024 + 1)), "wire"),
    ],
)
def test_bad_batch_rejects_the_whole_call(store: Store, bad: SpsaBatchRecord, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        store.append_spsa([entry("good")], batches=[signed(1), bad])
    assert store.spsa_count() == 0 and store.spsa_batch_count() == 0


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (SpsaEntry("", 0, A, 0, 1.0), "seed_id"),
        (SpsaEntry("s", 0, A, 0, float("nan")), "finite"),
        (SpsaEntry("s", 0, A, 0, 1.0, scale=float("inf")), "finite"),
        (SpsaEntry("s", 0, "zz", 0, 1.0), "sender"),
    ],
)
def test_bad_entries_reject_the_whole_batch(store: Store, bad: SpsaEntry, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        store.append_spsa([entry("good"), bad], batches=[signed(0)])
    assert store.spsa_count() == 0 and store.spsa_batch_count() == 0


def test_large_batch_crosses_in_list_chunks(store: Store) -> None:
    ids = [f"seed-{i}" for i in range(1200)]
    assert len(store.append_spsa([entry(i) for i in ids]).inserted) == 1200
    again = store.append_spsa([entry(i) for i in ids[600:]] + [entry("new")])
    assert again.inserted == ("new",) and len(again.duplicates) == 600
    assert store.spsa_count() == 1201


def test_many_batches_cross_in_list_chunks(store: Store) -> None:
    origins = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(700)]
    store.append_spsa([], batches=[signed(1, o) for o in origins])
    store.append_spsa([], batches=[signed(1, o, b"late") for o in origins[300:]] + [signed(2)])
    assert store.spsa_batch_count() == 701
    assert {b.wire for b in store.spsa_batches() if b.round == 1} == {b"signed batch\x01"}
