"""Node-level DP as the network grows: sampled participation at a fixed epsilon.

With sampled participation (``sample_trainers = s``) a node releases only in the rounds it
is drawn to train, about ``rounds x s / N`` times, so for a fixed node-level epsilon the
noise per release shrinks as N grows. This bench measures where that starts to pay.

For each N: MNIST-1D MLP, iid shards, :func:`node.sim.rounds.simulate` (the daemon's
sampled round engine, policy and learner), ``s`` trainers and 2 aggregators per round,
``mean`` rule, ``rounds`` rounds, twice:

1. **no DP**, counting each node's releases (the sample is drawn from the genesis seed and
   the member list, so it is the same with DP);
2. **node-level DP**: every release through the daemon's own
   :class:`node.daemon.privacy_guard.ReleaseGuard` (clip to C, Gaussian noise z C, debit
   the node's SQLite ledger), with ``z = noise_multiplier_for(eps, 1.0, k_max, delta)``
   where ``k_max`` is the most releases any node makes: every node ends at or below
   ``eps``. Releases are not subsampled in the accounting (a node's draw is public), so
   this is the plain composition of ``k`` Gaussian releases.

Each node's spent epsilon is read back from its ledger. Usage::

    .venv/bin/python bench/bench_dp_scale.py [--nodes 100,300,1000] [--rounds 30]
        [--samples 10] [--epsilon 8] [--clip 1.0] [--full-nodes 100] [--json out.json]

``--full-nodes`` also runs those N with full participation (every node trains and
push-pulls with 3 peers every round, so releases ``rounds`` times).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from node.daemon.privacy_guard import ReleaseGuard  # noqa: E402
from node.sim.rounds import simulate  # noqa: E402
from node.storage import open_store  # noqa: E402
from node.training.datasets import load_task  # noqa: E402
from node.training.genesis import PrivacySpec  # noqa: E402
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec  # noqa: E402
from privacy import noise_multiplier_for  # noqa: E402

DELTA = 1e-5


def point(
    n: int, args: argparse.Namespace, data: Any, root: Path, *, sampled: bool = True
) -> dict[str, Any]:
    task = TaskSpec(name="mnist1d", num_nodes=n, batch_size=32, partition="iid")
    learner = LearnerSpec(lr=args.lr, local_steps=args.local_steps)
    spec = RoundSpec(
        peers_per_round=3,
        eval_every=args.rounds,
        round_timeout=5.0,
        sample_trainers=args.samples if sampled else None,
        sample_aggregators=2 if sampled else None,
    )
    counts: Counter[int] = Counter()

    def run(release: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        res = simulate(
            task, learner, spec, seed=args.seed, num_rounds=args.rounds, task_data=data,
            jitter=0.2, release=release,
        )  # fmt: skip
        return res, time.perf_counter() - t0

    def counting(i: int, _r: int, vector: torch.Tensor, _base: torch.Tensor) -> torch.Tensor:
        counts[i] += 1
        return vector

    plain, plain_s = run(counting)
    k_max = max(counts.values())
    z = noise_multiplier_for(args.epsilon, 1.0, k_max, DELTA)
    privacy = PrivacySpec(
        enabled=True,
        clip=args.clip,
        noise_multiplier=z,
        # The accountant's epsilon for k_max releases is the target up to its bisection
        # tolerance; the budget only has to admit them.
        epsilon_budget=args.epsilon * 1.01,
        delta=DELTA,
    )
    guards: dict[int, ReleaseGuard] = {}

    def guarded(i: int, _r: int, vector: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        if i not in guards:  # only sampled nodes ever get a ledger
            store = open_store(data_dir=root / f"n{n}-{int(sampled)}-{i}")
            guards[i] = ReleaseGuard(privacy, store)
        return base + guards[i].release(vector - base)

    private, dp_s = run(guarded)
    spent = [g.spent() for g in guards.values()]
    for g in guards.values():
        g.store.close()
    if sorted(counts) != sorted(guards):
        raise SystemExit(f"N={n}: the DP run sampled other nodes than the plain run")
    return {
        "nodes": n,
        "mode": f"s={args.samples}, a=2" if sampled else "full, k=3",
        "releasing_nodes": len(counts),
        "releases_mean": sum(counts.values()) / n,
        "releases_max": k_max,
        "z": z,
        "eps_spent_max": max(spent),
        "acc_plain": plain.mean_accuracy,
        "acc_dp": private.mean_accuracy,
        "seconds": plain_s + dp_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="100,300,1000")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--full-nodes", default="100", help="N also run with full participation (k=3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = load_task(TaskSpec(name="mnist1d", num_nodes=1, batch_size=32), args.seed)
    print(
        f"MNIST-1D MLP, iid, s={args.samples} trainers + 2 aggregators, {args.rounds} rounds "
        f"x {args.local_steps} Adam steps lr {args.lr:g}; node-level eps {args.epsilon:g}, "
        f"delta {DELTA:g}, clip {args.clip:g}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(
        "| N | mode | nodes that released | releases per node: mean / max | z | max spent eps "
        "| accuracy, no DP | accuracy, node-level DP | wall s |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dp-scale-") as tmp:
        full = {int(x) for x in args.full_nodes.split(",") if x}
        points = [(n, True) for n in [int(x) for x in args.nodes.split(",") if x]]
        points += [(n, False) for n in sorted(full)]
        for n, sampled in points:
            r = point(n, args, data, Path(tmp), sampled=sampled)
            rows.append(r)
            print(
                f"| {n:,} | {r['mode']} | {r['releasing_nodes']} | {r['releases_mean']:.2f} / "
                f"{r['releases_max']} | {r['z']:.3f} | {r['eps_spent_max']:.3f} | "
                f"{r['acc_plain']:.3f} | {r['acc_dp']:.3f} | {r['seconds']:.0f} |",
                flush=True,
            )
    print(f"load average at end {os.getloadavg()}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
