"""Where a simulated network's nodes keep their models and data, and do their compute.

:func:`node.sim.rounds.simulate` owns every node's protocol state (round engine, current
vector, clock); a :class:`NodeHosts` owns the rest of each node: its model, data shard and
learner. The simulation asks a host to train round ``r`` from a vector, or to evaluate a
vector, and gets a :class:`Pending` result back, so a host that computes elsewhere
(:class:`node.sim.ray_hosts.RayHosts`) trains many nodes at once while the event loop runs
on. :class:`LocalHosts` computes in this process, at once.

Trainers load the vector they are given before each call, so a node's result depends only
on (seed, node, round, vector) and not on which host ran it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import torch

from node.training.datasets import TaskData
from node.training.evaluate import EvalResult
from node.training.models import build_model
from node.training.params import flatten
from node.training.seeding import derive_seed
from node.training.spec import LearnerSpec, TaskSpec
from node.training.trainer import FlowerTrainer, ModelTrainer, make_trainer

__all__ = ["Done", "LocalHosts", "NodeHosts", "Pending", "Trained", "build_trainers"]

T_co = TypeVar("T_co", covariant=True)


class Pending(Protocol[T_co]):
    """A result that may still be computing."""

    def done(self) -> bool:
        """True once :meth:`result` returns without waiting."""
        ...

    def result(self) -> T_co:
        """The result, waiting for it if needed."""
        ...


T = TypeVar("T")


@dataclass(frozen=True)
class Done(Generic[T]):
    """A :class:`Pending` computed already."""

    value: T

    def done(self) -> bool:
        return True

    def result(self) -> T:
        return self.value


@dataclass(frozen=True)
class Trained:
    """One node's local round: the trained vector and the examples it was trained on."""

    vector: torch.Tensor
    num_examples: int


class NodeHosts(Protocol):
    """The simulated nodes' models, data and learners, indexed ``0 .. n-1``."""

    def initial(self) -> list[torch.Tensor]:
        """Each node's starting vector."""
        ...

    def layer_sizes(self) -> list[int]:
        """The model's trainable parameter sizes, in vector order (equal on every node)."""
        ...

    def num_examples(self) -> list[int]:
        """Each node's training examples before its first round."""
        ...

    def train(self, node: int, round_idx: int, vector: torch.Tensor) -> Pending[Trained]:
        """Train ``node``'s round ``round_idx`` starting from ``vector``."""
        ...

    def evaluate(self, node: int, vector: torch.Tensor) -> Pending[EvalResult]:
        """Evaluate ``vector`` on ``node``'s test split."""
        ...

    def close(self) -> None:
        """Release what the hosts hold (processes, memory)."""
        ...


def build_trainers(
    task: TaskSpec,
    learner: LearnerSpec,
    *,
    seed: int,
    nodes: Sequence[int],
    data: TaskData | None,
    independent_init: bool = False,
) -> dict[int, ModelTrainer | FlowerTrainer]:
    """Trainers for the node indices ``nodes``, as the daemon would build them.

    Node ``i`` is ``node-{i}``. With ``independent_init`` (default False) node ``i``
    starts from its own initialisation, model seed ``derive_seed("independent-init",
    seed, i)``; that needs a model built here (learner ``sgd`` with a task's data).
    """
    trainers: dict[int, ModelTrainer | FlowerTrainer] = {
        i: make_trainer(task, learner, seed=seed, node_index=i, node_id=f"node-{i}", task_data=data)
        for i in nodes
    }
    if independent_init:
        if data is None:
            raise ValueError("independent_init needs the 'sgd' learner (a model built here)")
        for i, tr in trainers.items():
            own = build_model(
                task,
                derive_seed("independent-init", seed, i),
                input_dim=data.input_dim,
                num_classes=data.num_classes,
            )
            tr.set_vector(flatten(own))
    return trainers


class LocalHosts:
    """Every node's trainer in this process; each call computes before it returns."""

    def __init__(self, trainers: Sequence[ModelTrainer | FlowerTrainer]) -> None:
        self.trainers = list(trainers)

    def initial(self) -> list[torch.Tensor]:
        return [tr.vector() for tr in self.trainers]

    def layer_sizes(self) -> list[int]:
        return list(self.trainers[0].layout.sizes)

    def num_examples(self) -> list[int]:
        return [tr.num_examples for tr in self.trainers]

    def train(self, node: int, round_idx: int, vector: torch.Tensor) -> Done[Trained]:
        return Done(train_one(self.trainers[node], round_idx, vector))

    def evaluate(self, node: int, vector: torch.Tensor) -> Done[EvalResult]:
        return Done(evaluate_one(self.trainers[node], vector))

    def close(self) -> None:
        self.trainers.clear()


def train_one(
    trainer: ModelTrainer | FlowerTrainer, round_idx: int, vector: torch.Tensor
) -> Trained:
    """``trainer`` trains ``round_idx`` from ``vector``; what every host runs per round."""
    trainer.set_vector(vector)
    trainer.train(round_idx)
    return Trained(trainer.vector(), trainer.num_examples)


def evaluate_one(trainer: ModelTrainer | FlowerTrainer, vector: torch.Tensor) -> EvalResult:
    """``trainer`` evaluates ``vector``; what every host runs per evaluation."""
    trainer.set_vector(vector)
    return trainer.evaluate()
