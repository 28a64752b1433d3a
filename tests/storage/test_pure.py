"""Database-free parts: ledger hash chain, seed-set digest, atomic file writes."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.storage import LedgerCorrupted, LedgerRelease, seed_set_digest
from node.storage.files import atomic_write
from node.storage.ledger_chain import GENESIS_HASH, make_row, verify_chain
from node.storage.models import UInt64
from node.storage.records import LedgerRow

finite = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


def chain(epsilons: list[float]) -> list[LedgerRow]:
    rows: list[LedgerRow] = []
    prev = GENESIS_HASH
    for i, eps in enumerate(epsilons):
        rel = LedgerRelease(
            eps, 1e-5, 1.0, 0.5, 1, "update", hashlib.sha256(bytes([i])).hexdigest()
        )
        row = make_row(i + 1, 1000.0 + i, rel, prev)
        rows.append(row)
        prev = row.row_hash
    return rows


@settings(max_examples=60, deadline=None)
@given(
    epsilons=st.lists(finite, min_size=1, max_size=8),
    data=st.data(),
)
def test_any_single_field_change_breaks_the_chain(
    epsilons: list[float], data: st.DataObject
) -> None:
    rows = chain(epsilons)
    tip = (rows[-1].seq, rows[-1].row_hash)
    assert verify_chain(rows, tip) == len(rows)
    i = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(
        st.sampled_from(
            [
                "created_at",
                "epsilon_after",
                "delta",
                "noise_multiplier",
                "sample_rate",
                "steps",
                "release_kind",
                "release_digest",
                "prev_hash",
                "row_hash",
                "seq",
            ]
        )
    )
    old = getattr(rows[i], field)
    if isinstance(old, bool) or field in ("steps", "seq"):
        new: object = old + 1
    elif isinstance(old, float):
        new = old + 0.5 if old < 1e5 else old / 2
    else:
        new = ("f" if old[0] != "f" else "e") + old[1:]
    tampered = list(rows)
    changes: dict[str, Any] = {field: new}
    tampered[i] = dataclasses.replace(rows[i], **changes)
    with pytest.raises(LedgerCorrupted):
        verify_chain(tampered, tip)


def test_chain_gaps_reorders_and_tips() -> None:
    rows = chain([0.1, 0.2, 0.3])
    tip = (3, rows[-1].row_hash)
    with pytest.raises(LedgerCorrupted, match="expected row seq 2"):
        verify_chain([rows[0], rows[2]], tip)
    with pytest.raises(LedgerCorrupted):
        verify_chain([rows[1], rows[0], rows[2]], tip)
    with pytest.raises(LedgerCorrupted, match="truncated"):
        verify_chain(rows[:2], tip)
    with pytest.raises(LedgerCorrupted, match="no recorded tip"):
        verify_chain(rows, None)
    with pytest.raises(LedgerCorrupted, match="empty"):
        verify_chain([], tip)
    assert verify_chain([], None) == 0


@settings(max_examples=50, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=12), max_size=30), st.randoms())
def test_seed_set_digest_depends_only_on_the_set(ids: set[str], rnd: object) -> None:
    order = sorted(ids)
    shuffled = list(order)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert seed_set_digest(order) == seed_set_digest(shuffled)
    if ids:
        assert seed_set_digest(order[1:]) != seed_set_digest(order)


def test_uint64_two_complement_mapping() -> None:
    t = UInt64()
    for v in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        stored = t.process_bind_param(v, None)  # type: ignore[arg-type]
        assert stored is not None and -(2**63) <= stored < 2**63
        assert t.process_result_value(stored, None) == v  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        t.process_bind_param(2**64, None)  # type: ignore[arg-type]


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two" * 1000)
    assert target.read_bytes() == b"two" * 1000
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)
    assert os.listdir(target.parent) == ["f.bin"]
