"""Identity cost benchmark: CPU seconds to mint one fednode identity (Ed25519 key + the
S/Kademlia-style proof of work of ``node.base.identity``) at each PoW difficulty, and the cost
of minting 100 identities at the default difficulty (what a Sybil attacker pays).

Minting time is geometric (each hash succeeds with probability 2^-bits), so the table
gives mean, median and 90th percentile over the sample, plus the expectation
``2^bits / hash rate`` from the hash rate measured in CPU time (so a busy machine
does not inflate it). Difficulties whose
expected time per identity exceeds ``--budget`` seconds are extrapolated, not run.

    .venv/bin/python bench/bench_pow.py            # about 1-2 minutes on one core
    .venv/bin/python bench/bench_pow.py --quick
    .venv/bin/python bench/bench_pow.py --hundred-only   # just the 100-identity cost
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import statistics
import struct
import time

from node.base.identity import POW_DOMAIN, Identity, pow_check
from node.training.genesis import NetworkSpec


def default_difficulty() -> int:
    return int(NetworkSpec.model_fields["pow_difficulty"].default)


def cpu_hash_rate(hashes: int = 1 << 20) -> float:
    """PoW hashes per CPU second, hashed exactly as ``node.base.identity.pow_solve`` does.

    Process time, not wall time: other work on the machine does not inflate it.
    """
    base = hashlib.sha256(POW_DOMAIN + bytes(32))
    pack = struct.Struct("<Q").pack
    t0 = time.process_time()
    for nonce in range(hashes):
        h = base.copy()
        h.update(pack(nonce))
        h.digest()
    return hashes / (time.process_time() - t0)


def mint(difficulty: int, count: int) -> list[float]:
    """CPU seconds (process time) for each of ``count`` fresh identities."""
    costs = []
    for _ in range(count):
        t0 = time.process_time()
        ident = Identity.generate(difficulty)
        costs.append(time.process_time() - t0)
        assert pow_check(ident.public_key, ident.pow_nonce, difficulty)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer identities per level")
    parser.add_argument(
        "--budget",
        type=float,
        default=4.0,
        help="max expected seconds per identity to actually mint (default 4)",
    )
    parser.add_argument(
        "--hundred-only",
        action="store_true",
        help="skip the per-difficulty table; mint 100 at the default only",
    )
    args = parser.parse_args()

    rate = cpu_hash_rate()
    default = default_difficulty()
    print(
        f"# PoW identity cost ({platform.machine()}, Python {platform.python_version()}, "
        f"one core of a 2-core machine)"
    )
    flags = (" --quick" if args.quick else "") + (" --hundred-only" if args.hundred_only else "")
    print(f"command: .venv/bin/python bench/bench_pow.py{flags}")
    print(
        f"measured hash rate: {rate / 1e6:.2f} M SHA-256 per CPU second; "
        f"genesis default difficulty {default}\n"
    )
    if not args.hundred_only:
        print("| bits | identities minted | mean CPU s | median | p90 | expected 2^bits/rate |")
        print("|---|---|---|---|---|---|")
    for bits in () if args.hundred_only else (0, 8, 12, 16, 18, 20, 22, 24, 28, 32):
        expected = 2**bits / rate
        if expected > args.budget:
            print(f"| {bits} | 0 (extrapolated) | - | - | - | {expected:.3g} s |")
            continue
        count = 20 if bits >= 18 else 50
        if args.quick:
            count = max(3, count // 10)
        costs = sorted(mint(bits, count))
        p90 = costs[min(len(costs) - 1, int(0.9 * len(costs)))]
        print(
            f"| {bits} | {count} | {statistics.fmean(costs):.4f} | "
            f"{statistics.median(costs):.4f} | {p90:.4f} | {expected:.4f} s |"
        )

    n = 10 if args.quick else 100
    t0 = time.process_time()
    wall0 = time.perf_counter()
    mint(default, n)
    cpu = time.process_time() - t0
    wall = time.perf_counter() - wall0
    print(
        f"\nminting {n} identities at the default difficulty {default}: "
        f"{cpu:.1f} CPU s ({wall:.1f} s wall), {cpu / n:.3f} s per identity"
    )


if __name__ == "__main__":
    main()
