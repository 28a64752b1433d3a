"""The compose testnet harness: docker-compose against podman's API socket, each node's
status through the operator CLI inside its container, and always ``down -v`` at the end.

Why docker-compose (Debian's 1.29) against ``podman system service`` rather than Debian
12's podman-compose 1.0.3: the latter ignores ``profiles`` and ``depends_on`` conditions,
which the compose files (and Docker operators) rely on.

``FEDNODE_TEST_COMPOSE=1`` (set by ``.ci/run``) turns a missing podman, docker-compose or
image into a failure; without it the container tests skip with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "DEPLOY",
    "FEDNODE_IMAGE",
    "MAX_ROUNDS",
    "PROMETHEUS_IMAGE",
    "START_TIMEOUT",
    "TRAIN_TIMEOUT",
    "ComposeNet",
    "free_port",
    "run",
    "unavailable",
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
REQUIRED = os.environ.get("FEDNODE_TEST_COMPOSE") == "1"
FEDNODE_IMAGE = os.environ.get("FEDNODE_IMAGE", "fednode:latest")
PROMETHEUS_IMAGE = os.environ.get("FEDNODE_PROMETHEUS_IMAGE", "fednode-prometheus:latest")
MAX_ROUNDS = 10  # deploy/genesis.toml [rounds] max_rounds
# Slow shared machines: minutes, not seconds, for containers to start and train.
START_TIMEOUT = 300.0
TRAIN_TIMEOUT = 900.0


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"FEDNODE_TEST_COMPOSE=1 but {reason}")
    pytest.skip(reason)


def run(
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
            ps = run(
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
                run(["podman", "healthcheck", "run", cid], check=False, timeout=60)

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
        return run([*self.base, *args], env=self.env, timeout=timeout, check=check).stdout

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
        first = run(argv, env=self.env, timeout=START_TIMEOUT, check=False)
        if first.returncode != 0 and "no such process" in first.stdout + first.stderr:
            first = run(argv, env=self.env, timeout=START_TIMEOUT, check=False)
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
        return run(["podman", "exec", self.container(service), *argv], check=check, timeout=120)

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
