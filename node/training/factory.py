"""The public contract of a ``python`` task: any PyTorch model through a factory.

A genesis with ``task.name = "python"`` and ``task.factory = "my_module:make_task"`` makes
every node import ``my_module`` (it must be importable: on ``PYTHONPATH``) and call::

    parts = make_task(FactoryContext(shard=i, num_shards=n, seed=genesis_seed))

The factory returns a :class:`TaskParts`: the model, this node's training data, the test
data, the loss and the metric. fednode's own learners (``sgd``, ``spsa``, DP-SGD) then train
the model's parameters that have ``requires_grad`` exactly as they train a built-in task.

Rules a factory must follow, because every node builds its model independently:

* The model must come out identical on every node. fednode calls the factory inside a
  forked torch RNG seeded from the genesis seed, so plain ``torch.nn`` initialisation is
  identical everywhere; draw any other randomness from ``ctx.seed``.
* ``train`` is *this node's* shard: split your data by ``ctx.shard`` out of
  ``ctx.num_shards`` (with ``ctx.seed`` for any shuffling, so shards are disjoint).
* ``test`` should be the same on every node, so accuracies are comparable.
* Tensors only: ``x`` and ``y`` are tensors with equal first dimension; minibatches are
  ``x[idx]``, ``y[idx]``.

Example (``examples/python_task/linear_task.py``)::

    from node.training.factory import FactoryContext, TaskParts

    def make_task(ctx: FactoryContext) -> TaskParts:
        model = torch.nn.Linear(8, 3)
        ...
        return TaskParts(model=model, train=(x_tr, y_tr), test=(x_te, y_te))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["FactoryContext", "Loss", "Metric", "TaskFactory", "TaskParts", "accuracy"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(outputs, targets)``: a scalar tensor, the mean over the batch (differentiable)."""

Metric = Callable[[torch.Tensor, torch.Tensor], float]
"""``metric(outputs, targets)``: a float, the mean over the batch (higher is better)."""


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows whose ``argmax`` over axis 1 equals the target (the default metric)."""
    return float((outputs.argmax(1) == targets).float().mean())


@dataclass(frozen=True)
class FactoryContext:
    """What a node tells a task factory.

    Attributes
    ----------
    shard
        This node's shard index, in ``[0, num_shards)`` (``fednode start --shard``).
    num_shards
        Number of shards, the genesis's ``task.num_nodes``.
    seed
        The genesis seed: identical on every node of the network.
    """

    shard: int
    num_shards: int
    seed: int


@dataclass
class TaskParts:
    """What a task factory returns.

    Attributes
    ----------
    model
        The model; its parameters with ``requires_grad`` are what the network trains
        and exchanges (freeze the rest).
    train
        ``(x, y)`` tensors of this node's training shard.
    test
        ``(x, y)`` tensors of the test set.
    loss
        Mean-reduced training loss (default: cross-entropy on class logits).
    metric
        Metric reported as ``accuracy`` in status and evaluation (default: :func:`accuracy`).
    """

    model: nn.Module
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    loss: Loss = field(default=nn.functional.cross_entropy)
    metric: Metric = field(default=accuracy)


TaskFactory = Callable[[FactoryContext], TaskParts]
"""The signature of a task factory."""
