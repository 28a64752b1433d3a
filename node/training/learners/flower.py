"""Run an unmodified Flower ``NumPyClient`` as a fednode learner.

The client is named ``module:attribute`` in the learner spec. The attribute is
either a ``NumPyClient`` instance or a factory; factories are called the way
Flower calls a ``client_fn``: with a ``flwr.common.Context`` whose
``node_config`` carries ``partition-id`` and ``num-partitions``. A factory
returning ``NumPyClient(...).to_client()`` is unwrapped to its NumPyClient.

The node drives the client through Flower's own methods only:
``get_parameters`` for the initial vector, ``fit`` for local training
(update = fit result - parameters sent) and ``evaluate``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from node.training.learners import LocalResult
from node.training.params import ParamLayout

__all__ = ["FlowerClientError", "FlowerEval", "FlowerLearner", "load_flower_client"]


class FlowerClientError(ValueError):
    """The named Flower client cannot be loaded or returned inconsistent arrays."""


def _context(node_index: int, num_nodes: int) -> Any:
    from flwr.app import RecordDict
    from flwr.common import Context

    return Context(
        run_id=0,
        node_id=node_index,
        node_config={"partition-id": node_index, "num-partitions": num_nodes},
        state=RecordDict(),
        run_config={},
    )


def load_flower_client(target: str, *, node_index: int = 0, num_nodes: int = 1) -> Any:
    """Import ``module:attribute`` and return a Flower ``NumPyClient``.

    Parameters
    ----------
    target
        ``"package.module:attribute"``.
    node_index, num_nodes
        Passed to a factory as Flower's ``partition-id`` / ``num-partitions``.
    """
    from flwr.client import NumPyClient

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise FlowerClientError(f"flower_client {target!r} must be 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise FlowerClientError(f"cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FlowerClientError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, NumPyClient):
        return obj
    if isinstance(obj, type) and issubclass(obj, NumPyClient):
        raise FlowerClientError(f"{target!r} is a class; name an instance or a client_fn(context)")
    if not callable(obj):
        raise FlowerClientError(f"{target!r} is neither a NumPyClient nor a client_fn")
    client = obj(_context(node_index, num_nodes))
    inner = getattr(client, "numpy_client", client)
    if not isinstance(inner, NumPyClient):
        raise FlowerClientError(f"{target!r} returned {type(client).__name__}, not a NumPyClient")
    return inner


@dataclass(frozen=True)
class FlowerEval:
    """Result of the client's ``evaluate``."""

    loss: float
    num_examples: int
    metrics: dict[str, Any]


class FlowerLearner:
    """Adapter from a Flower ``NumPyClient`` to flat float32 vectors.

    Parameters
    ----------
    client
        The NumPyClient.
    config
        Flower config dict passed to ``get_parameters``/``fit``/``evaluate``
        (the round index is added as ``"server_round"``).
    """

    def __init__(self, client: Any, config: dict[str, Any] | None = None):
        self.client = client
        self.config = dict(config or {})
        arrays = self._arrays(client.get_parameters(dict(self.config)), "get_parameters")
        self.layout = ParamLayout(
            tuple(f"arr_{i:04d}" for i in range(len(arrays))), tuple(tuple(a.shape) for a in arrays)
        )
        self.dtypes = [a.dtype for a in arrays]
        self.initial = self._flatten(arrays)

    @staticmethod
    def _arrays(arrays: Any, where: str) -> list[np.ndarray]:
        if not isinstance(arrays, list | tuple) or not arrays:
            raise FlowerClientError(f"{where} must return a non-empty list of numpy arrays")
        return [np.asarray(a) for a in arrays]

    def _flatten(self, arrays: list[np.ndarray]) -> torch.Tensor:
        if len(arrays) != len(self.layout.shapes):
            raise FlowerClientError(
                f"client returned {len(arrays)} arrays, expected {len(self.layout.shapes)}"
            )
        for a, s in zip(arrays, self.layout.shapes, strict=True):
            if tuple(a.shape) != s:
                raise FlowerClientError(f"client array shape {a.shape}, expected {s}")
        flat = np.concatenate([a.astype(np.float32).reshape(-1) for a in arrays])
        return torch.from_numpy(flat)

    def to_arrays(self, vector: torch.Tensor) -> list[np.ndarray]:
        """Split a flat vector into the client's arrays (its original dtypes)."""
        parts = self.layout.split(vector.detach().to(torch.float32))
        return [
            parts[n].numpy().astype(d, copy=True)
            for n, d in zip(self.layout.names, self.dtypes, strict=True)
        ]

    def train_round(self, vector: torch.Tensor, round_idx: int) -> LocalResult:
        """Call ``fit`` from ``vector``; the update is ``fit result - vector``."""
        cfg = {**self.config, "server_round": round_idx + 1}
        result = self.client.fit(self.to_arrays(vector), cfg)
        if not isinstance(result, tuple) or len(result) != 3:
            raise FlowerClientError("fit must return (parameters, num_examples, metrics)")
        arrays, num, metrics = result
        new = self._flatten(self._arrays(arrays, "fit"))
        if not bool(torch.isfinite(new).all()):
            raise FlowerClientError("fit returned NaN or Inf parameters")
        loss = float(metrics.get("loss", math.nan)) if isinstance(metrics, dict) else math.nan
        return LocalResult(
            update=new - vector.to(torch.float32),
            num_examples=int(num),
            loss=loss,
            metrics={
                k: float(v) for k, v in dict(metrics or {}).items() if isinstance(v, int | float)
            },
        )

    def evaluate(self, vector: torch.Tensor, round_idx: int = 0) -> FlowerEval:
        """Call the client's ``evaluate`` at ``vector``."""
        cfg = {**self.config, "server_round": round_idx + 1}
        result = self.client.evaluate(self.to_arrays(vector), cfg)
        if not isinstance(result, tuple) or len(result) != 3:
            raise FlowerClientError("evaluate must return (loss, num_examples, metrics)")
        loss, num, metrics = result
        return FlowerEval(float(loss), int(num), dict(metrics or {}))
