"""Namespaces, partitions and loss at the socket level (no daemons: fast)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.testnet.netns import (
    NS_PREFIX,
    PEER_PORT,
    NetnsFabric,
    list_namespaces,
    write_delay,
)

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    while (d := c.recv(4096)):
        c.sendall(d)
    c.close()
"""

CLIENT = """
import socket, sys, time
t0 = time.monotonic()
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.settimeout(float(sys.argv[3]))
    rtts = []
    for _ in range(3):
        t = time.monotonic(); c.sendall(b"ping"); c.recv(16); rtts.append(time.monotonic() - t)
    print("ok", min(rtts))
except OSError as exc:
    print("fail", type(exc).__name__)
"""


def in_ns(fabric: NetnsFabric, index: int, code: str, *args: str) -> list[str]:
    return [*fabric.exec_prefix(index), sys.executable, "-c", code, *args]


def start_server(fabric: NetnsFabric, index: int, host: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        in_ns(fabric, index, SERVER, host, str(port)), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def probe(fabric: NetnsFabric, src: int, dst: int, timeout: float = 1.5) -> tuple[str, float]:
    out = subprocess.run(
        in_ns(fabric, src, CLIENT, fabric.address(dst), str(PEER_PORT), str(timeout)),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    return out[0], float(out[1]) if out[0] == "ok" else float("nan")


def test_partition_blocks_and_heal_restores(tag: str) -> None:
    fabric = NetnsFabric(tag)
    servers: list[subprocess.Popen[str]] = []
    try:
        fabric.create(3)
        assert set(list_namespaces(f"{NS_PREFIX}{tag}-")) == set(fabric.namespaces())
        servers = [start_server(fabric, i, fabric.address(i), PEER_PORT) for i in range(3)]
        assert probe(fabric, 0, 1)[0] == "ok"
        fabric.partition([[0], [1, 2]])
        assert fabric.blocked(0) == {1, 2} and fabric.blocked(1) == {0}
        assert probe(fabric, 0, 1)[0] == "fail"
        assert probe(fabric, 2, 0)[0] == "fail"
        assert probe(fabric, 1, 2)[0] == "ok"  # same side still talks
        fabric.heal()
        assert probe(fabric, 0, 1)[0] == "ok"
        fabric.set_loss(2.5, [0])
        assert "numgen random mod 10000 < 250 drop" in fabric.counters(0)
        fabric.set_loss(100.0, [0])
        assert probe(fabric, 0, 2, timeout=1.0)[0] == "fail"
        fabric.set_loss(0.0)
        assert "drop" not in fabric.counters(0).split("chain loss")[1].split("}")[0]
        assert probe(fabric, 0, 2)[0] == "ok"
        with pytest.raises(ValueError, match="two partition groups"):
            fabric.partition([[0, 1], [1, 2]])
        with pytest.raises(ValueError, match="percentage"):
            fabric.set_loss(120.0)
    finally:
        for s in servers:
            s.kill()
            s.wait()
        fabric.teardown()
    assert list_namespaces(f"{NS_PREFIX}{tag}-") == []


def test_namespaces_removed_when_the_body_fails(tag: str) -> None:
    fabric = NetnsFabric(tag)
    with pytest.raises(RuntimeError, match="midway"):
        try:
            fabric.create(2)
            raise RuntimeError("failure midway")
        finally:
            fabric.teardown()
    assert list_namespaces(f"{NS_PREFIX}{tag}-") == []
    fabric.teardown()  # idempotent


def test_delay_proxy_adds_latency(tag: str, tmp_path: Path) -> None:
    fabric = NetnsFabric(tag)
    procs: list[subprocess.Popen[str]] = []
    try:
        fabric.create(2)
        procs.append(start_server(fabric, 1, "127.0.0.1", 7421))
        control = tmp_path / "delay.json"
        write_delay(control, 0.1, 0.0)
        procs.append(
            subprocess.Popen(
                [
                    *fabric.exec_prefix(1), sys.executable, "-m", "node.testnet.netns", "proxy",
                    "--listen", f"{fabric.address(1)}:{PEER_PORT}",
                    "--target", "127.0.0.1:7421", "--control", str(control),
                ],
                text=True,
            )
        )  # fmt: skip
        deadline = time.monotonic() + 30
        status, rtt = "fail", float("nan")
        while time.monotonic() < deadline:
            status, rtt = probe(fabric, 0, 1, timeout=3.0)
            if status == "ok":
                break
            time.sleep(0.3)
        assert status == "ok"
        # 100 ms on the way in and 100 ms on the way back through the proxy.
        assert 0.19 <= rtt < 1.5, rtt
        write_delay(control, 0.0, 0.0)
        time.sleep(0.6)  # the proxy polls its control file every 0.25 s
        status, rtt = probe(fabric, 0, 1, timeout=3.0)
        assert status == "ok" and rtt < 0.15, rtt
        with pytest.raises(ValueError, match="jitter"):
            write_delay(control, 0.01, 0.05)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        fabric.teardown()


SIGNALLED = """
import signal, sys, time
# A shell's background job inherits SIGINT ignored (e.g. CI started with `&`); a testnet
# run from a terminal has Python's default handler, which is what this test is about.
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from node.training.genesis import Genesis
from node.testnet.netns import NetnsTestnet
tn = NetnsTestnet(Path(sys.argv[1]), Genesis(), 2, tag=sys.argv[2])
tn._install_handlers()
try:
    tn.fabric.create(2)
    print("up", flush=True)
    time.sleep(120)
finally:
    tn.stop()
    print("torn down", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_tears_down(tag: str, tmp_path: Path, sig: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED, str(tmp_path), tag], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    assert len(list_namespaces(f"{NS_PREFIX}{tag}-")) == 3
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert "torn down" in out
    assert list_namespaces(f"{NS_PREFIX}{tag}-") == []


def test_cleanup_command_removes_what_a_sigkilled_run_left(tag: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED, str(tmp_path), tag], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    proc.kill()  # no handler, no finally, no atexit: the namespaces stay
    proc.wait()
    assert len(list_namespaces(f"{NS_PREFIX}{tag}-")) == 3
    for _ in range(2):  # idempotent
        done = subprocess.run(
            [sys.executable, "-m", "node", "testnet", "cleanup", "--tag", tag],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert list_namespaces(f"{NS_PREFIX}{tag}-") == []
    assert "removed 0 namespace(s)" in done.stdout
    json.dumps(done.stdout)
