"""In-memory measurements of fednode's membership protocol (issue 3).

Runs the sans-I/O cores on the deterministic virtual-time network
(:mod:`node.sim.gossip`) with the ``lan`` profile (probe interval 1 s, gossip interval
0.2 s), 1-5 ms one-way latency and real Ed25519 signatures, and measures:

1. convergence: N in {16, 64, 256} nodes all joining through one bootstrap node at t=0 →
   gossip intervals until every node lists every other as alive (goal 2*log2(N)+4);
2. failure detection: kill 10 % of the nodes → probe intervals until every live node marks
   all of them dead; false "dead" verdicts about live nodes;
3. false dead under loss: 64 nodes, 5 % of all messages lost, 10 virtual minutes;
4. partition: halves for 30 probe intervals, then heal → probe intervals until views agree;
5. bootstrap loss: kill the bootstrap after the joins → the rest keep full views; a
   newcomer joins through a random member → gossip intervals to a full view;
6. staggered joins (one every 10 ms) → gossip intervals after the last join;
7. the asyncio driver over the in-memory async transport in real time (16 nodes, local
   profile): seconds to a full view and to detect 10 % killed (a stand-in until the
   16-daemon gRPC measurement exists).

Usage::

    .venv/bin/python bench/bench_gossip.py            # full run, rewrites docs/gossip.md
    .venv/bin/python bench/bench_gossip.py --quick    # smaller, no docs update

The results section of docs/gossip.md (between the bench markers) is rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from node.base.identity import verify_signature
from node.gossip import (
    AsyncMemoryNetwork,
    GossipConfig,
    Membership,
    MembershipDriver,
    MemberState,
)
from node.sim.gossip import SimNetwork, SimNode, deterministic_identity

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "gossip.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

CFG = GossipConfig.profile("lan")
GI, PI = CFG.gossip_interval, CFG.probe_interval


def build(
    n: int, seed: int, *, loss: float = 0.0, fast: bool = False
) -> tuple[SimNetwork, SimNode]:
    net = SimNetwork(seed, CFG, loss=loss, fast_crypto=fast, record_history=True)
    boot = net.add_node()
    for _ in range(n - 1):
        net.add_node(join=[boot.address])
    return net, boot


def until(net: SimNetwork, pred: Callable[[], bool], step: float, limit: float) -> float | None:
    t0 = net.now
    t = net.run_until_true(pred, step=step, limit=limit)
    return None if t is None else t - t0


def convergence(n: int, seeds: list[int], fast: bool) -> dict[str, object]:
    out = []
    wall = time.perf_counter()
    for s in seeds:
        net, _ = build(n, s, fast=fast)
        t = until(net, net.full_view, GI, 60.0)
        out.append(math.inf if t is None else t / GI)
    goal = 2 * math.log2(n) + 4
    return {
        "n": n,
        "runs": len(seeds),
        "median": statistics.median(out),
        "max": max(out),
        "goal": goal,
        "ok": max(out) <= goal,
        "wall_s": (time.perf_counter() - wall) / len(seeds),
    }


def staggered(n: int, seed: int, gap: float, fast: bool) -> dict[str, object]:
    wall = time.perf_counter()
    net = SimNetwork(seed, CFG, fast_crypto=fast)
    boot = net.add_node()
    for _ in range(n - 1):
        net.run_until(net.now + gap)
        net.add_node(join=[boot.address])
    t = until(net, net.full_view, GI, 60.0)
    return {
        "n": n,
        "join_gap_s": gap,
        "after_last_join_gi": None if t is None else t / GI,
        "goal": 2 * math.log2(n) + 4,
        "wall_s": time.perf_counter() - wall,
    }


async def _driver_run(n: int, profile: str) -> dict[str, object]:
    cfg = GossipConfig.profile(profile)
    net = AsyncMemoryNetwork(latency=0.001)
    drivers = []
    for i in range(n):
        ident = deterministic_identity(b"bench-drv-%d" % i)
        core = Membership(
            ident,
            f"127.0.0.1:{7200 + i}",
            cfg,
            b"\x01" * 32,
            0,
            random.Random(i),
            now=time.monotonic(),
        )
        d = MembershipDriver(core, net.transport(core.node_id))
        net.register(core.address, core.node_id, d.handle)
        drivers.append(d)
    stops = [asyncio.Event() for _ in drivers]
    tasks = [asyncio.create_task(d.run(e)) for d, e in zip(drivers, stops, strict=True)]

    def full(ds: list[MembershipDriver]) -> bool:
        want = {d.core.node_id for d in ds}
        return all(
            {m.node_id for m in d.core.members(states=[MemberState.ALIVE])}
            == want - {d.core.node_id}
            for d in ds
        )

    async def wait(pred: Callable[[], bool], limit: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if pred():
                return time.monotonic() - t0
            await asyncio.sleep(0.01)
        return None

    t0 = time.monotonic()
    for d in drivers[1:]:
        d.join([drivers[0].core.address])
    t_full = await wait(lambda: full(drivers), 30.0)
    k = max(1, n // 10)
    victims = drivers[-k:]
    for v, e in zip(victims, stops[-k:], strict=True):
        net.unregister(v.core.address)
        e.set()
    rest = drivers[:-k]
    ids = [v.core.node_id for v in victims]
    t_dead = await wait(
        lambda: all(
            (m := d.core.get(i)) is not None and m.state is MemberState.DEAD
            for d in rest
            for i in ids
        ),
        120.0,
    )
    for e in stops:
        e.set()
    await asyncio.gather(*tasks)
    false_dead = sum(
        1 for d in rest for m in d.core.members(states=[MemberState.DEAD]) if m.node_id not in ids
    )
    return {
        "n": n,
        "profile": profile,
        "full_view_s": t_full,
        "killed": k,
        "all_dead_s": t_dead,
        "false_dead": false_dead,
        "wall_s": time.monotonic() - t0,
    }


def driver_realtime(n: int, profile: str) -> dict[str, object]:
    return asyncio.run(_driver_run(n, profile))


def detection(n: int, seed: int, fast: bool) -> dict[str, object]:
    wall = time.perf_counter()
    net, _ = build(n, seed, fast=fast)
    net.run_until(10.0)
    assert net.full_view(), "not converged before the failure test"
    k = max(1, n // 10)
    victims = random.Random(seed).sample(list(net.nodes.values()), k)
    for v in victims:
        net.kill(v.address)
    ids = [v.node_id for v in victims]
    t_start = net.now
    done: dict[bytes, float] = {}

    def all_dead() -> bool:
        for i in ids:
            if i not in done and net.all_see([i], [MemberState.DEAD]):
                done[i] = net.now - t_start
        return len(done) == len(ids)

    until(net, all_dead, 0.1, 300)
    times = sorted(done.values())
    live = {x.node_id for x in net.live_nodes()}
    false_dead = sum(
        1 for (_, obs, m, st, _) in net.history if st == "dead" and obs in live and m in live
    )
    return {
        "n": n,
        "killed": k,
        "first_dead_everywhere_pi": times[0] / PI if times else None,
        "median_pi": statistics.median(times) / PI if times else None,
        "all_dead_everywhere_pi": times[-1] / PI if len(times) == k else None,
        "false_dead": false_dead,
        "wall_s": time.perf_counter() - wall,
    }


def lossy(n: int, seed: int, minutes: float, loss: float, fast: bool) -> dict[str, object]:
    wall = time.perf_counter()
    net, _ = build(n, seed, loss=loss, fast=fast)
    net.run_until(minutes * 60)
    dead = sum(1 for h in net.history if h[3] == "dead")
    suspicions = sum(x.core.stats["probe_failed"] for x in net.nodes.values())
    refuted = sum(x.core.stats["refuted"] for x in net.nodes.values())
    return {
        "n": n,
        "loss": loss,
        "minutes": minutes,
        "false_dead": dead,
        "suspicions": suspicions,
        "refutations": refuted,
        "messages": net.messages,
        "wall_s": time.perf_counter() - wall,
    }


def partition(n: int, seed: int, fast: bool) -> dict[str, object]:
    wall = time.perf_counter()
    net, _ = build(n, seed, fast=fast)
    net.run_until(10.0)
    addrs = list(net.nodes)
    random.Random(seed).shuffle(addrs)
    net.partition([addrs[: n // 2], addrs[n // 2 :]])
    net.run_until(net.now + 30 * PI)
    dead = net.count_states(MemberState.DEAD)
    net.heal()
    t = until(net, net.full_view, 0.1, 600)
    return {
        "n": n,
        "cross_dead_pairs": dead,
        "cross_pairs": 2 * (n // 2) * (n - n // 2),
        "heal_pi": None if t is None else t / PI,
        "wall_s": time.perf_counter() - wall,
    }


def bootstrap_loss(n: int, seed: int, fast: bool) -> dict[str, object]:
    wall = time.perf_counter()
    net, boot = build(n, seed, fast=fast)
    net.run_until(10.0)
    net.kill(boot.address)
    rest = net.live_nodes()
    t = until(net, lambda: net.all_see([boot.node_id], [MemberState.DEAD]), 0.1, 300)
    kept = net.full_view(rest)
    entry = random.Random(seed).choice(rest)
    net.add_node(join=[entry.address])
    t2 = until(net, net.full_view, GI, 60)
    return {
        "n": n,
        "boot_dead_pi": None if t is None else t / PI,
        "rest_full_view": kept,
        "newcomer_gi": None if t2 is None else t2 / GI,
        "wall_s": time.perf_counter() - wall,
    }


def crypto_cost() -> dict[str, float]:
    ident = deterministic_identity(b"bench")
    msg = bytes(200)
    t = time.perf_counter()
    for _ in range(500):
        sig = ident.sign(msg)
    sign_us = (time.perf_counter() - t) / 500 * 1e6
    t = time.perf_counter()
    for _ in range(500):
        verify_signature(ident.public_key, sig, msg)
    return {"sign_us": sign_us, "verify_us": (time.perf_counter() - t) / 500 * 1e6}


def fmt(x: object) -> str:
    if x is None:
        return "not reached"
    if isinstance(x, float):
        return "inf" if math.isinf(x) else (f"{x:.1f}" if abs(x) >= 1 else f"{x:.3g}")
    return str(x)


def table(title: str, rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    lines = [f"**{title}**", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes; do not touch docs")
    ap.add_argument(
        "--fast-crypto",
        action="store_true",
        help="hash stand-in for Ed25519 (simulation only; faster)",
    )
    ns = ap.parse_args(argv)
    fast = ns.fast_crypto
    sizes = [16, 64] if ns.quick else [16, 64, 256]
    t0 = time.perf_counter()
    sections = []
    cc = crypto_cost()
    conv = [convergence(n, [1, 2, 3] if n < 256 else [1], fast) for n in sizes]
    sections.append(table("Convergence (gossip intervals of 0.2 s; goal 2*log2(N)+4)", conv))
    print(sections[-1], "\n", flush=True)
    stag = [staggered(n, 4, 0.01, fast) for n in sizes]
    sections.append(
        table(
            "Convergence after staggered joins (one every 10 ms through the "
            "bootstrap; gossip intervals after the last join)",
            stag,
        )
    )
    print(sections[-1], "\n", flush=True)
    det = [detection(n, 7, fast) for n in sizes[-2:]]
    sections.append(table("Failure detection after killing 10% (probe intervals of 1 s)", det))
    print(sections[-1], "\n", flush=True)
    lo = [lossy(64, 11, 2.0 if ns.quick else 10.0, 0.05, fast)]
    sections.append(table("False dead under 5% message loss (64 nodes)", lo))
    print(sections[-1], "\n", flush=True)
    part = [partition(n, 5, fast) for n in ([32] if ns.quick else [64])]
    sections.append(table("Partition into halves for 30 probe intervals, then heal", part))
    print(sections[-1], "\n", flush=True)
    boot = [bootstrap_loss(n, 3, fast) for n in ([32] if ns.quick else [64])]
    sections.append(table("Bootstrap killed after the joins", boot))
    print(sections[-1], "\n", flush=True)
    drv = [driver_realtime(16, "local")]
    sections.append(
        table(
            "asyncio driver, in-memory async transport, REAL time (seconds; "
            "local profile; not gRPC)",
            drv,
        )
    )
    print(sections[-1], "\n", flush=True)
    total = time.perf_counter() - t0
    cmd = (
        "OMP_NUM_THREADS=1 .venv/bin/python bench/bench_gossip.py"
        + (" --quick" if ns.quick else "")
        + (" --fast-crypto" if fast else "")
    )
    header = (
        f"Measured on {platform.machine()} with 2 shared cores, Python "
        f"{sys.version.split()[0]}, in virtual time (lan profile, 1-5 ms latency, "
        f"{'hash stand-in signatures' if fast else 'real Ed25519'}); bench wall time "
        f"{total:.0f} s. Ed25519 here: sign {cc['sign_us']:.0f} us, verify "
        f"{cc['verify_us']:.0f} us.\n\nReproduce: `{cmd}`"
    )
    report = header + "\n\n" + "\n\n".join(sections)
    print(header)
    if not ns.quick:
        text = DOC.read_text() if DOC.exists() else f"# Gossip\n\n{START}\n{END}\n"
        pre, _, rest = text.partition(START)
        _, _, post = rest.partition(END)
        DOC.write_text(pre + START + "\n" + report + "\n" + END + post)
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
