"""The targeted-Sybil simulation behind bench/bench_sybil.py (tiny runs)."""

from __future__ import annotations

import pytest
import torch

from node.sim.sybil import SybilScenario, add_trigger, simulate_sybil
from node.training.datasets import load_task
from node.training.spec import TaskSpec

TINY = {"honest": 4, "rounds": 2, "local_steps": 5, "peers": 2}


@pytest.fixture(scope="module")
def task():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    return load_task(TaskSpec(), 0)


def test_defence_drops_sybil_twins_and_gossips_histories(task) -> None:  # type: ignore[no-untyped-def]
    off = simulate_sybil(SybilScenario(sybils=4, **TINY), task=task)  # type: ignore[arg-type]
    on = simulate_sybil(
        SybilScenario(sybils=4, defence=True, **TINY),  # type: ignore[arg-type]
        task=task,
    )
    assert off.sybil_kept == off.sybil_updates > 0  # no defence: every Sybil update merged
    assert on.sybil_kept < on.sybil_updates / 2  # twins are dropped
    assert on.gossip_merged > 0  # histories travelled between honest nodes
    assert 0.0 <= on.attack_success <= 1.0 and len(on.per_node_accuracy) == 4
    # Deterministic from the seed.
    again = simulate_sybil(SybilScenario(sybils=4, **TINY), task=task)  # type: ignore[arg-type]
    assert again.per_node_accuracy == off.per_node_accuracy


def test_trigger_and_bad_scenarios() -> None:
    x = torch.zeros(3, 40)
    stamped = add_trigger(x)
    assert bool((stamped[:, :4] != 0).all()) and bool((x == 0).all())
    with pytest.raises(ValueError, match="source and target"):
        SybilScenario(source=3, target=3)
    with pytest.raises(ValueError, match="unknown rule"):
        SybilScenario(rule="nope")
    with pytest.raises(ValueError, match="attack"):
        SybilScenario(attack="other")  # type: ignore[arg-type]
