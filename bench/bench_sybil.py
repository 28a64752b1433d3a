"""Targeted Sybil poisoning benchmark: attack success and honest accuracy vs. Sybil count.

One attacker controls ``s`` identities among 10 honest nodes on MNIST-1D (MLP,
Dirichlet(0.5) partition). Each Sybil trains on the same poisoned objective (label flip
``1 -> 7``, or a backdoor trigger labelled 7) and pushes to honest nodes; honest nodes
merge with the plain mean, without and with the similarity defence of the runtime
(FoolsGold weights over per-peer histories, gossiped history records, senders below
weight 0.5 dropped, flagged members not pushed to). See ``node/sim/sybil.py``.

    .venv/bin/python bench/bench_sybil.py                 # label flip, about 15 min on 2 busy cores
    .venv/bin/python bench/bench_sybil.py --attack backdoor
    .venv/bin/python bench/bench_sybil.py --quick         # 10 rounds, s in {0, 5}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict

import torch

from node.sim.sybil import SybilResult, SybilScenario, simulate_sybil
from node.training.datasets import load_task
from node.training.spec import TaskSpec


def _row(r: SybilResult) -> tuple[str, str]:
    return f"{r.attack_success:.3f}", f"{r.honest_accuracy:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", choices=("label_flip", "backdoor"), default="label_flip")
    parser.add_argument("--sybils", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--local-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 rounds, s in {5}")
    parser.add_argument("--json", type=str, default="", help="also write raw results here")
    parser.add_argument(
        "--no-avoid-flagged",
        action="store_true",
        help="ablation: with the defence, still push to members the weights flag",
    )
    parser.add_argument("--defence-only", action="store_true", help="skip the runs without defence")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.rounds, args.sybils = 10, [5]

    task = load_task(TaskSpec(), args.seed)
    common = {
        "attack": args.attack,
        "rounds": args.rounds,
        "local_steps": args.local_steps,
        "seed": args.seed,
        "avoid_flagged": not args.no_avoid_flagged,
    }
    t0 = time.perf_counter()
    clean = simulate_sybil(SybilScenario(sybils=0, **common), task=task)  # type: ignore[arg-type]
    runs: dict[tuple[int, bool], SybilResult] = {}
    for s in args.sybils:
        for defence in (True,) if args.defence_only else (False, True):
            runs[(s, defence)] = simulate_sybil(
                SybilScenario(sybils=s, defence=defence, **common),  # type: ignore[arg-type]
                task=task,
            )
            print(f"  done s={s} defence={defence} ({time.perf_counter() - t0:.0f} s)", flush=True)
    wall = time.perf_counter() - t0

    what = "source 1 -> target 7" if args.attack == "label_flip" else "trigger -> 7"
    print(f"\n# Targeted Sybil poisoning ({args.attack}, {what}), 10 honest nodes, MNIST-1D MLP")
    print(
        f"command: .venv/bin/python bench/bench_sybil.py --attack {args.attack} "
        f"--rounds {args.rounds} --local-steps {args.local_steps} --seed {args.seed} "
        f"--sybils {' '.join(map(str, args.sybils))}"
        + (" --no-avoid-flagged" if args.no_avoid_flagged else "")
        + (" --defence-only" if args.defence_only else "")
    )
    print(
        f"2 shared cores, torch 1 thread, wall {wall:.0f} s, "
        f"load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    acc0 = clean.honest_accuracy
    print(
        f"clean run (no attacker, mean): attack success {clean.attack_success:.3f}, "
        f"honest accuracy {acc0:.3f}\n"
    )
    print(
        "| s | success, no defence | accuracy, no defence | success, defence | "
        "accuracy, defence | Δacc vs clean | Sybil updates kept | honest updates dropped |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in args.sybils:
        on = runs[(s, True)]
        off = _row(runs[(s, False)]) if (s, False) in runs else ("-", "-")
        kept = on.sybil_kept / on.sybil_updates if on.sybil_updates else 0.0
        dropped = on.honest_dropped / on.honest_updates if on.honest_updates else 0.0
        print(
            f"| {s} | {off[0]} | {off[1]} | {_row(on)[0]} | {_row(on)[1]} | "
            f"{100 * (on.honest_accuracy - acc0):+.1f} pt | {kept:.1%} | {dropped:.1%} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "clean": asdict(clean),
                    "runs": {f"{s}-{d}": asdict(r) for (s, d), r in runs.items()},
                },
                fh,
            )


if __name__ == "__main__":
    main()
