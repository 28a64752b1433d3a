"""The release guard: clip + noise + durable debit before send, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import text

from node.daemon.privacy_guard import RecordMechanism, ReleaseGuard, ReleaseRefused, tensor_digest
from node.storage import open_store
from node.training.genesis import PrivacySpec
from privacy import epsilon


def _spec(budget: float, z: float = 2.0) -> PrivacySpec:
    return PrivacySpec(
        enabled=True, clip=1.0, noise_multiplier=z, epsilon_budget=budget, delta=1e-5
    )


def test_release_is_clipped_noised_and_debited(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    guard = ReleaseGuard(_spec(50.0), store)
    update = torch.full((10_000,), 3.0)  # norm 300, clipped to 1
    out = guard.release(update)
    assert out.shape == update.shape
    # Noise std z*C = 2 per coordinate: the released vector is nothing like the input.
    assert 1.5 < float(out.std()) < 2.5
    rows = store.ledger_rows()
    assert len(rows) == 1 and rows[0].noise_multiplier == 2.0
    # The ledger's epsilon equals the accounting library's for the same parameters.
    assert rows[0].epsilon_after == pytest.approx(epsilon(2.0, 1.0, 1, 1e-5), rel=1e-9)
    guard.release(update)
    assert store.ledger_rows()[-1].epsilon_after == pytest.approx(
        epsilon(2.0, 1.0, 2, 1e-5), rel=1e-9
    )


def test_budget_exhaustion_refuses_without_debit(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    one = epsilon(2.0, 1.0, 1, 1e-5)
    two = epsilon(2.0, 1.0, 2, 1e-5)
    guard = ReleaseGuard(_spec((one + two) / 2), store)  # room for exactly one release
    guard.release(torch.ones(10))
    with pytest.raises(ReleaseRefused, match="budget exhausted"):
        guard.release(torch.ones(10))
    assert len(store.ledger_rows()) == 1
    assert not guard.releasing
    # A restarted node reads the ledger and still refuses.
    again = ReleaseGuard(_spec((one + two) / 2), store)
    assert again.spent() == pytest.approx(one)
    with pytest.raises(ReleaseRefused):
        again.release(torch.ones(10))


def test_corrupted_ledger_stops_releases_and_is_not_reset(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    guard = ReleaseGuard(_spec(100.0), store)
    for _ in range(3):
        guard.release(torch.ones(4))
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE privacy_ledger SET epsilon_after = 0.0 WHERE seq = 2"))
    fresh = ReleaseGuard(_spec(100.0), store)
    assert not fresh.releasing
    assert "ledger" in fresh.reason
    with pytest.raises(ReleaseRefused, match="ledger"):
        fresh.release(torch.ones(4))
    assert len(store.ledger_rows()) == 3  # nothing appended, nothing deleted


def test_crash_after_debit_over_counts(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    guard = ReleaseGuard(_spec(100.0), store)
    guard.release(torch.ones(4))  # debited; pretend the process died before sending
    store.close()
    reopened = open_store(data_dir=tmp_path)
    assert ReleaseGuard(_spec(100.0), reopened).spent() == pytest.approx(epsilon(2.0, 1.0, 1, 1e-5))


# --- record level ------------------------------------------------------------------------

Z_REC, Q_REC, STEPS_REC = 1.1, 0.05, 20


def _record_spec(sample_epsilon: float | None, *, enabled: bool = True) -> PrivacySpec:
    return PrivacySpec(
        enabled=enabled,
        clip=1.0,
        noise_multiplier=2.0,
        epsilon_budget=1e6,
        delta=1e-5,
        sample_epsilon=sample_epsilon,
        sample_delta=1e-6,
    )


def _mechanism() -> RecordMechanism:
    return RecordMechanism("dp_sgd", Z_REC, Q_REC, STEPS_REC)


def _round(guard: ReleaseGuard, i: int) -> None:
    ticket = guard.open("update")
    private = ticket.privatize_update(torch.ones(8))
    guard.commit(ticket, tensor_digest(private + i))


def test_each_release_debits_both_levels_in_one_transaction(tmp_path: Path) -> None:
    from opacus.accountants import RDPAccountant

    store = open_store(data_dir=tmp_path)
    guard = ReleaseGuard(_record_spec(None), store, record_kind="dp_sgd")
    guard.set_record_mechanism(_mechanism())
    for i in range(3):
        _round(guard, i)
    rows = store.ledger_rows()
    assert [(r.scope, r.release_kind) for r in rows] == [
        ("node", "update"),
        ("record", "dp_sgd"),
    ] * 3
    # Each pair is one transaction: same time, same digest (the bytes sent).
    assert rows[0].created_at == rows[1].created_at
    assert rows[0].release_digest == rows[1].release_digest
    record = [r for r in rows if r.scope == "record"]
    assert all((r.noise_multiplier, r.sample_rate, r.steps) == (Z_REC, Q_REC, 20) for r in record)
    # The record-level epsilon is DP-SGD's: dp-accounting RDP exactly, Opacus within 0.5 %.
    want = epsilon(Z_REC, Q_REC, 3 * STEPS_REC, 1e-6)
    assert record[-1].epsilon_after == pytest.approx(want, rel=1e-9)
    assert guard.record_spent() == pytest.approx(want, rel=1e-9)
    opacus = RDPAccountant()
    opacus.history = [(Z_REC, Q_REC, 3 * STEPS_REC)]
    assert guard.record_spent() == pytest.approx(opacus.get_epsilon(1e-6), rel=5e-3)
    # Node level is unaffected by the record rows.
    assert guard.spent() == pytest.approx(epsilon(2.0, 1.0, 3, 1e-5), rel=1e-9)
    # A restarted node rebuilds both accounts from the ledger.
    again = ReleaseGuard(_record_spec(None), store, record_kind="dp_sgd")
    assert again.record_spent() == pytest.approx(want, rel=1e-9)
    assert again.spent() == pytest.approx(guard.spent(), rel=1e-12)
    assert again.record.steps == 3 * STEPS_REC


def test_record_budget_stops_training_and_nothing_is_debited(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    two = epsilon(Z_REC, Q_REC, 2 * STEPS_REC, 1e-6)
    three = epsilon(Z_REC, Q_REC, 3 * STEPS_REC, 1e-6)
    spec = _record_spec((two + three) / 2, enabled=False)  # record level only
    guard = ReleaseGuard(spec, store, record_kind="dp_sgd")
    guard.set_record_mechanism(_mechanism())
    _round(guard, 0)
    _round(guard, 1)
    with pytest.raises(ReleaseRefused, match="record-level"):
        guard.open("update")
    assert not guard.releasing and not guard.record.active and guard.node.active
    assert len(store.ledger_rows()) == 2
    # Node-level privacy off: no node rows, and nothing was noised.
    assert {r.scope for r in store.ledger_rows()} == {"record"}
    restarted = ReleaseGuard(spec, store, record_kind="dp_sgd")
    restarted.set_record_mechanism(_mechanism())
    with pytest.raises(ReleaseRefused, match="record-level"):
        restarted.open("update")
    assert restarted.record_spent() == pytest.approx(two, rel=1e-9)


def test_clip_only_dp_sgd_claims_nothing(tmp_path: Path) -> None:
    guard = ReleaseGuard(_record_spec(None, enabled=False), open_store(data_dir=tmp_path))
    guard.set_record_mechanism(RecordMechanism("dp_sgd", 0.0, Q_REC, STEPS_REC))
    ticket = guard.open("update")
    guard.commit(ticket, "0" * 64)
    assert guard.store.ledger_rows() == [] and not guard.private
