"""The compose testnet over mutual TLS (``docker-compose.tls.yml``): certificates from
``fednode certs`` in a one-shot container, the nodes form the network over TLS, and a peer
without a client certificate or without TLS is refused. Harness: ``compose_net.py``.
"""

from __future__ import annotations

import pytest
from compose_net import MAX_ROUNDS, START_TIMEOUT, TRAIN_TIMEOUT, ComposeNet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


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
