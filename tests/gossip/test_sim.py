"""Whole-protocol behaviour on the deterministic in-memory network (real Ed25519)."""

from __future__ import annotations

import math

import pytest

from node.gossip import GossipConfig, MemberState
from node.sim.gossip import SimNetwork, SimNode

LAN = GossipConfig.profile("lan")
GI, PI = LAN.gossip_interval, LAN.probe_interval


def build(n: int, seed: int, *, loss: float = 0.0) -> tuple[SimNetwork, SimNode]:
    net = SimNetwork(seed, LAN, loss=loss)
    boot = net.add_node()
    for _ in range(n - 1):
        net.add_node(join=[boot.address])
    return net, boot


@pytest.mark.parametrize("n", [16, 64])
def test_join_through_one_bootstrap_converges_within_goal(n: int) -> None:
    net, _ = build(n, seed=n)
    goal = 2 * math.log2(n) + 4
    t = net.run_until_true(net.full_view, step=GI, limit=goal * GI + 1e-9)
    assert t is not None, f"{n} nodes not converged within {goal} gossip intervals"
    assert t / GI <= goal
    assert net.count_states(MemberState.SUSPECT) == 0


def test_killed_members_are_detected_and_nobody_else_dies() -> None:
    n = 32
    net, _ = build(n, seed=7)
    net.run_until(5.0)
    assert net.full_view()
    victims = list(net.nodes.values())[1 : 1 + n // 10]
    for v in victims:
        net.kill(v.address)
    ids = [v.node_id for v in victims]
    limit = LAN.suspicion_max(n) + 10 * PI
    t = net.run_until_true(lambda: net.all_see(ids, [MemberState.DEAD]), step=PI, limit=limit)
    assert t is not None
    live = {x.node_id for x in net.live_nodes()}
    dead_seen = {m for (_, obs, m, st, _) in net.history if st == "dead" and obs in live}
    assert dead_seen == set(ids)
    assert net.full_view()  # the survivors still see one another alive


def test_no_false_dead_with_five_percent_loss() -> None:
    net, _ = build(64, seed=11, loss=0.05)
    net.run_until(120.0)
    assert not [h for h in net.history if h[3] == "dead"]
    # Everyone knows everyone; at most a suspicion or two is in flight at any instant.
    pairs = sum(len(x.core.state_digest()) for x in net.nodes.values())
    assert pairs == 64 * 63
    assert net.count_states(MemberState.SUSPECT) <= 3
    # Loss does cause suspicions, and they are refuted rather than confirmed.
    refuted = sum(x.core.stats["refuted"] for x in net.nodes.values())
    suspected = sum(x.core.stats["probe_failed"] for x in net.nodes.values())
    assert refuted >= 1 and suspected >= 1


def test_partition_then_heal_remerges() -> None:
    n = 32
    net, _ = build(n, seed=5)
    net.run_until(5.0)
    addrs = list(net.nodes)
    left, right = addrs[: n // 2], addrs[n // 2 :]
    net.partition([left, right])
    net.run_until(net.now + 30 * PI)
    # Each side has declared (or at least suspects) the other side.
    gone = net.count_states(MemberState.DEAD) + net.count_states(MemberState.SUSPECT)
    assert gone >= 2 * (n // 2) * (n // 2) * 0.9
    # ... while each side keeps its own half fully alive.
    assert net.full_view([net.nodes[x] for x in left])
    assert net.full_view([net.nodes[x] for x in right])
    net.heal()
    t = net.run_until_true(net.full_view, step=PI, limit=60 * PI)
    assert t is not None


def test_bootstrap_loss_keeps_views_and_admits_newcomers() -> None:
    net, boot = build(24, seed=3)
    net.run_until(5.0)
    net.kill(boot.address)
    rest = net.live_nodes()
    t = net.run_until_true(
        lambda: net.all_see([boot.node_id], [MemberState.DEAD]), step=PI, limit=120
    )
    assert t is not None and net.full_view(rest)
    newcomer = net.add_node(join=[rest[7].address])
    assert net.run_until_true(net.full_view, step=GI, limit=20 * GI) is not None
    assert len(newcomer.core.members(states=[MemberState.ALIVE])) == 23


def test_restarted_node_rejoins_from_persisted_peers_without_bootstrap() -> None:
    net, boot = build(8, seed=9)
    net.run_until(5.0)
    node = list(net.nodes.values())[3]
    stored = node.core.records()
    assert len(stored) == 7
    net.kill(boot.address)
    net.kill(node.address)
    net.run_until(net.now + 60)
    # Restart: same identity, new address, bootstrap gone; only the stored table helps.
    again = net.add_node(signer=node.core.signer, address="10.9.0.1:7000")
    assert again.core.restore(stored) == 7
    net.join(again, [boot.address])
    others = [x for x in net.live_nodes()]
    t = net.run_until_true(lambda: net.full_view(others), step=PI, limit=60)
    assert t is not None
    m = others[0].core.get(again.node_id)
    assert m is not None and m.address == "10.9.0.1:7000" and m.incarnation >= 1


def test_same_seed_same_history() -> None:
    def run(seed: int) -> list[tuple[float, bytes, bytes, str, int]]:
        net, _ = build(12, seed=seed, loss=0.05)
        net.run_until(20.0)
        net.kill(list(net.nodes)[5])
        net.run_until(60.0)
        return net.history

    a, b = run(21), run(21)
    assert a == b and len(a) > 100
    assert run(22) != a
