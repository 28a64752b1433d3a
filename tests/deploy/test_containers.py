"""The compose testnet for real: images built by ``deploy/build-images.sh``, containers
started by docker-compose against podman's API socket, nodes talking over the container
network by service name.

Each run costs minutes on a shared 2-core machine, so the runs are few and each has its own
file (this one and ``test_containers_tls.py``), which lets the two test workers take one
each:

* plain + ``byzantine`` + ``monitoring`` profiles: node0 and three more nodes (node3 the
  sign-flip attacker) in separate containers bootstrap from ``node0:7420``; full view,
  rounds advancing, every node's status through the operator CLI inside its container
  (``podman exec ... fednode status --format json``), Prometheus (Debian's package) scraping
  every node and answering a fednode metric on its HTTP API, honest accuracy despite the
  attacker, then ``kill -s KILL`` of one container and a restart that resumes from its
  volume (round, model hash, evaluation history, privacy ledger);
* mutual TLS (``docker-compose.tls.yml``, in ``test_containers_tls.py``).

The harness (docker-compose against podman's API socket) is ``compose_net.py``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from compose_net import (
    MAX_ROUNDS,
    START_TIMEOUT,
    TRAIN_TIMEOUT,
    ComposeNet,
    free_port,
    run,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


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
    port = free_port()
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
                n: run(
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
        run(["podman", "kill", "-s", "KILL", ids[victim]])
        # The restart policy (unless-stopped) may have restarted it already: then this
        # start is a no-op or reports the race; the status below is what counts.
        run(["podman", "start", ids[victim]], check=False)
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
