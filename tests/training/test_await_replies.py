"""rounds.await_replies: a round waits for every sampled peer's push-pull answer."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from node.training.engine import Aggregate, RejectUpdate, RoundEngine
from node.training.spec import RoundSpec

D = 4


def _exchanging(**kw: object) -> RoundEngine:
    spec = RoundSpec(**{"peers_per_round": 2, "round_timeout": 5.0, "max_future": 1, **kw})  # type: ignore[arg-type]
    e = RoundEngine("me", spec, numel=D)
    e.tick(0.0)
    e.on_sampled_peers(0, ("a", "b"), 0.0)
    e.on_local_result(0, torch.ones(D), 1.0)
    return e


def _aggregates(acts: Sequence[object]) -> list[Aggregate]:
    return [a for a in acts if isinstance(a, Aggregate)]


def test_waits_for_sampled_peers_and_merges_every_push() -> None:
    e = _exchanging(await_replies=True)
    # Two pushes from peers we did not sample would end the round without the switch ...
    assert _aggregates(e.on_update("x", 0, torch.zeros(D), 1.1)) == []
    assert _aggregates(e.on_update("y", 0, torch.zeros(D), 1.2)) == []
    assert _aggregates(e.on_update("a", 0, torch.zeros(D), 1.3)) == []
    # ... with it, the round ends when the last sampled peer answers, merging all four.
    agg = _aggregates(e.on_update("b", 0, torch.zeros(D), 1.4))
    assert len(agg) == 1 and sorted(r.sender for r in agg[0].received) == ["a", "b", "x", "y"]


def test_default_ends_after_first_senders() -> None:
    e = _exchanging()
    assert _aggregates(e.on_update("x", 0, torch.zeros(D), 1.1)) == []
    agg = _aggregates(e.on_update("y", 0, torch.zeros(D), 1.2))
    assert len(agg) == 1 and sorted(r.sender for r in agg[0].received) == ["x", "y"]


def test_peer_too_far_ahead_counts_as_answered_and_timeout_still_fires() -> None:
    e = _exchanging(await_replies=True)
    e.on_update("a", 0, torch.zeros(D), 1.1)
    acts = e.on_update("b", 2, torch.zeros(D), 1.2)  # beyond max_future: refused ...
    assert any(isinstance(a, RejectUpdate) and a.reason == "future" for a in acts)
    agg = _aggregates(acts)  # ... but b has answered, so the round ends with a
    assert len(agg) == 1 and [r.sender for r in agg[0].received] == ["a"]
    silent = _exchanging(await_replies=True)
    silent.on_update("a", 0, torch.zeros(D), 1.1)
    assert _aggregates(silent.tick(5.9)) == []
    assert len(_aggregates(silent.tick(6.0))) == 1 and silent.stats["timeouts"] == 1
