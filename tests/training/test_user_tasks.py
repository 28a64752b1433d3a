"""Task factories and Flower ClientApps: user code run by the native learners."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from node.training.learners.flower import FlowerClientError, FlowerLearner, load_flower_client
from node.training.learners.spsa import apply_round
from node.training.params import flatten, load_vector
from node.training.spec import LearnerSpec, TaskSpec
from node.training.tasks import TaskFactoryError, build_local_task, spsa_learner
from node.training.trainer import FlowerTrainer, ModelTrainer, make_trainer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def python_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES / "python_task"))


@pytest.fixture
def flower_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES / "flower_clientapp"))


def _python(factory: str, nodes: int = 3, **kw: object) -> TaskSpec:
    return TaskSpec(name="python", factory=factory, num_nodes=nodes, **kw)  # type: ignore[arg-type]


def test_digits_factory_trains_with_sgd_and_shards_are_disjoint(python_tasks: None) -> None:
    spec = _python("digits_task:make_task", batch_size=32)
    learner = LearnerSpec(kind="sgd", lr=1e-2, local_steps=40)
    trainers = [
        make_trainer(spec, learner, seed=3, node_index=i, node_id=f"n{i}") for i in range(3)
    ]
    assert all(isinstance(t, ModelTrainer) for t in trainers)
    # every node builds the identical model from the genesis seed
    assert all(torch.equal(trainers[0].vector(), t.vector()) for t in trainers)
    shards = [t.data for t in trainers]  # type: ignore[union-attr]
    assert sum(d.num_examples for d in shards) == 1797 - 300  # the shards cover the pool
    assert not torch.equal(shards[0].x[:50], shards[1].x[:50])
    assert torch.equal(shards[0].x_test, shards[2].x_test)  # one shared test set
    before = trainers[0].evaluate()
    for r in range(3):
        trainers[0].train(r)
    after = trainers[0].evaluate()
    assert after.accuracy > max(0.8, before.accuracy + 0.3), (before, after)


def test_regression_factory_uses_its_own_loss_and_metric(python_tasks: None) -> None:
    spec = _python("sine_task:make_task", nodes=2, batch_size=64)
    task = build_local_task(spec, 0, 1)
    assert task.loss is not None and task.metric is not None
    first = task.evaluate()
    assert first.accuracy == pytest.approx(-first.loss, rel=1e-5)  # metric = -MSE
    trainer = make_trainer(
        spec, LearnerSpec(kind="sgd", lr=1e-2, local_steps=150), seed=0, node_index=1, node_id="a"
    )
    for r in range(3):
        trainer.train(r)
    assert trainer.evaluate().loss < 0.5 * first.loss


def test_spsa_trains_a_factory_task_with_its_loss(python_tasks: None) -> None:
    spec = _python("sine_task:make_task", nodes=1, batch_size=128)
    task = build_local_task(spec, 0, 0)
    learner_spec = LearnerSpec(kind="spsa", lr=2e-3, spsa_steps=20, spsa_eps=1e-3)
    learner = spsa_learner(task, learner_spec, batch_size=128, seed=0, node="n")
    start = task.evaluate().loss
    w = flatten(task.model)
    for r in range(15):
        batch = learner.train_round(task.model, task.data, r)
        w = apply_round(w, batch.entries(), learner_spec.lr, num_nodes=1)
        load_vector(task.model, w)
    assert task.evaluate().loss < 0.9 * start


def test_factory_errors_are_one_line_with_the_users_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "broken_task.py").write_text(
        "import torch\n\ndef make_task(ctx):\n    raise RuntimeError('no data here')\n"
    )
    (tmp_path / "typo_task.py").write_text("x = (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TaskFactoryError) as info:
        build_local_task(_python("broken_task:make_task"), 0, 0)
    msg = str(info.value)
    assert "\n" not in msg and "no data here" in msg and "broken_task.py:4" in msg
    with pytest.raises(TaskFactoryError, match=r"typo_task\.py:1"):
        build_local_task(_python("typo_task:make_task"), 0, 0)
    with pytest.raises(TaskFactoryError, match="PYTHONPATH"):
        build_local_task(_python("not_on_path_task:make_task"), 0, 0)


def test_clientapp_was_called_without_context_before() -> None:
    """Reproduction of the issue: a ClientApp must be called as app(message, context)."""
    from flwr.clientapp import ClientApp

    with pytest.raises(TypeError, match="context"):
        ClientApp()(object())  # type: ignore[call-arg]


@pytest.mark.parametrize("attr", ["app", "legacy_app", "client_fn"])
def test_clientapp_and_client_fn_get_their_partition(flower_apps: None, attr: str) -> None:
    import digits_app  # type: ignore[import-not-found]

    initial = "digits_app:Net" if attr == "app" else None
    client = load_flower_client(f"digits_app:{attr}", node_index=2, num_nodes=3, initial=initial)
    learner = FlowerLearner(client)
    trainer = FlowerTrainer(learner)
    before = trainer.evaluate()
    result = trainer.train(0)
    # The partition from Context.node_config: shard 2 of 3 of the 1497 training digits.
    expect = len(digits_app.load_partition(2, 3)[1])
    assert result.num_examples == expect and expect < 600
    after = trainer.evaluate()
    assert after.accuracy > before.accuracy + 0.2


def test_message_api_clientapp_needs_an_initial_model(flower_apps: None) -> None:
    with pytest.raises(FlowerClientError, match="flower_initial"):
        load_flower_client("digits_app:app")


def test_flower_user_errors_are_one_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad_app.py").write_text(
        "from flwr.clientapp import ClientApp\n"
        "import torch\n"
        "app = ClientApp()\n"
        "\n"
        "@app.train()\n"
        "def train(msg, context):\n"
        "    raise ValueError('boom in train')\n"
        "\n"
        "def initial():\n"
        "    return torch.nn.Linear(2, 2)\n"
    )
    (tmp_path / "bad_import.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    learner = FlowerLearner(load_flower_client("bad_app:app", initial="bad_app:initial"))
    with pytest.raises(FlowerClientError) as info:
        learner.train_round(learner.initial, 0)
    msg = str(info.value)
    assert "\n" not in msg and "boom in train" in msg and "bad_app.py:7" in msg
    with pytest.raises(FlowerClientError) as info2:
        load_flower_client("bad_import:app")
    assert "no_such_dependency_xyz" in str(info2.value) and "bad_import.py:1" in str(info2.value)
    with pytest.raises(FlowerClientError, match="PYTHONPATH"):
        load_flower_client("missing_client_module:app")


def test_simulate_runs_a_factory_task(python_tasks: None) -> None:
    from node.sim.rounds import simulate
    from node.training.spec import RoundSpec

    spec = _python("digits_task:make_task", nodes=3, batch_size=32)
    res = simulate(
        spec,
        LearnerSpec(kind="sgd", lr=1e-2, local_steps=20),
        RoundSpec(peers_per_round=2, eval_every=1),
        seed=1,
        num_rounds=3,
    )
    assert min(res.final_accuracy) > 0.7
