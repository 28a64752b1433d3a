from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from node.sim.rounds import simulate_spsa
from node.training.datasets import node_data
from node.training.learners.spsa import (
    ScalarBatch,
    ScalarEntry,
    ScalarError,
    ScalarLog,
    SPSALearner,
    apply_round,
    apply_scalars,
    combine_shared,
    dequantize,
    perturbation,
    quantize,
    replay,
    seed_id,
    seed_set_digest,
)
from node.training.models import build_model
from node.training.params import flatten, model_hash
from node.training.spec import LearnerSpec, TaskSpec


def test_seed_derivation_deterministic_and_distinct() -> None:
    a = seed_id(5, 3, "node-a", 0)
    assert a == seed_id(5, 3, "node-a", 0)
    assert 0 <= a < 2**63
    others = {
        seed_id(5, 3, "node-b", 0),
        seed_id(5, 4, "node-a", 0),
        seed_id(5, 3, "node-a", 1),
        seed_id(6, 3, "node-a", 0),
    }
    assert a not in others and len(others) == 4
    # shared schedule: same seed for every node
    assert seed_id(5, 3, "x", 2, "shared") == seed_id(5, 3, "y", 2, "shared")
    with pytest.raises(ScalarError):
        seed_id(5, -1, "x", 0)


@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
def test_perturbation_regenerates_identically(dist: str) -> None:
    z1 = perturbation(123, 1001, dist)  # type: ignore[arg-type]
    z2 = perturbation(123, 1001, dist)  # type: ignore[arg-type]
    assert torch.equal(z1, z2) and z1.dtype == torch.float32 and z1.shape == (1001,)
    assert not torch.equal(z1, perturbation(124, 1001, dist))  # type: ignore[arg-type]
    if dist == "rademacher":
        assert set(z1.unique().tolist()) == {-1.0, 1.0}
        assert abs(float(z1.mean())) < 0.15


def test_apply_order_independent_bit_identical() -> None:
    base = torch.randn(5000)
    entries = [
        ScalarEntry(
            seed_id(1, 0, f"n{i}", s),
            0,
            f"n{i}",
            s,
            float(np.random.default_rng(i * 10 + s).normal()),
        )
        for i in range(4)
        for s in range(3)
    ]
    ref = apply_scalars(base, entries, 1e-2)
    shuffled = entries[:]
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert torch.equal(apply_scalars(base, shuffled, 1e-2), ref)
    # naive unsorted accumulation is only approximately equal (float non-associativity)
    naive = base.clone()
    for e in shuffled:
        naive.add_(perturbation(e.seed_id, base.numel()), alpha=-1e-2 * e.scalar)
    assert torch.allclose(naive, ref, atol=1e-5)
    assert not torch.equal(base, ref)
    # the sum equals the explicit formula
    explicit = base - 1e-2 * sum(e.scalar * perturbation(e.seed_id, 5000) for e in entries)
    assert torch.allclose(explicit, ref, atol=1e-5)


@pytest.mark.parametrize("dtype", ["int8", "fp16", "fp32"])
def test_quantisation_error_bounded(dtype: str) -> None:
    vals = np.random.default_rng(0).normal(size=257) * 3
    codes, scale = quantize(vals, dtype)  # type: ignore[arg-type]
    back = np.array(dequantize(codes, scale))
    bound = {"int8": scale / 2 * 1.0001, "fp16": np.abs(vals).max() * 2**-10, "fp32": 1e-6}[dtype]
    assert np.abs(back - vals).max() <= bound
    if dtype == "int8":
        assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    with pytest.raises(ScalarError):
        quantize([1.0, float("inf")], dtype)  # type: ignore[arg-type]


def _batch(
    round_idx: int = 0, node: str = "n0", steps: int = 3, dtype: str = "int8"
) -> ScalarBatch:
    sids = tuple(seed_id(9, round_idx, node, s) for s in range(steps))
    codes, scale = quantize([0.5, -1.25, 2.0][:steps], dtype)  # type: ignore[arg-type]
    return ScalarBatch(round_idx, node, "per_node", dtype, tuple(range(steps)), sids, codes, scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["int8", "fp16", "fp32"])
def test_batch_wire_roundtrip_and_rejection(dtype: str) -> None:
    b = _batch(dtype=dtype)
    wire = b.encode()
    back = ScalarBatch.decode(wire)
    assert back.entries() == b.entries()
    assert len(wire) < 80  # a handful of bytes per step, not a vector
    with pytest.raises(ScalarError):
        ScalarBatch.decode(wire[:-1])
    with pytest.raises(ScalarError):
        ScalarBatch.decode(b"XXXX" + wire[4:])


def test_log_accepts_validates_and_digests() -> None:
    log = ScalarLog(9, steps_per_round=3)
    b0, b1 = _batch(0, "n0"), _batch(0, "n1")
    assert len(log.add(b0)) == 3
    assert log.add(b0) == [] and log.duplicates == 3
    log.add(b1)
    other = ScalarLog(9, steps_per_round=3)
    other.add(b1)
    other.add(b0)
    assert (
        log.digest()
        == other.digest()
        == seed_set_digest(e.key for e in b0.entries() + b1.entries())
    )
    assert [e.key for e in log.round_entries(0)] == sorted(e.key for e in log.round_entries(0))

    forged = ScalarBatch(0, "n2", "per_node", "int8", (0,), (12345,), np.array([3], np.int8), 0.1)
    with pytest.raises(ScalarError, match="unknown seed id"):
        log.add(forged)
    conflicting = ScalarBatch(
        0, "n0", "per_node", "int8", (0,), (b0.seed_ids[0],), np.array([7], np.int8), 0.5
    )
    with pytest.raises(ScalarError, match="conflicting"):
        log.add(conflicting)
    out_of_range = _batch(0, "n3")
    with pytest.raises(ScalarError, match="step"):
        ScalarLog(9, steps_per_round=2).add(out_of_range)
    shared = ScalarBatch(0, "n0", "shared", "int8", (), (), np.array([], np.int8), 1.0)
    with pytest.raises(ScalarError, match="schedule"):
        log.add(shared)
    assert len(log) == 6


def test_combine_shared_rules() -> None:
    es = [ScalarEntry(7, 0, f"n{i}", 0, v) for i, v in enumerate([1.0, 2.0, 3.0, 100.0])]
    assert combine_shared(es, "mean") == [(7, 26.5)]
    assert combine_shared(es, "median") == [(7, 2.5)]
    assert combine_shared(es, "trimmed_mean", trim=1) == [(7, 2.5)]


def test_spsa_learner_keeps_model_and_reduces_loss_direction() -> None:
    spec = TaskSpec(name="digits", num_nodes=2, batch_size=64)
    data = node_data(spec, 0, 0)
    model = build_model(spec, 0, input_dim=64, num_classes=10)
    h = model_hash(model)
    learner = SPSALearner(
        LearnerSpec(kind="spsa", spsa_steps=4, lr=1e-3), batch_size=64, seed=0, node="n0"
    )
    batch = learner.train_round(model, data, 0)
    assert model_hash(model) == h
    assert len(batch.seed_ids) == 4 and batch.dtype == "int8"
    assert ScalarLog(0, steps_per_round=4).add(ScalarBatch.decode(batch.encode()))


def test_simulated_spsa_nodes_agree_bitwise() -> None:
    task = TaskSpec(name="digits", num_nodes=3, batch_size=32)
    res = simulate_spsa(
        task, LearnerSpec(kind="spsa", spsa_steps=3, lr=1e-3), seed=2, num_rounds=4, eval_every=2
    )
    assert len(set(res.digests)) == 1
    assert len(set(res.model_hashes)) == 1
    assert res.max_abs_diff == 0.0
    assert res.entries == 3 * 3 * 4
    start = build_model(task, 2, input_dim=64, num_classes=10)
    assert res.model_hashes[0] != model_hash(start)
    shared = simulate_spsa(
        task,
        LearnerSpec(kind="spsa", spsa_steps=2, spsa_seed_schedule="shared"),
        seed=2,
        num_rounds=2,
        eval_every=2,
    )
    assert len(set(shared.model_hashes)) == 1
    assert flatten(start).numel() > 0


def test_late_joiner_catches_up_from_checkpoint_plus_log() -> None:
    d, lr, nodes = 300, 1e-2, ("n0", "n1", "n2")
    live_log = ScalarLog(4, steps_per_round=2)
    w = torch.randn(d)
    checkpoint = None
    rng = np.random.default_rng(0)
    for r in range(6):
        for node in nodes:
            sids = tuple(seed_id(4, r, node, s) for s in range(2))
            codes, scale = quantize(rng.normal(size=2).tolist())
            live_log.add(ScalarBatch(r, node, "per_node", "int8", (0, 1), sids, codes, scale))
        w = apply_round(w, live_log.round_entries(r), lr, num_nodes=3)
        if r == 2:
            checkpoint = w.clone()
    assert checkpoint is not None
    # newcomer: checkpoint after round 2 + the log since round 3, received in another order
    new_log = ScalarLog(4, steps_per_round=2)
    entries = live_log.since(3)
    batches: dict[tuple[int, str], list[ScalarEntry]] = {}
    for e in entries:
        batches.setdefault((e.round, e.node), []).append(e)
    for (r, node), es in reversed(list(batches.items())):
        codes, scale = quantize([e.scalar for e in es], "fp32")
        steps = tuple(e.step for e in es)
        new_log.add(
            ScalarBatch(
                r, node, "per_node", "fp32", steps, tuple(e.seed_id for e in es), codes, scale
            )
        )
    caught_up = replay(checkpoint, new_log, 3, 6, lr, num_nodes=3)
    assert torch.equal(caught_up, w)
    assert new_log.digest() == seed_set_digest(e.key for e in entries) != live_log.digest()
    assert live_log.digest(up_to_round=2) != live_log.digest()
