"""``fednode simulate --ray``: the nodes' models and data in Ray actors on a real local Ray.

Ray starts its own processes (a GCS, a raylet and one worker per actor), fresh
interpreters that never fork this one, so each test may start and stop its own instance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from simulate_command import fednode, write

from node.cli import testnet as testnet_cli
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec

pytestmark = pytest.mark.slow


def test_ray_local_prints_the_same_results_as_in_process(tmp_path: Path) -> None:
    from node.cli.simulate import run_simulation

    gen = testnet_cli.testnet_genesis(nodes=6, task="digits", rounds=3, seed=5)
    genesis = write(gen, tmp_path / "net.toml")
    proc = fednode(
        str(genesis), "--ray", "local", "--ray-actors", "2", "--out", "ray", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "nodes on Ray (local)" in proc.stdout
    assert "Ray: 2 actors, up to 3 nodes each" in proc.stdout
    assert "fednode simulate results" in proc.stdout
    got = json.loads((tmp_path / "ray" / "simulate-results.json").read_text())
    # The command without --ray, in this process (tests/training/test_simulate_cli.py shows
    # it is what `fednode simulate` prints).
    want = run_simulation(gen, rounds=3)
    assert got["history"] == {str(r): accs for r, accs in want.history.items()}
    assert len(got["history"]) == 3
    assert got["per_node"] == json.loads(json.dumps(want.per_node))
    assert got["bytes_sent"] == want.bytes_sent and got["messages"] == want.messages
    # Six nodes in two worker processes, each holding three models and shards.
    assert got["ray"]["actors"] == 2 and got["ray"]["nodes_per_actor"] == 3
    assert len(got["ray"]["actor_rss_bytes"]) == 2
    assert all(b > 50 * 2**20 for b in got["ray"]["actor_rss_bytes"])  # torch is loaded


def test_sampled_rounds_with_an_unresponsive_node_match_bit_for_bit() -> None:
    """The direct API: RayHosts behind simulate() gives LocalHosts's vectors exactly."""
    import ray

    from node.sim.ray_hosts import RayHosts, connect
    from node.sim.rounds import simulate

    task = TaskSpec(name="digits", num_nodes=7, batch_size=32, alpha=0.5)
    learner = LearnerSpec(lr=1e-2, local_steps=5)
    rounds = RoundSpec(peers_per_round=2, eval_every=2, sample_trainers=4, round_timeout=5.0)
    kw: dict[str, object] = dict(seed=4, num_rounds=4, jitter=0.5, unresponsive=[6])
    local = simulate(task, learner, rounds, **kw)  # type: ignore[arg-type]
    connect("local", num_cpus=2)
    try:
        hosts = RayHosts(task, learner, seed=4, actors=3, cpus_per_actor=0.5)
        try:
            remote = simulate(task, learner, rounds, hosts=hosts, **kw)  # type: ignore[arg-type]
        finally:
            hosts.close()
    finally:
        ray.shutdown()
    assert remote.history == local.history and len(local.history) == 2
    assert remote.stats == local.stats
    for a, b in zip(local.final_vectors, remote.final_vectors, strict=True):
        assert torch.equal(a, b)
    assert local.final_vectors[0].abs().sum() > 0


def test_ray_refuses_spsa_and_actors_without_ray(tmp_path: Path) -> None:
    spsa = write(
        testnet_cli.testnet_genesis(nodes=3, task="digits", rounds=2, learner="spsa"),
        tmp_path / "spsa.toml",
    )
    proc = fednode(str(spsa), "--ray", "local", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: --ray runs the vector learners (sgd, flower)" in proc.stderr
    assert not (tmp_path / "out").exists()
    sgd = write(testnet_cli.testnet_genesis(nodes=3, task="digits", rounds=2), tmp_path / "n.toml")
    proc = fednode(str(sgd), "--ray-actors", "2", cwd=tmp_path)
    assert proc.returncode == 2 and "--ray-actors needs --ray" in proc.stderr
