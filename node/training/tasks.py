"""One node's task: model, data shard, loss and metric, for every kind of task.

:func:`build_local_task` is the single place that turns a :class:`TaskSpec` into what a
learner trains: the built-in tasks and the Hugging Face folder tasks through
:func:`~node.training.datasets.load_task` / :func:`~node.training.models.build_model`,
and ``python`` tasks through the user's factory (:mod:`node.training.factory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from node.training.datasets import NodeData, TaskData, load_task, node_data
from node.training.evaluate import EvalResult, evaluate
from node.training.factory import FactoryContext, Loss, Metric, TaskParts
from node.training.learners.spsa import SPSALearner
from node.training.models import build_model
from node.training.params import load_vector
from node.training.seeding import derive_seed
from node.training.spec import LearnerSpec, TaskSpec
from node.training.usercode import TaskSetupError, UserCodeError, describe, load_attribute

__all__ = ["LocalTask", "TaskFactoryError", "TaskSPSALearner", "build_local_task", "spsa_learner"]


class TaskFactoryError(TaskSetupError):
    """A ``python`` task's factory could not be loaded or returned something unusable."""


@dataclass
class LocalTask:
    """A node's model, shard, loss and metric.

    ``loss``/``metric`` are None for cross-entropy/accuracy (the built-in and Hugging Face
    tasks), which :func:`~node.training.evaluate.evaluate` computes token-weighted.
    """

    model: nn.Module
    data: NodeData
    loss: Loss | None = None
    metric: Metric | None = None
    eval_batch_size: int = 512

    def loss_fn(self) -> Loss:
        """The training loss (cross-entropy unless the task says otherwise)."""
        return self.loss or nn.functional.cross_entropy

    def evaluate(self) -> EvalResult:
        """Loss and metric of the current model on the test split."""
        return evaluate(
            self.model,
            self.data.x_test,
            self.data.y_test,
            batch_size=self.eval_batch_size,
            loss=self.loss,
            metric=self.metric,
        )


def _eval_batch(spec: TaskSpec) -> int:
    if spec.name == "causal-lm":
        return 8  # logits are batch x vocabulary x length
    if spec.is_hf:
        return 64
    return 512


def _tensor_pair(value: object, what: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(value, tuple | list) and len(value) == 2):
        raise TaskFactoryError(f"factory {target}: {what} must be an (x, y) pair of tensors")
    x, y = value
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TaskFactoryError(f"factory {target}: {what} x and y must be torch tensors")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise TaskFactoryError(
            f"factory {target}: {what} has {x.shape[0]} inputs and {y.shape[0]} targets "
            "(need equal, non-zero counts)"
        )
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise TaskFactoryError(f"factory {target}: {what} inputs contain NaN or Inf")
    return x, y


def _from_factory(spec: TaskSpec, seed: int, node_index: int) -> LocalTask:
    assert spec.factory is not None
    try:
        factory = load_attribute(spec.factory, what="task factory")
    except UserCodeError as exc:
        raise TaskFactoryError(str(exc)) from None
    if not callable(factory):
        raise TaskFactoryError(f"factory {spec.factory!r} is not callable")
    ctx = FactoryContext(shard=node_index, num_shards=spec.num_nodes, seed=seed)
    with torch.random.fork_rng(devices=[]):
        # Plain torch.nn initialisation comes out identical on every node.
        torch.manual_seed(derive_seed("model-init", seed, spec.name, spec.factory))
        try:
            parts = factory(ctx)
        except Exception as exc:  # the user's code: one line naming their file
            raise TaskFactoryError(describe(exc, f"task factory {spec.factory}")) from None
    if not isinstance(parts, TaskParts):
        raise TaskFactoryError(
            f"factory {spec.factory} returned {type(parts).__name__}, not "
            "node.training.factory.TaskParts"
        )
    if not isinstance(parts.model, nn.Module):
        raise TaskFactoryError(f"factory {spec.factory}: model is not a torch.nn.Module")
    if not any(p.requires_grad for p in parts.model.parameters()):
        raise TaskFactoryError(f"factory {spec.factory}: the model has no trainable parameter")
    x, y = _tensor_pair(parts.train, "train", spec.factory)
    xt, yt = _tensor_pair(parts.test, "test", spec.factory)
    num_classes = int(y.max()) + 1 if not y.is_floating_point() and y.ndim == 1 else 0
    data = NodeData(
        x=x, y=y, x_test=xt, y_test=yt, num_classes=num_classes, indices=np.arange(len(y))
    )
    return LocalTask(parts.model, data, parts.loss, parts.metric, eval_batch_size=512)


def build_local_task(
    spec: TaskSpec,
    seed: int,
    node_index: int,
    *,
    task_data: TaskData | None = None,
    cache: Path | None = None,
) -> LocalTask:
    """Build this node's model, shard, loss and metric.

    Parameters
    ----------
    spec
        The genesis task.
    seed
        Genesis seed (model initialisation, partition, hold-out).
    node_index
        This node's shard, in ``[0, spec.num_nodes)``.
    task_data
        Already loaded :class:`TaskData` to reuse (not for ``python`` tasks).
    cache
        Cache directory for generated and tokenised data.

    Raises
    ------
    TaskFactoryError
        A ``python`` task whose factory fails (one line with the user's file and line).
    """
    if spec.name == "python":
        return _from_factory(spec, seed, node_index)
    data_all = task_data if task_data is not None else load_task(spec, seed, cache=cache)
    data = node_data(spec, seed, node_index, task=data_all)
    model = build_model(spec, seed, input_dim=data_all.input_dim, num_classes=data_all.num_classes)
    return LocalTask(model, data, eval_batch_size=_eval_batch(spec))


class TaskSPSALearner(SPSALearner):
    """:class:`SPSALearner` evaluating the task's own loss (a ``python`` task's factory loss).

    The two-point estimate only needs ``L(w ± eps z)``; every other part (seeds,
    perturbations, quantisation, the wire batch) is the base class's.
    """

    def __init__(
        self, spec: LearnerSpec, *, batch_size: int, seed: int, node: str, loss: Loss
    ) -> None:
        super().__init__(spec, batch_size=batch_size, seed=seed, node=node)
        self.loss = loss

    @torch.no_grad()
    def _loss(self, model: nn.Module, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        load_vector(model, w, check=False)
        return float(self.loss(model(x), y))


def spsa_learner(
    task: LocalTask, spec: LearnerSpec, *, batch_size: int, seed: int, node: str
) -> SPSALearner:
    """The SPSA learner for ``task``: the stock one, or one with the task's own loss.

    Raises
    ------
    TaskFactoryError
        DP-ZO on a task without per-example class losses (a factory's own loss, causal-lm
        token targets): its clipping is per example of a cross-entropy.
    """
    if getattr(spec, "dp_zo", False) and (task.loss is not None or task.data.y.ndim != 1):
        raise TaskFactoryError(
            "dp_zo clips per-example cross-entropy differences; this task has its own loss "
            "or sequence targets, which DP-ZO does not support yet"
        )
    if task.loss is None:
        return SPSALearner(spec, batch_size=batch_size, seed=seed, node=node)
    return TaskSPSALearner(spec, batch_size=batch_size, seed=seed, node=node, loss=task.loss)
