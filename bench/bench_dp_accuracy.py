"""Accuracy versus epsilon on MNIST-1D under node-level DP, with the ledger checked.

Eight nodes (MLP, Dirichlet(alpha) label partition, the anchor learner: Adam lr 1e-2,
batch 100, 60 local steps per round) run the in-process decentralized simulation
(``node.sim.rounds``). Every node's release goes through the daemon's own code:
one :class:`node.daemon.privacy_guard.ReleaseGuard` per node, on its own SQLite store in a
temporary directory, called exactly as ``node.daemon.training_runtime`` calls it::

    private = guard.release(vector - base)   # clip to C, noise z*C, debit the ledger
    vector = base + private                  # what the node keeps and sends

For a target epsilon the noise multiplier is ``privacy.accounting.noise_multiplier_for(
eps, sample_rate=1.0, steps=rounds, delta)``: each node releases once per round, and
node-level releases are never subsampled (docs/privacy.md). After the run every node's
ledger must hold ``rounds`` rows, and the epsilon it reports (last row's
``epsilon_after`` and ``guard.spent()``) is compared with dp-accounting's RDP accountant
called directly on ``rounds`` x Gaussian(z) (tolerance 1e-9 relative: same library, same
orders) and with Opacus's RDP accountant (tolerance 0.5%: different grid of orders).
The PLD column is the tighter epsilon the same noise gives (for information).

``eps = inf`` clips to C and adds no noise (``privatize_update`` with z = 0); the ledger
refuses to record an infinite epsilon, so that row has no ledger figure. "no DP" is the
plain simulation.

Run:  .venv/bin/python bench/bench_dp_accuracy.py [--rounds 10] [--clips 0.1,1.0]
      [--epsilons 1,3,8,inf] [--peers 7] [--seeds 0] [--no-baseline]

Results and their reading: docs/privacy.md, "Accuracy versus epsilon (measured)".
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dp_accounting
import numpy as np
import torch
from dp_accounting import rdp
from opacus.accountants import RDPAccountant

from node.daemon.privacy_guard import ReleaseGuard
from node.sim.rounds import simulate
from node.storage import Store, open_store
from node.training.datasets import TaskData, load_task
from node.training.genesis import PrivacySpec
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec
from privacy import epsilon, noise_multiplier_for, privatize_update

DELTA = 1e-5
LEDGER_RTOL = 1e-9
OPACUS_RTOL = 5e-3

ReleaseFn = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Row:
    target: float
    clip: float | None
    z: float
    ledger_eps: float | None
    library_eps: float | None
    opacus_eps: float | None
    pld_eps: float | None
    releases: int | None
    mean_acc: float
    min_acc: float
    seconds: float


def dp_accounting_rdp(z: float, steps: int, delta: float) -> float:
    """dp-accounting's RDP accountant on ``steps`` Gaussian(z) releases, called directly."""
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), steps))
    return float(acc.get_epsilon(delta))


def opacus_rdp(z: float, steps: int, delta: float) -> float:
    acc = RDPAccountant()
    acc.history = [(z, 1.0, steps)]
    return float(acc.get_epsilon(delta=delta))


def guard_release(guards: list[ReleaseGuard]) -> ReleaseFn:
    """The daemon's release step (``TrainingRuntime._train``) for simulated node i."""

    def release(i: int, _round: int, vector: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        private = guards[i].release(vector - base)
        return base + private

    return release


def clip_only_release(clip: float) -> ReleaseFn:
    def release(_i: int, _round: int, vector: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        update = (vector - base).to(torch.float32).reshape(-1)
        return base + privatize_update(update, clip_norm=clip, noise_multiplier=0.0).update

    return release


def run(
    task: TaskSpec,
    data: TaskData,
    rounds: int,
    peers: int,
    seed: int,
    release: ReleaseFn | None,
) -> tuple[float, float, float]:
    spec = RoundSpec(peers_per_round=peers, eval_every=rounds, aggregation="mean")
    t0 = time.perf_counter()
    res = simulate(
        task,
        LearnerSpec(),
        spec,
        seed=seed,
        num_rounds=rounds,
        task_data=data,
        jitter=0.2,
        release=release,
    )
    return res.mean_accuracy, float(np.min(res.final_accuracy)), time.perf_counter() - t0


def run_dp(
    task: TaskSpec,
    data: TaskData,
    rounds: int,
    peers: int,
    seed: int,
    target: float,
    clip: float,
) -> Row:
    z = noise_multiplier_for(target, 1.0, rounds, DELTA)
    if math.isinf(target):
        acc, worst, secs = run(task, data, rounds, peers, seed, clip_only_release(clip))
        return Row(target, clip, 0.0, None, math.inf, math.inf, math.inf, None, acc, worst, secs)
    spec = PrivacySpec(
        enabled=True, clip=clip, noise_multiplier=z, epsilon_budget=target, delta=DELTA
    )
    with tempfile.TemporaryDirectory(prefix="dp-acc-") as tmp:
        stores: list[Store] = [
            open_store(data_dir=Path(tmp) / f"node-{i}") for i in range(task.num_nodes)
        ]
        guards = [ReleaseGuard(spec, store) for store in stores]
        acc, worst, secs = run(task, data, rounds, peers, seed, guard_release(guards))
        counts = {len(store.ledger_rows()) for store in stores}
        if counts != {rounds} or not all(g.releasing for g in guards):
            raise AssertionError(f"expected {rounds} ledger rows per node, got {sorted(counts)}")
        ledger = {store.ledger_rows()[-1].epsilon_after for store in stores}
        ledger |= {g.spent() for g in guards}
        for store in stores:
            store.close()
    library = dp_accounting_rdp(z, rounds, DELTA)
    via_privacy = epsilon(z, 1.0, rounds, DELTA)
    opacus = opacus_rdp(z, rounds, DELTA)
    pld = epsilon(z, 1.0, rounds, DELTA, accountant="pld")
    for value in ledger:
        if not math.isclose(value, library, rel_tol=LEDGER_RTOL):
            raise AssertionError(f"ledger epsilon {value} != dp-accounting {library}")
    if not math.isclose(via_privacy, library, rel_tol=LEDGER_RTOL):
        raise AssertionError(f"privacy.accounting.epsilon {via_privacy} != {library}")
    if not math.isclose(library, opacus, rel_tol=OPACUS_RTOL):
        raise AssertionError(f"dp-accounting {library} vs Opacus {opacus} beyond {OPACUS_RTOL}")
    if library > target:
        raise AssertionError(f"spent {library} exceeds target {target}")
    return Row(target, clip, z, max(ledger), library, opacus, pld, rounds, acc, worst, secs)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def print_table(rows: list[Row]) -> None:
    print(
        "| target eps | clip C | noise z | ledger eps | dp-accounting RDP eps | Opacus RDP eps "
        "| PLD eps (same z) | releases/node | mean acc | min acc | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = "no DP" if r.clip is None else fmt(r.target, 0)
        print(
            f"| {target} | {fmt(r.clip, 3) if r.clip is not None else '-'} | {fmt(r.z, 3)} "
            f"| {fmt(r.ledger_eps, 4)} | {fmt(r.library_eps, 4)} | {fmt(r.opacus_eps, 4)} "
            f"| {fmt(r.pld_eps, 4)} | {r.releases if r.releases is not None else '-'} "
            f"| {r.mean_acc:.3f} | {r.min_acc:.3f} | {r.seconds:.0f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="rounds = releases per node")
    ap.add_argument("--epsilons", default="1,3,8,inf")
    ap.add_argument("--clips", default="0.1,1.0", help="clip norms C to try")
    ap.add_argument("--peers", type=int, default=7, help="k sampled peers (7 = full gossip)")
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--seeds", default="0", help="genesis seeds (partition, init, batches)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the no-DP run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    task = TaskSpec(name="mnist1d", model="mlp", num_nodes=args.nodes, alpha=args.alpha)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    clips = [float(c) for c in args.clips.split(",")]
    print(
        f"# mnist1d MLP, {args.nodes} nodes, Dirichlet {args.alpha}, {args.rounds} rounds x 60 "
        f"Adam steps, k={args.peers}, mean rule, delta={DELTA:g}; "
        f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores\n"
    )
    for seed in [int(s) for s in args.seeds.split(",")]:
        data = load_task(task, seed)
        print(f"\nseed {seed}\n")
        rows: list[Row] = []
        if not args.no_baseline:
            acc, worst, secs = run(task, data, args.rounds, args.peers, seed, None)
            rows.append(Row(math.inf, None, 0.0, None, None, None, None, None, acc, worst, secs))
            print_table(rows[-1:])
        for target in epsilons:
            for clip in clips:
                rows.append(run_dp(task, data, args.rounds, args.peers, seed, target, clip))
                print_table(rows[-1:])
        print()
        print_table(rows)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    print("command: .venv/bin/python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
