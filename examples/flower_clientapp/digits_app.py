"""Unmodified Flower ClientApps on scikit-learn digits (flwr 1.41 API; no fednode import).

``app`` uses the Message API (``@app.train`` / ``@app.evaluate``); its initial model is
``Net``. ``legacy_app`` wraps a NumPyClient in ``ClientApp(client_fn=...)``. Both read their
partition from ``context.node_config["partition-id"]`` / ``["num-partitions"]``.

    PYTHONPATH=examples/flower_clientapp fednode genesis new net.toml --learner flower \
        --flower-client digits_app:app --flower-initial digits_app:Net --nodes 3
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from sklearn.datasets import load_digits
from torch import nn


class Net(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def load_partition(partition_id: int, num_partitions: int) -> tuple[torch.Tensor, ...]:
    digits = load_digits()
    x = torch.from_numpy((digits.data / 16.0).astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[:300], order[300:]
    shard = np.array_split(train, num_partitions)[partition_id]
    return x[shard], y[shard], x[test], y[test]


def _partition(context: Context) -> tuple[torch.Tensor, ...]:
    return load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 1) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    total, steps = 0.0, 0
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(32):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y, _, _ = _partition(context)
    loss = _train(model, x, y)
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    _, _, x, y = _partition(context)
    with torch.no_grad():
        out = model(x)
        loss = float(nn.functional.cross_entropy(out, y))
        acc = float((out.argmax(1) == y).float().mean())
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": acc, "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)


class DigitsClient(NumPyClient):
    def __init__(self, partition_id: int, num_partitions: int) -> None:
        self.model = Net()
        self.x, self.y, self.x_test, self.y_test = load_partition(partition_id, num_partitions)

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [v.detach().numpy().copy() for v in self.model.state_dict().values()]

    def _set(self, parameters: list[np.ndarray]) -> None:
        keys = list(self.model.state_dict())
        self.model.load_state_dict(
            {k: torch.from_numpy(a) for k, a in zip(keys, parameters, strict=True)}
        )

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        self._set(parameters)
        loss = _train(self.model, self.x, self.y)
        return self.get_parameters({}), len(self.y), {"loss": loss}

    def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
        self._set(parameters)
        with torch.no_grad():
            out = self.model(self.x_test)
        loss = float(nn.functional.cross_entropy(out, self.y_test))
        acc = float((out.argmax(1) == self.y_test).float().mean())
        return loss, len(self.y_test), {"accuracy": acc}


def client_fn(context: Context):  # type: ignore[no-untyped-def]
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    return DigitsClient(partition_id, num_partitions).to_client()


legacy_app = ClientApp(client_fn=client_fn)
