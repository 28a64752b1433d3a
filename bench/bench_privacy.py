"""Privacy accounting benchmark: epsilon from fednode's accountants (dp-accounting RDP and
PLD) next to Opacus's RDP and PRV accountants on the same parameters, plus the time per
call and the noise multipliers that reach epsilon 1, 3 and 8.

Prints Markdown tables (paste into docs/privacy.md).

    .venv/bin/python bench/bench_privacy.py            # full grid (about a minute on 2 cores)
    .venv/bin/python bench/bench_privacy.py --quick    # small grid
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable
from functools import partial

import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from privacy import accounting
from privacy.accounting import epsilon, noise_multiplier_for

DELTA = 1e-5


def opacus_epsilon(kind: str, z: float, q: float, steps: int) -> float:
    acc: RDPAccountant | PRVAccountant = RDPAccountant() if kind == "rdp" else PRVAccountant()
    acc.history = [(z, q, steps)]
    return float(acc.get_epsilon(delta=DELTA))


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    """Value and wall seconds of one uncached call."""
    accounting._epsilon_cached.cache_clear()
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.3f}" if x < 100 else f"{x:.4g}"


def epsilon_table(title: str, q: float, zs: list[float], steps_list: list[int]) -> None:
    print(f"\n### {title}: sample rate q={q}, delta={DELTA:g}\n")
    print(
        "| z | steps | RDP (dp-acc) | PLD (dp-acc) | Opacus RDP | Opacus PRV "
        "| t RDP | t PLD | t Opacus RDP |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for z in zs:
        for steps in steps_list:
            rdp, t_rdp = timed(partial(epsilon, z, q, steps, DELTA))
            pld, t_pld = timed(partial(epsilon, z, q, steps, DELTA, accountant="pld"))
            t0 = time.perf_counter()
            o_rdp = opacus_epsilon("rdp", z, q, steps)
            t_ordp = time.perf_counter() - t0
            try:
                o_prv = fmt(opacus_epsilon("prv", z, q, steps))
            except Exception as exc:  # PRV refuses some regimes (e.g. too few steps)
                o_prv = f"n/a ({type(exc).__name__})"
            print(
                f"| {z} | {steps} | {fmt(rdp)} | {fmt(pld)} | {fmt(o_rdp)} | {o_prv} "
                f"| {t_rdp * 1e3:.1f} ms | {t_pld * 1e3:.0f} ms | {t_ordp * 1e3:.1f} ms |"
            )


def inverse_table(cases: list[tuple[str, float, int]], targets: list[float]) -> None:
    print(f"\n### Noise multiplier for a target epsilon (delta={DELTA:g})\n")
    print("| regime | q | steps | target eps | z (RDP) | z (PLD) | t RDP | t PLD |")
    print("|---|---|---|---|---|---|---|---|")
    for name, q, steps in cases:
        for target in targets:
            t0 = time.perf_counter()
            z_rdp = noise_multiplier_for(target, q, steps, DELTA, rtol=1e-3)
            t1 = time.perf_counter()
            z_pld = noise_multiplier_for(target, q, steps, DELTA, accountant="pld", rtol=1e-3)
            t2 = time.perf_counter()
            print(
                f"| {name} | {q} | {steps} | {target} | {z_rdp:.3f} | {z_pld:.3f} "
                f"| {(t1 - t0):.2f} s | {(t2 - t1):.2f} s |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"# privacy accounting bench ({platform.machine()}, {platform.python_version()}, "
        f"torch {torch.__version__})"
    )
    print(f"command: .venv/bin/python bench/bench_privacy.py{' --quick' if args.quick else ''}")
    if args.quick:
        epsilon_table("Sample-level DP-SGD", 0.01, [1.0], [100, 1000])
        epsilon_table("Node-level, every round released", 1.0, [5.0], [10, 100])
        inverse_table([("node-level, 100 rounds", 1.0, 100)], [3.0])
        return
    epsilon_table(
        "Sample-level DP-SGD (Opacus regime)", 0.01, [0.6, 0.8, 1.0, 1.5, 2.0], [100, 1000, 10_000]
    )
    epsilon_table(
        "Node-level, every round released (sample_rate 1)",
        1.0,
        [2.0, 5.0, 10.0, 20.0, 50.0],
        [10, 100, 1000],
    )
    inverse_table(
        [
            ("node-level, 100 rounds", 1.0, 100),
            ("SPSA, 100 rounds x 16 scalars", 1.0, 1600),
            ("DP-SGD, 10 epochs at q=0.01", 0.01, 1000),
        ],
        [1.0, 3.0, 8.0],
    )


if __name__ == "__main__":
    main()
