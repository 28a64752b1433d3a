"""A fednode task factory for regression: fit y = sin(3x) with a small MLP.

The metric is the negative mean squared error (higher is better), reported as the
node's "accuracy". Run it with ``--task python --factory sine_task:make_task``.
"""

from __future__ import annotations

import torch
from torch import nn

from node.training.factory import FactoryContext, TaskParts


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs.squeeze(-1), targets)


def _neg_mse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return -float(nn.functional.mse_loss(outputs.squeeze(-1), targets))


def make_task(ctx: FactoryContext) -> TaskParts:
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.rand(1200, 1, generator=gen) * 4 - 2
    y = torch.sin(3 * x[:, 0]) + 0.05 * torch.randn(1200, generator=gen)
    shards = torch.arange(200, 1200).chunk(ctx.num_shards)
    mine = shards[ctx.shard]
    model = nn.Sequential(
        nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )
    return TaskParts(
        model=model,
        train=(x[mine], y[mine]),
        test=(x[:200], y[:200]),
        loss=_mse,
        metric=_neg_mse,
    )
