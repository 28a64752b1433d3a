"""Privacy ledger: hash chain, in-transaction budget check, corruption detection."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path

import pytest
from sqlalchemy import text

from node.storage import (
    GENESIS_HASH,
    LedgerConflict,
    LedgerCorrupted,
    LedgerRelease,
    LedgerRow,
    Store,
    open_store,
)


class BudgetExceeded(Exception):
    pass


def release(eps: float, i: int = 0) -> LedgerRelease:
    return LedgerRelease(
        epsilon_after=eps,
        delta=1e-5,
        noise_multiplier=1.1,
        sample_rate=1.0,
        steps=1,
        release_kind="update",
        release_digest=hashlib.sha256(f"release-{i}".encode()).hexdigest(),
    )


def fill(store: Store, n: int) -> list[LedgerRow]:
    return [store.ledger_append(release(0.5 * (i + 1), i)) for i in range(n)]


def test_rows_chain_and_verify(store: Store) -> None:
    assert store.ledger_verify() == 0 and store.ledger_tip() is None
    rows = fill(store, 5)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    assert store.ledger_rows() == rows
    assert store.ledger_rows(after_seq=3) == rows[3:]
    assert store.ledger_tip() == rows[-1]
    assert store.ledger_verify() == 5


def test_budget_check_runs_inside_and_refusal_stores_nothing(store: Store) -> None:
    budget = 1.0
    seen: list[LedgerRow | None] = []

    def check(tip: LedgerRow | None, rel: LedgerRelease) -> None:
        seen.append(tip)
        if rel.epsilon_after > budget:
            raise BudgetExceeded(f"release would spend {rel.epsilon_after} > {budget}")

    first = store.ledger_append(release(0.6, 1), budget_check=check)
    assert seen == [None]
    with pytest.raises(BudgetExceeded):
        store.ledger_append(release(1.2, 2), budget_check=check, event_detail={"x": 1})
    assert seen[-1] == first
    assert store.ledger_rows() == [first]
    assert store.events(kind="privacy.release") == []  # refused: no event either
    assert store.ledger_verify() == 1


def test_event_is_logged_in_the_same_transaction(store: Store) -> None:
    row = store.ledger_append(release(0.3), event_detail={"round": 4})
    (ev,) = store.events(kind="privacy.release")
    assert ev.detail == {"seq": row.seq, "scope": "node", "epsilon_after": 0.3, "round": 4}


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE privacy_ledger SET epsilon_after = 0.01 WHERE seq = 2",
        "UPDATE privacy_ledger SET release_digest = '" + "f" * 64 + "' WHERE seq = 3",
        "UPDATE privacy_ledger SET steps = 0 WHERE seq = 1",
        "DELETE FROM privacy_ledger WHERE seq = 2",
        "DELETE FROM privacy_ledger WHERE seq = 4",
        "DELETE FROM privacy_ledger",
    ],
)
def test_tampering_is_detected_and_blocks_further_releases(
    store: Store, db_url: str, data_dir: Path, sql: str
) -> None:
    fill(store, 4)
    with store.engine.begin() as conn:
        conn.execute(text(sql))
    rows_after_tamper = store.ledger_rows()
    # A restarted node refuses to release on its first append, without an explicit verify.
    with open_store(db_url, data_dir=data_dir) as restarted:
        with pytest.raises(LedgerCorrupted):
            restarted.ledger_append(release(9.0, 9))
        with pytest.raises(LedgerCorrupted):
            restarted.ledger_append(release(9.0, 9))  # and keeps refusing
    # The running node detects it on verify, and then refuses to release too.
    with pytest.raises(LedgerCorrupted):
        store.ledger_verify()
    with pytest.raises(LedgerCorrupted):
        store.ledger_append(release(9.0, 9))
    assert store.ledger_rows() == rows_after_tamper  # nothing was appended


def test_edit_behind_a_running_store_is_caught_at_its_next_verify(store: Store) -> None:
    fill(store, 3)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE privacy_ledger SET epsilon_after = 0.0 WHERE seq = 3"))
    with pytest.raises(LedgerCorrupted, match="row 3"):
        store.ledger_append(release(2.0, 3))  # the last verified row is always re-checked


def test_rehashed_edit_of_the_tip_is_still_caught_by_the_recorded_tip(store: Store) -> None:
    # An editor who recomputes the newest row's hash still has to fix the tip record.
    rows = fill(store, 3)
    from node.storage.ledger_chain import make_row

    forged = make_row(3, rows[2].created_at, release(0.0, 2), rows[1].row_hash)
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE privacy_ledger SET epsilon_after = 0.0, row_hash = :h WHERE seq = 3"),
            {"h": forged.row_hash},
        )
    with pytest.raises(LedgerCorrupted, match="tip"):
        store.ledger_verify()
    with pytest.raises(LedgerCorrupted):
        store.ledger_append(release(2.0, 3))


def test_tip_key_is_reserved(store: Store) -> None:
    fill(store, 1)
    with pytest.raises(ValueError, match="reserved"):
        store.set_state("storage.ledger_tip", {"seq": 0, "row_hash": GENESIS_HASH})
    assert store.ledger_verify() == 1


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("epsilon_after", float("nan"), "epsilon_after"),
        ("delta", -1.0, "delta"),
        ("sample_rate", 0.0, "sample_rate"),
        ("steps", 0, "steps"),
        ("release_kind", "", "release_kind"),
        ("release_digest", "abc", "release_digest"),
    ],
)
def test_bad_release_is_rejected(store: Store, field: str, value: object, match: str) -> None:
    bad = dataclasses.replace(release(1.0), **{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        store.ledger_append(bad)
    assert store.ledger_rows() == []


def test_expected_prev_seq_refuses_a_stale_computation(store: Store) -> None:
    # The caller computed epsilon_after from an empty ledger ...
    assert store.ledger_append(release(0.5, 1), expected_prev_seq=0).seq == 1
    # ... but a second caller computed from the same empty ledger: refused, nothing stored.
    with pytest.raises(LedgerConflict, match="expected the newest row to be 0, it is 1"):
        store.ledger_append(release(0.5, 2), expected_prev_seq=0)
    assert store.ledger_append(release(1.0, 2), expected_prev_seq=1).seq == 2
    assert store.ledger_verify() == 2


def test_one_transaction_debits_both_scopes_or_neither(store: Store) -> None:
    node = release(0.5, 1)
    record = dataclasses.replace(
        release(2.0, 2), scope="record", sample_rate=0.01, release_kind="dp_sgd", steps=60
    )
    rows = store.ledger_extend([node, record], event_detail={"round": 0})
    assert [(r.seq, r.scope) for r in rows] == [(1, "node"), (2, "record")]
    assert rows[1].prev_hash == rows[0].row_hash
    assert store.ledger_verify() == 2
    assert [e.detail["scope"] for e in store.events(kind="privacy.release")] == ["node", "record"]

    def refuse_record(tip: LedgerRow | None, rel: LedgerRelease) -> None:
        if rel.scope == "record":
            raise BudgetExceeded("record-level budget")

    with pytest.raises(BudgetExceeded):
        store.ledger_extend([release(0.6, 3), record], budget_check=refuse_record)
    assert store.ledger_verify() == 2  # the node row of the refused pair was not stored
    with pytest.raises(ValueError, match="scope"):
        store.ledger_extend([dataclasses.replace(record, scope="world")])


def test_relabelling_a_rows_scope_breaks_the_chain(store: Store) -> None:
    store.ledger_append(release(0.5, 1))
    store.ledger_append(dataclasses.replace(release(1.0, 2), scope="record"))
    with store.engine.begin() as conn:
        # Passing a record-level spend off as node-level (or back) is an edit like any other.
        conn.execute(text("UPDATE privacy_ledger SET scope = 'node' WHERE seq = 2"))
    with pytest.raises(LedgerCorrupted, match="row 2"):
        store.ledger_verify()
