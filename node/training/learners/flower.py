"""Run an unmodified Flower client as a fednode learner.

The client is named ``module:attribute`` in the learner spec. The attribute may be

* a ``NumPyClient`` instance;
* a ``client_fn(context)`` factory (returning a ``NumPyClient`` or ``.to_client()``);
* a ``ClientApp``: built from a ``client_fn`` (Flower's legacy form), or with
  ``@app.train()`` / ``@app.evaluate()`` functions (the Message API). A Message-API app
  has no ``get_parameters``: the initial model comes from ``LearnerSpec.flower_initial``
  (``module:attribute`` of a torch module, a zero-argument callable returning one, an
  ``ArrayRecord``, a state dict or a list of numpy arrays).

The node builds one ``Context`` per client the way Flower's simulation engine does
(``flwr.server.superlink.fleet.vce``): ``node_config`` carries ``partition-id`` (this
node's shard) and ``num-partitions`` (``task.num_nodes``); the context, and its
``state``, persist across rounds. A ``ClientApp`` receives ``Message`` objects shaped
like those of Flower's strategies: the legacy form through Flower's own compat
converters, the Message API as ``RecordDict({"arrays": ArrayRecord, "config":
ConfigRecord({"server-round": r})})``, replying with one ``ArrayRecord`` and one
``MetricRecord`` (``num-examples``, and for evaluation a loss and an accuracy).

Exceptions raised by user code become :class:`FlowerClientError` with one line naming
the user's file and line (:mod:`node.training.usercode`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from node.training.learners import LocalResult
from node.training.params import ParamLayout
from node.training.usercode import TaskSetupError, UserCodeError, describe, load_attribute

__all__ = [
    "FlowerClient",
    "FlowerClientError",
    "FlowerEval",
    "FlowerLearner",
    "load_flower_client",
]

_LOSS_KEYS = ("loss", "eval_loss", "val_loss", "test_loss")
_ACC_KEYS = ("accuracy", "eval_acc", "eval_accuracy", "acc", "val_accuracy", "test_accuracy")


class FlowerClientError(TaskSetupError):
    """The named Flower client cannot be loaded, failed, or returned inconsistent arrays."""


class FlowerClient(Protocol):
    """What the learner drives: the ``NumPyClient`` methods."""

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]: ...

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]: ...

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]: ...


def _context(node_index: int, num_nodes: int) -> Any:
    from flwr.app import Context, RecordDict

    return Context(
        run_id=0,
        node_id=node_index,
        node_config={"partition-id": node_index, "num-partitions": num_nodes},
        state=RecordDict(),
        run_config={},
    )


def _user_call(what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except FlowerClientError:
        raise
    except Exception as exc:  # the user's code: one line naming their file
        raise FlowerClientError(describe(exc, what)) from None


def _initial_arrays(target: str) -> tuple[list[str], list[np.ndarray]]:
    """Names and arrays of a Message-API app's initial model (``flower_initial``)."""
    from flwr.app import ArrayRecord

    try:
        obj = load_attribute(target, what="flower_initial")
    except UserCodeError as exc:
        raise FlowerClientError(str(exc)) from None
    if callable(obj) and not isinstance(obj, torch.nn.Module | ArrayRecord):
        obj = _user_call(f"flower_initial {target}", obj)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, ArrayRecord):
        names = list(obj.keys())
        return names, obj.to_numpy_ndarrays()
    if isinstance(obj, dict):
        names = [str(k) for k in obj]
        return names, [
            v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            for v in obj.values()
        ]
    if isinstance(obj, list | tuple):
        return [str(i) for i in range(len(obj))], [np.asarray(a) for a in obj]
    raise FlowerClientError(
        f"flower_initial {target!r} gave {type(obj).__name__}; expected a torch module, "
        "an ArrayRecord, a state dict or a list of numpy arrays"
    )


def _single(records: Any, kind: str, where: str) -> Any:
    values = list(records.values())
    if len(values) != 1:
        raise FlowerClientError(f"{where} must reply with exactly one {kind}, got {len(values)}")
    return values[0]


class ClientAppClient:
    """A ``ClientApp`` driven through ``Message`` objects, seen as a NumPyClient.

    Parameters
    ----------
    app
        The ``flwr.clientapp.ClientApp``.
    context
        The node's persistent ``Context``.
    initial
        ``flower_initial`` target (Message-API apps only).
    """

    def __init__(self, app: Any, context: Any, initial: str | None, target: str):
        self.app = app
        self.context = context
        self.target = target
        # A ClientApp built from a client_fn handles Flower's legacy message types; one
        # with registered @app.train/@app.evaluate functions handles the Message API.
        self.legacy = getattr(app, "_call", None) is not None
        self.names: list[str] = []
        self._sent = 0
        self._initial: list[np.ndarray] | None = None
        if not self.legacy:
            if initial is None:
                raise FlowerClientError(
                    f"{target} is a Message-API ClientApp, which has no get_parameters: "
                    "name its initial model with learner.flower_initial = "
                    "'module:attribute' (e.g. your task's Net class)"
                )
            self.names, self._initial = _initial_arrays(initial)

    def _send(self, content: Any, message_type: str, what: str) -> Any:
        from flwr.app import DEFAULT_TTL, Message, Metadata

        # What a SuperNode hands its ClientApp: an instruction with full metadata (the
        # public constructor needs the ServerApp process's TaskIdentity).
        self._sent += 1
        metadata = Metadata(
            run_id=int(self.context.run_id),
            message_id=f"fednode-{self._sent}",
            src_node_id=0,
            dst_node_id=int(self.context.node_id),
            reply_to_message_id="",
            group_id="",
            created_at=time.time(),
            ttl=DEFAULT_TTL,
            message_type=message_type,
        )
        msg = Message(metadata=metadata, content=content)  # type: ignore[call-overload]
        reply = _user_call(f"Flower ClientApp {self.target} ({what})", self.app, msg, self.context)
        if not isinstance(reply, Message):
            raise FlowerClientError(
                f"{self.target} ({what}) returned {type(reply).__name__}, not a Message"
            )
        if reply.has_error():
            raise FlowerClientError(
                f"{self.target} ({what}) replied with an error: {reply.error.reason}"
            )
        return reply.content

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        if not self.legacy:
            assert self._initial is not None
            return [a.copy() for a in self._initial]
        from flwr.common import GetParametersIns
        from flwr.compat.common import recorddict_compat as compat

        content = compat.getparametersins_to_recorddict(GetParametersIns(config=dict(config)))
        res = compat.recorddict_to_getparametersres(
            self._send(content, "get_parameters", "get_parameters"), keep_input=False
        )
        from flwr.common import parameters_to_ndarrays

        return parameters_to_ndarrays(res.parameters)

    def _arrays(self, parameters: list[np.ndarray]) -> Any:
        from flwr.app import Array, ArrayRecord

        return ArrayRecord(
            array_dict={
                n: Array(np.ascontiguousarray(a))
                for n, a in zip(self.names, parameters, strict=True)
            }
        )

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        from flwr.app import ConfigRecord, RecordDict

        if self.legacy:
            from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
            from flwr.compat.common import recorddict_compat as compat

            content = compat.fitins_to_recorddict(
                FitIns(ndarrays_to_parameters(parameters), dict(config)), keep_input=True
            )
            res = compat.recorddict_to_fitres(self._send(content, "train", "fit"), keep_input=False)
            return parameters_to_ndarrays(res.parameters), int(res.num_examples), dict(res.metrics)
        cfg = ConfigRecord({"server-round": int(config.get("server_round", 1))})
        out = self._send(
            RecordDict({"arrays": self._arrays(parameters), "config": cfg}), "train", "train"
        )
        where = f"{self.target} (train)"
        arrays = _single(out.array_records, "ArrayRecord", where)
        metrics = (
            dict(_single(out.metric_records, "MetricRecord", where)) if out.metric_records else {}
        )
        if list(arrays.keys()) != self.names:
            raise FlowerClientError(
                f"{where} replied with arrays {list(arrays.keys())[:4]}…, "
                f"expected {self.names[:4]}…"
            )
        num = int(metrics.get("num-examples", 0))
        return arrays.to_numpy_ndarrays(), num, metrics

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        from flwr.app import ConfigRecord, RecordDict

        if self.legacy:
            from flwr.common import EvaluateIns, ndarrays_to_parameters
            from flwr.compat.common import recorddict_compat as compat

            content = compat.evaluateins_to_recorddict(
                EvaluateIns(ndarrays_to_parameters(parameters), dict(config)), keep_input=True
            )
            res = compat.recorddict_to_evaluateres(self._send(content, "evaluate", "evaluate"))
            return float(res.loss), int(res.num_examples), dict(res.metrics)
        cfg = ConfigRecord({"server-round": int(config.get("server_round", 1))})
        out = self._send(
            RecordDict({"arrays": self._arrays(parameters), "config": cfg}), "evaluate", "evaluate"
        )
        metrics = dict(_single(out.metric_records, "MetricRecord", f"{self.target} (evaluate)"))
        loss = next((float(metrics[k]) for k in _LOSS_KEYS if k in metrics), math.nan)
        acc = next((float(metrics[k]) for k in _ACC_KEYS if k in metrics), None)
        if acc is not None:
            metrics["accuracy"] = acc
        return loss, int(metrics.get("num-examples", 0)), metrics


def load_flower_client(
    target: str, *, node_index: int = 0, num_nodes: int = 1, initial: str | None = None
) -> FlowerClient:
    """Import ``module:attribute`` and return something with the NumPyClient methods.

    Parameters
    ----------
    target
        ``"package.module:attribute"``: a NumPyClient, a ``client_fn`` or a ``ClientApp``.
    node_index, num_nodes
        Passed as Flower's ``partition-id`` / ``num-partitions`` in ``Context.node_config``.
    initial
        ``module:attribute`` of the initial model of a Message-API ``ClientApp``.

    Raises
    ------
    FlowerClientError
        One line: what failed, and for errors in user code its file and line; a module
        that cannot be found is reported with the PYTHONPATH hint.
    """
    from flwr.client import NumPyClient
    from flwr.clientapp import ClientApp

    try:
        obj = load_attribute(target, what="Flower client")
    except UserCodeError as exc:
        raise FlowerClientError(str(exc)) from None
    if isinstance(obj, NumPyClient):
        return obj
    if isinstance(obj, ClientApp):
        return ClientAppClient(obj, _context(node_index, num_nodes), initial, target)
    if isinstance(obj, type) and issubclass(obj, NumPyClient):
        raise FlowerClientError(f"{target!r} is a class; name an instance or a client_fn(context)")
    if not callable(obj):
        raise FlowerClientError(f"{target!r} is neither a NumPyClient, a client_fn nor a ClientApp")
    client = _user_call(f"Flower client_fn {target}", obj, _context(node_index, num_nodes))
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
    """Adapter from a Flower client to flat float32 vectors.

    Parameters
    ----------
    client
        The NumPyClient (or :class:`ClientAppClient`).
    config
        Flower config dict passed to ``get_parameters``/``fit``/``evaluate``
        (the round index is added as ``"server_round"``).
    """

    def __init__(self, client: FlowerClient, config: dict[str, Any] | None = None):
        self.client = client
        self.config = dict(config or {})
        arrays = self._arrays(
            _user_call("Flower client get_parameters", client.get_parameters, dict(self.config)),
            "get_parameters",
        )
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
        result = _user_call("Flower client fit", self.client.fit, self.to_arrays(vector), cfg)
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
        result = _user_call(
            "Flower client evaluate", self.client.evaluate, self.to_arrays(vector), cfg
        )
        if not isinstance(result, tuple) or len(result) != 3:
            raise FlowerClientError("evaluate must return (loss, num_examples, metrics)")
        loss, num, metrics = result
        return FlowerEval(float(loss), int(num), dict(metrics or {}))
