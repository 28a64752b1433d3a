"""``fednode simulate`` run as the real command (a fresh interpreter), on tiny genesis files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from simulate_command import fednode, write

from node.cli import testnet as testnet_cli
from node.training.genesis import Genesis, load_genesis


def digits(nodes: int = 4, rounds: int = 3, **kw: object) -> Genesis:
    return testnet_cli.testnet_genesis(nodes=nodes, task="digits", rounds=rounds, seed=3, **kw)  # type: ignore[arg-type]


def test_prints_progress_and_table_and_writes_plot(tmp_path: Path) -> None:
    genesis = write(digits(), tmp_path / "net.toml")
    proc = fednode(str(genesis), "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("round ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"]  # eval_every 1
    assert all("mean" in ln and "min" in ln and "max" in ln and ln.endswith(" s") for ln in lines)
    assert "fednode simulate results" in proc.stdout
    png = (tmp_path / "out" / "simulate-accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    summary = json.loads((tmp_path / "out" / "simulate-results.json").read_text())
    assert summary["nodes"] == 4 and summary["rounds"] == 3
    assert [row["rounds"] for row in summary["per_node"]] == [3, 3, 3, 3]
    assert all(row["bytes_sent"] > 0 and row["bytes_received"] > 0 for row in summary["per_node"])
    assert sum(row["bytes_sent"] for row in summary["per_node"]) == summary["bytes_sent"]
    first, last = summary["history"]["1"], summary["history"]["3"]
    assert sum(last) / 4 > sum(first) / 4  # it learns (digits, chance 0.1)
    assert f"{summary['mean_accuracy']:.3f}" in proc.stdout


def test_same_accuracies_as_calling_simulate_directly(tmp_path: Path, rules) -> None:  # type: ignore[no-untyped-def]
    from node.sim.rounds import simulate

    genesis = write(digits(nodes=4, rounds=9), tmp_path / "net.toml")
    proc = fednode(
        str(genesis), "--nodes", "3", "--rounds", "2", "--seed", "11", "--format", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout is one JSON document
    gen = load_genesis(genesis)
    task = gen.task.model_copy(update={"num_nodes": 3})
    direct = simulate(task, gen.learner, gen.round_spec(), seed=11, num_rounds=2, rules=rules)
    assert summary["seed"] == 11 and summary["nodes"] == 3
    assert [row["accuracy"] for row in summary["per_node"]] == direct.final_accuracy
    assert summary["history"] == {str(r + 1): accs for r, accs in direct.history.items()}
    assert summary["bytes_sent"] == direct.bytes_sent and summary["messages"] == direct.messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[aggregation]\nrule = "avg"\n', "aggregation.rule: Value error, unknown rule 'avg'"),
        ("[task\nname = 1\n", "invalid TOML"),
        ('[task]\nnum_nodes = "many"\n', "task.num_nodes"),
        ("[aggregation]\nsybil_weighting = true\n", "sybil_weighting is applied by the daemon"),
    ],
)
def test_broken_genesis_gives_one_line_and_fails(tmp_path: Path, text: str, expected: str) -> None:
    genesis = tmp_path / "net.toml"
    genesis.write_text(text, encoding="utf-8")
    proc = fednode(str(genesis), "--out", "out", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_genesis_file(tmp_path: Path) -> None:
    proc = fednode(str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope.toml'}: no such genesis file"


def test_node_level_privacy_debits_one_release_per_round(tmp_path: Path) -> None:
    from privacy.accounting import epsilon

    gen = digits(nodes=3, rounds=2, epsilon=8.0, noise=4.0, clip=1.0)
    proc = fednode(str(write(gen, tmp_path / "net.toml")), "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    expected = epsilon(4.0, 1.0, 2, gen.privacy.delta)
    for row in summary["per_node"]:
        assert math.isclose(row["epsilon_spent"], expected, rel_tol=1e-9)


def test_budget_that_runs_out_is_refused_with_one_line(tmp_path: Path) -> None:
    gen = digits(nodes=3, rounds=3, epsilon=0.5, noise=1.0, clip=1.0)
    proc = fednode(str(write(gen, tmp_path / "net.toml")), cwd=tmp_path)
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "3 rounds spend epsilon" in err[0], proc.stderr
    assert "above privacy.epsilon_budget 0.5" in err[0]


def test_spsa_nodes_agree_bit_for_bit(tmp_path: Path) -> None:
    gen = digits(nodes=3, rounds=2, learner="spsa")
    proc = fednode(str(write(gen, tmp_path / "net.toml")), "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["learner"] == "spsa" and summary["models_agree"] is True
    assert summary["entries"] > 0 and len(summary["per_node"]) == 3


def test_band_plot_of_many_nodes_and_of_one_round(tmp_path: Path) -> None:
    from node.cli.accuracy_plot import plot_accuracy_band

    assert not plot_accuracy_band({}, tmp_path / "none.png", "empty")
    assert not (tmp_path / "none.png").exists()
    many = {r: [0.1 + 0.01 * r + 0.001 * i for i in range(100)] for r in (5, 10, 15)}
    for name, history in (("many.png", many), ("one.png", {5: [0.2, 0.4, 0.3]})):
        assert plot_accuracy_band(history, tmp_path / name, name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
