"""A plain Flower NumPyClient on scikit-learn digits, written as a Flower user would.

It does not import fednode: run it with fednode's ``flower`` learner as
``node.training.examples.digits_client:client_fn``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.client import NumPyClient
from flwr.common import Context
from sklearn.datasets import load_digits
from torch import nn


def load_partition(partition_id: int, num_partitions: int) -> tuple[np.ndarray, ...]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[:360], order[360:]
    shard = np.array_split(train, num_partitions)[partition_id]
    return x[shard], y[shard], x[test], y[test]


class DigitsClient(NumPyClient):
    def __init__(self, partition_id: int = 0, num_partitions: int = 1, local_epochs: int = 1):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        self.x, self.y, self.x_test, self.y_test = (
            torch.from_numpy(a) for a in load_partition(partition_id, num_partitions)
        )
        self.local_epochs = local_epochs

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.model.parameters()]

    def set_parameters(self, parameters: list[np.ndarray]) -> None:
        with torch.no_grad():
            for p, a in zip(self.model.parameters(), parameters, strict=True):
                p.copy_(torch.from_numpy(a))

    def fit(self, parameters, config):
        self.set_parameters(parameters)
        opt = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        total = 0.0
        steps = 0
        for _ in range(self.local_epochs):
            for idx in torch.randperm(len(self.y)).split(32):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx])
                loss.backward()
                opt.step()
                total += loss.item()
                steps += 1
        return self.get_parameters({}), len(self.y), {"loss": total / max(steps, 1)}

    def evaluate(self, parameters, config):
        self.set_parameters(parameters)
        with torch.no_grad():
            out = self.model(self.x_test)
            loss = float(nn.functional.cross_entropy(out, self.y_test))
            acc = float((out.argmax(1) == self.y_test).float().mean())
        return loss, len(self.y_test), {"accuracy": acc}


def client_fn(context: Context):
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    return DigitsClient(partition_id, num_partitions).to_client()
