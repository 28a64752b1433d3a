"""``testnet up --f``, ``--observed-f``, ``--attack list`` and the hidden ``start --collude``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.cli import testnet as testnet_cli
from node.training.genesis import render_genesis

Cli = Callable[..., Any]


def test_f_is_set_apart_from_the_attackers() -> None:
    none_f2 = testnet_cli.testnet_genesis(nodes=4, task="digits", rule="median", f=2)
    assert none_f2.aggregation.f == 2 and not none_f2.aggregation.observed_f
    attackers_f0 = testnet_cli.testnet_genesis(nodes=4, task="digits", byzantine=1, f=0)
    assert attackers_f0.aggregation.f == 0
    default = testnet_cli.testnet_genesis(nodes=4, task="digits", byzantine=1)
    assert default.aggregation.f == 1  # --f defaults to --byzantine
    observed = testnet_cli.testnet_genesis(nodes=4, task="digits", f=2, observed_f=True)
    assert observed.aggregation.observed_f
    # A different defence is a different network.
    assert observed.network_id != none_f2.network_id


def test_attack_list_names_the_colluding_attacks(cli: Cli) -> None:
    out = cli("testnet", "up", "--attack", "list")
    assert out.returncode == 0, out.stderr
    for name in ("dissensus", "ipm", "alie", "optimal_ipm", "mimic"):
        assert f"  {name} " in out.stdout


def test_unknown_attack_and_negative_f_are_refused(cli: Cli) -> None:
    out = cli("testnet", "up", "--byzantine", "1", "--attack", "nope", "--task", "digits")
    assert out.returncode != 0 and "unknown attack 'nope'" in out.stderr
    out = cli("testnet", "up", "--f", "-1", "--task", "digits")
    assert out.returncode != 0 and "--f" in out.stderr


def test_start_collude_needs_an_attack_and_an_existing_directory(cli: Cli, tmp_path: Path) -> None:
    gen = tmp_path / "genesis.toml"
    gen.write_text(render_genesis(testnet_cli.testnet_genesis(nodes=2, task="digits")))
    base = ["start", "-d", str(tmp_path / "n"), "--genesis", str(gen), "--collude", str(tmp_path)]
    out = cli(*base)
    assert out.returncode != 0 and "--collude needs --attack" in out.stderr
    out = cli(*base[:-1], str(tmp_path / "missing"), "--attack", "ipm")
    assert out.returncode != 0 and "does not exist" in out.stderr
    assert not (tmp_path / "n" / "daemon.json").exists()


def test_peers_sets_the_fan_out_at_most_nodes_minus_one(cli: Cli) -> None:
    default = testnet_cli.testnet_genesis(nodes=12, task="digits")
    six = testnet_cli.testnet_genesis(nodes=12, task="digits", peers=6)
    assert default.rounds.peers_per_round == 3 and six.rounds.peers_per_round == 6
    assert six.network_id != default.network_id
    assert testnet_cli.testnet_genesis(nodes=4, task="digits", peers=9).rounds.peers_per_round == 3
    out = cli("testnet", "up", "--peers", "0", "--task", "digits")
    assert out.returncode != 0 and "--peers" in out.stderr
