"""SPSA on a text-classification task in one process, with the daemon's math.

Every node's :class:`SPSALearner` computes its round batch at the shared model, the
round's entries are applied with :func:`apply_round` (``weight = 1/num_nodes``, sorted
order), exactly what :class:`node.training.spsa.RoundLedger` does on a daemon; the nodes'
models are bit-identical there, so one copy stands for all. Prints per evaluation the
test accuracy, the share of positive predictions, the test loss, the mean training loss
of the rounds since the last evaluation and the norm of the model's change.

    .venv/bin/python bench/bench_spsa_diagnose.py --genesis net.toml --nodes 3 --rounds 20
    .venv/bin/python bench/bench_spsa_diagnose.py --partition dirichlet --nodes 3 \\
        --lr 1e-2 --steps 4 --batch 8 --max-length 16 --rounds 10

Settings not given come from ``TaskSpec(name="sentiment")`` / ``LearnerSpec(kind="spsa")``
(or the genesis file).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from node.training.datasets import load_task, node_data
from node.training.evaluate import evaluate
from node.training.learners.spsa import SPSALearner, apply_round
from node.training.models import build_model
from node.training.params import flatten, load_vector
from node.training.spec import LearnerSpec, TaskSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genesis", help="take task and learner from this genesis file")
    ap.add_argument("--nodes", type=int, help="nodes that contribute (default num_nodes)")
    ap.add_argument("--num-nodes", type=int, help="task.num_nodes (shards, 1/N weight)")
    ap.add_argument("--partition", choices=["iid", "dirichlet"])
    ap.add_argument("--alpha", type=float)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--max-length", type=int)
    ap.add_argument("--max-samples", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--eps", type=float)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-test", type=int, default=0, help="evaluate on the first K tests")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.genesis:
        from pathlib import Path

        from node.training.genesis import load_genesis

        g = load_genesis(Path(args.genesis))
        task, learner, seed = g.task, g.learner, g.network.seed
    else:
        task, learner, seed = TaskSpec(name="sentiment"), LearnerSpec(kind="spsa"), args.seed
    over_t = {
        "num_nodes": args.num_nodes,
        "partition": args.partition,
        "alpha": args.alpha,
        "batch_size": args.batch,
        "max_length": args.max_length,
        "max_samples": args.max_samples,
    }
    over_l = {"lr": args.lr, "spsa_eps": args.eps, "spsa_steps": args.steps}
    task = task.model_copy(update={k: v for k, v in over_t.items() if v is not None})
    learner = learner.model_copy(update={k: v for k, v in over_l.items() if v is not None})
    task = TaskSpec.model_validate(task.model_dump())
    learner = LearnerSpec.model_validate(learner.model_dump())
    n = args.nodes or task.num_nodes
    print(
        json.dumps(
            {
                "task": task.model_dump(mode="json"),
                "learner": learner.model_dump(mode="json"),
                "nodes": n,
            }
        )
    )
    data = load_task(task, seed)
    model = build_model(task, seed, input_dim=data.input_dim, num_classes=data.num_classes)
    shards = [node_data(task, seed, i % task.num_nodes, task=data) for i in range(n)]
    learners = [
        SPSALearner(learner, batch_size=task.batch_size, seed=seed, node=f"node-{i}")
        for i in range(n)
    ]
    xt, yt = shards[0].x_test, shards[0].y_test
    if args.max_test:
        xt, yt = xt[: args.max_test], yt[: args.max_test]
    w0 = flatten(model)
    majority = float(max((yt == c).float().mean() for c in range(int(yt.max()) + 1)))

    def report(r: int, losses: list[float], t0: float) -> dict[str, Any]:
        with torch.inference_mode():
            model.eval()
            preds = torch.cat([model(xt[i : i + 64]).argmax(1) for i in range(0, len(yt), 64)])
        ev = evaluate(model, xt, yt, batch_size=64)
        row = {
            "round": r,
            "acc": round(ev.accuracy, 4),
            "majority": round(majority, 4),
            "pred_pos": round(float(preds.float().mean()), 3),
            "test_loss": round(ev.loss, 4),
            "train_loss": round(float(np.mean(losses)), 4) if losses else None,
            "dw": round(float((flatten(model) - w0).norm()), 4),
            "s": round(time.monotonic() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        return row

    shard_sizes = [s.num_examples for s in shards]
    pos = [round(float(s.y.float().mean()), 2) for s in shards]
    print(json.dumps({"shard_sizes": shard_sizes, "shard_positive_share": pos, "test": len(yt)}))
    t0 = time.monotonic()
    report(0, [], t0)
    losses: list[float] = []
    for r in range(args.rounds):
        batches = [learners[i].train_round(model, shards[i], r) for i in range(n)]
        losses += [b.loss for b in batches]
        entries = [e for b in batches for e in b.entries()]
        w = apply_round(
            flatten(model),
            entries,
            learner.lr,
            schedule=learner.spsa_seed_schedule,
            distribution=learner.spsa_distribution,
            num_nodes=task.num_nodes,
        )
        load_vector(model, w)
        if (r + 1) % args.eval_every == 0:
            report(r + 1, losses, t0)
            losses = []


if __name__ == "__main__":
    main()
