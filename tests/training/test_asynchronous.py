"""The asynchronous mode's engine (sans-I/O) and its simulation (daemons: tests/node)."""

from __future__ import annotations

import itertools
import statistics

import pytest
import torch
from pydantic import ValidationError

from node.training.asynchronous import AsyncEngine, AsyncPhase
from node.training.engine import (
    Aggregate,
    Evaluate,
    RejectUpdate,
    SamplePeers,
    SendUpdate,
    TrainLocal,
    aggregate_round,
)
from node.training.spec import AsyncRates, RoundSpec

D = 4


def spec(**kw: object) -> RoundSpec:
    base: dict[str, object] = {
        "asynchronous": AsyncRates(compute_rate=10.0, gossip_rate=2.0),
        "eval_every": 2,
        "max_staleness": 3,
        "staleness_discount": 0.5,
    }
    return RoundSpec.model_validate({**base, **kw})


def v(x: float) -> torch.Tensor:
    return torch.full((D,), float(x))


def merge(eng: AsyncEngine, act: Aggregate, now: float) -> list[object]:
    return list(eng.on_aggregated(act.round, aggregate_round(act), now))


def trained(eng: AsyncEngine, value: float, now: float) -> Aggregate:
    (act,) = eng.on_local_result(eng.round, v(value), now)
    assert isinstance(act, Aggregate)
    return act


def test_trains_at_once_then_waits_on_its_compute_clock() -> None:
    eng = AsyncEngine("a", spec(), seed=1, numel=D)
    assert eng.next_deadline() == 0.0
    assert eng.tick(0.0) == [TrainLocal(0)]
    assert eng.next_deadline() is None  # training, and no model to gossip yet
    act = trained(eng, 1.0, 1.0)
    assert act.received == () and torch.equal(act.own, v(1.0)) and act.round == 1
    assert merge(eng, act, 1.0) == []  # eval_every 2
    assert eng.phase == AsyncPhase.IDLE and eng.round == 1
    due = eng.next_deadline()
    assert due is not None  # the gossip clock ran from the start; the compute clock from 1.0
    # Nothing is due before the deadline; at it the next training or a push starts.
    assert eng.tick(due - 1e-9) == []
    acts = eng.tick(due)
    assert acts in ([TrainLocal(1)], [SamplePeers(1, 1)])


def test_a_push_goes_to_one_sampled_peer_with_the_current_model_and_clock() -> None:
    eng = AsyncEngine("a", spec(), seed=1, numel=D)
    eng.tick(0.0)
    merge(eng, trained(eng, 3.0, 1.0), 1.0)
    (send,) = eng.on_sampled_peers(1, ["a", "b"], 1.5)
    assert isinstance(send, SendUpdate)
    assert send.peers == ("b",) and send.clock == 1 and torch.equal(send.payload, v(3.0))
    assert send.round == 0  # the first model this node pushes: version 0
    assert eng.on_sampled_peers(1, ["a"], 1.5) == []  # only itself: nobody to push to


def test_a_model_that_arrives_while_idle_is_averaged_in_at_once() -> None:
    eng = AsyncEngine("a", spec(), seed=1, numel=D)
    eng.tick(0.0)
    merge(eng, trained(eng, 2.0, 1.0), 1.0)
    (act,) = eng.on_update("b", 5, v(4.0), 1.2)
    assert isinstance(act, Aggregate) and eng.phase == AsyncPhase.MERGING
    assert act.round == 5  # Lamport: the clock jumps to the freshest model merged
    assert [r.weight for r in act.received] == [1.0]
    assert merge(eng, act, 1.2) == []
    assert eng.clock == 5 and eng.round == 1  # merging is no local training
    (send,) = eng.on_sampled_peers(5, ["c"], 1.3)
    assert isinstance(send, SendUpdate) and torch.allclose(send.payload, v(3.0))


def test_a_model_that_arrives_while_training_waits_for_the_trained_model() -> None:
    eng = AsyncEngine("a", spec(), seed=1, numel=D)
    eng.tick(0.0)
    assert eng.on_update("b", 1, v(8.0), 0.5) == []  # buffered: the node is training
    act = trained(eng, 2.0, 1.0)
    assert torch.equal(act.own, v(2.0)) and [r.sender for r in act.received] == ["b"]
    assert merge(eng, act, 1.0) == []
    (send,) = eng.on_sampled_peers(eng.clock, ["c"], 1.1)
    assert isinstance(send, SendUpdate) and torch.allclose(send.payload, v(5.0))


def test_stale_models_are_discounted_and_refused_past_max_staleness() -> None:
    eng = AsyncEngine("a", spec(), seed=1, numel=D)
    eng.tick(0.0)
    merge(eng, trained(eng, 0.0, 0.5), 0.5)
    merge(eng, eng.on_update("x", 10, v(0.0), 0.6)[0], 0.6)  # type: ignore[arg-type]
    assert eng.clock == 10
    (act,) = eng.on_update("b", 8, v(4.0), 0.7)
    assert isinstance(act, Aggregate) and [r.weight for r in act.received] == [0.25]
    merge(eng, act, 0.7)
    (rej,) = eng.on_update("c", 6, v(1.0), 0.8)
    assert rej == RejectUpdate("c", 6, "stale") and eng.stats["rejected_stale"] == 1


@pytest.mark.parametrize(
    ("sender", "clock", "vector", "reason"),
    [
        ("a", 9, v(1.0), "self"),
        ("b", 4, v(1.0), "duplicate"),  # not above the last clock accepted from b
        ("b", 3, v(1.0), "duplicate"),
        ("c", 9, torch.ones(D + 1), "shape"),
        ("c", 9, torch.tensor([1.0, float("nan"), 0.0, 0.0]), "nonfinite"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(
    sender: str, clock: int, vector: torch.Tensor, reason: str
) -> None:
    eng = AsyncEngine("a", spec(), seed=1, numel=D)
    eng.tick(0.0)
    merge(eng, trained(eng, 0.0, 0.5), 0.5)
    merge(eng, eng.on_update("b", 4, v(2.0), 0.6)[0], 0.6)  # type: ignore[arg-type]
    before = (eng.clock, eng.stats["accepted"], eng.stats["merges"])
    assert eng.on_update(sender, clock, vector, 0.7) == [RejectUpdate(sender, clock, reason)]
    assert (eng.clock, eng.stats["accepted"], eng.stats["merges"]) == before
    assert eng.phase == AsyncPhase.IDLE


def test_stops_after_max_rounds_local_trainings_and_evaluates_the_last() -> None:
    eng = AsyncEngine("a", spec(max_rounds=3, eval_every=2), seed=1, numel=D)
    evals = []
    now = 0.0
    while eng.phase != AsyncPhase.DONE:
        due = eng.next_deadline()
        assert due is not None
        now = max(now, due)
        for act in eng.tick(now):
            if isinstance(act, TrainLocal):
                out = merge(eng, trained(eng, float(act.round), now + 0.1), now + 0.1)
                evals += [a.round for a in out if isinstance(a, Evaluate)]
    assert eng.round == 3 and evals == [1, 2]
    assert eng.next_deadline() is None and eng.tick(now + 100) == []
    assert eng.on_update("b", 99, v(1.0), now)[0] == RejectUpdate("b", 99, "done")


def test_gossip_waits_are_exponential_with_the_configured_rate() -> None:
    rates = AsyncRates(gossip_rate=4.0, compute_rate=1e-6)  # idle: every deadline pushes
    eng = AsyncEngine("a", spec(asynchronous=rates), seed=7, numel=D)
    eng.tick(0.0)
    merge(eng, trained(eng, 1.0, 0.0), 0.0)
    stamps = []
    for _ in range(3000):
        due = eng.next_deadline()
        assert due is not None
        acts = eng.tick(due)
        if any(isinstance(a, SamplePeers) for a in acts):
            stamps.append(due)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(gaps) > 2000
    assert abs(statistics.mean(gaps) - 0.25) < 0.02  # mean 1 / gossip_rate
    assert abs(statistics.stdev(gaps) - 0.25) < 0.03  # exponential: std = mean


def test_the_spec_refuses_what_the_mode_cannot_run() -> None:
    with pytest.raises(ValidationError, match="cannot be used with sample_trainers"):
        spec(sample_trainers=4)
    with pytest.raises(ValidationError, match="needs payload 'model'"):
        spec(payload="delta")
    with pytest.raises(ValueError, match=r"needs rounds\.asynchronous"):
        AsyncEngine("a", RoundSpec(), seed=1)


def test_unset_asynchronous_keeps_the_network_id() -> None:
    from node.training.genesis import Genesis

    plain = Genesis.model_validate({"network": {"seed": 3}})
    data = plain.model_dump(mode="json", exclude_unset=True)
    assert Genesis.model_validate(data).network_id == plain.network_id
    mode = Genesis.model_validate({"network": {"seed": 3}, "rounds": {"asynchronous": {}}})
    assert mode.network_id != plain.network_id
    assert mode.rounds.asynchronous == AsyncRates()


def test_simulated_stragglers_hold_back_rounds_but_not_the_asynchronous_mode() -> None:
    from node.sim.rounds import simulate
    from node.training.datasets import load_task
    from node.training.spec import LearnerSpec, TaskSpec

    task = TaskSpec(name="digits", num_nodes=8, batch_size=32, alpha=0.5)
    data = load_task(task, 2)
    learner = LearnerSpec(lr=1e-2, local_steps=5)
    slow = [4.0 if i % 4 == 0 else 1.0 for i in range(8)]  # a quarter, 4x slower
    fast = [i for i in range(8) if slow[i] == 1.0]
    kw: dict[str, object] = dict(seed=2, num_rounds=100, task_data=data, slowdown=slow, until=16.0)
    mode = spec(asynchronous=AsyncRates(compute_rate=10.0, gossip_rate=3.0), max_staleness=5)
    run = simulate(task, learner, mode, **kw)  # type: ignore[arg-type]
    steps = [s["rounds"] for s in run.stats]
    assert min(steps[i] for i in fast) >= 3 * max(steps[0], steps[4]) >= 6
    # Peers' models were merged in: more of them than local trainings, on every node.
    assert all(s["accepted"] > s["rounds"] and s["merges"] >= s["rounds"] for s in run.stats)
    assert run.mean_accuracy > 0.5  # digits, chance 0.1
    assert {i for _, i, _, _ in run.timeline} == set(range(8))
    assert [t for t, *_ in run.timeline] == sorted(t for t, *_ in run.timeline)
    again = simulate(task, learner, mode, **kw)  # type: ignore[arg-type]
    assert again.final_accuracy == run.final_accuracy and again.timeline == run.timeline
    rounds = simulate(task, learner, RoundSpec(peers_per_round=2, round_timeout=10.0), **kw)  # type: ignore[arg-type]
    # Lock-step rounds wait for the stragglers they sampled: the fast nodes train less.
    assert max(rounds.stats[i]["rounds"] for i in fast) < min(steps[i] for i in fast)


def test_a_push_due_while_training_carries_the_trained_model() -> None:
    eng = AsyncEngine("a", spec(asynchronous=AsyncRates(gossip_rate=50.0)), seed=3, numel=D)
    eng.tick(0.0)
    merge(eng, trained(eng, 1.0, 0.1), 0.1)
    due = eng.next_deadline()
    assert due is not None
    acts = eng.tick(10.0)  # both clocks fired: training starts, the push must wait
    assert acts == [TrainLocal(1)]
    assert eng.tick(10.5) == []  # more pushes fall due while training; none is sent
    out = merge(eng, trained(eng, 7.0, 11.0), 11.0)
    (ask,) = [a for a in out if not isinstance(a, Evaluate)]
    assert isinstance(ask, SamplePeers) and ask.k == 2
    (send,) = eng.on_sampled_peers(ask.round, ["b", "c"], 11.0)
    assert isinstance(send, SendUpdate) and torch.equal(send.payload, v(7.0))


def test_only_the_newest_model_of_a_sender_waits_for_the_merge() -> None:
    eng = AsyncEngine("a", spec(), seed=1, numel=D)
    eng.tick(0.0)
    assert eng.on_update("b", 1, v(4.0), 0.2) == []
    assert eng.on_update("b", 2, v(6.0), 0.4) == []
    act = trained(eng, 2.0, 1.0)
    assert [(r.sender, r.round) for r in act.received] == [("b", 2)]
    assert torch.allclose(aggregate_round(act), v(4.0))


def _drive(eng: AsyncEngine, rng: __import__("random").Random, steps: int) -> list[SendUpdate]:
    """Random events (clock ticks, peers' models, trainings, merges); the pushes it made."""
    sent: list[SendUpdate] = []
    versions = dict.fromkeys("bcd", 0)
    now = 0.0
    pending: list[object] = list(eng.tick(now))
    for _ in range(steps):
        now += rng.expovariate(4.0)
        if rng.random() < 0.4:
            sender = rng.choice("bcd")
            versions[sender] += rng.randint(0, 2)  # 0: a copy pushed again
            clock = max(0, eng.clock + rng.randint(-2, 3))
            pending += eng.on_update(sender, versions[sender], v(rng.random()), now, clock=clock)
        pending += eng.tick(now)
        while pending:
            act = pending.pop(0)
            if isinstance(act, TrainLocal):
                if rng.random() < 0.5:  # sometimes the training ends before the next event
                    pending += eng.on_local_result(act.round, v(rng.random()), now)
                else:
                    pending.append(act)
                    break
            elif isinstance(act, Aggregate):
                pending += eng.on_aggregated(act.round, aggregate_round(act), now)
            elif isinstance(act, SamplePeers):
                pending += eng.on_sampled_peers(act.round, ["b", "c", "d"][: act.k], now)
            elif isinstance(act, SendUpdate):
                sent.append(act)
    return sent


@pytest.mark.parametrize("seed", range(6))
def test_no_version_ever_names_two_different_models(seed: int) -> None:
    """A push signs its version as its round: two models under one round is equivocation."""
    import random

    eng = AsyncEngine("a", spec(max_staleness=50), seed=seed, numel=D)
    sent = _drive(eng, random.Random(seed), 400)
    assert len(sent) > 20
    by_version: dict[int, torch.Tensor] = {}
    clocks: dict[int, int] = {}
    for s in sent:
        seen = by_version.setdefault(s.round, s.payload)
        assert torch.equal(seen, s.payload), f"version {s.round} named two models"
        assert s.clock is not None and clocks.setdefault(s.round, s.clock) == s.clock
    # Versions rise by one per new model; several models share a clock (merging an older
    # model does not move it), which is why the clock cannot name a push.
    assert sorted(by_version) == list(range(len(by_version))) and len(by_version) > 20
    assert len(set(clocks.values())) < len(by_version)


def test_a_restarted_engine_resumes_its_trainings_above_its_last_pushed_version() -> None:
    eng = AsyncEngine("a", spec(max_rounds=5), seed=1, numel=D, start_round=3, clock=8, version=21)
    assert eng.tick(0.0) == [TrainLocal(3)]
    act = trained(eng, 1.0, 1.0)
    assert act.round == 9  # Lamport: one more than the restored clock
    merge(eng, act, 1.0)
    assert eng.round == 4
    (send,) = eng.on_sampled_peers(9, ["b"], 1.5)
    assert isinstance(send, SendUpdate) and send.round == 21 and send.clock == 9


def test_a_finished_node_answers_each_sender_once_with_its_final_model() -> None:
    eng = AsyncEngine("a", spec(max_rounds=1), seed=1, numel=D)
    eng.tick(0.0)
    merge(eng, trained(eng, 2.0, 1.0), 1.0)
    assert eng.phase == AsyncPhase.DONE
    first = eng.on_update("b", 5, v(9.0), 2.0)
    assert first[0] == RejectUpdate("b", 5, "done")
    (answer,) = first[1:]
    assert isinstance(answer, SendUpdate) and answer.peers == ("b",)
    assert answer.clock == eng.clock and torch.equal(answer.payload, v(2.0))
    assert eng.on_update("b", 6, v(9.0), 3.0) == [RejectUpdate("b", 6, "done")]  # once
    assert len(eng.on_update("c", 6, v(9.0), 3.0)) == 2  # another sender: answered too
