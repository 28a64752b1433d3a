from __future__ import annotations

import pytest
import torch
from torch import nn

from node.training.datasets import node_data
from node.training.learners.flower import FlowerClientError, FlowerLearner, load_flower_client
from node.training.learners.sgd import SGDLearner
from node.training.models import build_model
from node.training.params import flatten, load_vector
from node.training.spec import LearnerSpec, TaskSpec
from node.training.trainer import make_trainer

EXAMPLE = "node.training.examples.digits_client:client_fn"


def test_sgd_update_is_new_minus_old_and_reduces_loss() -> None:
    spec = TaskSpec(name="digits", num_nodes=2, batch_size=32)
    data = node_data(spec, 0, 1)
    model = build_model(spec, 0, input_dim=64, num_classes=10)
    x, y = data.x[:64], data.y[:64]
    before_vec = flatten(model)
    with torch.no_grad():
        before = float(nn.functional.cross_entropy(model(x), y))
    learner = SGDLearner(LearnerSpec(lr=1e-2, local_steps=20), batch_size=32, seed=0, node="a")
    res = learner.train_round(model, data, 0)
    assert torch.allclose(before_vec + res.update, flatten(model), atol=1e-6)
    with torch.no_grad():
        after = float(nn.functional.cross_entropy(model(x), y))
    assert after < 0.7 * before
    # reproducible: same node, round and start give the same update
    again = build_model(spec, 0, input_dim=64, num_classes=10)
    res2 = learner.train_round(again, data, 0)
    assert torch.equal(res.update, res2.update)
    sgd = SGDLearner(
        LearnerSpec(optimizer="sgd", lr=0.1, local_steps=5), batch_size=32, seed=0, node="a"
    )
    load_vector(again, before_vec)
    assert float(sgd.train_round(again, data, 0).update.abs().sum()) > 0


def test_flower_adapter_runs_unmodified_numpy_client() -> None:
    client = load_flower_client(EXAMPLE, node_index=1, num_nodes=3)
    learner = FlowerLearner(client)
    v0 = learner.initial
    assert learner.layout.numel == 64 * 64 + 64 + 64 * 10 + 10
    first = learner.evaluate(v0)
    res = learner.train_round(v0, 0)
    arrays, num, _ = client.fit(learner.to_arrays(v0), {})
    assert res.num_examples == num > 0
    assert res.update.shape == v0.shape and float(res.update.abs().sum()) > 0
    assert torch.isfinite(res.update).all()
    trained = learner.evaluate(v0 + res.update)
    assert trained.metrics["accuracy"] > first.metrics["accuracy"]
    assert len(arrays) == 4


def test_flower_trainer_and_bad_targets() -> None:
    trainer = make_trainer(
        TaskSpec(name="digits", num_nodes=2),
        LearnerSpec(kind="flower", flower_client=EXAMPLE),
        seed=0,
        node_index=0,
        node_id="n0",
    )
    v = trainer.vector()
    trainer.train(0)
    assert not torch.equal(trainer.vector(), v) and trainer.num_examples > 0
    assert 0.0 <= trainer.evaluate().accuracy <= 1.0
    with pytest.raises(FlowerClientError, match="cannot import"):
        load_flower_client("no_such_module_xyz:client")
    with pytest.raises(FlowerClientError, match="no attribute"):
        load_flower_client("node.training.examples.digits_client:nope")
    with pytest.raises(FlowerClientError, match="class"):
        load_flower_client("node.training.examples.digits_client:DigitsClient")
