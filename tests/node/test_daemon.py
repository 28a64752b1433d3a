"""One real daemon process: CLI, admin token, lock, graceful stop, restart."""

from __future__ import annotations

import json
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from fednode_proto.v1 import admin_pb2, admin_pb2_grpc
from node.base.datadir import DataDir
from node.testnet.local import Testnet
from node.training.genesis import Genesis

pytestmark = pytest.mark.slow

Cli = Callable[..., Any]


def _start_one(tmp_path: Path, genesis: Genesis, made: list[Testnet]) -> Testnet:
    net = Testnet(tmp_path / "net", genesis, 1, node_args={0: ["--no-train"]})
    made.append(net)
    net.start()
    return net


def test_init_genesis_start_status_stop(tmp_path: Path, cli: Cli) -> None:
    dd = tmp_path / "n1"
    out = cli("init", "--data-dir", str(dd), "--difficulty", "6", "--format", "json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert len(info["node_id"]) == 64 and info["created"] is True
    assert stat.S_IMODE((dd / "identity.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((dd / "admin.token").stat().st_mode) == 0o600
    # Second init keeps the key.
    again = json.loads(
        cli("init", "--data-dir", str(dd), "--difficulty", "6", "--format", "json").stdout
    )
    assert again["node_id"] == info["node_id"] and again["created"] is False

    gen = tmp_path / "net.toml"
    out = cli(
        "genesis",
        "new",
        str(gen),
        "--name",
        "t",
        "--difficulty",
        "6",
        "--seed",
        "3",
        "--task",
        "digits",
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(cli("genesis", "show", str(gen), "--format", "json").stdout)
    assert shown["network"]["name"] == "t" and len(shown["network_id"]) == 64

    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "start",
            "--data-dir",
            str(dd),
            "--genesis",
            str(gen),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (dd / "daemon.json").exists():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = json.loads(cli("status", "--data-dir", str(dd), "--format", "json").stdout)
        assert status["node_id"] == info["node_id"]
        assert status["network_name"] == "t"
        assert status["state"] == "running"
        # 64-bit counters are JSON numbers (the protobuf JSON mapping makes them strings).
        for key in ("round", "bytes_sent", "bytes_received", "messages_rejected", "pid"):
            assert type(status[key]) is int, (key, status[key])
        assert type(status["node_privacy"]["releases"]) is int
        text = cli("status", "--data-dir", str(dd))
        assert info["node_id"] in text.stdout
        peers = json.loads(cli("peers", "--data-dir", str(dd), "--format", "json").stdout)
        assert peers == []
        stopped = cli("stop", "--data-dir", str(dd))
        assert stopped.returncode == 0, stopped.stderr
        assert proc.wait(10) == 0
        assert not (dd / "daemon.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_genesis_is_one_line_and_nothing_starts(tmp_path: Path, cli: Cli) -> None:
    dd = tmp_path / "n"
    assert cli("init", "--data-dir", str(dd), "--difficulty", "2").returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[task]\nalpha = -3\n")
    out = cli("start", "--data-dir", str(dd), "--genesis", str(bad))
    assert out.returncode != 0
    assert "task.alpha" in out.stderr and "Traceback" not in out.stderr
    assert not (dd / "daemon.json").exists()
    out = cli("genesis", "show", str(bad))
    assert out.returncode != 0 and "task.alpha" in out.stderr and "Traceback" not in out.stderr


def test_start_without_identity_or_with_tampered_key(tmp_path: Path, cli: Cli) -> None:
    gen = tmp_path / "g.toml"
    cli("genesis", "new", str(gen), "--difficulty", "2", "--task", "digits")
    dd = tmp_path / "n"
    out = cli("start", "--data-dir", str(dd), "--genesis", str(gen), "--listen", "127.0.0.1:0")
    assert out.returncode != 0 and "fednode init" in out.stderr
    cli("init", "--data-dir", str(dd), "--difficulty", "2")
    data = json.loads((dd / "identity.json").read_text())
    data["pow_nonce"] += 1
    (dd / "identity.json").write_text(json.dumps(data))
    out = cli("start", "--data-dir", str(dd), "--genesis", str(gen), "--listen", "127.0.0.1:0")
    assert out.returncode != 0 and "corrupt or was edited" in out.stderr
    assert "Traceback" not in out.stderr


def test_foreign_genesis_refused_on_existing_data_dir(
    tmp_path: Path, genesis: Genesis, testnet_factory: list[Testnet], cli: Cli
) -> None:
    net = _start_one(tmp_path, genesis, testnet_factory)
    node = net.nodes[0]
    net.stop_node(node)
    other = tmp_path / "other.toml"
    cli("genesis", "new", str(other), "--difficulty", "2", "--seed", "99", "--task", "digits")
    out = cli(
        "start",
        "--data-dir",
        str(node.data_dir.root),
        "--genesis",
        str(other),
        "--listen",
        "127.0.0.1:0",
    )
    assert out.returncode != 0 and "belongs to network" in out.stderr


def test_admin_requires_token(
    tmp_path: Path, genesis: Genesis, testnet_factory: list[Testnet]
) -> None:
    net = _start_one(tmp_path, genesis, testnet_factory)
    dd = net.nodes[0].data_dir
    address = json.loads(dd.runtime.read_text())["admin"]
    assert address.startswith("unix:")
    assert stat.S_IMODE(Path(address[5:]).stat().st_mode) == 0o600
    with grpc.insecure_channel(address) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "x"),)]:
            with pytest.raises(grpc.RpcError) as info:
                stub.Status(admin_pb2.StatusRequest(), metadata=metadata, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError):
            stub.Stop(admin_pb2.StopRequest(), timeout=5)
        token = dd.token.read_text().strip()
        reply = stub.Status(
            admin_pb2.StatusRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5
        )
        assert reply.state == "running"
    assert net.nodes[0].alive()


def test_second_daemon_on_same_data_dir_refuses(
    tmp_path: Path, genesis: Genesis, testnet_factory: list[Testnet], cli: Cli
) -> None:
    net = _start_one(tmp_path, genesis, testnet_factory)
    dd = net.nodes[0].data_dir
    out = cli(
        "start",
        "--data-dir",
        str(dd.root),
        "--genesis",
        str(net.genesis_path),
        "--listen",
        "127.0.0.1:0",
    )
    assert out.returncode != 0
    assert "another fednode daemon is running" in out.stderr
    assert net.nodes[0].alive()
    assert dd.runtime.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_within_5s_and_restart_keeps_identity(
    tmp_path: Path, genesis: Genesis, testnet_factory: list[Testnet], sig: int
) -> None:
    net = _start_one(tmp_path, genesis, testnet_factory)
    node = net.nodes[0]
    before = net.statuses()[0]
    assert node.process is not None
    t0 = time.monotonic()
    node.process.send_signal(sig)
    code = node.process.wait(10)
    elapsed = time.monotonic() - t0
    assert code == 0
    assert elapsed < 5.0
    assert not node.data_dir.runtime.exists()
    log = node.log_path.read_text()
    assert "node stopped" in log
    net.start_node(node, None)
    after = net.statuses()[0]
    assert after["node_id"] == before["node_id"]
    assert after["network_id"] == before["network_id"]


def test_runtime_files_and_secrets_not_logged(
    tmp_path: Path, genesis: Genesis, testnet_factory: list[Testnet]
) -> None:
    net = _start_one(tmp_path, genesis, testnet_factory)
    dd: DataDir = net.nodes[0].data_dir
    token = dd.token.read_text().strip()
    key = json.loads(dd.identity.read_text())["private_key"]
    net.statuses()
    net.stop()
    log = net.nodes[0].log_path.read_text()
    assert token not in log and key not in log
