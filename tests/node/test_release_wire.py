"""What a node with privacy on puts on the wire, read off the wire.

Each test runs the node under test (the *subject*) as a real daemon next to a *tap*
(``tests/node/wiretap.py``): a second real daemon that joins by gossip, trains nothing and
records every update or scalar batch the subject pushes to it, together with the subject's
ledger rows for that exact payload as read from the subject's SQLite file when the push
arrived. From those bytes the tests check that

* every released value carries Gaussian noise of the configured std (clip C small against
  the noise z*C, so the released values are the noise up to at most C);
* the ledger row for a payload was committed before the payload arrived;
* once the budget is spent, nothing more is released (no push, no ledger row), while the
  node keeps running.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from node.storage import open_store
from node.testnet.local import Testnet
from node.training.genesis import Genesis
from node.training.params import ParamLayout, decode_checkpoint
from privacy import epsilon

TAP = Path(__file__).with_name("wiretap.py")


def fednode(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    )


DELTA = 1e-5
# The LAN membership profile: the tests' point is what leaves the node, and on a loaded
# machine the ten-fold faster test profile can suspect the tap and skip a push.
BASE = {
    "network": {"name": "tap-net", "seed": 11, "pow_difficulty": 4, "gossip_profile": "lan"},
    "task": {"name": "digits", "num_nodes": 2, "partition": "iid"},
}


@contextmanager
def tapped(root: Path, genesis: dict[str, Any]) -> Iterator[tuple[Testnet, Path]]:
    """Start the tap, then the subject bootstrapping from it; stop both at the end."""
    net = Testnet(root, Genesis.model_validate(genesis), 2)
    net.prepare()
    subject, tap = net.nodes
    out = root / "tap"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        str(TAP),
        "--data-dir",
        str(tap.data_dir.root),
        "--genesis",
        str(net.genesis_path),
        "--out",
        str(out),
        "--watch",
        str(subject.data_dir.root / "fednode.db"),
    ]
    try:
        with open(tap.log_path, "ab") as log:
            tap.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        net.wait_started([tap], timeout=150)
        net.start_node(subject, tap.address, timeout=150)
        yield net, out / "pushes.jsonl"
    finally:
        net.stop()


def pushes(path: Path, sender: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["sender"] == sender]


def wait_status(net: Testnet, pred: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = net.statuses().get(0, {})
        if st and pred(st):
            return st
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s; last status: {st}")


def assert_noise_std(values: np.ndarray, std: float, signal_bound: float) -> None:
    """``values`` = bounded signal (|s| <= signal_bound per entry) + N(0, std^2) noise.

    The sample std of n normals has relative standard error ~1/sqrt(2n); the bound allows
    five of those plus the largest shift the signal can cause.
    """
    n = values.size
    s = float(values.std(ddof=1))
    tol = 5.0 / math.sqrt(2 * n) + signal_bound / std
    assert abs(s / std - 1.0) < tol, (s, std, n, tol)
    assert abs(float(values.mean())) < 5.0 * std / math.sqrt(n) + signal_bound, values.mean()


def ledger_rows(net: Testnet) -> list[dict[str, Any]]:
    import sqlite3

    db = net.nodes[0].data_dir.root / "fednode.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cur = conn.execute("SELECT * FROM privacy_ledger ORDER BY seq")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        conn.close()


# --- spsa ----------------------------------------------------------------------------------

SPSA_Z, SPSA_C, SPSA_M = 100.0, 0.01, 64


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_spsa_scalars_are_noised_debited_before_send_and_stop_at_the_budget(
    tmp_path: Path,
) -> None:
    fits = 3  # batches the budget allows
    spend = [epsilon(SPSA_Z, 1.0, k * SPSA_M, DELTA) for k in (fits, fits + 1)]
    budget = 0.5 * sum(spend)
    genesis = {
        **BASE,
        "learner": {"kind": "spsa", "lr": 1e-3, "spsa_steps": SPSA_M},
        "privacy": {
            "enabled": True,
            "clip": SPSA_C,
            "noise_multiplier": SPSA_Z,
            "epsilon_budget": budget,
            "delta": DELTA,
        },
        "rounds": {"max_rounds": 7, "round_timeout": 2.0, "eval_every": 7, "peers_per_round": 1},
    }
    with tapped(tmp_path, genesis) as (net, log):
        st = wait_status(net, lambda s: int(s.get("round", 0)) >= 7, 300, "round 7")
        subject = st["node_id"]
        got = pushes(log, subject)
        rows = ledger_rows(net)
        with net.nodes[0].client() as client:
            priv = client.privacy()
    # One batch per round while the budget lasts, none after it.
    assert [p["round"] for p in got] == list(range(fits)), [p["round"] for p in got]
    assert len(rows) == fits, rows
    for p in got:
        assert p["kind"] == "spsa" and len(p["values"]) == SPSA_M
        # The ledger row for these exact bytes was committed before they arrived.
        (row,) = p["ledger"]["rows"]
        assert row["release_kind"] == "spsa"
        assert row["steps"] == SPSA_M and row["sample_rate"] == 1.0
        assert row["noise_multiplier"] == SPSA_Z
    # Each scalar is clip(g) + N(0, (z C)^2): the noise std is z C = 1.
    values = np.array([v for p in got for v in p["values"]])
    assert_noise_std(values, SPSA_Z * SPSA_C, SPSA_C)
    # The node says what it spent and that it stopped; the ledger's epsilon is the
    # accountant's for fits * m steps at z.
    want = epsilon(SPSA_Z, 1.0, fits * SPSA_M, DELTA)
    assert st["epsilon_spent"] == pytest.approx(want, rel=1e-9)
    assert rows[-1]["epsilon_after"] == pytest.approx(want, rel=1e-9)
    assert st["releasing"] is False
    assert not priv.releasing and "budget" in priv.reason
    assert [r.kind for r in priv.releases] == ["spsa"] * fits


# --- vector learners (sgd, flower) ---------------------------------------------------------

VEC_Z, VEC_C = 50.0, 0.02
# min_updates 0: a round never waits for the tap (which sends nothing), so a long
# round_timeout costs nothing per round; it only lets the node wait for the tap at start.
VECTOR_ROUNDS = {"round_timeout": 30.0, "eval_every": 50, "peers_per_round": 1, "min_updates": 0}
LEARNERS = {
    "sgd": {"kind": "sgd", "local_steps": 5},
    "flower": {
        "kind": "flower",
        "flower_client": "node.training.examples.digits_client:client_fn",
    },
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_vector_updates_are_noised_debited_before_send_and_stop_at_the_budget(
    tmp_path: Path, learner: str
) -> None:
    fits = 3
    spend = [epsilon(VEC_Z, 1.0, k, DELTA) for k in (fits, fits + 1)]
    genesis = {
        **BASE,
        "learner": LEARNERS[learner],
        "privacy": {
            "enabled": True,
            "clip": VEC_C,
            "noise_multiplier": VEC_Z,
            "epsilon_budget": 0.5 * sum(spend),
            "delta": DELTA,
        },
        "rounds": {**VECTOR_ROUNDS, "max_rounds": 7},
    }
    with tapped(tmp_path, genesis) as (net, log):
        st = wait_status(net, lambda s: int(s.get("round", 0)) >= 7, 300, "round 7")
        got = pushes(log, st["node_id"])
        rows = ledger_rows(net)
        with net.nodes[0].client() as client:
            priv = client.privacy()
    assert [p["round"] for p in got] == list(range(fits)), [p["round"] for p in got]
    assert len(rows) == fits, rows
    for p in got:
        assert p["kind"] == "update"
        assert p["num_samples"] == 0, "an example count is not sent under DP"
        (row,) = p["ledger"]["rows"]  # committed before the vector arrived
        assert row["release_kind"] == "update" and row["steps"] == 1
        assert row["noise_multiplier"] == VEC_Z
    # The tap sends nothing back, so round r starts from the vector released in round
    # r - 1: the difference of consecutive released vectors is clip(u_r) + N(0, (zC)^2 I).
    vectors = [np.array(p["values"]) for p in got]
    residuals = np.concatenate([b - a for a, b in pairwise(vectors)])
    assert_noise_std(residuals, VEC_Z * VEC_C, VEC_C)
    want = epsilon(VEC_Z, 1.0, fits, DELTA)
    assert st["epsilon_spent"] == pytest.approx(want, rel=1e-9)
    assert st["releasing"] is False
    assert not priv.releasing and "budget" in priv.reason
    # The checkpoint it serves for catch-up (the file `Pull` streams) is built from released
    # values only: with nothing received it is exactly the last vector it released, not a
    # model that kept training on un-noised updates after the budget ran out.
    with open_store(data_dir=net.nodes[0].data_dir.root) as store:
        latest = store.latest_checkpoint()
        assert latest is not None and latest.round >= fits
        layout = ParamLayout(("vector",), ((vectors[-1].size,),))
        served = decode_checkpoint(store.checkpoint_bytes(latest), layout)
    assert np.array_equal(served.numpy().astype(float), vectors[-1])


# --- record level (DP-SGD) -----------------------------------------------------------------

DPSGD = {"kind": "sgd", "local_steps": 5, "dp_sgd": True, "dp_sgd_noise_multiplier": 1.2}


def dp_sgd_release(net: Testnet) -> tuple[float, float, int]:
    """(z, q, steps) of one DP-SGD round of the subject, from its ledger's record rows."""
    (z, q, steps) = {
        (r["noise_multiplier"], r["sample_rate"], r["steps"])
        for r in ledger_rows(net)
        if r["scope"] == "record"
    }.pop()
    return z, q, steps


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_record_budget_stops_local_training(tmp_path: Path) -> None:
    # q = 100 / 719 local examples (digits, two iid shards); 5 steps per round.
    q, fits = 100 / 719, 3
    z, steps = DPSGD["dp_sgd_noise_multiplier"], DPSGD["local_steps"]
    spend = [epsilon(z, q, k * steps, 1e-6) for k in (fits, fits + 1)]
    genesis = {
        **BASE,
        "learner": DPSGD,
        "privacy": {"sample_epsilon": 0.5 * sum(spend), "sample_delta": 1e-6},
        "rounds": {**VECTOR_ROUNDS, "max_rounds": 7},
    }
    with tapped(tmp_path, genesis) as (net, log):
        st = wait_status(net, lambda s: int(s.get("round", 0)) >= 7, 300, "round 7")
        got = pushes(log, st["node_id"])
        rows = ledger_rows(net)
        # What an operator reads: both levels, one line each, and the JSON objects.
        data_dir = str(net.nodes[0].data_dir.root)
        text = fednode("privacy", "-d", data_dir).stdout
        status_text = fednode("status", "-d", data_dir).stdout
        as_json = json.loads(fednode("privacy", "-d", data_dir, "-f", "json").stdout)
        runtime = net.nodes[0].runtime()
        assert runtime is not None
        with urllib.request.urlopen(f"http://{runtime['metrics']}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    assert 'fednode_privacy_active{level="record"} 0.0' in metrics
    assert 'fednode_privacy_active{level="node"} 1.0' in metrics
    spent_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith('fednode_privacy_epsilon_spent{level="record"}')
    )
    assert float(spent_line.split()[-1]) == pytest.approx(spend[0], rel=1e-9)
    assert "node-level:   off" in text
    assert f"record-level: dp_sgd: epsilon {spend[0]:.3f} of {0.5 * sum(spend):.3f}" in text
    assert "not training" in text and text.count("dp_sgd") >= 1 + fits
    assert "record privacy" in status_text and "not training" in status_text
    assert as_json["record"]["mechanism"] == "dp_sgd" and as_json["record"]["active"] is False
    assert [r["scope"] for r in as_json["releases"]] == ["record"] * fits
    assert dp_sgd_release(net) == pytest.approx((z, q, steps))
    # Local training stopped after `fits` rounds: as many updates left the node, each
    # debited (record-level row with its digest) before it arrived; nothing after.
    assert [p["round"] for p in got] == list(range(fits))
    assert [(r["scope"], r["release_kind"]) for r in rows] == [("record", "dp_sgd")] * fits
    for p in got:
        (row,) = p["ledger"]["rows"]
        assert row["scope"] == "record"
    rec = st["record_privacy"]
    assert rec["enabled"] and rec["mechanism"] == "dp_sgd" and rec["active"] is False
    assert "record-level" in rec["reason"]
    assert rec["epsilon_spent"] == pytest.approx(spend[0], rel=1e-9)
    assert rec["epsilon_remaining"] == pytest.approx(rec["epsilon_budget"] - spend[0])
    assert int(rec["steps"]) == fits * steps
    assert st["node_privacy"]["enabled"] is False
    assert st["releasing"] is False


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_node_never_reports_less_than_it_spent(tmp_path: Path) -> None:
    import random

    rng = random.Random()
    genesis = {
        **BASE,
        "learner": DPSGD,
        "privacy": {
            "enabled": True,
            "clip": 1.0,
            "noise_multiplier": 5.0,
            "epsilon_budget": 1e4,
            "sample_delta": 1e-6,
        },
        "rounds": {**VECTOR_ROUNDS, "max_rounds": 10_000},
    }
    z_node = 5.0
    with tapped(tmp_path, genesis) as (net, log):
        subject, tap = net.nodes
        st = wait_status(net, lambda s: int(s.get("round", 0)) >= 2, 300, "round 2")
        node_id = st["node_id"]
        for kill in range(3):
            time.sleep(rng.uniform(0.2, 4.0))
            reported = net.statuses().get(0, st)
            assert subject.process is not None
            subject.process.kill()  # SIGKILL: no shutdown, wherever the node was
            subject.process.wait()
            seen = len(pushes(log, node_id))  # releases that provably left the node
            net.start_node(subject, tap.address, timeout=150)
            after = wait_status(net, lambda s: "record_privacy" in s, 60, "status")
            z, q, steps = dp_sgd_release(net)
            for level, floor in (
                ("node_privacy", epsilon(z_node, 1.0, seen, DELTA) if seen else 0.0),
                ("record_privacy", epsilon(z, q, seen * steps, 1e-6) if seen else 0.0),
            ):
                now = after[level]["epsilon_spent"]
                # Never less than the node said before it died, nor than what the bytes
                # that reached the tap prove it spent.
                assert now >= reported[level]["epsilon_spent"] - 1e-12, (kill, level)
                assert now >= floor * (1 - 1e-9), (kill, level, now, floor, seen)
            assert after["releasing"] is True, after.get("node_privacy")
        # It keeps releasing after the restarts, each release still debited before it left.
        wait_status(
            net, lambda s: len(pushes(log, node_id)) > seen + 1, 120, "releases after restarts"
        )
    assert all(len(p["ledger"]["rows"]) == 2 for p in pushes(log, node_id))


# --- record level (DP-ZO) ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dp_zo_scalars_carry_noise_on_the_scalar_and_stop_at_the_record_budget(
    tmp_path: Path,
) -> None:
    z, clip, m, fits = 2000.0, 0.05, 64, 3
    q = 100 / 719  # batch 100 over this node's 719 digits examples
    std = z * clip / (q * 719)  # noise on the sum, divided by the expected batch: 1.0
    spend = [epsilon(z, q, k * m, 1e-6) for k in (fits, fits + 1)]
    genesis = {
        **BASE,
        "learner": {
            "kind": "spsa",
            "lr": 1e-3,
            "spsa_steps": m,
            "dp_zo": True,
            "dp_zo_clip": clip,
            "dp_zo_noise_multiplier": z,
        },
        "privacy": {"sample_epsilon": 0.5 * sum(spend), "sample_delta": 1e-6},
        "rounds": {"max_rounds": 7, "round_timeout": 2.0, "eval_every": 7, "peers_per_round": 1},
    }
    with tapped(tmp_path, genesis) as (net, log):
        st = wait_status(net, lambda s: int(s.get("round", 0)) >= 7, 300, "round 7")
        got = pushes(log, st["node_id"])
        rows = ledger_rows(net)
    assert [p["round"] for p in got] == list(range(fits))
    assert [(r["scope"], r["release_kind"]) for r in rows] == [("record", "dp_zo")] * fits
    for p in got:
        (row,) = p["ledger"]["rows"]  # committed before the batch arrived
        assert row["steps"] == m and row["noise_multiplier"] == z
        assert row["sample_rate"] == pytest.approx(q)
    # Each scalar: (sum of |batch| clipped estimates + N(0, (zC)^2)) / (q n); the signal is
    # at most C |batch| / (q n), about C.
    values = np.array([v for p in got for v in p["values"]])
    assert_noise_std(values, std, 2 * clip)
    rec = st["record_privacy"]
    assert rec["mechanism"] == "dp_zo" and rec["active"] is False
    assert rec["epsilon_spent"] == pytest.approx(spend[0], rel=1e-9)
    assert rows[-1]["epsilon_after"] == pytest.approx(spend[0], rel=1e-9)
