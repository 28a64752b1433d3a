"""Membership vs Sybils, and honest scale under the admission budgets (issue 12).

Runs the sans-I/O cores on the virtual-time simulator (:mod:`node.sim.gossip`), ``lan``
profile, 1-5 ms latency, with ``fast_crypto=True``: signatures are a keyed hash and the
proof of work is off (difficulty 0). That is a simulation shortcut: it makes minting 1,000
identities free, which is the attacker's *best* case (real identities cost ~90 CPU-s each
at the default difficulty); the protocol logic under test is the same.

1. **Honest scale**: N in {1024, 4096} nodes join through one bootstrap, spread evenly
   over 10 s. Reported: gossip intervals (0.2 s) from the last join until every node lists
   every other as live, against the goal ``2*log2(N)+4`` plus the admission delay of the
   introduction budgets, ``max(0, (N-1-burst_global)/rate_global - W)`` seconds (W = 10 s
   join window; see docs/gossip.md).
2. **Sybil burst**: H honest nodes run for 300 s (their members become established), then
   1,000 fresh identities (each a real core that answers every probe but runs no timers of
   its own: ``SimNetwork.add_node(passive=True)``) join through random honest nodes
   within 1 s. Reported at +5/+30/+60/+120 s: share of Sybils in honest views,
   share of ``sample(4)`` (training's fan-out) that picks a Sybil, with the standing
   preference (default) and without it (uniform, the behaviour before issue 12), and the
   same for a no-attack run.

Usage::

    .venv/bin/python bench/bench_gossip_sybil.py                 # everything, prints tables
    .venv/bin/python bench/bench_gossip_sybil.py --scale 1024    # one honest-scale run
    .venv/bin/python bench/bench_gossip_sybil.py --sybil-only
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import resource
import sys
import time

from node.gossip import GossipConfig, MemberState
from node.sim.gossip import SimNetwork, SimNode

CFG = GossipConfig.profile("lan")
GI = CFG.gossip_interval


def admission_delay(n: int, window: float, cfg: GossipConfig = CFG) -> float:
    """Seconds after the last join the introduction budgets need at least (docs formula)."""
    need = n - 1 - cfg.introductions_burst_global
    return max(0.0, need / cfg.introductions_rate_global - window)


def _converged(nodes: list[SimNode], n: int) -> bool:
    # O(n): every node lists n-1 live members and suspects nobody (full_view is O(n^2)).
    return all(x.core.num_live() == n - 1 and not x.core._suspects for x in nodes)


def honest_scale(
    n: int, seed: int, window: float = 10.0, limit: float = 300.0
) -> dict[str, object]:
    t0 = time.perf_counter()
    net = SimNetwork(seed, CFG, fast_crypto=True, record_history=False)
    boot = net.add_node()
    gap = window / (n - 1)
    for i in range(n - 1):
        net.run_until(gap * (i + 1))
        net.add_node(join=[boot.address])
    last = net.now
    nodes = list(net.nodes.values())
    t = None
    probe = last
    while probe <= last + limit:
        net.run_until(probe)
        if _converged(nodes, n):
            t = net.now
            break
        probe += GI
    full = t is not None and net.full_view()
    gi = None if t is None else round((t - last) / GI, 1)
    goal = 2 * math.log2(n) + 4
    delay = admission_delay(n, window)
    deferred = sum(x.core.stats["introduction_deferred"] for x in nodes)
    dropped = sum(x.core.rejected["introduction_dropped"] for x in nodes)
    return {
        "n": n,
        "join_window_s": window,
        "after_last_join_gi": gi,
        "goal_gi": goal,
        "admission_delay_gi": round(delay / GI, 1),
        "goal_plus_delay_gi": round(goal + delay / GI, 1),
        "ok": gi is not None and gi <= goal + delay / GI,
        "full_view": full,
        "deferred": deferred,
        "dropped": dropped,
        "messages": net.messages,
        "wall_s": round(time.perf_counter() - t0, 1),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def _composition(
    honest: list[SimNode], sybil_ids: set[bytes], rng: random.Random, k: int = 4, draws: int = 20
) -> dict[str, float]:
    in_view = total = 0
    pref_hits = pref_n = uni_hits = uni_n = 0
    for h in honest:
        live = h.core.members(states=(MemberState.ALIVE, MemberState.SUSPECT))
        total += len(live)
        in_view += sum(1 for m in live if m.node_id in sybil_ids)
        for _ in range(draws):
            for m in h.core.sample(k, rng=rng):
                pref_n += 1
                pref_hits += m.node_id in sybil_ids
            for m in h.core.sample(k, rng=rng, prefer_established=False):
                uni_n += 1
                uni_hits += m.node_id in sybil_ids
    return {
        "sybil_share_of_view": round(in_view / max(1, total), 3),
        "view_size": round(total / max(1, len(honest)), 1),
        "fanout_to_sybil": round(pref_hits / max(1, pref_n), 4),
        "fanout_to_sybil_uniform": round(uni_hits / max(1, uni_n), 3),
    }


def sybil_burst(
    honest_n: int, sybils: int, seed: int, warmup: float = 300.0
) -> list[dict[str, object]]:
    t0 = time.perf_counter()
    net = SimNetwork(seed, CFG, fast_crypto=True, record_history=False)
    boot = net.add_node()
    honest = [boot] + [net.add_node(join=[boot.address]) for _ in range(honest_n - 1)]
    net.run_until(warmup)
    established = sum(sum(m.established for m in h.core.members()) for h in honest)
    rng = random.Random(seed)
    start = net.now
    sybil_ids: set[bytes] = set()
    if sybils:
        gap = 1.0 / sybils
        for i in range(sybils):
            net.run_until(start + gap * i)
            s = net.add_node(join=[rng.choice(honest).address], passive=True)
            sybil_ids.add(s.node_id)
    rows = []
    for after in (5.0, 30.0, 60.0, 120.0):
        net.run_until(start + after)
        row: dict[str, object] = {
            "honest": honest_n,
            "sybils": sybils,
            "t_after_s": after,
            "established_per_node": round(established / honest_n, 1),
        }
        row.update(_composition(honest, sybil_ids, rng))
        row["pending"] = round(sum(h.core.pending_introductions() for h in honest) / honest_n, 1)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    return rows


def fmt(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def table(title: str, rows: list[dict[str, object]]) -> str:
    cols = list(rows[0])
    out = [f"**{title}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, nargs="*", default=[1024, 4096])
    ap.add_argument("--sybil-only", action="store_true")
    ap.add_argument("--scale-only", action="store_true")
    ap.add_argument("--honest", type=int, default=64)
    ap.add_argument("--sybils", type=int, default=1000)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    parts = []
    if not args.scale_only:
        rows = sybil_burst(args.honest, 0, seed=3) + sybil_burst(args.honest, args.sybils, seed=3)
        parts.append(
            table(
                f"Sybil burst: {args.sybils} fresh identities join {args.honest} honest nodes "
                "within 1 s, after a 300 s warm-up (fan-out = sample(4))",
                rows,
            )
        )
        print(parts[-1], flush=True)
    if not args.sybil_only:
        rows = []
        for n in args.scale:
            rows.append(honest_scale(n, seed=n))
            print(rows[-1], flush=True)
        parts.append(
            table(
                "Honest joins through one bootstrap within 10 s (gossip intervals of 0.2 s "
                "after the last join)",
                rows,
            )
        )
        print(parts[-1], flush=True)
    print(
        f"\nMeasured on {platform.machine()}, Python {platform.python_version()}, "
        f"virtual time, lan profile, fast crypto (keyed hash, PoW off); bench wall time "
        f"{time.perf_counter() - started:.0f} s. Command: .venv/bin/python "
        f"bench/bench_gossip_sybil.py {' '.join(sys.argv[1:])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
