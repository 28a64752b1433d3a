"""Record-level DP-ZO of the spsa learner: clipped per-example estimates, noise on the scalar."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from pydantic import ValidationError
from torch import nn

from node.daemon.privacy_guard import RecordMechanism, ReleaseGuard
from node.storage import open_store
from node.training.datasets import NodeData, node_data
from node.training.genesis import PrivacySpec
from node.training.learners.spsa import SPSALearner, dp_zo_scalar, perturbation, seed_id
from node.training.models import build_model
from node.training.params import flatten, load_vector
from node.training.spec import LearnerSpec, TaskSpec
from privacy import epsilon

DIGITS = TaskSpec(name="digits", num_nodes=1, batch_size=64)
NODE = "ab" * 32


def _spec(**kw: object) -> LearnerSpec:
    base: dict[str, object] = {"kind": "spsa", "dp_zo": True, "spsa_scalar_dtype": "fp32"}
    return LearnerSpec.model_validate({**base, **kw})


def _subset(data: NodeData, count: int) -> NodeData:
    return dataclasses.replace(data, x=data.x[:count], y=data.y[:count])


def test_scalar_is_the_clipped_sum_plus_noise_over_the_expected_batch() -> None:
    d = torch.tensor([0.3, -2.0, 5.0, math.nan, math.inf, -math.inf], dtype=torch.float64)
    clean = dp_zo_scalar(d, clip=1.0, noise_multiplier=0.0, expected_batch=4.0)
    # clip: 0.3, -1, 1, NaN -> 0, +inf -> 1, -inf -> -1
    assert clean == pytest.approx((0.3 - 1 + 1 + 0 + 1 - 1) / 4.0)
    assert dp_zo_scalar(torch.zeros(0), clip=1.0, noise_multiplier=0.0, expected_batch=4) == 0.0
    noisy = np.array(
        [dp_zo_scalar(d, clip=0.5, noise_multiplier=3.0, expected_batch=10.0) for _ in range(4000)]
    )
    center = dp_zo_scalar(d, clip=0.5, noise_multiplier=0.0, expected_batch=10.0)
    # Noise std z C / B = 0.15: sample std of 4000 within 5 standard errors (~5.6 %).
    assert noisy.std() == pytest.approx(0.15, rel=5 / math.sqrt(2 * 4000))
    assert abs(noisy.mean() - center) < 5 * 0.15 / math.sqrt(4000)
    with pytest.raises(ValueError, match="expected_batch"):
        dp_zo_scalar(d, clip=1.0, noise_multiplier=1.0, expected_batch=0.0)


def test_round_scalars_are_means_of_clipped_per_example_differences() -> None:
    data = _subset(node_data(DIGITS, 0, 0), 48)
    model = build_model(DIGITS, 0, input_dim=64, num_classes=10)
    w0 = flatten(model).clone()
    clip, eps, lr = 0.05, 1e-3, 0.5
    # q = 1 (batch >= examples): every example, every step; z = 0: no noise.
    spec = _spec(spsa_steps=3, spsa_eps=eps, lr=lr, dp_zo_clip=clip, dp_zo_noise_multiplier=0.0)
    learner = SPSALearner(spec, batch_size=64, seed=5, node=NODE)
    batch = learner.train_round(model, data, 2)
    assert torch.equal(flatten(model), w0), "the model is left as it was"
    # Independently: per-example differences by plain forward passes, clipped, averaged;
    # each next step from the released scalar.
    w = w0.clone()
    want, unclipped = [], []
    for step in range(3):
        z = perturbation(seed_id(5, 2, NODE, step), w.numel())
        with torch.no_grad():
            load_vector(model, w + eps * z)
            lp = nn.functional.cross_entropy(model(data.x), data.y, reduction="none").double()
            load_vector(model, w - eps * z)
            lm = nn.functional.cross_entropy(model(data.x), data.y, reduction="none").double()
        d = (lp - lm) / (2 * eps)
        g = float(d.clamp(-clip, clip).mean())
        want.append(g)
        unclipped.append(float(d.mean()))
        w = w - lr * g * z
    got = [e.scalar for e in batch.entries()]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert any(abs(a - b) > 1e-3 for a, b in zip(want, unclipped, strict=True)), (
        "clipping must be active for this test to mean anything"
    )


def test_noise_on_each_scalar_has_std_z_c_over_expected_batch() -> None:
    data = _subset(node_data(DIGITS, 0, 0), 40)
    model = build_model(DIGITS, 0, input_dim=64, num_classes=10)
    z, clip = 200.0, 0.01  # noise std z C / 40 = 0.05 against a signal of at most C
    spec = _spec(spsa_steps=200, lr=1e-9, dp_zo_clip=clip, dp_zo_noise_multiplier=z)
    batch = SPSALearner(spec, batch_size=64, seed=1, node=NODE).train_round(model, data, 0)
    values = np.array([e.scalar for e in batch.entries()])
    std = z * clip / 40
    assert values.std(ddof=1) == pytest.approx(std, rel=5 / math.sqrt(2 * 200) + clip / std)


def test_poisson_draws_are_secret_and_empty_draws_are_steps() -> None:
    data = _subset(node_data(DIGITS, 0, 0), 200)
    model = build_model(DIGITS, 0, input_dim=64, num_classes=10)
    # q = 1/200: a draw is empty with probability (1 - q)^200 ~ 0.37; an empty draw is
    # still a step that releases a (noise-only) scalar. P(no empty draw in 60) ~ 1e-12.
    spec = _spec(spsa_steps=60, dp_zo_noise_multiplier=1.0)
    learner = SPSALearner(spec, batch_size=1, seed=1, node=NODE)
    first = learner.train_round(model, data, 0)
    assert 1 <= learner.empty_draws < 60 and len(first.steps) == 60
    assert all(math.isfinite(e.scalar) for e in first.entries())
    # Same round, same seeds: another call draws other examples and other noise.
    again = learner.train_round(model, data, 0)
    assert first.seed_ids == again.seed_ids
    assert [e.scalar for e in first.entries()] != [e.scalar for e in again.entries()]


def test_accounting_is_dp_sgd_on_a_one_dimensional_query(tmp_path: Path) -> None:
    data = node_data(DIGITS, 0, 0)
    spec = _spec(spsa_steps=16, dp_zo_noise_multiplier=1.1)
    learner = SPSALearner(spec, batch_size=64, seed=1, node=NODE)
    z, q, steps = learner.dp_round(data.num_examples)  # type: ignore[misc]
    assert (z, steps) == (1.1, 16) and q == pytest.approx(64 / data.num_examples)
    guard = ReleaseGuard(
        PrivacySpec(sample_delta=1e-6), open_store(data_dir=tmp_path), record_kind="dp_zo"
    )
    guard.set_record_mechanism(RecordMechanism("dp_zo", z, q, steps))
    for i in range(5):
        guard.commit(guard.open("spsa", steps=16), f"{i:064x}")
    rows = guard.store.ledger_rows()
    assert [(r.scope, r.release_kind, r.steps) for r in rows] == [("record", "dp_zo", 16)] * 5
    want = epsilon(z, q, 5 * 16, 1e-6)
    assert guard.record_spent() == pytest.approx(want, rel=1e-9)
    opacus = RDPAccountant()
    for _ in range(5):
        opacus.history.append((z, q, 16))
    assert guard.record_spent() == pytest.approx(opacus.get_epsilon(1e-6), rel=5e-3)
    assert SPSALearner(_spec(dp_zo=False), batch_size=1, seed=1, node=NODE).dp_round(10) is None


def test_bad_dp_zo_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="dp_zo_clip"):
        _spec(dp_zo_clip=0.0)
    with pytest.raises(ValidationError, match="dp_zo_noise_multiplier"):
        _spec(dp_zo_noise_multiplier=-1.0)
    with pytest.raises(ValidationError, match="dp_zo_noise_multiplier"):
        _spec(dp_zo_noise_multiplier=math.nan)
    with pytest.raises(ValidationError, match="dp_zo is only available"):
        LearnerSpec(kind="sgd", dp_zo=True)
