"""Sampled participation: the pure sample, the engine, the genesis option, a simulation."""

from __future__ import annotations

import collections

import pytest
import torch

from node.training.engine import (
    Aggregate,
    Evaluate,
    RejectUpdate,
    RoundEngine,
    SendUpdate,
    TrainLocal,
)
from node.training.genesis import Genesis, parse_genesis, render_genesis
from node.training.participation import recipients, sample_round
from node.training.sampled import DrawSample, SampledRoundEngine, make_engine
from node.training.spec import RoundSpec

MEMBERS = [f"n{i:03d}" for i in range(50)]


def test_sample_is_deterministic_and_order_free() -> None:
    a = sample_round(7, 3, MEMBERS, 10, 3)
    b = sample_round(7, 3, list(reversed(MEMBERS)) + MEMBERS[:5], 10, 3)
    assert a == b
    assert len(a.trainers) == 10 and len(a.aggregators) == 3
    assert not set(a.trainers) & set(a.aggregators)
    assert set(a.trainers) | set(a.aggregators) <= set(MEMBERS)
    # Another round or another seed draws another sample.
    assert sample_round(7, 4, MEMBERS, 10, 3) != a
    assert sample_round(8, 3, MEMBERS, 10, 3).trainers != a.trainers


def test_every_member_trains_over_rounds_about_equally() -> None:
    counts: collections.Counter[str] = collections.Counter()
    rounds = 400
    for r in range(rounds):
        counts.update(sample_round(1, r, MEMBERS, 10, 2).trainers)
    assert set(counts) == set(MEMBERS)
    expected = rounds * 10 / len(MEMBERS)  # 80
    assert all(0.5 * expected < c < 1.5 * expected for c in counts.values())


def test_fewer_members_than_the_sample() -> None:
    s = sample_round(0, 0, ["a", "b", "c"], 10, 2)
    assert len(s.trainers) == 2 and len(s.aggregators) == 1  # trainers first, one merges
    assert not set(s.trainers) & set(s.aggregators)
    alone = sample_round(0, 5, ["a"], 10, 2)
    assert alone.trainers == ("a",) and alone.aggregators == ("a",)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        sample_round(0, 0, [], 1, 1)
    with pytest.raises(ValueError, match="round"):
        sample_round(0, -1, ["a"], 1, 1)
    with pytest.raises(ValueError, match="sizes"):
        sample_round(0, 0, ["a"], 0, 1)


def test_recipients_cover_every_non_aggregator_once() -> None:
    s = sample_round(3, 2, MEMBERS, 10, 3)
    got = [m for a in s.aggregators for m in recipients(s, MEMBERS, a)]
    assert sorted(got) == sorted(set(MEMBERS) - set(s.aggregators))
    with pytest.raises(ValueError, match="does not aggregate"):
        recipients(s, MEMBERS, s.trainers[0])
    # Members in any order, with duplicates: the same deal, round-robin over sorted ids.
    rest = sorted(set(MEMBERS) - set(s.aggregators))
    for slot, a in enumerate(s.aggregators):
        want = tuple(m for i, m in enumerate(rest) if i % len(s.aggregators) == slot)
        assert recipients(s, MEMBERS[::-1] + MEMBERS[:5], a) == want


def test_genesis_option_unset_keeps_the_network_id() -> None:
    g = Genesis()
    assert b"sample_trainers" not in g.canonical_json()
    sampled = Genesis.model_validate({"rounds": {"sample_trainers": 10}})
    assert sampled.network_id != g.network_id
    again = parse_genesis(render_genesis(sampled))
    assert again.rounds.sample_trainers == 10 and again.network_id == sampled.network_id
    with pytest.raises(ValueError, match="needs sample_trainers"):
        RoundSpec(sample_aggregators=2)
    with pytest.raises(ValueError, match="payload 'model'"):
        RoundSpec(sample_trainers=2, payload="delta")
    with pytest.raises(ValueError, match="weight_by_examples"):
        RoundSpec(sample_trainers=2, weight_by_examples=True)
    assert isinstance(make_engine("x", RoundSpec(), seed=0, numel=4), RoundEngine)


def _run(engines: dict[str, SampledRoundEngine], rounds: int, drop: set[str]) -> dict[str, int]:
    """Drive engines in lock-step with instant delivery; ``drop`` never answer."""
    models = {n: torch.zeros(4) for n in engines}
    trained = collections.Counter[str]()
    queue: list[tuple[str, object]] = []
    t = 0.0
    for n, e in engines.items():
        if n not in drop:
            queue += [(n, a) for a in e.tick(t)]
    steps = 0
    while steps < 10_000:
        steps += 1
        if not queue:
            # Nothing in flight: let time pass so the round timeouts fire.
            t += engines[next(iter(engines))].spec.round_timeout
            for n, e in engines.items():
                if n not in drop:
                    queue += [(n, a) for a in e.tick(t)]
            if not queue:
                break
            continue
        n, act = queue.pop(0)
        e = engines[n]
        if isinstance(act, DrawSample):
            live = [m for m in engines]
            queue += [(n, a) for a in e.on_members(act.round, live, models[n], t)]
        elif isinstance(act, TrainLocal):
            trained[n] += 1
            queue += [(n, a) for a in e.on_local_result(act.round, models[n] + 1.0, t)]
        elif isinstance(act, SendUpdate):
            for p in act.peers:
                if p in drop:
                    continue
                queue += [(p, a) for a in engines[p].on_update(n, act.round, act.payload, t)]
        elif isinstance(act, Aggregate):
            rows = [act.own, *(r.vector for r in act.received)]
            models[n] = torch.stack(rows).mean(0)
            queue += [(n, a) for a in e.on_aggregated(act.round, models[n], t)]
        elif isinstance(act, (Evaluate, RejectUpdate)):
            pass
    return dict(trained)


def test_only_sampled_nodes_train_and_every_node_finishes() -> None:
    spec = RoundSpec(sample_trainers=2, sample_aggregators=1, max_rounds=6, eval_every=3)
    ids = [f"n{i}" for i in range(5)]
    engines = {n: SampledRoundEngine(n, spec, seed=4, numel=4) for n in ids}
    trained = _run(engines, 6, drop=set())
    assert all(e.round == 6 and e.stats["timeouts"] == 0 for e in engines.values())
    assert sum(trained.values()) == 2 * 6
    expected = collections.Counter(
        t for r in range(6) for t in sample_round(4, r, ids, 2, 1).trainers
    )
    assert trained == dict(expected)


def test_silent_sampled_nodes_cost_timeouts_not_a_deadlock() -> None:
    spec = RoundSpec(sample_trainers=3, sample_aggregators=2, max_rounds=5, round_timeout=1.0)
    ids = [f"n{i}" for i in range(8)]
    drop = {"n0", "n1", "n2", "n3"}
    engines = {n: SampledRoundEngine(n, spec, seed=2, numel=4) for n in ids}
    _run(engines, 5, drop=drop)
    live = [e for n, e in engines.items() if n not in drop]
    assert all(e.round == 5 for e in live)
    assert sum(e.stats["timeouts"] for e in live) > 0


def test_updates_that_do_not_fit_the_role_are_refused() -> None:
    spec = RoundSpec(sample_trainers=2, sample_aggregators=1)
    ids = ["a", "b", "c", "d"]
    s = sample_round(0, 0, ids, 2, 1)
    other = next(n for n in ids if n not in s.trainers and n not in s.aggregators)
    e = SampledRoundEngine(other, spec, seed=0, numel=3)
    assert e.tick(0.0) == [DrawSample(0)]
    assert e.on_members(0, ids, torch.zeros(3), 0.0) == []
    assert e.awaited_peers() == s.aggregators
    out = e.on_update(s.trainers[0], 0, torch.ones(3), 0.1)  # a trained update, not for us
    assert isinstance(out[0], RejectUpdate) and out[0].reason == "role"
    out = e.on_update(s.aggregators[0], 0, torch.full((3,), 2.0), 0.2)
    assert isinstance(out[0], Aggregate) and torch.equal(out[0].own, torch.full((3,), 2.0))


def test_simulate_releases_only_sampled_trainers_and_learns(rules) -> None:  # type: ignore[no-untyped-def]
    from node.sim.rounds import simulate
    from node.training.datasets import load_task
    from node.training.spec import LearnerSpec, TaskSpec

    task = TaskSpec(name="digits", num_nodes=6, batch_size=32, partition="iid")
    data = load_task(task, 1)
    learner = LearnerSpec(lr=1e-2, local_steps=10)
    spec = RoundSpec(sample_trainers=2, eval_every=6)
    released: collections.Counter[int] = collections.Counter()

    def release(i: int, r: int, vec: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        released[i] += 1
        return vec

    res = simulate(
        task, learner, spec, seed=1, num_rounds=6, task_data=data, rules=rules, release=release
    )
    ids = [f"node-{i}" for i in range(6)]
    expected = collections.Counter(
        int(t.split("-")[1]) for r in range(6) for t in sample_round(1, r, ids, 2, 2).trainers
    )
    assert released == expected and sum(released.values()) == 12
    assert all(s["rounds"] == 6 and s["timeouts"] == 0 for s in res.stats)
    assert res.mean_accuracy > 0.5  # chance is 0.1
    # Every node ends with the same merged model.
    assert all(torch.equal(v, res.final_vectors[0]) for v in res.final_vectors)
    # Half the nodes crashed and still listed: timeouts, no deadlock, every live node ends.
    crashed = simulate(
        task,
        learner,
        spec.model_copy(update={"round_timeout": 2.0}),
        seed=1,
        num_rounds=6,
        task_data=data,
        rules=rules,
        unresponsive=[0, 1, 2],
        detected=False,
    )
    live = crashed.stats[3:]
    assert all(s["rounds"] == 6 for s in live) and sum(s["timeouts"] for s in live) > 0


def test_a_node_that_releases_nothing_is_never_sampled_but_gets_the_model() -> None:
    spec = RoundSpec(sample_trainers=2, sample_aggregators=2)
    members = ["a", "b", "c", "d", "e"]
    for r in range(20):
        e = SampledRoundEngine("e", spec, seed=5, start_round=r, numel=2)
        assert e.tick(0.0) == [DrawSample(r)]
        out = e.on_members(r, members, torch.zeros(2), 0.0, candidates=["a", "b", "c", "d"])
        assert out == [] and e.sample is not None
        assert "e" not in e.sample.trainers + e.sample.aggregators
        (agg,) = e.awaited_peers()
        assert "e" in recipients(e.sample, members, agg)
