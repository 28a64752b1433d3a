"""The release guard: clip + noise + durable debit before send, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import text

from node.genesis import PrivacySpec
from node.privacy_guard import ReleaseGuard, ReleaseRefused
from node.storage import open_store
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
