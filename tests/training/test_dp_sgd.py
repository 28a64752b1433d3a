"""Sample-level DP-SGD of the sgd learner through Opacus."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from opacus.accountants import RDPAccountant
from pydantic import ValidationError
from torch import nn

from node.training.datasets import NodeData, node_data
from node.training.learners.sgd import SGDLearner
from node.training.models import build_model
from node.training.params import flatten, layout_of, load_vector
from node.training.spec import LearnerSpec, TaskSpec
from node.training.trainer import make_trainer
from privacy import epsilon

DIGITS = TaskSpec(name="digits", num_nodes=1, batch_size=64)


def _subset(data: NodeData, count: int) -> NodeData:
    return dataclasses.replace(data, x=data.x[:count], y=data.y[:count])


def _dp(**kw: object) -> LearnerSpec:
    return LearnerSpec.model_validate({"dp_sgd": True, **kw})


def _per_example_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, d) per-example gradients by plain autograd, one example at a time."""
    rows = []
    for i in range(len(y)):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))  # type: ignore[union-attr]
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def test_per_example_gradients_are_clipped_and_model_is_left_clean() -> None:
    data = _subset(node_data(DIGITS, 0, 0), 40)
    model = build_model(DIGITS, 0, input_dim=64, num_classes=10)
    names_before = layout_of(model).names
    start = flatten(model)
    clip = 0.5
    grads = _per_example_grads(model, data.x, data.y)
    norms = grads.norm(dim=1)
    assert int((norms > clip).sum()) >= 20  # clipping is active for most examples
    clipped = grads * (clip / (norms + 1e-6)).clamp(max=1.0).unsqueeze(1)
    expected = -clipped.mean(dim=0)  # lr 1, batch = all 40 (q = 1), no noise
    spec = _dp(
        optimizer="sgd",
        lr=1.0,
        local_steps=1,
        dp_sgd_noise_multiplier=0.0,
        dp_sgd_max_grad_norm=clip,
    )
    learner = SGDLearner(spec, batch_size=40, seed=0, node="a")
    res = learner.train_round(model, data, 0)
    assert torch.allclose(res.update, expected, atol=1e-6)
    # Neither the unclipped mean nor a clip of the whole batch gradient would pass.
    unclipped = -grads.mean(dim=0)
    batch_clipped = unclipped * min(1.0, clip / float(unclipped.norm()))
    assert float((res.update - unclipped).norm()) > 0.1 * float(expected.norm())
    assert float((res.update - batch_clipped).norm()) > 0.1 * float(expected.norm())
    # The flat vector still addresses the original module, and Opacus left nothing behind.
    assert torch.allclose(flatten(model), start + res.update)
    assert layout_of(model).names == names_before
    assert not hasattr(model, "autograd_grad_sample_hooks")
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    load_vector(model, start)
    assert torch.equal(_per_example_grads(model, data.x, data.y), grads)  # hooks are gone


def test_noise_has_std_z_times_clip_over_expected_batch() -> None:
    data = _subset(node_data(DIGITS, 0, 0), 40)
    updates = []
    for z in (0.0, 2.0):
        model = build_model(DIGITS, 0, input_dim=64, num_classes=10)
        spec = _dp(
            optimizer="sgd",
            lr=1.0,
            local_steps=1,
            dp_sgd_noise_multiplier=z,
            dp_sgd_max_grad_norm=0.5,
        )
        updates.append(
            SGDLearner(spec, batch_size=40, seed=0, node="a").train_round(model, data, 0).update
        )
    noise = updates[1] - updates[0]
    want = 2.0 * 0.5 / 40  # z * C / expected batch size, times lr 1
    assert noise.numel() > 4000
    assert float(noise.std()) == pytest.approx(want, rel=0.05)
    assert abs(float(noise.mean())) < 4 * want / math.sqrt(noise.numel())


def test_dp_sgd_reduces_loss_on_digits_and_accounts_like_opacus() -> None:
    spec = _dp(local_steps=25, dp_sgd_noise_multiplier=1.0, dp_sgd_max_grad_norm=1.0)
    trainer = make_trainer(DIGITS, spec, seed=0, node_index=0, node_id="a")
    learner = trainer.learner
    assert isinstance(learner, SGDLearner)
    first = trainer.evaluate()
    assert learner.sample_epsilon(1e-5) == 0.0
    q = DIGITS.batch_size / trainer.num_examples
    eps = []
    for r in range(3):
        res = trainer.train(r)
        assert res.metrics["dp_sgd_sample_rate"] == pytest.approx(q)
        eps.append(learner.sample_epsilon(1e-5))
    after = trainer.evaluate()
    assert after.loss < 0.5 * first.loss
    assert after.accuracy > 0.6  # chance is 0.1; about 0.74 measured
    assert eps[0] < eps[1] < eps[2]
    assert learner.dp_steps == 75
    reference = RDPAccountant()
    reference.history = [(1.0, q, 75)]
    assert eps[2] == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-9)
    assert eps[2] == pytest.approx(epsilon(1.0, q, 75, 1e-5), rel=5e-3)


def test_empty_poisson_draws_are_noise_only_steps() -> None:
    data = _subset(node_data(DIGITS, 0, 0), 200)
    model = build_model(DIGITS, 0, input_dim=64, num_classes=10)
    spec = _dp(optimizer="sgd", lr=0.1, local_steps=60, dp_sgd_noise_multiplier=1.0)
    learner = SGDLearner(spec, batch_size=1, seed=0, node="a")  # q = 1/200: ~37% empty
    res = learner.train_round(model, data, 0)
    assert learner.dp_steps == 60
    # OS-random draws: 22 empty ones expected, fewer than 3 has probability ~1e-9.
    assert res.metrics["dp_sgd_empty_draws"] >= 3
    assert bool(torch.isfinite(res.update).all()) and float(res.update.abs().sum()) > 0
    assert learner.sample_epsilon(1e-5) == pytest.approx(epsilon(1.0, 1 / 200, 60, 1e-5), rel=5e-3)


def test_bad_dp_sgd_configuration_is_refused() -> None:
    with pytest.raises(ValidationError, match="dp_sgd is only available with learner kind 'sgd'"):
        LearnerSpec(kind="spsa", dp_sgd=True)
    with pytest.raises(ValidationError, match="dp_sgd is only available"):
        LearnerSpec(kind="flower", flower_client="m:c", dp_sgd=True)
    with pytest.raises(ValidationError, match="dp_sgd_max_grad_norm"):
        _dp(dp_sgd_max_grad_norm=0.0)
    with pytest.raises(ValidationError, match="dp_sgd_noise_multiplier"):
        _dp(dp_sgd_noise_multiplier=-1.0)
    with pytest.raises(ValidationError, match="dp_sgd_noise_multiplier"):
        _dp(dp_sgd_noise_multiplier=float("nan"))
    plain = SGDLearner(LearnerSpec(), batch_size=8, seed=0, node="a")
    with pytest.raises(ValueError, match="dp_sgd = true"):
        plain.sample_epsilon(1e-5)
    learner = SGDLearner(_dp(local_steps=1), batch_size=8, seed=0, node="a")
    with pytest.raises(ValueError, match="delta"):
        learner.sample_epsilon(0.0)
    # A model Opacus cannot give per-example gradients for is refused with the reason.
    data = _subset(node_data(DIGITS, 0, 0), 16)
    bn = nn.Sequential(nn.Linear(64, 10), nn.BatchNorm1d(10))
    with pytest.raises(ValueError, match="dp_sgd: Opacus cannot"):
        learner.train_round(bn, data, 0)
    assert learner.dp_steps == 0
