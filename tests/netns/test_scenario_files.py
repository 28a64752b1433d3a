"""Scenario files: the shipped ones are valid, bad ones give one clear line (no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.testnet.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "deploy" / "scenarios").glob("*.toml"))


def test_the_four_required_scenarios_ship() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"partition-and-heal", "churn-30", "bootstrap-loss", "loss-latency"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_are_valid(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.events, "a shipped scenario scripts at least one fault"
    genesis = sc.genesis()
    assert genesis.network.gossip_profile == sc.gossip_profile
    assert genesis.task.num_nodes == sc.nodes
    baseline = sc.without_faults()
    assert baseline.events == [] and baseline.nodes == sc.nodes


def test_churn_kills_about_30_percent() -> None:
    sc = load_scenario(ROOT / "deploy" / "scenarios" / "churn-30.toml")
    killed = {i for e in sc.events if e.action == "kill" for i in e.nodes}
    assert 0.25 <= len(killed) / sc.nodes <= 0.4
    assert all(e.duration for e in sc.events if e.action == "kill"), "every kill restarts"


def test_loss_latency_needs_the_delay_proxy() -> None:
    sc = load_scenario(ROOT / "deploy" / "scenarios" / "loss-latency.toml")
    assert sc.needs_delay_proxy
    assert {e.action for e in sc.events} == {"latency", "loss"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nnodes = 3\n[[event]]\naction = "kill"\nnodes = [1]\n', "exactly one of"),
        ('name = "x"\nnodes = 3\n[[event]]\nat = 1\naction = "kill"\nnodes = [5]\n', "node 5"),
        ('name = "x"\nnodes = 3\n[[event]]\nat = 1\naction = "explode"\n', "event.0.action"),
        ('name = "x"\nnodes = 3\ncolour = "red"\n', "colour: unknown key"),
        ('name = "x"\n[[event]]\nat = 1\naction = "partition"\n', "needs `groups`"),
        (
            'name = "x"\n[[event]]\nat = 1\naction = "latency"\ndelay_ms = 5\njitter_ms = 9\n',
            "jitter_ms",
        ),
        ('name = "x"\nnodes = 1\n', "nodes"),
        ("name = ", "invalid TOML"),
    ],
)
def test_bad_scenarios_fail_with_one_line(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("bad.toml")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")


def test_byzantine_nodes_extend_the_index_range() -> None:
    sc = parse_scenario(
        'name = "b"\nnodes = 3\n[[event]]\nat = 1\naction = "byzantine"\ncount = 2\n'
        '[[event]]\nat = 5\naction = "kill"\nnodes = [4]\n'
    )
    assert isinstance(sc, Scenario)
    assert sc.events[1].nodes == [4]
