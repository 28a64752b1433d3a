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


def test_peer_that_will_not_answer_ends_the_wait_without_a_timeout() -> None:
    # A sampled peer whose push failed, or that announced it releases no updates, used to
    # cost a whole round_timeout every round (issue 15).
    e = _exchanging(await_replies=True)
    assert e.awaited_peers() == ("a", "b")
    assert _aggregates(e.on_update("a", 0, torch.zeros(D), 1.1)) == []
    assert e.awaited_peers() == ("b",)
    agg = _aggregates(e.on_peer_unavailable(0, "b", 1.2))
    assert len(agg) == 1 and [r.sender for r in agg[0].received] == ["a"]
    assert e.stats["timeouts"] == 0


def test_unavailable_peer_of_another_round_or_not_sampled_changes_nothing() -> None:
    e = _exchanging(await_replies=True)
    assert e.on_peer_unavailable(1, "b", 1.1) == []  # not our round
    assert e.on_peer_unavailable(0, "z", 1.1) == []  # never sampled
    assert e.awaited_peers() == ("a", "b")
    assert _aggregates(e.on_update("a", 0, torch.zeros(D), 1.2)) == []


def test_without_await_replies_an_unavailable_peer_lowers_the_quorum() -> None:
    e = _exchanging()  # waits for min_updates = peers_per_round = 2 senders
    assert _aggregates(e.on_update("a", 0, torch.zeros(D), 1.1)) == []
    assert len(_aggregates(e.on_peer_unavailable(0, "b", 1.2))) == 1


def test_late_update_of_an_unavailable_peer_is_still_merged_while_waiting() -> None:
    spec = RoundSpec(peers_per_round=3, round_timeout=5.0, await_replies=True)
    e = RoundEngine("me", spec, numel=D)
    e.tick(0.0)
    e.on_sampled_peers(0, ("a", "b", "c"), 0.0)
    e.on_local_result(0, torch.ones(D), 1.0)
    assert e.on_peer_unavailable(0, "c", 1.05) == []
    assert _aggregates(e.on_update("c", 0, torch.zeros(D), 1.1)) == []  # it came after all
    assert _aggregates(e.on_update("a", 0, torch.zeros(D), 1.2)) == []
    agg = _aggregates(e.on_update("b", 0, torch.zeros(D), 1.3))
    assert len(agg) == 1 and sorted(r.sender for r in agg[0].received) == ["a", "b", "c"]


def test_silent_round_sends_nothing_and_waits_for_nobody() -> None:
    spec = RoundSpec(peers_per_round=2, round_timeout=5.0, await_replies=True)
    e = RoundEngine("me", spec, numel=D)
    e.tick(0.0)
    e.on_sampled_peers(0, ("a", "b"), 0.0)
    e.on_update("x", 0, torch.zeros(D), 0.5)  # a push that came before we finished
    acts = e.on_local_result(0, torch.ones(D), 1.0, silent=True)
    assert not [a for a in acts if type(a).__name__ == "SendUpdate"]
    agg = _aggregates(acts)
    assert len(agg) == 1 and [r.sender for r in agg[0].received] == ["x"]


def test_a_live_peer_that_never_answers_costs_one_timeout_not_one_per_round() -> None:
    spec = RoundSpec(peers_per_round=2, round_timeout=5.0, await_replies=True)
    e = RoundEngine("me", spec, numel=D)

    def run_round(now: float) -> float:
        """Start a round sampling a and b; only a answers. Returns when it aggregated."""
        r = e.round
        e.tick(now)
        e.on_sampled_peers(r, ("a", "b"), now)
        e.on_local_result(r, torch.ones(D), now)
        agg = _aggregates(e.on_update("a", r, torch.zeros(D), now + 0.1))
        t = now + 0.1
        while not agg:
            t += 1.0
            agg = _aggregates(e.tick(t))
        e.on_aggregated(r, torch.zeros(D), t)
        return t

    t = run_round(0.0)
    assert t >= 5.0 and e.stats["timeouts"] == 1  # the first silent round waits it out
    t2 = run_round(t)
    assert t2 - t < 1.0 and e.stats["timeouts"] == 1  # later rounds do not wait for b
    # Once b delivers again, it is waited for as before.
    r = e.round
    e.tick(t2)
    e.on_update("b", r, torch.zeros(D), t2)
    e.on_sampled_peers(r, ("a", "b"), t2)
    e.on_local_result(r, torch.ones(D), t2)
    assert len(_aggregates(e.on_update("a", r, torch.zeros(D), t2 + 0.1))) == 1
    e.on_aggregated(r, torch.zeros(D), t2 + 0.2)
    e.on_sampled_peers(r + 1, ("a", "b"), t2 + 0.2)
    e.on_local_result(r + 1, torch.ones(D), t2 + 0.2)
    assert e.awaited_peers() == ("a", "b")
