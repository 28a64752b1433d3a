"""The daemon and every simulation take their merge decisions from ``node.training.policy``.

The daemon side is a :class:`TrainingRuntime` given only what its policy methods read (a real
genesis, real metrics, real tensors; no process): the same inputs give it the same decision
as the simulations, and a patched policy function changes the daemon and the simulations
alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from node.base.metrics import Metrics
from node.daemon.training_runtime import TrainingRuntime
from node.sim.byzantine import simulate_byzantine
from node.sim.rounds import simulate
from node.sim.sybil import SybilScenario, simulate_sybil
from node.training import policy
from node.training.datasets import TaskData, load_task
from node.training.engine import Aggregate, Received
from node.training.genesis import Genesis
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec
from node.wire.exchange import encode_update
from node.wire.service import Rejected

SYBIL_TINY: dict[str, Any] = {"honest": 4, "rounds": 3, "local_steps": 5, "peers": 2}
BYZ_TINY: dict[str, Any] = dict(
    honest=4, alpha=1.0, model="mlp", rounds=2, local_steps=3, batch_size=32, seed=1
)


@pytest.fixture(scope="module")
def data() -> TaskData:
    torch.set_num_threads(1)
    return load_task(TaskSpec(name="mnist1d"), 0)


def _runtime(genesis: Genesis, **fields: Any) -> TrainingRuntime:
    """A runtime holding only what its policy methods read (no daemon, no sockets)."""
    rt = TrainingRuntime.__new__(TrainingRuntime)
    rt.daemon = SimpleNamespace(genesis=genesis, metrics=Metrics())  # type: ignore[assignment]
    for name, value in fields.items():
        setattr(rt, name, value)
    return rt


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[Any, ...]]:
    """Record every call of ``policy.<name>`` (and still run it)."""
    real: Callable[..., Any] = getattr(policy, name)
    calls: list[tuple[Any, ...]] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    monkeypatch.setattr(policy, name, spy)
    return calls


def test_sybil_sim_and_daemon_drop_the_same_senders(
    data: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without history gossip a node's history changes only through sybil_filter, so the
    # daemon fed node h0's rounds in order holds the same histories and must drop the same.
    calls = _spy(monkeypatch, "sybil_filter")
    sc = SybilScenario(sybils=3, defence=True, gossip_records=0, **SYBIL_TINY)
    res = simulate_sybil(sc, task=data)
    mine = [c for c in calls if c[0][0].self_id == "h0"]
    assert len(mine) == sc.rounds and res.sybil_kept < res.sybil_updates
    numel = int(mine[0][0][2][0].numel())
    genesis = Genesis.model_validate(
        {"network": {"seed": sc.seed}, "aggregation": {"sybil_threshold": sc.threshold}}
    )
    rt = _runtime(genesis, history=policy.similarity_history(numel, seed=sc.seed, self_id="h0"))
    dropped_any = False
    for (_, senders, vectors), kw, verdict in mine:
        action = Aggregate(
            round=kw["round_idx"],
            own=torch.zeros(numel),
            received=tuple(
                Received(s, kw["round_idx"], v, 1.0) for s, v in zip(senders, vectors, strict=True)
            ),
            rule="mean",
            f=0,
            params={},
            payload="model",
            base=kw["base"],
        )
        kept = [r.sender for r in rt._sybil_filter(action).received]
        assert kept == [senders[i] for i in verdict.kept]
        dropped_any |= bool(verdict.dropped)
    assert dropped_any  # the comparison covered a round with a drop


def test_patched_merge_changes_daemon_and_simulations(
    data: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    merges: list[int] = []

    def keep_own(action: Aggregate, rules: Any = None, *, observed: bool = False) -> policy.Merge:
        merges.append(action.round)
        return policy.Merge(action.own.clone(), None, action.f, False)

    monkeypatch.setattr(policy, "merge", keep_own)
    # Byzantine simulation: all-to-all under the mean keeps every honest node on one model;
    # with every node keeping its own, they drift apart.
    res = simulate_byzantine(rule="mean", f=0, attack=None, task_data=data, **BYZ_TINY)
    assert res.spread > 1e-3
    # Round simulation (bench_accuracy, `fednode simulate`): same.
    task = TaskSpec(name="mnist1d", model="mlp", num_nodes=3, alpha=1.0, batch_size=32)
    sim = simulate(
        task,
        LearnerSpec(local_steps=2),
        RoundSpec(peers_per_round=2, eval_every=1),
        num_rounds=2,
        task_data=data,
    )
    assert not torch.equal(sim.final_vectors[0], sim.final_vectors[1])
    # Sybil simulation: every honest node's merge of every round went through it.
    merges.clear()
    simulate_sybil(SybilScenario(sybils=2, **SYBIL_TINY), task=data)
    assert len(merges) == SYBIL_TINY["honest"] * SYBIL_TINY["rounds"]
    # Daemon.
    rt = _runtime(Genesis())
    own = torch.tensor([1.0, 2.0])
    action = Aggregate(0, own, (Received("p", 0, torch.zeros(2), 1.0),), "mean", 0, {}, "model")
    assert torch.equal(rt._merge(action), own)


def test_unpatched_merge_reaches_consensus(data: TaskData) -> None:
    # The counterpart of the patched run above: the assertion there can fail.
    res = simulate_byzantine(rule="mean", f=0, attack=None, task_data=data, **BYZ_TINY)
    assert res.spread < 1e-4


def test_patched_admission_refuses_in_daemon_and_simulation(
    data: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse_all(*args: Any, **kwargs: Any) -> policy.Refusal:
        return policy.Refusal("norm_exceeded", "refused by the test")

    numel = 4
    genesis = Genesis.model_validate({"aggregation": {"max_update_norm": 10.0}})
    layout = SimpleNamespace(numel=numel)
    rt = _runtime(
        genesis,
        engine=object(),
        trainer=SimpleNamespace(layout=layout, vector=lambda: torch.zeros(numel)),
        _public=torch.zeros(numel),
    )
    msg = SimpleNamespace(round=0, sender_id=b"\x01" * 32)

    def push(vector: torch.Tensor) -> None:
        header, payload = encode_update(vector, round=0, num_samples=0)
        asyncio.run(rt.on_update(msg, header, payload))  # type: ignore[arg-type]

    with pytest.raises(Rejected) as far:
        push(torch.full((numel,), 100.0))
    assert far.value.reason == "norm_exceeded" and "limit 10" in str(far.value)

    monkeypatch.setattr(policy, "admit_update", refuse_all)
    with pytest.raises(Rejected, match="refused by the test"):
        push(torch.zeros(numel))  # admitted by the real policy; refused by the patched one
    res = simulate_byzantine(rule="mean", f=0, attack=None, task_data=data, **BYZ_TINY)
    rows = BYZ_TINY["honest"] * (BYZ_TINY["honest"] - 1) * BYZ_TINY["rounds"]
    assert res.rejected == rows
