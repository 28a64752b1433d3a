"""Variance-corrected averaging in gossip learning from independent initialisations.

Tian et al., "Vanishing Variance Problem in Fully Decentralized Neural-Network
Systems" (2024): when gossip nodes start from *independent* initialisations,
averaging k uncorrelated models shrinks each layer's weight std by about
sqrt(k), destroying the scale the initialisation set up. ``rounds.variance_correction``
rescales each averaged layer back to the merged models' mean std.

This bench runs the in-process decentralized simulation (the same round engine
and trainers a daemon uses) on MNIST-1D, N nodes, Dirichlet(alpha), each node
merging with k sampled peers (push-pull) by plain ``mean``, in three settings:

- shared init, plain mean (what a fednode network does: one genesis-seeded init);
- independent inits, plain mean;
- independent inits, variance-corrected mean.

It prints the nodes' mean test accuracy per round and each weight layer's std
(mean over nodes) per round, and the command that reproduces it.

Run:  .venv/bin/python bench/bench_variance.py [--rounds 30] [--local-steps 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch

from node.sim.rounds import simulate
from node.training.datasets import load_task
from node.training.models import build_model
from node.training.params import layout_of
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec

#: (label, short label for the std table, independent inits, variance correction)
SETTINGS: list[tuple[str, str, bool, bool]] = [
    ("shared init, mean", "shared", False, False),
    ("independent inits, mean", "indep", True, False),
    ("independent inits, variance-corrected", "indep+VC", True, True),
]


def _layer_stds(vectors: list[torch.Tensor], sizes: tuple[int, ...]) -> list[float]:
    """Per-layer population std of each node's vector, averaged over nodes."""
    per_node = [
        [float(p.double().std(unbiased=False)) for p in torch.split(v, list(sizes))]
        for v in vectors
    ]
    return [float(x) for x in np.mean(np.array(per_node), axis=0)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--peers", type=int, default=2, help="k peers per round (push-pull)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write results as JSON to this path")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    task = TaskSpec(
        name="mnist1d",
        model=args.model,
        partition="dirichlet",
        alpha=args.alpha,
        num_nodes=args.nodes,
        batch_size=100,
    )
    data = load_task(task, args.seed)
    learner = LearnerSpec(lr=args.lr, local_steps=args.local_steps, optimizer=args.optimizer)
    layout = layout_of(build_model(task, args.seed, input_dim=40, num_classes=10))
    weights = [i for i, s in enumerate(layout.shapes) if len(s) >= 2]  # weight matrices/kernels
    results: dict[str, dict[str, Any]] = {}
    for label, _, independent, corrected in SETTINGS:
        t0 = time.perf_counter()
        spec = RoundSpec(peers_per_round=args.peers, eval_every=1, variance_correction=corrected)
        res = simulate(
            task,
            learner,
            spec,
            seed=args.seed,
            num_rounds=args.rounds,
            task_data=data,
            jitter=0.2,
            independent_init=independent,
            record_vectors=True,
        )
        acc = {r: float(np.mean(a)) for r, a in res.history.items()}
        stds = {r: _layer_stds(v, layout.sizes) for r, v in res.vectors.items()}
        init = build_model(task, args.seed, input_dim=40, num_classes=10)
        results[label] = {
            "acc": acc,
            "worst": float(np.min(res.final_accuracy)),
            "stds": stds,
            "init_stds": _layer_stds(
                [torch.cat([p.detach().reshape(-1) for p in init.parameters()])], layout.sizes
            ),
            "sec": time.perf_counter() - t0,
        }
        print(
            f"{label}: final {res.mean_accuracy:.3f} ({results[label]['sec']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    rounds = sorted(next(iter(results.values()))["acc"])
    show = [r for r in rounds if r < 5 or (r + 1) % 5 == 0]
    names = [layout.names[i] for i in weights]
    labels = [label for label, _, _, _ in SETTINGS]
    print()
    print(
        f"MNIST-1D {args.model.upper()}, {args.nodes} nodes, Dirichlet({args.alpha}), "
        f"k={args.peers} push-pull, {args.rounds} rounds x {args.local_steps} local "
        f"{args.optimizer} steps (lr {args.lr}), seed {args.seed}, 2 shared cores"
    )
    print("\nNode-mean test accuracy after each round:\n")
    print("| round | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for r in show:
        print(f"| {r + 1} | " + " | ".join(f"{results[lb]['acc'][r]:.3f}" for lb in labels) + " |")
    print(
        "| worst node, final | " + " | ".join(f"{results[lb]['worst']:.3f}" for lb in labels) + " |"
    )
    init_stds = results[labels[0]]["init_stds"]
    print(
        "\nWeight std per layer (mean over nodes) after each round; at init: "
        + ", ".join(f"{n} {init_stds[i]:.4f}" for n, i in zip(names, weights, strict=True))
        + "\n"
    )
    print(
        "| round | "
        + " | ".join(f"{short}: {n}" for _, short, _, _ in SETTINGS for n in names)
        + " |"
    )
    print("|---" * (len(names) * len(SETTINGS) + 1) + "|")
    for r in show:
        cells = [f"{results[lb]['stds'][r][i]:.4f}" for lb in labels for i in weights]
        print(f"| {r + 1} | " + " | ".join(cells) + " |")
    cmd = "python bench/bench_variance.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\nreproduce: {cmd.strip()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
