from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from node.training.datasets import DatasetError, load_task, node_data, partition
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec


def test_spec_rejects_bad_combinations_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="lora"):
        TaskSpec(name="mnist1d", model="lora")
    with pytest.raises(ValidationError, match="cnn"):
        TaskSpec(name="digits", model="cnn")
    with pytest.raises(ValidationError, match="data_path"):
        TaskSpec(name="local")
    with pytest.raises(ValidationError, match="extra"):
        TaskSpec(name="digits", colour="blue")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="flower_client"):
        LearnerSpec(kind="flower")
    with pytest.raises(ValidationError):
        LearnerSpec(spsa_scalar_dtype="int4")  # type: ignore[arg-type]
    assert RoundSpec(peers_per_round=3).wait_for == 3
    assert RoundSpec(peers_per_round=3, min_updates=1).wait_for == 1


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_partition_disjoint_covering_deterministic(scheme: str) -> None:
    labels = np.random.default_rng(0).integers(0, 10, size=1000)
    shards = partition(labels, 8, seed=7, scheme=scheme, alpha=0.5)
    again = partition(labels, 8, seed=7, scheme=scheme, alpha=0.5)
    assert len(shards) == 8
    allidx = np.concatenate(shards)
    assert len(allidx) == len(labels)
    assert np.array_equal(np.sort(allidx), np.arange(len(labels)))
    assert all(np.array_equal(a, b) for a, b in zip(shards, again, strict=True))
    other = partition(labels, 8, seed=8, scheme=scheme, alpha=0.5)
    assert not all(np.array_equal(a, b) for a, b in zip(shards, other, strict=True))


def test_partition_is_shared_read_only_and_keyed_on_the_labels() -> None:
    # Every node of a simulation asks for the same partition; it is drawn once and shared,
    # so no caller may change it, and other labels are another partition.
    labels = np.random.default_rng(1).integers(0, 3, size=300)
    shards = partition(labels, 4, seed=2, scheme="dirichlet", alpha=0.5)
    with pytest.raises(ValueError, match="read-only"):
        shards[0][0] = 0
    shards.reverse()  # the returned list is the caller's own
    again = partition(labels.copy(), 4, seed=2, scheme="dirichlet", alpha=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(shards[::-1], again, strict=True))
    flipped = labels.copy()
    flipped[:150] = (flipped[:150] + 1) % 3
    moved = partition(flipped, 4, seed=2, scheme="dirichlet", alpha=0.5)
    assert not all(np.array_equal(a, b) for a, b in zip(again, moved, strict=True))


def test_dirichlet_small_alpha_is_skewed() -> None:
    labels = np.repeat(np.arange(10), 200)
    skewed = partition(labels, 8, seed=1, scheme="dirichlet", alpha=0.1)
    iid = partition(labels, 8, seed=1, scheme="iid")

    def dominant_share(shards: list[np.ndarray]) -> float:
        return float(np.mean([np.bincount(labels[s]).max() / len(s) for s in shards]))

    assert dominant_share(skewed) > 2 * dominant_share(iid)


def test_partition_bad_input() -> None:
    with pytest.raises(DatasetError):
        partition(np.zeros(3, dtype=int), 8, seed=0)
    with pytest.raises(DatasetError):
        partition(np.zeros(30, dtype=int), 2, seed=0, scheme="zipf")


def test_digits_node_data_uses_its_shard() -> None:
    spec = TaskSpec(name="digits", num_nodes=4)
    task = load_task(spec, 3)
    views = [node_data(spec, 3, i, task=task) for i in range(4)]
    assert sum(v.num_examples for v in views) == len(task.y)
    assert len(set(np.concatenate([v.indices for v in views]).tolist())) == len(task.y)
    # every node evaluates on the same held-out split
    assert all(v.x_test.shape == views[0].x_test.shape for v in views)
    assert abs(len(task.y_test) - 0.2 * 1797) < 2
    with pytest.raises(DatasetError):
        node_data(spec, 3, 4, task=task)


def test_mnist1d_generated_locally_and_cached(cache_path) -> None:  # type: ignore[no-untyped-def]
    spec = TaskSpec(name="mnist1d")
    state = np.random.get_state()[1].copy()  # type: ignore[index]
    task = load_task(spec, 0, cache=cache_path)
    assert np.array_equal(np.random.get_state()[1], state)  # type: ignore[index]
    assert task.x.shape == (4000, 40) and task.x_test.shape == (1000, 40)
    assert task.x.dtype == np.float32 and set(np.unique(task.y)) == set(range(10))
    files = list(cache_path.glob("mnist1d-*.npz"))
    assert len(files) == 1
    again = load_task(spec, 0, cache=cache_path)
    assert np.array_equal(task.x, again.x) and np.array_equal(task.y_test, again.y_test)


def test_local_csv_task(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    df["target"] = np.where(df["a"] > 0, "yes", "no")
    path = tmp_path / "mine.csv"
    df.to_csv(path, index=False)
    spec = TaskSpec(name="local", data_path=str(path), label_column="target", test_fraction=0.25)
    data = node_data(spec, 0, 0)
    assert data.num_classes == 2
    assert data.num_examples == 150 and data.x_test.shape == (50, 2)
    bad = TaskSpec(name="local", data_path=str(path), label_column="nope")
    with pytest.raises(DatasetError, match="nope"):
        load_task(bad, 0)
    df.to_parquet(tmp_path / "mine.parquet")
    pq = TaskSpec(name="local", data_path=str(tmp_path / "mine.parquet"), label_column="target")
    assert load_task(pq, 0).num_classes == 2
