"""Round throughput and training fan-out under a Sybil flood, on real daemons (issue 12).

``--honest`` daemons train digits (``local`` gossip profile, rule ``mean``, 2 peers per
round); after they have trained ``--settle`` seconds, ``--sybils`` fresh identities are
started at once, each a real ``fednode start --no-train`` daemon (at nice 19) with a valid
proof of work at the network's difficulty, bootstrapping through the honest nodes in turn.
They answer gossip like any member and take no part in training. Once every Sybil daemon
is up (their start-up costs this machine's CPU, which a real attacker would spend on its
own), for ``--window`` seconds the bench counts:

- honest rounds per second (rounds the honest nodes completed in the window / window);
- the share of honest update pushes sent to Sybils: pushes the Sybil daemons received
  (``fednode_messages_received_total{kind="update"}``, counted once admitted, before the
  Sybil refuses them ``not_training``) over those plus the pushes honest nodes received
  from each other;
- Sybils in the honest views at the end (``peers_alive`` minus honest peers).

The same run without Sybils is the baseline. Every daemon is a fresh interpreter; the
honest ones use one torch thread.

    .venv/bin/python bench/bench_sybil_daemons.py [--honest 4] [--sybils 24] [--window 45]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import urllib.request
from pathlib import Path

from node.testnet.local import FixedLoopbackPorts, Testnet
from node.training.genesis import Genesis


class _NicedSybils(FixedLoopbackPorts):
    """Loopback ports chosen up front; Sybil daemons run at nice 19.

    The attacker's daemons would run on the attacker's machines: here they share the
    honest daemons' two cores, and at the lowest priority they take as little of the
    honest nodes' CPU as this machine allows.
    """

    def __init__(self, n: int, honest: int) -> None:
        super().__init__(n)
        self.honest = honest

    def command_prefix(self, index: int) -> list[str]:
        return [] if index < self.honest else ["nice", "-n", "19"]


def _genesis(honest: int, difficulty: int) -> Genesis:
    return Genesis.model_validate(
        {
            "network": {
                "name": "sybil-bench",
                "seed": 31,
                "pow_difficulty": difficulty,
                "gossip_profile": "local",
            },
            "task": {"name": "digits", "num_nodes": honest, "partition": "iid"},
            "aggregation": {"rule": "mean"},
            "rounds": {
                "peers_per_round": 2,
                "min_updates": 1,
                "round_timeout": 3.0,
                "eval_every": 1000,
            },
        }
    )


def _metric(net: Testnet, index: int, name: str, *labels: str) -> float:
    info = net.nodes[index].runtime()
    if info is None or not info.get("metrics"):
        return 0.0
    try:
        with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and all(lab in line for lab in labels)
    )


def _rounds(net: Testnet, honest: int) -> int:
    st = net.statuses()
    return sum(int(st.get(i, {}).get("round", 0)) for i in range(honest))


def run(
    honest: int, sybils: int, settle: float, window: float, difficulty: int
) -> dict[str, float]:
    """One run; the figures of the window after the (possible) flood."""
    root = Path(tempfile.mkdtemp(prefix="sybil-bench-"))
    n = honest + sybils
    net = Testnet(
        root,
        _genesis(honest, difficulty),
        n,
        node_args={i: ["--no-train"] for i in range(honest, n)},
        placement=_NicedSybils(n, honest),
        log_level="WARNING",
    )
    assert net.placement is not None
    t_mint = time.monotonic()
    net.prepare()  # mints every identity's proof of work in this process
    mint_s = time.monotonic() - t_mint
    received = 'kind="update"'
    try:
        for node in net.nodes[:honest]:
            net.spawn_node(node, None if node.index == 0 else net.placement.listen(0))
        net.wait_started(net.nodes[:honest], 150)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
            int(net.statuses().get(i, {}).get("round", 0)) < 1 for i in range(honest)
        ):
            time.sleep(0.5)
        time.sleep(settle)
        # The Sybils start first (their interpreters' start-up is this machine's CPU, not
        # the attack's); the window opens once every Sybil daemon is up.
        t_spawn = time.monotonic()
        for node in net.nodes[honest:]:
            net.spawn_node(node, net.placement.listen(node.index % honest))
        net.wait_started(net.nodes[honest:], 300)
        start_s = time.monotonic() - t_spawn
        r0 = _rounds(net, honest)
        h0 = sum(
            _metric(net, i, "fednode_messages_received_total", received) for i in range(honest)
        )
        s0 = sum(
            _metric(net, i, "fednode_messages_received_total", received) for i in range(honest, n)
        )
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        r1 = _rounds(net, honest)
        h1 = sum(
            _metric(net, i, "fednode_messages_received_total", received) for i in range(honest)
        )
        to_sybils = (
            sum(
                _metric(net, i, "fednode_messages_received_total", received)
                for i in range(honest, n)
            )
            - s0
        )
        st = net.statuses()
        in_view = [
            max(0, int(st.get(i, {}).get("peers_alive", 0)) - (honest - 1)) for i in range(honest)
        ]
        started = sum(1 for node in net.nodes[honest:] if node.runtime() is not None)
    finally:
        net.stop()
    pushes = (h1 - h0) + to_sybils
    return {
        "rounds_per_s": (r1 - r0) / honest / elapsed,
        "to_sybils": to_sybils / pushes if pushes else 0.0,
        "pushes": pushes,
        "sybils_in_view": sum(in_view) / len(in_view),
        "sybils_started": started,
        "mint_s": mint_s,
        "start_s": start_s,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--honest", type=int, default=4)
    p.add_argument("--sybils", type=int, default=24)
    p.add_argument("--settle", type=float, default=10.0, help="seconds of training before")
    p.add_argument("--window", type=float, default=45.0)
    p.add_argument("--difficulty", type=int, default=8, help="network pow_difficulty (bits)")
    a = p.parse_args()
    print(f"# load average at start: {os.getloadavg()[0]:.1f} (2 cores shared)")
    rows = [
        ("no attack", run(a.honest, 0, a.settle, a.window, a.difficulty)),
        (f"{a.sybils} Sybils", run(a.honest, a.sybils, a.settle, a.window, a.difficulty)),
    ]
    print(f"# load average at end: {os.getloadavg()[0]:.1f}")
    print(
        "| run | honest rounds/s per node | honest pushes | share sent to Sybils "
        "| Sybils in an honest view (mean, end) | Sybil start-up s |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['rounds_per_s']:.2f} | {r['pushes']:.0f} "
            f"| {100 * r['to_sybils']:.1f} % "
            f"| {r['sybils_in_view']:.1f} of {r['sybils_started']:.0f} started "
            f"| {r['start_s']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
