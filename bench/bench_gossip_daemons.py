"""Membership over real gRPC: N daemon processes on loopback.

Usage::

    .venv/bin/python bench/bench_gossip_daemons.py [--nodes 16] [--soak 600] [--profile lan]

Measures, with membership-only daemons (``--no-train``):

1. seconds until every node lists every other as alive, all joining through node 0;
2. a fault-free soak of ``--soak`` seconds: number of times any live node saw another live
   node as ``dead`` (false dead; the goal is zero) and as ``suspect``;
3. kill 10% of the nodes (SIGKILL): seconds until every live node marks them dead;
4. kill the bootstrap node: the others keep full views; a newcomer joining through a
   random surviving member reaches a full view (seconds).
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.testnet.local import Testnet, TestnetNode  # noqa: E402
from node.training.genesis import Genesis  # noqa: E402


def peer_states(net: Testnet, node: TestnetNode) -> dict[str, str]:
    try:
        with node.client(timeout=3) as client:
            return {p.node_id: p.state for p in client.peers().peers}
    except Exception:
        return {}


def node_ids(net: Testnet) -> dict[int, str]:
    return {i: s["node_id"] for i, s in net.statuses().items()}


def wait_until(pred, timeout: float, step: float = 0.2) -> float | None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--soak", type=float, default=600.0)
    parser.add_argument("--profile", default="lan")
    ns = parser.parse_args()
    genesis = Genesis.model_validate(
        {
            "network": {
                "name": "gossip-bench",
                "seed": 3,
                "pow_difficulty": 8,
                "gossip_profile": ns.profile,
            },
            "task": {"name": "digits", "num_nodes": ns.nodes + 1},
        }
    )
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        net = Testnet(
            Path(tmp),
            genesis,
            ns.nodes + 1,
            node_args={i: ["--no-train"] for i in range(ns.nodes + 1)},
            log_level="WARNING",
        )
        newcomer = net.nodes[-1]
        members = net.nodes[:-1]
        try:
            net.prepare()
            net.start_node(members[0], None)
            t_spawn = time.monotonic()
            for node in members[1:]:
                net.spawn_node(node, members[0].address)
            net.wait_started(members[1:], timeout=120)
            started = time.monotonic() - t_spawn
            ids = node_ids(net)

            def full_view() -> bool:
                for node in members:
                    states = peer_states(net, node)
                    alive = {k for k, v in states.items() if v == "alive"}
                    if len(alive) < len(members) - 1:
                        return False
                return True

            t_view = wait_until(full_view, 120)
            rows.append((f"{ns.nodes} daemons: all processes up", f"{started:.1f} s"))
            rows.append(
                (
                    f"{ns.nodes} daemons: full view after last start",
                    "timeout" if t_view is None else f"{t_view:.1f} s",
                )
            )

            false_dead = suspects = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < ns.soak:
                for node in members:
                    for state in peer_states(net, node).values():
                        false_dead += state == "dead"
                        suspects += state == "suspect"
                time.sleep(2.0)
            rows.append(
                (f"fault-free soak {ns.soak:.0f} s: false dead observations", str(false_dead))
            )
            rows.append(("fault-free soak: suspect observations", str(suspects)))

            victims = random.Random(1).sample(members[1:], max(1, len(members) // 10))
            victim_ids = {ids[v.index] for v in victims}
            for v in victims:
                net.signal_node(v, signal.SIGKILL)
            live = [n for n in members if n not in victims]

            def detected() -> bool:
                for node in live:
                    states = peer_states(net, node)
                    if any(states.get(vid) != "dead" for vid in victim_ids):
                        return False
                return True

            t_dead = wait_until(detected, 120, step=0.5)
            rows.append(
                (
                    f"kill {len(victims)} (10%): all live nodes mark them dead",
                    "timeout" if t_dead is None else f"{t_dead:.1f} s",
                )
            )

            boot = members[0]
            net.signal_node(boot, signal.SIGKILL)
            rest = [n for n in live if n is not boot]
            time.sleep(5)

            def rest_full() -> bool:
                for node in rest:
                    states = peer_states(net, node)
                    alive = {k for k, v in states.items() if v == "alive"}
                    if not {ids[r.index] for r in rest if r is not node} <= alive:
                        return False
                return True

            rows.append(
                ("bootstrap killed: survivors keep full views", "yes" if rest_full() else "no")
            )
            contact = random.Random(2).choice(rest)
            t_new = time.monotonic()
            net.start_node(newcomer, contact.address)

            def newcomer_full() -> bool:
                states = peer_states(net, newcomer)
                alive = {k for k, v in states.items() if v == "alive"}
                return {ids[r.index] for r in rest} <= alive

            t_join = wait_until(newcomer_full, 60)
            rows.append(
                (
                    "newcomer via a random member: full view",
                    "timeout"
                    if t_join is None
                    else f"{time.monotonic() - t_new:.1f} s incl. start-up",
                )
            )
        finally:
            net.stop()
    print(f"fednode membership over gRPC, {ns.nodes} daemons, profile {ns.profile}, 2 cores")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        f"reproduce: .venv/bin/python bench/bench_gossip_daemons.py --nodes {ns.nodes} "
        f"--soak {ns.soak:.0f} --profile {ns.profile}"
    )


if __name__ == "__main__":
    main()
