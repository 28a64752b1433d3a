"""The daemon's release guard driving ``simulate(release=...)``: one debit per node and round."""

from __future__ import annotations

from pathlib import Path

import dp_accounting
import pytest
import torch
from dp_accounting import rdp

from node.daemon.privacy_guard import ReleaseGuard
from node.sim.rounds import simulate
from node.storage import open_store
from node.training.datasets import load_task
from node.training.genesis import PrivacySpec
from node.training.models import build_model
from node.training.params import flatten
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec
from privacy import noise_multiplier_for

torch.set_num_threads(1)


def test_every_node_round_is_released_once_and_the_ledger_matches_dp_accounting(
    tmp_path: Path,
) -> None:
    task = TaskSpec(name="digits", num_nodes=3, batch_size=32)
    rounds, delta, clip = 3, 1e-5, 0.5
    z = noise_multiplier_for(8.0, 1.0, rounds, delta)
    spec = PrivacySpec(enabled=True, clip=clip, noise_multiplier=z, epsilon_budget=8.0, delta=delta)
    stores = [open_store(data_dir=tmp_path / f"n{i}") for i in range(3)]
    guards = [ReleaseGuard(spec, s) for s in stores]
    data = load_task(task, 0)
    genesis_model = flatten(build_model(task, 0, input_dim=64, num_classes=10))
    calls: list[tuple[int, int]] = []
    noise: list[torch.Tensor] = []

    def release(i: int, r: int, vector: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        calls.append((i, r))
        if r == 0:
            assert torch.equal(base, genesis_model)  # the round-start vector
        update = vector - base
        assert float(update.norm()) > 0
        private = guards[i].release(update)
        clipped = update * min(1.0, clip / float(update.norm()))
        noise.append(private - clipped)
        return base + private

    res = simulate(
        task,
        LearnerSpec(local_steps=5),
        RoundSpec(peers_per_round=2, eval_every=rounds),
        num_rounds=rounds,
        task_data=data,
        release=release,
    )
    assert sorted(calls) == [(i, r) for i in range(3) for r in range(rounds)]
    assert len(res.final_accuracy) == 3
    all_noise = torch.cat(noise)
    assert float(all_noise.std()) == pytest.approx(z * clip, rel=0.05)
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), rounds))
    library = acc.get_epsilon(delta)
    assert library <= 8.0
    for store, guard in zip(stores, guards, strict=True):
        rows = store.ledger_rows()
        assert len(rows) == rounds
        assert [r.steps for r in rows] == [1] * rounds
        assert rows[-1].epsilon_after == pytest.approx(library, rel=1e-9)
        assert guard.spent() == pytest.approx(library, rel=1e-9)
        store.close()
