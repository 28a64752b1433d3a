"""The docker-compose testnet runs what ``fednode testnet up`` runs, in containers.

No Docker engine runs here, so the compose files are parsed (``deploy/check.sh`` validates
them with ``docker-compose config`` in CI) and each node's command is compared with the
one :meth:`node.testnet.local.Testnet._command` builds for the same node of a local testnet.
The container entrypoint itself is a shell script, so one test runs it for real.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from node.base.metrics import Metrics
from node.testnet.local import Testnet
from node.training.genesis import Genesis, load_genesis
from node.wire.certs import init_ca, issue_cert

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Flags a container adds to the local command: it listens on all interfaces, so it must
# say which name peers dial, and Prometheus scrapes it from another container.
CONTAINER_ONLY = {"--advertise", "--metrics"}
# Flags whose values are paths or addresses that necessarily differ between the two.
LOCATION = {"--data-dir", "--genesis", "--listen", "--bootstrap"}
PEER_PORT = 7420
METRICS_PORT = 9100


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return data


def _flags(argv: list[str]) -> dict[str, list[str]]:
    """``start`` arguments as flag -> values (repeatable flags keep every value)."""
    args = argv[argv.index("start") + 1 :]
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        assert flag.startswith("--"), f"unexpected positional argument {flag!r} in {argv}"
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.setdefault(flag, []).append(str(args[i + 1]))
            i += 2
        else:
            out.setdefault(flag, [])
            i += 1
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("docker-compose.yml")


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return load_genesis(DEPLOY / "genesis.toml")


def _nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node services (those running ``fednode start``) by name, ordered by shard."""
    nodes = {
        name: svc
        for name, svc in compose["services"].items()
        if isinstance(svc.get("command"), list) and svc["command"][:1] == ["start"]
    }
    return dict(sorted(nodes.items(), key=lambda kv: int(_flags(kv[1]["command"])["--shard"][0])))


def _local_commands(genesis: Genesis, tmp_path: Path) -> list[list[str]]:
    """What `fednode testnet up --nodes N --byzantine f` starts for this genesis."""
    n, byzantine = genesis.task.num_nodes, genesis.aggregation.f
    # Same assignment as `testnet up`: the last `byzantine` nodes attack.
    node_args = {i: ["--attack", "sign_flip"] for i in range(n - byzantine, n)}
    net = Testnet(tmp_path, genesis, n, node_args=node_args)
    first = "FIRST-NODE-ADDRESS"
    return [net._command(node, None if node.index == 0 else first) for node in net.nodes]


def test_genesis_is_exactly_what_testnet_up_builds(genesis: Genesis) -> None:
    from node.cli.testnet import testnet_genesis

    # `fednode testnet up --nodes 4 --byzantine 1 --task digits --rounds 10 --rule median
    # --seed 1` (the command deploy/genesis.toml names).
    local = testnet_genesis(nodes=4, byzantine=1, task="digits", rounds=10, rule="median", seed=1)
    assert genesis.network_id_hex == local.network_id_hex, (
        "deploy/genesis.toml drifted from testnet up's genesis"
    )


def test_genesis_is_the_local_testnet_genesis(genesis: Genesis) -> None:
    # The settings `fednode testnet up` puts in its genesis (node/cli/testnet.py).
    assert genesis.network.name == f"testnet-{genesis.task.name}"
    assert genesis.network.pow_difficulty == 8
    assert genesis.network.gossip_profile == "local"
    assert genesis.network.bootstrap == [], "compose passes --bootstrap, like testnet up"
    assert genesis.task.name == "digits"
    assert genesis.aggregation.f >= 1, "the byzantine profile needs a rule that tolerates it"


def test_node_count_and_profiles_match(compose: dict[str, Any], genesis: Genesis) -> None:
    nodes = _nodes(compose)
    assert len(nodes) == genesis.task.num_nodes, "one container per shard"
    shards = [int(_flags(s["command"])["--shard"][0]) for s in nodes.values()]
    assert shards == list(range(genesis.task.num_nodes))
    honest = [n for n, s in nodes.items() if not s.get("profiles")]
    byzantine = [n for n, s in nodes.items() if s.get("profiles")]
    assert all(nodes[n]["profiles"] == ["byzantine"] for n in byzantine)
    assert len(byzantine) == genesis.aggregation.f
    # As in `testnet up`, the Byzantine nodes are the last ones.
    assert list(nodes)[: len(honest)] == honest


def test_commands_match_testnet_up(
    compose: dict[str, Any], genesis: Genesis, tmp_path: Path
) -> None:
    nodes = _nodes(compose)
    local = _local_commands(genesis, tmp_path)
    first_name, first = next(iter(nodes.items()))
    first_advertise = _flags(first["command"])["--advertise"][0]
    assert first_advertise == f"{first_name}:{PEER_PORT}"
    for (name, svc), local_cmd in zip(nodes.items(), local, strict=True):
        theirs, ours = _flags(svc["command"]), _flags(local_cmd)
        assert set(theirs) - CONTAINER_ONLY == set(ours), name
        for flag in set(ours) - LOCATION:
            assert theirs[flag] == ours[flag], f"{name}: {flag}"
        assert ("--bootstrap" in theirs) == ("--bootstrap" in ours), name
        if "--bootstrap" in ours:
            assert theirs["--bootstrap"] == [first_advertise], f"{name} must bootstrap from node0"
        # The container reaches peers under its service name, on the peer port.
        assert theirs["--advertise"] == [f"{name}:{PEER_PORT}"]
        assert svc["hostname"] == name
        assert theirs["--listen"] == [f"0.0.0.0:{PEER_PORT}"]
        assert theirs["--metrics"] == [f"0.0.0.0:{METRICS_PORT}"]
        # The genesis flag names the file mounted from deploy/genesis.toml; the data dir
        # is this node's own volume.
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}  # target -> source
        assert mounts[theirs["--genesis"][0]] == "./genesis.toml"
        assert mounts[theirs["--data-dir"][0]] == f"{name}-data"
        assert svc["environment"]["FEDNODE_GENESIS"] == theirs["--genesis"][0]
        if name != first_name:
            # Started, not healthy: waiting for node0's health check let it train alone.
            assert svc["depends_on"][first_name]["condition"] == "service_started"
    data_volumes = {f"{name}-data" for name in nodes}
    assert data_volumes <= set(compose["volumes"])


def test_prometheus_scrapes_every_node(compose: dict[str, Any]) -> None:
    prom = _load("prometheus.yml")
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {f"{name}:{METRICS_PORT}" for name in _nodes(compose)}
    for svc in ("prometheus", "grafana"):
        assert compose["services"][svc]["profiles"] == ["monitoring"]
        # Operator tools listen on the host's loopback only.
        assert all(p.startswith("127.0.0.1:") for p in compose["services"][svc]["ports"])


def test_dashboard_queries_only_metrics_the_node_exports() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "fednode.json").read_text())
    suffixes = ("", "_total", "_bucket", "_sum", "_count", "_created", "_info")
    exported = {f.name + suffix for f in Metrics().registry.collect() for suffix in suffixes}
    used = {
        name
        for panel in dash["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bfednode_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard queries no fednode metric"
    assert used <= exported, f"unknown metrics: {sorted(used - exported)}"
    ds = _load("grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    assert all(p["datasource"]["uid"] == ds["uid"] for p in dash["panels"])


def test_tls_override_gives_every_node_its_certificates(compose: dict[str, Any]) -> None:
    tls = _load("docker-compose.tls.yml")
    nodes = _nodes(compose)
    assert set(nodes) <= set(tls["services"])
    certs = tls["services"]["certs"]
    assert certs["command"] == list(nodes), "one certificate per node service"
    assert any(v.startswith("ca:") for v in certs["volumes"])
    for name in nodes:
        svc = tls["services"][name]
        assert svc["environment"]["FEDNODE_TLS_DIR"] == f"/certs/{name}"
        assert "certs:/certs:ro" in svc["volumes"]
        assert all(not v.startswith("ca:") for v in svc["volumes"]), "the CA key stays put"
        assert svc["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    # make-certs.sh names each certificate after its service: what peers dial.
    script = (DEPLOY / "make-certs.sh").read_text()
    assert '--host "$name"' in script


def test_image_healthcheck_and_entrypoint_use_real_commands() -> None:
    from node.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"health", "certs", "start", "init"} <= set(commands)
    start_opts = {o for p in commands["start"].params for o in p.opts}
    entry = (DEPLOY / "entrypoint.sh").read_text()
    for flag in re.findall(r"(--[a-z-]+)", entry):
        owner = "init" if flag in {"--genesis", "--data-dir"} else "start"
        opts = {o for p in commands[owner].params for o in p.opts}
        assert flag in opts | start_opts, f"entrypoint passes unknown flag {flag}"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'HEALTHCHECK .*\n\s*CMD \["fednode", "health"', dockerfile)
    assert "USER fednode" in dockerfile and 'VOLUME ["/data"]' in dockerfile
    assert "-c constraints.txt" in dockerfile


@pytest.mark.slow
def test_container_entrypoint_starts_a_tls_node(compose: dict[str, Any], tmp_path: Path) -> None:
    """Run deploy/entrypoint.sh as the container would, with node1's compose command
    (paths and addresses moved to loopback): it mints the identity, adds the TLS flags,
    and `fednode health` (the HEALTHCHECK) reaches the node over mutual TLS."""
    init_ca(tmp_path / "ca")
    issue_cert(tmp_path / "ca", "node1", ["127.0.0.1"], tmp_path / "certs" / "node1")
    cmd = list(_nodes(compose)["node1"]["command"])
    flags = _flags(cmd)
    home = tmp_path / "data"
    replace = {
        "--data-dir": str(home),
        "--genesis": str(DEPLOY / "genesis.toml"),
        "--listen": "127.0.0.1:0",
        "--metrics": "off",
    }
    argv = ["start"]
    for flag, values in flags.items():
        if flag in {"--advertise", "--bootstrap"}:
            continue  # no node0 here; a lone node is healthy
        argv += [flag] if not values else [x for v in values for x in (flag, replace.get(flag, v))]
    argv.append("--no-train")  # keep it light: membership and health only
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "FEDNODE_HOME": str(home),
        "FEDNODE_GENESIS": str(DEPLOY / "genesis.toml"),
        "FEDNODE_TLS_DIR": str(tmp_path / "certs" / "node1"),
    }
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        ["sh", str(DEPLOY / "entrypoint.sh"), *argv], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180  # shared 2-core CI machines
        while not (home / "daemon.json").exists():
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.1)
        assert (home / "identity.json").stat().st_mode & 0o777 == 0o600
        runtime = json.loads((home / "daemon.json").read_text())
        assert runtime["tls"]["ca"].endswith("ca.crt")
        health = subprocess.run(
            [sys.executable, "-m", "node", "health", "-d", str(home)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert health.returncode == 0, health.stderr
        assert "SERVING" in health.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "node.log").read_text()
