"""Deterministic offline datasets and per-node partitions.

Every node of a network computes the *same* global partition from
``(genesis seed, num_nodes)`` and keeps the shard at its index, so the shards
of indices ``0..N-1`` are disjoint and cover the training set without any
coordination. Nothing here touches the network: MNIST-1D is generated with
``mnist1d.data.make_dataset`` (never ``get_dataset``, which downloads), digits
ship with scikit-learn, and the Hugging Face tasks read a local data file with
the model folder's tokenizer (:mod:`node.training.hf.data`).

Evaluation split: every task evaluates on one held-out test set that all nodes
share (MNIST-1D: its official 1000-sample test split; the others: a seeded
``test_fraction`` hold-out). That makes per-node
accuracies comparable with the centralized and FedAvg anchors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from node.training.npz_cache import atomic_savez, load_npz
from node.training.seeding import derive_seed
from node.training.spec import TaskSpec
from node.training.usercode import TaskSetupError

__all__ = [
    "DatasetError",
    "NodeData",
    "TaskData",
    "cache_dir",
    "load_task",
    "node_data",
    "partition",
]


class DatasetError(TaskSetupError):
    """A dataset cannot be loaded or partitioned as specified."""


@dataclass(frozen=True)
class TaskData:
    """A whole task: training pool and shared test split.

    ``x`` arrays are float32 features (mnist1d, digits, local) or int64
    ``(n, 2, max_length)`` stacks of token ids and attention masks (Hugging Face tasks).
    ``y`` arrays are int64 class indices in ``[0, num_classes)``, or for ``causal-lm``
    ``(n, max_length - 1)`` next-token targets (``-100`` = ignored; ``num_classes`` 0).
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()

    @property
    def input_dim(self) -> int:
        """Feature count of one example (last axis)."""
        return int(self.x.shape[-1])


@dataclass(frozen=True)
class NodeData:
    """One node's view: its training shard and its test split, as tensors."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    indices: np.ndarray

    @property
    def num_examples(self) -> int:
        """Training examples in this node's shard."""
        return int(self.y.shape[0])


def cache_dir() -> Path:
    """Directory for generated-data caches.

    ``$FEDNODE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fednode`` or ``~/.cache/fednode``.
    """
    env = os.environ.get("FEDNODE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fednode"


def _mnist1d(cache: Path | None) -> TaskData:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    # The cache key covers every generation argument except the download url.
    key_src = {k: v for k, v in sorted(vars(args).items()) if k != "url"}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:16]
    path = (cache or cache_dir()) / f"mnist1d-{key}.npz"
    keys = ("x", "y", "x_test", "y_test")
    arrays = load_npz(path, keys) if path.exists() else None
    if arrays is None:
        # make_dataset reseeds the global numpy/random generators; restore them so
        # loading data never perturbs a caller's randomness.
        np_state = np.random.get_state()
        py_state = random.getstate()
        try:
            d = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        arrays = {
            "x": np.asarray(d["x"], dtype=np.float32),
            "y": np.asarray(d["y"], dtype=np.int64),
            "x_test": np.asarray(d["x_test"], dtype=np.float32),
            "y_test": np.asarray(d["y_test"], dtype=np.int64),
        }
        # A read-only cache only costs regeneration time.
        with contextlib.suppress(OSError):
            atomic_savez(path, **arrays)
    return TaskData(arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], 10)


def _holdout(x: np.ndarray, y: np.ndarray, spec: TaskSpec, seed: int, num_classes: int) -> TaskData:
    n = len(y)
    rng = np.random.default_rng(derive_seed("holdout", seed, spec.name))
    order = rng.permutation(n)
    if spec.max_samples is not None and spec.max_samples < n:
        order = order[: spec.max_samples]
        n = len(order)
    n_test = max(1, round(n * spec.test_fraction))
    if n_test >= n:
        raise DatasetError(f"test_fraction {spec.test_fraction} leaves no training data")
    test, train = order[:n_test], order[n_test:]
    return TaskData(x[train], y[train], x[test], y[test], num_classes)


def _digits(spec: TaskSpec, seed: int) -> TaskData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (np.asarray(d.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(d.target, dtype=np.int64)
    return _holdout(x, y, spec, seed, 10)


def _hf(spec: TaskSpec, seed: int, cache: Path | None) -> TaskData:
    from node.training.hf.data import load_text_arrays
    from node.training.hf.folder import HFFolderError

    try:
        arrays, classes = load_text_arrays(spec, cache or cache_dir())
    except HFFolderError as exc:
        raise DatasetError(str(exc)) from None
    num_classes = len(classes) if spec.name == "text-classification" else 0
    data = _holdout(arrays["x"], arrays["y"], spec, seed, num_classes)
    return dataclasses.replace(data, class_names=classes)


def _local(spec: TaskSpec, seed: int) -> TaskData:
    import pandas as pd

    assert spec.data_path is not None  # enforced by TaskSpec
    path = Path(spec.data_path)
    if not path.is_file():
        raise DatasetError(f"data_path {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        raise DatasetError(f"data_path {path}: expected a .csv or .parquet file")
    if spec.label_column not in df.columns:
        raise DatasetError(f"{path}: label column {spec.label_column!r} not found")
    features = df.drop(columns=[spec.label_column])
    non_numeric = [c for c in features.columns if not np.issubdtype(features[c].dtype, np.number)]
    if non_numeric:
        raise DatasetError(f"{path}: non-numeric feature columns {non_numeric}")
    x = features.to_numpy(dtype=np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(f"{path}: features contain NaN or Inf")
    # Labels are mapped to indices by sorted unique value, identical on every node
    # that sees the same label set.
    classes, y = np.unique(df[spec.label_column].to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DatasetError(f"{path}: need at least two distinct labels")
    # Standardise with statistics of the file itself (local data never leaves).
    mu, sd = x.mean(axis=0), x.std(axis=0)
    x = ((x - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
    return _holdout(x, y.astype(np.int64), spec, seed, len(classes))


def load_task(spec: TaskSpec, seed: int, *, cache: Path | None = None) -> TaskData:
    """Load the whole task (training pool and shared test split), offline.

    Parameters
    ----------
    spec
        Task specification.
    seed
        Genesis seed; fixes the hold-out split of tasks without an official one.
    cache
        Cache directory; default :func:`cache_dir`.
    """
    if spec.name == "mnist1d":
        return _mnist1d(cache)
    if spec.name == "digits":
        return _digits(spec, seed)
    if spec.is_hf:
        return _hf(spec, seed, cache)
    if spec.name == "local":
        return _local(spec, seed)
    raise DatasetError(f"task {spec.name!r} has no shared data set (its factory builds it)")


def partition(
    labels: np.ndarray,
    num_nodes: int,
    *,
    seed: int,
    scheme: str = "dirichlet",
    alpha: float = 0.5,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Split example indices over ``num_nodes`` shards, deterministically.

    Parameters
    ----------
    labels
        Integer labels of the training pool.
    num_nodes
        Number of shards.
    seed
        Genesis seed; the partition depends only on it, ``num_nodes``, the
        labels, ``scheme`` and ``alpha`` (never on which node asks).
    scheme
        ``"iid"`` (uniform random split) or ``"dirichlet"`` (per class, shard
        proportions drawn from Dirichlet(alpha); default).
    alpha
        Dirichlet concentration (default 0.5).
    min_size
        Redraw (deterministically, up to 100 times) until every shard has at
        least this many examples (default 1).

    Returns
    -------
    list of numpy.ndarray
        Sorted int64 index arrays (read-only); disjoint, and together covering
        ``range(len(labels))``.
    """
    labels = np.ascontiguousarray(labels)
    # Every node of a simulation asks for the same partition: drawing it once per node
    # made a simulation's setup grow as N^2.
    digest = hashlib.blake2b(labels.tobytes(), digest_size=16).digest()
    key = (digest, labels.dtype.str, labels.shape, num_nodes, seed, scheme, alpha, min_size)
    shards = _PARTITIONS.get(key)
    if shards is None:
        shards = _draw_partition(labels, num_nodes, seed, scheme, alpha, min_size)
        for shard in shards:
            shard.setflags(write=False)
        if len(_PARTITIONS) >= 8:
            _PARTITIONS.pop(next(iter(_PARTITIONS)))
        _PARTITIONS[key] = shards
    return list(shards)


_PARTITIONS: dict[tuple[object, ...], list[np.ndarray]] = {}


def _draw_partition(
    labels: np.ndarray, num_nodes: int, seed: int, scheme: str, alpha: float, min_size: int
) -> list[np.ndarray]:
    n = len(labels)
    if num_nodes < 1:
        raise DatasetError("num_nodes must be >= 1")
    if n < num_nodes * min_size:
        raise DatasetError(f"{n} examples cannot give {num_nodes} shards of >= {min_size}")
    if scheme not in ("iid", "dirichlet"):
        raise DatasetError(f"unknown partition scheme {scheme!r}")
    if alpha <= 0:
        raise DatasetError("alpha must be > 0")
    for attempt in range(100):
        rng = np.random.default_rng(derive_seed("partition", seed, num_nodes, scheme, attempt))
        if scheme == "iid":
            shards = np.array_split(rng.permutation(n), num_nodes)
        else:
            parts: list[list[np.ndarray]] = [[] for _ in range(num_nodes)]
            for c in np.unique(labels):
                idx = rng.permutation(np.flatnonzero(labels == c))
                p = rng.dirichlet(np.full(num_nodes, alpha))
                cuts = (np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
                for i, chunk in enumerate(np.split(idx, cuts)):
                    parts[i].append(chunk)
            shards = [np.concatenate(ps) for ps in parts]
        if min(len(s) for s in shards) >= min_size:
            return [np.sort(s).astype(np.int64) for s in shards]
    raise DatasetError(
        f"could not draw a Dirichlet({alpha}) partition with every shard >= {min_size} "
        f"examples in 100 attempts; raise alpha or lower num_nodes"
    )


def node_data(
    spec: TaskSpec,
    seed: int,
    node_index: int,
    *,
    task: TaskData | None = None,
    cache: Path | None = None,
) -> NodeData:
    """Training shard and test split of the node at ``node_index``.

    Parameters
    ----------
    spec
        Task specification (``num_nodes``, ``partition``, ``alpha``).
    seed
        Genesis seed.
    node_index
        Index in ``[0, spec.num_nodes)``.
    task
        Already loaded :class:`TaskData` to reuse (default: load it).
    cache
        Cache directory for generated data.
    """
    if not 0 <= node_index < spec.num_nodes:
        raise DatasetError(f"node_index {node_index} outside [0, {spec.num_nodes})")
    data = task if task is not None else load_task(spec, seed, cache=cache)
    if spec.name == "local" and not spec.shard_local:
        idx = np.arange(len(data.y), dtype=np.int64)
    else:
        # Sequence targets (causal-lm) have no label: Dirichlet then skews shard sizes only.
        strata = data.y if data.y.ndim == 1 else np.zeros(len(data.y), dtype=np.int64)
        idx = partition(strata, spec.num_nodes, seed=seed, scheme=spec.partition, alpha=spec.alpha)[
            node_index
        ]
    return NodeData(
        x=torch.from_numpy(np.ascontiguousarray(data.x[idx])),
        y=torch.from_numpy(np.ascontiguousarray(data.y[idx])),
        x_test=torch.from_numpy(np.ascontiguousarray(data.x_test)),
        y_test=torch.from_numpy(np.ascontiguousarray(data.y_test)),
        num_classes=data.num_classes,
        indices=idx,
    )
