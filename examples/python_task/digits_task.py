"""A fednode task factory: an MLP on scikit-learn's digits with a label-smoothed loss.

Run it:  PYTHONPATH=examples/python_task fednode genesis new net.toml --task python \
             --factory digits_task:make_task --nodes 3
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from node.training.factory import FactoryContext, TaskParts


def _smoothed_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, label_smoothing=0.1)


def make_task(ctx: FactoryContext) -> TaskParts:
    digits = load_digits()
    x = torch.from_numpy((digits.data / 16.0).astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    # One shared test set, and disjoint training shards: the same permutation on every node.
    order = np.random.default_rng(ctx.seed).permutation(len(y))
    test, train = order[:300], order[300:]
    shard = np.array_split(train, ctx.num_shards)[ctx.shard]
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return TaskParts(
        model=model,
        train=(x[shard], y[shard]),
        test=(x[test], y[test]),
        loss=_smoothed_loss,
    )
