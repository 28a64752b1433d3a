"""The restart part of a scenario report: resumed state, ledger, catch-up (no root)."""

from __future__ import annotations

from pathlib import Path

from node.testnet.scenario import _Restart, load_scenario

ROOT = Path(__file__).resolve().parents[2]
HASH = "ab" * 32


def _restart(after: dict[str, object]) -> dict[str, object]:
    stored = {"round": 5, "model_hash": HASH, "ledger_seq": 4, "epsilon_after": 1.5}
    return _Restart(2, 10.0, stored, restarted_at=35.0, after=after).report()


def test_resumed_needs_the_stored_round_and_model_hash() -> None:
    same = {"start_round": 5, "first_round": 5, "first_model_hash": HASH}
    report = _restart({**same, "ledger_seq": 4, "epsilon_spent": 1.5, "caught_up": [5, 14]})
    assert report["resumed"] is True and report["model_hash_checked"] is True
    assert report["ledger_continuous"] is True
    assert report["caught_up_rounds"] == [5, 14]
    assert _restart({**same, "first_model_hash": "cd" * 32})["resumed"] is False
    assert _restart({"start_round": 0})["resumed"] is False


def test_a_lost_release_breaks_ledger_continuity() -> None:
    same = {"start_round": 5, "first_round": 5, "first_model_hash": HASH}
    assert _restart({**same, "ledger_seq": 3, "epsilon_spent": 1.2})["ledger_continuous"] is False
    assert _restart({**same})["caught_up_rounds"] is None


def test_byzantine_join_ships_with_a_robust_rule() -> None:
    sc = load_scenario(ROOT / "deploy" / "scenarios" / "byzantine-join.toml")
    joins = [e for e in sc.events if e.action == "byzantine"]
    assert joins and sum(e.count for e in joins) <= sc.f
    assert sc.rule != "mean"
