"""The compose testnet for real: images built by ``deploy/build-images.sh``, containers
started by docker-compose against podman's API socket, nodes talking over the container
network by service name.

Two runs, kept few because each costs minutes on a shared 2-core machine:

* plain + ``byzantine`` + ``monitoring`` profiles: node0 and three more nodes (node3 the
  sign-flip attacker) in separate containers bootstrap from ``node0:7420``; full view,
  rounds advancing, every node's status through the operator CLI inside its container
  (``podman exec ... fednode status --format json``), Prometheus (Debian's package) scraping
  every node and answering a fednode metric on its HTTP API, honest accuracy despite the
  attacker, then ``kill -s KILL`` of one container and a restart that resumes from its
  volume (round, model hash, evaluation history, privacy ledger);
* mutual TLS (``docker-compose.tls.yml``): certificates from ``fednode certs`` in a one-shot
  container, the nodes form the network over TLS, and a peer without a client certificate
  or without TLS is refused.

Why docker-compose (Debian's 1.29) against ``podman system service`` rather than Debian
12's podman-compose 1.0.3: the latter ignores ``profiles`` and ``depends_on`` conditions,
which the compose files (and Docker operators) rely on.

``FEDNODE_TEST_COMPOSE=1`` (set by ``.ci/run``) turns a missing podman, docker-compose or
image into a failure; without it these tests skip with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
REQUIRED = os.environ.get("FEDNODE_TEST_COMPOSE") == "1"
FEDNODE_IMAGE = os.environ.get("FEDNODE_IMAGE", "fednode:latest")
PROMETHEUS_IMAGE = os.environ.get("FEDNODE_PROMETHEUS_IMAGE", "fednode-prometheus:latest")
MAX_ROUNDS = 10  # deploy/genesis.toml [rounds] max_rounds
# Slow shared machines: minutes, not seconds, for containers to start and train.
START_TIMEOUT = 300.0
TRAIN_TIMEOUT = 900.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"FEDNODE_TEST_COMPOSE=1 but {reason}")
    pytest.skip(reason)


def _run(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """podman's Docker-compatible API on a private socket; yields docker-compose's env."""
    for tool in ("podman", "docker-compose"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (apt-get install podman docker-compose)")
    for image in (FEDNODE_IMAGE, PROMETHEUS_IMAGE):
        if _run(["podman", "image", "exists", image], check=False).returncode != 0:
            _unavailable(f"image {image} is missing (run deploy/build-images.sh)")
    sock = tmp_path_factory.mktemp("podman") / "api.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert service.poll() is None, "podman system service exited"
            assert time.monotonic() < deadline, "podman API socket did not appear"
            time.sleep(0.1)
        env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{sock}",
            "FEDNODE_IMAGE": FEDNODE_IMAGE,
            "FEDNODE_PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
            "COMPOSE_HTTP_TIMEOUT": "300",
        }
        yield env
    finally:
        service.terminate()
        try:
            service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


class HealthTicker(threading.Thread):
    """Run the containers' HEALTHCHECK every few seconds (``podman healthcheck run``).

    podman 4.3 schedules health checks with systemd timers; on a machine without systemd
    (CI containers) nothing runs them and a container stays "starting". Running the
    image's own check is what the timer would do, so the test can require "healthy".
    """

    def __init__(self, project: str, interval: float = 3.0) -> None:
        super().__init__(daemon=True, name=f"health-{project}")
        self.project = project
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            ps = _run(
                [
                    "podman",
                    "ps",
                    "-q",
                    "--filter",
                    f"label=com.docker.compose.project={self.project}",
                ],
                check=False,
                timeout=60,
            )
            for cid in ps.stdout.split():
                # Containers without a HEALTHCHECK (Prometheus) just answer an error.
                _run(["podman", "healthcheck", "run", cid], check=False, timeout=60)

    def stop(self) -> None:
        self.stopped.set()
        self.join(90)


class ComposeNet:
    """One compose project: up, status through the CLI in each container, always down."""

    def __init__(
        self,
        env: dict[str, str],
        project: str,
        files: list[str],
        profiles: list[str],
        services: list[str],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.project = project
        self.services = services
        self.env = {**env, **(extra_env or {})}
        self.base = ["docker-compose", "-p", project]
        for f in files:
            self.base += ["-f", str(DEPLOY / f)]
        for p in profiles:
            self.base += ["--profile", p]

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        return _run([*self.base, *args], env=self.env, timeout=timeout, check=check).stdout

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "10", check=False)

    @contextlib.contextmanager
    def running(self) -> Iterator[ComposeNet]:
        """Up, yield, and always down -v: on success, failure, Ctrl-C and SIGTERM."""
        self.down()  # leftovers of a run that was killed outright
        atexit.register(self.down)
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_term)
        ticker = HealthTicker(self.project)
        ticker.start()
        try:
            self._up()
            yield self
        except BaseException:
            print(self.logs())
            raise
        finally:
            ticker.stop()
            self.down()
            atexit.unregister(self.down)
            signal.signal(signal.SIGTERM, previous)

    def _up(self) -> None:
        """``up -d`` the services, once more if podman lost its race with an exited container.

        podman's Docker-compatible API can fail ``up`` with ``read /proc/N/cgroup: no such
        process`` when a container it inspects has just exited (the one-shot ``certs``
        container of the TLS file): nothing is wrong with the containers, and a second ``up``
        finds ``certs`` completed and starts the rest. Any other failure fails at once.
        """
        argv = [*self.base, "up", "-d", "--no-build", *self.services]
        first = _run(argv, env=self.env, timeout=START_TIMEOUT, check=False)
        if first.returncode != 0 and "no such process" in first.stdout + first.stderr:
            first = _run(argv, env=self.env, timeout=START_TIMEOUT, check=False)
        if first.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {first.returncode}\n"
                f"{first.stdout[-3000:]}\n{first.stderr[-3000:]}"
            )

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).strip()
        assert cid, f"no container for {service}"
        return cid

    def exec(
        self, service: str, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(["podman", "exec", self.container(service), *argv], check=check, timeout=120)

    def status(self, service: str) -> dict[str, Any] | None:
        """``fednode status --format json`` inside the container; None while it is down."""
        proc = self.exec(service, "fednode", "status", "--format", "json", check=False)
        if proc.returncode != 0:
            return None
        data: dict[str, Any] = json.loads(proc.stdout)
        if data.get("state") == "starting":  # daemon up, daemon.json not yet written
            return None
        return data

    def statuses(self, services: list[str]) -> dict[str, dict[str, Any] | None]:
        return {s: self.status(s) for s in services}

    def wait(
        self,
        services: list[str],
        ok: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float,
    ) -> dict[str, dict[str, Any]]:
        """Poll every node's status until ``ok`` holds for all; fail with the last ones."""
        deadline = time.monotonic() + timeout
        last: dict[str, dict[str, Any] | None] = {}
        while time.monotonic() < deadline:
            last = self.statuses(services)
            if all(s is not None and ok(s) for s in last.values()):
                return {k: v for k, v in last.items() if v is not None}
            time.sleep(3)
        brief = {
            k: None if v is None else {f: v.get(f) for f in ("round", "peers_alive", "state")}
            for k, v in last.items()
        }
        raise AssertionError(f"{what}: not within {timeout:.0f} s; last statuses {brief}")

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "30", check=False, timeout=120)


def _prometheus(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _wait_prometheus(port: int, query: str, ok: Callable[[list[dict[str, Any]]], bool]) -> Any:
    deadline = time.monotonic() + 180
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = _prometheus(port, query)
            if ok(last):
                return last
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(3)
    raise AssertionError(f"Prometheus {query!r}: last answer {last}")


def _ledger(status: dict[str, Any]) -> dict[str, Any]:
    """The privacy ledger's view in a status: what a restart must not lose."""
    return {
        level: {k: status[level][k] for k in ("epsilon_spent", "steps", "releases")}
        for level in ("node_privacy", "record_privacy")
    }


NODES = ["node0", "node1", "node2", "node3"]
HONEST = ["node0", "node1", "node2"]


def test_testnet_byzantine_monitoring_kill_and_restart(engine: dict[str, str]) -> None:
    port = _free_port()
    net = ComposeNet(
        engine,
        "fednode-test-plain",
        ["docker-compose.yml"],
        ["byzantine", "monitoring"],
        [*NODES, "prometheus"],  # Grafana: no Debian package, no registry (docs/deploy.md)
        {"FEDNODE_PROMETHEUS_PORT": str(port)},
    )
    with net.running():
        ids = {s: net.container(s) for s in NODES}
        assert len(set(ids.values())) == len(NODES), "one container per node"

        # Full view over the container network: each sees the three others alive.
        first = net.wait(NODES, lambda s: s["peers_alive"] >= 3, "full view", START_TIMEOUT)
        for name, s in first.items():
            # The JSON status is typed: counters are numbers, not strings.
            for field in ("round", "peers_alive", "bytes_sent", "pid"):
                assert type(s[field]) is int, f"{name} {field}={s[field]!r}"
            assert s["state"] == "running" and s["network_name"] == "testnet-digits"
        assert len({s["node_id"] for s in first.values()}) == len(NODES)
        assert len({s["network_id"] for s in first.values()}) == 1
        # The image's HEALTHCHECK (`fednode health`, dialed like a peer) passes.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            health = {
                n: _run(
                    ["podman", "inspect", "--format", "{{.State.Health.Status}}", ids[n]]
                ).stdout.strip()
                for n in NODES
            }
            if set(health.values()) == {"healthy"}:
                break
            assert time.monotonic() < deadline, f"health: {health}"
            time.sleep(3)

        # Rounds advance on every node.
        start = {n: s["round"] for n, s in first.items()}
        net.wait(
            NODES,
            lambda s: s["round"] >= min(MAX_ROUNDS, min(start.values()) + 2),
            "rounds advancing",
            TRAIN_TIMEOUT,
        )

        # Prometheus (Debian's package) scrapes all four nodes; read a fednode metric.
        up = _wait_prometheus(
            port,
            'up{job="fednode"}',
            lambda r: len(r) == 4 and all(x["value"][1] == "1" for x in r),
        )
        assert {x["metric"]["node"] for x in up} == set(NODES)
        rounds = _wait_prometheus(
            port,
            "fednode_round",
            lambda r: len(r) == 4 and all(float(x["value"][1]) >= 1 for x in r),
        )
        assert {x["metric"]["node"] for x in rounds} == set(NODES)

        # Training ends at max_rounds; the median rule (f = 1) keeps honest accuracy
        # although node3 sends sign-flipped updates.
        done = net.wait(NODES, lambda s: s["round"] >= MAX_ROUNDS, "all rounds", TRAIN_TIMEOUT)
        for name in HONEST:
            assert done[name]["last_accuracy"] > 0.5, (name, done[name]["last_accuracy"])

        # kill -s KILL one container, restart it: it resumes from its volume.
        victim = "node2"
        before = done[victim]
        assert before["history"], "evaluations recorded before the kill"
        _run(["podman", "kill", "-s", "KILL", ids[victim]])
        # The restart policy (unless-stopped) may have restarted it already: then this
        # start is a no-op or reports the race; the status below is what counts.
        _run(["podman", "start", ids[victim]], check=False)
        after = net.wait(
            [victim],
            # learner is set once the training runtime is attached: before that (a few
            # seconds after the admin socket answers) a status reports round 0.
            lambda s: s["uptime_s"] < before["uptime_s"] and bool(s["learner"]),
            "restart",
            START_TIMEOUT,
        )[victim]
        assert net.container(victim) == ids[victim], "same container, same volume"
        assert after["node_id"] == before["node_id"]
        assert after["round"] == before["round"]
        assert after["model_hash"] == before["model_hash"]
        # The accuracy curve survives (the time of each evaluation may be re-read from
        # the event log, a few ms off: not compared).
        curve = [(h["round"], h["accuracy"], h["loss"]) for h in before["history"]]
        assert [(h["round"], h["accuracy"], h["loss"]) for h in after["history"]] == curve, (
            "evaluation history lost in the restart"
        )
        assert after["last_accuracy"] == before["last_accuracy"]
        assert _ledger(after) == _ledger(before)
        # And it is back in everyone's view, and a finished node stays finished.
        back = net.wait(NODES, lambda s: s["peers_alive"] >= 3, "view after restart", START_TIMEOUT)
        assert back[victim]["round"] == MAX_ROUNDS, "trained past max_rounds after restart"


def test_tls_testnet(engine: dict[str, str]) -> None:
    honest = ["node0", "node1", "node2"]
    net = ComposeNet(
        engine,
        "fednode-test-tls",
        ["docker-compose.yml", "docker-compose.tls.yml"],
        [],
        honest,  # certs runs first: depends_on service_completed_successfully
    )
    with net.running():
        first = net.wait(honest, lambda s: s["peers_alive"] >= 2, "TLS full view", START_TIMEOUT)
        assert all(s["listen"].endswith(":7420") for s in first.values())
        start = min(s["round"] for s in first.values())
        net.wait(
            honest,
            lambda s: s["round"] >= min(MAX_ROUNDS, start + 2),
            "TLS rounds advancing",
            TRAIN_TIMEOUT,
        )
        # The HEALTHCHECK dials like a peer: over mutual TLS with the node's certificate.
        health = net.exec("node0", "fednode", "health", "--timeout", "10")
        assert "SERVING" in health.stdout
        cross = net.exec(
            "node0",
            "fednode",
            "health",
            "-a",
            "node1:7420",
            "--timeout",
            "10",
            "--tls-ca",
            "/certs/node0/ca.crt",
            "--tls-cert",
            "/certs/node0/node.crt",
            "--tls-key",
            "/certs/node0/node.key",
        )
        assert "SERVING" in cross.stdout
        # Without TLS, or TLS without a client certificate: refused.
        plain = net.exec(
            "node0", "fednode", "health", "-a", "node1:7420", "--timeout", "5", check=False
        )
        assert plain.returncode != 0, plain.stdout
        no_client_cert = net.exec(
            "node0",
            "fednode",
            "health",
            "-a",
            "node1:7420",
            "--timeout",
            "5",
            "--tls-ca",
            "/certs/node0/ca.crt",
            check=False,
        )
        assert no_client_cert.returncode != 0, no_client_cert.stdout
