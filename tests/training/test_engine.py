from __future__ import annotations

import pytest
import torch

from node.training.engine import (
    Action,
    Aggregate,
    Evaluate,
    Phase,
    Received,
    RejectUpdate,
    RoundEngine,
    SamplePeers,
    SendUpdate,
    TrainLocal,
    aggregate_round,
)
from node.training.spec import RoundSpec

D = 4


def _engine(**kw: object) -> RoundEngine:
    spec = RoundSpec(**{"peers_per_round": 2, "round_timeout": 5.0, "eval_every": 2, **kw})  # type: ignore[arg-type]
    return RoundEngine("me", spec, numel=D)


def _start(e: RoundEngine, peers: tuple[str, ...] = ("a", "b"), now: float = 0.0) -> list[Action]:
    acts = e.tick(now)
    assert [type(a) for a in acts] == [SamplePeers, TrainLocal]
    assert e.on_sampled_peers(e.round, peers, now) == []
    return e.on_local_result(e.round, torch.ones(D), now + 1)


def test_round_flow_send_aggregate_evaluate(rules) -> None:  # type: ignore[no-untyped-def]
    e = _engine()
    acts = _start(e)
    assert len(acts) == 1 and isinstance(acts[0], SendUpdate)
    assert acts[0].peers == ("a", "b") and e.phase == Phase.EXCHANGING
    assert e.on_update("a", 0, torch.full((D,), 3.0), 1.1) == []
    acts = e.on_update("b", 0, torch.full((D,), 5.0), 1.2)
    assert len(acts) == 1 and isinstance(acts[0], Aggregate)
    agg = acts[0]
    out = aggregate_round(agg, rules)
    assert torch.allclose(out, torch.full((D,), 3.0))
    acts = e.on_aggregated(0, out, 1.3)
    assert e.round == 1 and [type(a) for a in acts] == [SamplePeers, TrainLocal]
    e.on_sampled_peers(1, ("a", "b"), 2.0)
    e.on_local_result(1, torch.ones(D), 2.5)
    e.on_update("a", 1, torch.zeros(D), 3.1)
    acts = e.on_update("b", 1, torch.zeros(D), 3.2)
    acts = e.on_aggregated(1, aggregate_round(acts[0], rules), 3.3)  # type: ignore[arg-type]
    assert isinstance(acts[0], Evaluate) and acts[0].round == 1
    e.on_evaluated(1, {"accuracy": 0.5})
    assert e.metrics == [(1, {"accuracy": 0.5})]


def test_future_stale_duplicate_self_shape_nan_rejected() -> None:
    e = _engine(max_staleness=1, max_future=1)
    e.round = 5
    _start(e)

    def reason(sender: str, r: int, v: torch.Tensor) -> str | None:
        acts = e.on_update(sender, r, v, 2.0)
        rej = [a for a in acts if isinstance(a, RejectUpdate)]
        return rej[0].reason if rej else None

    ok = torch.ones(D)
    assert reason("x", 7, ok) == "future"
    assert reason("x", 3, ok) == "stale"
    assert reason("me", 5, ok) == "self"
    assert reason("x", 5, torch.ones(D + 1)) == "shape"
    assert reason("x", 5, torch.tensor([1.0, float("nan"), 0, 0])) == "nonfinite"
    assert reason("y", 6, ok) is None  # one round ahead: buffered
    assert reason("y", 6, ok) == "duplicate"
    assert e.stats["rejected_future"] == 1 and e.stats["rejected_stale"] == 1
    assert e.stats["rejected_duplicate"] == 1 and e.stats["accepted"] == 1


def test_stale_updates_are_discounted_and_do_not_satisfy_wait(rules) -> None:  # type: ignore[no-untyped-def]
    e = _engine(max_staleness=2, staleness_discount=0.5, peers_per_round=1)
    e.round = 3
    _start(e, peers=("a",))
    acts = e.on_update("old", 2, torch.full((D,), 3.0), 1.5)
    assert not any(
        isinstance(a, Aggregate) for a in acts
    )  # stale alone does not complete the round
    acts = e.on_update("a", 3, torch.full((D,), 1.0), 1.6)
    agg = next(a for a in acts if isinstance(a, Aggregate))
    weights = {r.sender: r.weight for r in agg.received}
    assert weights == {"old": 0.5, "a": 1.0}
    # own=1, a=1, old pulled half-way from 1 to 3 -> 2; mean = 4/3
    assert torch.allclose(aggregate_round(agg, rules), torch.full((D,), 4.0 / 3.0))


def test_timeout_aggregates_with_what_arrived() -> None:
    e = _engine()
    _start(e)
    assert e.next_deadline() == pytest.approx(6.0)
    assert e.tick(3.0) == []
    e.on_update("a", 0, torch.zeros(D), 3.5)
    acts = e.tick(6.0)
    assert len(acts) == 1 and isinstance(acts[0], Aggregate)
    assert [r.sender for r in acts[0].received] == ["a"] and e.stats["timeouts"] == 1


def test_push_pull_reply_and_early_push() -> None:
    e = _engine()
    e.tick(0.0)
    # a push of our round arrives before our local result: answered once we have it
    assert e.on_update("c", 0, torch.zeros(D), 0.5) == []
    e.on_sampled_peers(0, ("a", "b"), 0.5)
    acts = e.on_local_result(0, torch.ones(D), 1.0)
    sends = [a for a in acts if isinstance(a, SendUpdate)]
    assert [s.peers for s in sends] == [("a", "b"), ("c",)] and sends[1].reply
    # a pusher we already sent to gets no second copy
    assert e.on_update("a", 0, torch.zeros(D), 1.1)[0].__class__ is Aggregate


def test_delta_payload_adds_to_base(rules) -> None:  # type: ignore[no-untyped-def]
    agg = Aggregate(
        round=0,
        own=torch.ones(D),
        received=(Received("a", 0, torch.full((D,), 3.0), 1.0),),
        rule="mean",
        f=0,
        params={},
        payload="delta",
        base=torch.full((D,), 10.0),
    )
    assert torch.allclose(aggregate_round(agg, rules), torch.full((D,), 12.0))
    with pytest.raises(KeyError, match="nope"):
        aggregate_round(Aggregate(0, torch.ones(D), (), "nope", 0, {}, "model"), rules)


def test_max_rounds_finishes_and_bad_local_result() -> None:
    e = _engine(max_rounds=1, peers_per_round=0)
    e.tick(0.0)
    e.on_sampled_peers(0, (), 0.0)
    acts = e.on_local_result(0, torch.ones(D), 1.0)
    agg = acts[0]
    assert isinstance(agg, Aggregate) and agg.received == ()
    acts = e.on_aggregated(0, torch.ones(D), 1.0)
    assert [type(a) for a in acts] == [Evaluate] and e.phase == Phase.DONE
    assert e.tick(100.0) == []
    e2 = _engine()
    e2.tick(0.0)
    with pytest.raises(ValueError, match="elements"):
        e2.on_local_result(0, torch.ones(D + 2), 1.0)


def test_self_centered_clipping_gets_own_vector_as_reference(rules) -> None:  # type: ignore[no-untyped-def]
    own = torch.zeros(D)
    far = Received("evil", 0, torch.full((D,), 1e6), 1.0)
    near = Received("a", 0, torch.full((D,), 0.1), 1.0)
    agg = Aggregate(0, own, (far, near), "self_centered_clipping", 1, {}, "model")
    out = aggregate_round(agg, rules)
    assert out.shape == (D,) and torch.isfinite(out).all()
    assert float(out.abs().max()) < 1e3  # the far vector was clipped around our own


def test_weight_by_examples_gives_fedavg_weighting(rules) -> None:  # type: ignore[no-untyped-def]
    e = _engine(peers_per_round=1, weight_by_examples=True)
    e.tick(0.0)
    e.on_sampled_peers(0, ("a",), 0.0)
    e.on_local_result(0, torch.zeros(D), 1.0, num_examples=30)
    agg = e.on_update("a", 0, torch.full((D,), 4.0), 1.1, num_examples=10)[0]
    assert isinstance(agg, Aggregate) and agg.own_examples == 30
    # (30 * 0 + 10 * 4) / 40 = 1
    assert torch.allclose(aggregate_round(agg, rules), torch.ones(D))
    with pytest.raises(ValueError, match="mean"):
        RoundSpec(weight_by_examples=True, aggregation="median")


def test_restart_after_the_last_round_trains_no_more() -> None:
    """A node killed after max_rounds restarts with start_round == max_rounds (found by
    the container kill/restart test: it trained round 11 of 10)."""
    spec = RoundSpec(peers_per_round=2, round_timeout=5.0, max_rounds=10)
    done = RoundEngine("me", spec, numel=D, start_round=10)
    assert done.tick(0.0) == [] and done.phase == Phase.DONE and done.round == 10
    # One round short of the end: it still trains the last one.
    last = RoundEngine("me", spec, numel=D, start_round=9)
    assert [type(a) for a in last.tick(0.0)] == [SamplePeers, TrainLocal]


def test_a_finished_node_answers_with_the_update_it_released_not_the_aggregate(
    rules,  # type: ignore[no-untyped-def]
) -> None:
    # Two different signed payloads for one round are proof of equivocation: the reply a
    # finished node sends a late pusher must repeat its released update for that round.
    e = _engine(max_rounds=1, peers_per_round=1)
    sent = [a for a in _start(e, peers=("a",)) if isinstance(a, SendUpdate)]
    assert len(sent) == 1 and sent[0].round == 0
    agg = next(
        a for a in e.on_update("a", 0, torch.full((D,), 5.0), 1.5) if isinstance(a, Aggregate)
    )
    e.on_aggregated(0, aggregate_round(agg, rules), 1.6)
    assert e.phase == Phase.DONE
    replies = [a for a in e.on_update("late", 0, torch.zeros(D), 2.0) if isinstance(a, SendUpdate)]
    assert len(replies) == 1 and replies[0].reply and replies[0].round == 0
    assert torch.equal(replies[0].payload, sent[0].payload)
    assert not torch.equal(replies[0].payload, aggregate_round(agg, rules))
