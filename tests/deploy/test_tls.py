"""Mutual TLS between real daemon processes, with certificates made by ``node.wire.certs``.

One network of four membership-only nodes: nodes 0 and 1 hold certificates from CA A
and must find each other; node 2 holds a certificate from CA B and node 3 speaks
plaintext, and neither may get in (in either direction). Then raw clients probe node 0:
plaintext and certificate-less TLS are refused, the node's own credentials get SERVING.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.base.datadir import DataDir
from node.base.settings import NodeSettings
from node.daemon.core import Daemon, DaemonError
from node.testnet.local import Testnet
from node.training.genesis import Genesis, render_genesis
from node.wire.certs import init_ca, issue_cert

pytestmark = pytest.mark.slow

GENESIS = {
    "network": {"name": "tls-net", "seed": 5, "pow_difficulty": 4, "gossip_profile": "local"},
    "task": {"name": "digits", "num_nodes": 4},
}


def _tls_args(cert_dir: Path, *, mutual: bool = True) -> list[str]:
    args = ["--tls-cert", str(cert_dir / "node.crt"), "--tls-key", str(cert_dir / "node.key")]
    return args + (["--tls-ca", str(cert_dir / "ca.crt")] if mutual else [])


def _fednode(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("certs")
    init_ca(root / "ca-a")
    init_ca(root / "ca-b", common_name="another network's CA")
    for i in (0, 1):
        issue_cert(root / "ca-a", f"node{i}", ["127.0.0.1", "localhost"], root / f"a{i}")
    issue_cert(root / "ca-b", "intruder", ["127.0.0.1"], root / "b2")
    return root


@pytest.fixture(scope="module")
def net(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    node_args = {
        0: ["--no-train", *_tls_args(certs / "a0")],
        1: ["--no-train", *_tls_args(certs / "a1")],
        2: ["--no-train", *_tls_args(certs / "b2")],
        3: ["--no-train"],
    }
    testnet = Testnet(
        tmp_path_factory.mktemp("tlsnet"),
        Genesis.model_validate(GENESIS),
        4,
        node_args=node_args,
    )
    with testnet.running(timeout=180):  # shared 2-core machines
        yield testnet


def _peer_ids(net: Testnet, index: int) -> set[str]:
    with net.nodes[index].client() as client:
        return {p.node_id for p in client.peers().peers}


def test_nodes_with_one_ca_gossip_and_outsiders_never_get_in(net: Testnet) -> None:
    deadline = time.monotonic() + 90
    st = net.statuses()
    while time.monotonic() < deadline:
        st = net.statuses()
        if all(st.get(i, {}).get("peers_alive") == 1 for i in (0, 1)):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"nodes 0 and 1 (same CA) never saw each other: {st}")
    # The outsiders have been dialing node 0 since start-up; give their joins and the
    # gossip that would spread them time to land, then check nobody let them in.
    time.sleep(3.0)
    st = net.statuses()
    ids = {i: s["node_id"] for i, s in st.items()}
    assert sorted(ids) == [0, 1, 2, 3], "every node must still be running"
    for i in (0, 1):
        assert _peer_ids(net, i) == {ids[1 - i]}, f"node {i} learned of an outsider"
    for outsider in (2, 3):
        assert st[outsider]["peers_alive"] == 0
        assert not _peer_ids(net, outsider) & {ids[0], ids[1]}, f"node {outsider} got in"
    # The plaintext node does not stay at 0 peers in silence: it says why, with the fix.
    log = net.nodes[3].log_path.read_text(errors="replace")
    assert "this plaintext node cannot join it: start it with --tls-cert" in log, log[-3000:]


def _check(channel: grpc.Channel) -> int:
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return int(reply.status)


def test_plaintext_client_is_refused(net: Testnet) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _check(grpc.insecure_channel(net.nodes[0].address))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_tls_client_without_certificate_is_refused(net: Testnet, certs: Path) -> None:
    creds = grpc.ssl_channel_credentials((certs / "ca-a" / "ca.crt").read_bytes())
    with pytest.raises(grpc.RpcError) as info:
        _check(grpc.secure_channel(net.nodes[0].address, creds))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_client_with_a_certificate_from_the_ca_is_served(net: Testnet, certs: Path) -> None:
    a1 = certs / "a1"
    creds = grpc.ssl_channel_credentials(
        (a1 / "ca.crt").read_bytes(), (a1 / "node.key").read_bytes(), (a1 / "node.crt").read_bytes()
    )
    status = _check(grpc.secure_channel(net.nodes[0].address, creds))
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_health_command_dials_like_a_peer(net: Testnet, certs: Path) -> None:
    ok = _fednode("health", "-d", str(net.nodes[0].data_dir.root), "--format", "json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["status"] == "SERVING" and report["tls"] is True
    # Same address without TLS: refused, exit 1 (what a container HEALTHCHECK sees).
    plain = _fednode("health", "-a", net.nodes[0].address, "--timeout", "2")
    assert plain.returncode == 1
    assert "UNREACHABLE" in plain.stderr
    # A certificate from the other CA is refused too.
    b2 = certs / "b2"
    foreign = _fednode(
        "health",
        "-a",
        net.nodes[0].address,
        "--tls-cert",
        str(b2 / "node.crt"),
        "--tls-key",
        str(b2 / "node.key"),
        "--tls-ca",
        str(certs / "a0" / "ca.crt"),
        "--timeout",
        "2",
    )
    assert foreign.returncode == 1


def test_server_name_override_is_what_gets_checked(net: Testnet, certs: Path) -> None:
    """Node 0's certificate names localhost and 127.0.0.1: overriding the checked name
    with one of them works, with any other name the handshake fails."""
    a1 = certs / "a1"
    base = ["health", "-a", net.nodes[0].address, "--timeout", "3"]
    base += ["--tls-cert", str(a1 / "node.crt"), "--tls-key", str(a1 / "node.key")]
    base += ["--tls-ca", str(a1 / "ca.crt")]
    assert _fednode(*base, "--tls-server-name", "localhost").returncode == 0
    wrong = _fednode(*base, "--tls-server-name", "fednode-peer")
    assert wrong.returncode == 1
    assert "UNREACHABLE" in wrong.stderr


def _settings(certs: Path, **tls: str) -> NodeSettings:
    return NodeSettings.model_validate({"listen": "127.0.0.1:0", "metrics": "off", **tls})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"tls_cert": "a0/missing.crt", "tls_key": "a0/node.key"}, "no such file"),
        ({"tls_cert": "a0/node.crt"}, "needs both tls_cert and tls_key"),
        ({"tls_cert": "a0/node.crt", "tls_key": "a1/node.key"}, "does not belong to"),
        (
            {"tls_cert": "b2/node.crt", "tls_key": "b2/node.key", "tls_ca": "a0/ca.crt"},
            "is not signed by",
        ),
        ({"tls_cert": "a0/node.key", "tls_key": "a0/node.key"}, "not a PEM certificate"),
        ({"tls_ca": "a0/ca.crt"}, "needs both tls_cert and tls_key"),
    ],
    ids=["missing-cert", "cert-without-key", "foreign-key", "foreign-ca", "key-as-cert", "ca-only"],
)
def test_a_daemon_with_unusable_tls_files_refuses_to_start(
    certs: Path, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    settings = _settings(certs, **{k: str(certs / v) for k, v in files.items()})
    dd = DataDir(tmp_path / "node")
    daemon = Daemon(dd, Genesis.model_validate(GENESIS), settings)
    assert daemon.channels.credentials is not None, "a TLS node must never dial in plaintext"
    with pytest.raises(DaemonError, match=message):
        asyncio.run(daemon.run())
    assert not dd.runtime.exists()
    assert daemon.tls is None


def test_cli_start_reports_bad_tls_in_one_line(certs: Path, tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.toml"
    genesis.write_text(render_genesis(Genesis.model_validate(GENESIS)))
    result = _fednode(
        "start",
        "-d",
        str(tmp_path / "node"),
        "-g",
        str(genesis),
        "--listen",
        "127.0.0.1:0",
        *_tls_args(certs / "b2")[:4],
        "--tls-ca",
        str(certs / "a0" / "ca.crt"),
    )
    assert result.returncode == 1
    assert "cannot start with TLS: tls_cert" in result.stderr
    assert "is not signed by tls_ca" in result.stderr
    assert "Traceback" not in result.stderr
