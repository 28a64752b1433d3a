"""Decentralized Byzantine simulation: attacks bite the plain mean, robust rules hold, runs
are deterministic, the batched engine is the real trainers' math, and bad settings fail loudly."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from node.sim.byzantine import (
    AttackSpec,
    ByzantineSimError,
    check_rule_preconditions,
    parse_attack,
    simulate_byzantine,
)
from node.training.datasets import TaskData, load_task
from node.training.spec import TaskSpec

# Small but learning: 6 honest MLP nodes, 4 rounds x 15 steps (chance accuracy is 0.1).
TINY: dict[str, Any] = dict(
    honest=6, alpha=1.0, model="mlp", rounds=4, local_steps=15, batch_size=32, seed=2
)


@pytest.fixture(scope="module")
def data() -> TaskData:
    return load_task(TaskSpec(name="mnist1d"), 0)


def test_ipm_wrecks_plain_mean_but_not_trimmed_mean(data: TaskData) -> None:
    clean = simulate_byzantine(rule="mean", f=0, attack=None, task_data=data, **TINY)
    broken = simulate_byzantine(rule="mean", f=2, attack="ipm:eps=100", task_data=data, **TINY)
    robust = simulate_byzantine(
        rule="trimmed_mean", f=2, attack="ipm:eps=100", task_data=data, **TINY
    )
    assert clean.mean_accuracy > 0.3
    assert broken.mean_accuracy < 0.15
    assert robust.mean_accuracy > clean.mean_accuracy - 0.08
    # Full communication + a receiver-independent rule = consensus on one model.
    assert robust.spread < 1e-4


def test_self_centered_clipping_holds_and_keeps_nodes_apart(data: TaskData) -> None:
    clean = simulate_byzantine(rule="mean", f=0, attack=None, task_data=data, **TINY)
    res = simulate_byzantine(
        rule="self_centered_clipping", f=2, attack="ipm:eps=100", task_data=data, **TINY
    )
    assert res.mean_accuracy > clean.mean_accuracy - 0.1
    assert res.spread > 0.0  # each node clips around its own model


def test_deterministic_from_seed(data: TaskData) -> None:
    kw: dict[str, Any] = dict(TINY, rounds=2)
    a = simulate_byzantine(rule="median", f=1, attack="alie:z=1.5", task_data=data, **kw)
    b = simulate_byzantine(rule="median", f=1, attack="alie:z=1.5", task_data=data, **kw)
    assert torch.equal(a.vectors, b.vectors)
    assert a.final_accuracy == b.final_accuracy
    c = simulate_byzantine(
        rule="median", f=1, attack="alie:z=1.5", task_data=data, **dict(kw, seed=3)
    )
    assert not torch.equal(a.vectors, c.vectors)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_batched_engine_matches_real_trainers(data: TaskData, model: str) -> None:
    kw: dict[str, Any] = dict(TINY, model=model, rounds=2, local_steps=4, alpha=0.1, honest=4)
    a = simulate_byzantine(
        rule="geometric_median", f=1, attack="sign_flip", task_data=data, engine="batched", **kw
    )
    b = simulate_byzantine(
        rule="geometric_median", f=1, attack="sign_flip", task_data=data, engine="trainer", **kw
    )
    scale = float(b.vectors.abs().max())
    assert float((a.vectors - b.vectors).abs().max()) <= 1e-4 * scale


def test_hygiene_drops_non_finite_byzantine_rows(data: TaskData) -> None:
    kw: dict[str, Any] = dict(TINY, rounds=2)
    clean = simulate_byzantine(rule="mean", f=0, attack=None, task_data=data, **kw)
    res = simulate_byzantine(rule="mean", f=2, attack="nan", task_data=data, **kw)
    assert res.rejected == 2 * kw["rounds"] * kw["honest"]
    assert torch.equal(res.vectors, clean.vectors)


def test_max_norm_rejects_far_byzantine_rows(data: TaskData) -> None:
    kw: dict[str, Any] = dict(TINY, rounds=2)
    res = simulate_byzantine(
        rule="mean", f=2, attack="ipm:eps=100", max_norm=50.0, task_data=data, **kw
    )
    assert res.rejected == 2 * kw["rounds"] * kw["honest"]


def test_rule_preconditions_are_checked_before_training() -> None:
    with pytest.raises(ByzantineSimError, match=r"krum.*n >= 2f \+ 3"):
        simulate_byzantine(rule="krum", f=2, attack="sign_flip", honest=4)
    with pytest.raises(ByzantineSimError, match=r"bulyan.*n >= 4f \+ 3"):
        check_rule_preconditions("bulyan", n=13, f=3)
    check_rule_preconditions("bulyan", n=12, f=2)
    with pytest.raises(ByzantineSimError, match="2f < n"):
        simulate_byzantine(rule="median", f=3, attack="sign_flip", honest=3)
    with pytest.raises(ByzantineSimError, match="unknown rule 'nope'"):
        simulate_byzantine(rule="nope", f=0, attack=None)


def test_bad_arguments_name_the_setting() -> None:
    with pytest.raises(ByzantineSimError, match="f=2 Byzantine nodes need an attack"):
        simulate_byzantine(rule="mean", f=2, attack=None)
    with pytest.raises(ByzantineSimError, match="but f=0"):
        simulate_byzantine(rule="mean", f=0, attack="ipm")
    with pytest.raises(ByzantineSimError, match="unknown attack 'flip'"):
        simulate_byzantine(rule="mean", f=1, attack="flip")
    with pytest.raises(ByzantineSimError, match="f must be an int >= 0"):
        simulate_byzantine(rule="mean", f=-1, attack="ipm")
    with pytest.raises(ByzantineSimError, match="engine must be"):
        simulate_byzantine(rule="mean", f=0, attack=None, engine="gpu")  # type: ignore[arg-type]
    with pytest.raises(ByzantineSimError, match="max_norm"):
        simulate_byzantine(rule="mean", f=0, attack=None, max_norm=0.0)


def test_parse_attack() -> None:
    spec = parse_attack("ipm:eps=100")
    assert spec == AttackSpec("ipm", (("eps", 100.0),))
    assert str(spec) == "ipm:eps=100" and spec.kwargs == {"eps": 100.0}
    assert str(parse_attack("sign_flip")) == "sign_flip"
    with pytest.raises(ByzantineSimError, match="not key=<number>"):
        parse_attack("alie:z")
    with pytest.raises(ByzantineSimError, match="not key=<number>"):
        parse_attack("alie:z=big")
