"""Local trainers: one node's model, data and learner behind a flat-vector interface.

The round engine and the drivers (daemon, simulation) only see float32
vectors; a trainer turns "train round r from vector v" into the learner's work.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from node.training.datasets import NodeData, TaskData
from node.training.evaluate import EvalResult
from node.training.learners import LocalResult
from node.training.learners.flower import FlowerLearner, load_flower_client
from node.training.learners.sgd import SGDLearner
from node.training.params import ParamLayout, flatten, layout_of, load_vector
from node.training.spec import LearnerSpec, TaskSpec
from node.training.tasks import LocalTask, build_local_task

__all__ = ["FlowerTrainer", "ModelTrainer", "Trainer", "make_trainer"]


class Trainer(Protocol):
    """What drivers need from a node's local learning."""

    layout: ParamLayout
    num_examples: int

    def vector(self) -> torch.Tensor:
        """Current trainable vector."""
        ...

    def set_vector(self, vector: torch.Tensor) -> None:
        """Replace the trainable vector (e.g. with the aggregate)."""
        ...

    def train(self, round_idx: int) -> LocalResult:
        """Train one round from the current vector; the trainer keeps the result."""
        ...

    def evaluate(self) -> EvalResult:
        """Evaluate the current vector on the local test split."""
        ...


class ModelTrainer:
    """A torch model + node data + first-order learner (``sgd``).

    Parameters
    ----------
    model
        Model built by :func:`~node.training.models.build_model` (or a task factory).
    data
        The node's shard and test split.
    learner
        The :class:`SGDLearner`.
    task
        The :class:`~node.training.tasks.LocalTask` holding model and data, whose loss
        and metric evaluation uses (default: cross-entropy and accuracy).
    """

    def __init__(
        self, model: nn.Module, data: NodeData, learner: SGDLearner, task: LocalTask | None = None
    ):
        self.model = model
        self.data = data
        self.learner = learner
        self.task = task if task is not None else LocalTask(model, data)
        self.layout = layout_of(model)
        self.num_examples = data.num_examples

    def vector(self) -> torch.Tensor:
        return flatten(self.model)

    def set_vector(self, vector: torch.Tensor) -> None:
        load_vector(self.model, vector)

    def train(self, round_idx: int) -> LocalResult:
        return self.learner.train_round(self.model, self.data, round_idx)

    def evaluate(self) -> EvalResult:
        return self.task.evaluate()


class FlowerTrainer:
    """A Flower NumPyClient as trainer; the vector lives on the node side.

    Evaluation reports the client's own ``evaluate`` (accuracy from its
    ``"accuracy"`` metric, NaN if it reports none).
    """

    def __init__(self, learner: FlowerLearner):
        self.learner = learner
        self.layout = learner.layout
        self._vector = learner.initial.clone()
        self.num_examples = 0

    def vector(self) -> torch.Tensor:
        return self._vector.clone()

    def set_vector(self, vector: torch.Tensor) -> None:
        self.layout.check_vector(vector)
        if not bool(torch.isfinite(vector).all()):
            raise ValueError("vector contains NaN or Inf")
        self._vector = vector.clone()

    def train(self, round_idx: int) -> LocalResult:
        result = self.learner.train_round(self._vector, round_idx)
        self._vector = self._vector + result.update
        self.num_examples = result.num_examples
        return result

    def evaluate(self) -> EvalResult:
        ev = self.learner.evaluate(self._vector)
        acc = ev.metrics.get("accuracy", float("nan"))
        return EvalResult(ev.loss, float(acc), ev.num_examples)


def make_trainer(
    task: TaskSpec,
    learner: LearnerSpec,
    *,
    seed: int,
    node_index: int,
    node_id: str,
    task_data: TaskData | None = None,
) -> ModelTrainer | FlowerTrainer:
    """Build the trainer a node runs for ``sgd`` or ``flower`` learners.

    (``spsa`` nodes use :class:`~node.training.learners.spsa.SPSALearner` with a
    :class:`~node.training.learners.spsa.ScalarLog` instead of vector exchange.)
    """
    if learner.kind == "flower":
        assert learner.flower_client is not None
        client = load_flower_client(
            learner.flower_client,
            node_index=node_index,
            num_nodes=task.num_nodes,
            initial=learner.flower_initial,
        )
        return FlowerTrainer(FlowerLearner(client))
    if learner.kind != "sgd":
        raise ValueError(f"make_trainer handles 'sgd' and 'flower', not {learner.kind!r}")
    local = build_local_task(task, seed, node_index, task_data=task_data)
    sgd = SGDLearner(learner, batch_size=task.batch_size, seed=seed, node=node_id, loss=local.loss)
    return ModelTrainer(local.model, local.data, sgd, local)
