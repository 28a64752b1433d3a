"""MNIST-1D accuracy: fednode (decentralized) vs centralized vs Flower FedAvg, same budget.

All three use the same data (MNIST-1D generated locally, 4000 train / 1000
test), the same 8-way Dirichlet(alpha) partition from one genesis seed, the
same model and initialisation, and the anchor protocol: Adam lr 1e-2, batch
100, R rounds x K local steps per node (fresh Adam each round); centralized
trains R*K steps on the pooled data.

(a) centralized; (b) Flower FedAvg: a loop over NumPyClient clients whose
updates are combined with ``flwr.server.strategy.aggregate.aggregate``
(sample-weighted mean) by a server; (c) fednode: no server, each node runs the
sans-I/O round engine in an in-process simulation, exchanges its model with k
sampled peers (push-pull) and averages with ``aggregation.RULES["mean"]``;
k = N-1 is full gossip averaging. fednode figures are the nodes' mean test
accuracy (each node's own model).

Run:  .venv/bin/python bench/bench_accuracy.py [--models mlp,cnn] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from node.sim.rounds import simulate
from node.training.datasets import TaskData, load_task, node_data
from node.training.evaluate import evaluate
from node.training.learners.sgd import SGDLearner
from node.training.models import build_model
from node.training.params import flatten, load_vector
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec


def centralized(task: TaskSpec, data: TaskData, seed: int, steps: int, lr: float) -> float:
    model = build_model(task, seed, input_dim=data.input_dim, num_classes=data.num_classes)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (task.batch_size,), generator=gen)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return evaluate(model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)).accuracy


def fedavg(task: TaskSpec, data: TaskData, seed: int, rounds: int, learner: LearnerSpec) -> float:
    from flwr.client import NumPyClient
    from flwr.server.strategy.aggregate import aggregate

    class Mnist1dClient(NumPyClient):  # what a Flower user writes: set, train, return
        def __init__(self, index: int):
            self.model = build_model(task, seed, input_dim=data.input_dim, num_classes=10)
            self.data = node_data(task, seed, index, task=data)
            self.learner = SGDLearner(
                learner, batch_size=task.batch_size, seed=seed, node=f"node-{index}"
            )

        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return [p.detach().numpy().copy() for p in self.model.parameters()]

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            with torch.no_grad():
                for p, a in zip(self.model.parameters(), parameters, strict=True):
                    p.copy_(torch.from_numpy(a))
            self.learner.train_round(self.model, self.data, int(config["server_round"]))
            return self.get_parameters({}), self.data.num_examples, {}

    clients = [Mnist1dClient(i) for i in range(task.num_nodes)]
    global_params = clients[0].get_parameters({})
    for r in range(rounds):
        results = [c.fit(global_params, {"server_round": r}) for c in clients]
        global_params = aggregate([(p, n) for p, n, _ in results])
    model = build_model(task, seed, input_dim=data.input_dim, num_classes=10)
    load_vector(
        model,
        torch.from_numpy(np.concatenate([a.reshape(-1) for a in global_params]).astype(np.float32)),
    )
    return evaluate(model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)).accuracy


def fednode(
    task: TaskSpec,
    data: TaskData,
    seed: int,
    rounds: int,
    learner: LearnerSpec,
    k: int,
    weighted: bool = False,
    await_replies: bool = False,
) -> tuple[float, float, int]:
    spec = RoundSpec(
        peers_per_round=k,
        eval_every=max(1, rounds // 5),
        aggregation="mean",
        weight_by_examples=weighted,
        await_replies=await_replies,
    )
    res = simulate(task, learner, spec, seed=seed, num_rounds=rounds, task_data=data, jitter=0.2)
    return res.mean_accuracy, float(np.min(res.final_accuracy)), res.bytes_sent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--local-steps", type=int, default=60)
    ap.add_argument("--peers", default="3,7", help="fednode k values (k = nodes-1: full gossip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--weighted", action="store_true", help="fednode weights by example counts, as FedAvg"
    )
    ap.add_argument(
        "--await-replies",
        action="store_true",
        help="fednode rounds wait for every sampled peer's push-pull answer",
    )
    ap.add_argument(
        "--methods", default="centralized,fedavg,fednode", help="subset to run (comma-separated)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 rounds x 10 steps")
    ap.add_argument("--json", default=None, help="also write results as JSON to this path")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.rounds, args.local_steps = 10, 10
    learner = LearnerSpec(lr=1e-2, local_steps=args.local_steps, optimizer="adam")
    peers = [int(p) for p in args.peers.split(",") if p]
    rows: list[dict[str, Any]] = []
    for model in args.models.split(","):
        task = TaskSpec(
            name="mnist1d",
            model=model,
            partition="dirichlet",
            alpha=args.alpha,
            num_nodes=args.nodes,
            batch_size=100,
        )
        data = load_task(task, args.seed)
        methods = set(args.methods.split(","))
        numel = flatten(build_model(task, args.seed, input_dim=40, num_classes=10)).numel()

        def record(
            method: str, acc: float, worst: float, nbytes: int, t0: float, model: str = model
        ) -> None:
            row = {"model": model, "method": method, "acc": acc, "min": worst}
            row |= {"bytes": nbytes, "sec": time.perf_counter() - t0}
            rows.append(row)
            print(row, file=sys.stderr, flush=True)

        if "centralized" in methods:
            t = time.perf_counter()
            acc = centralized(task, data, args.seed, args.rounds * args.local_steps, learner.lr)
            record("centralized (pooled data)", acc, acc, 0, t)
        if "fedavg" in methods:
            t = time.perf_counter()
            acc = fedavg(task, data, args.seed, args.rounds, learner)
            nbytes = 2 * args.nodes * args.rounds * numel * 4
            record(f"Flower FedAvg ({args.nodes} clients + server)", acc, acc, nbytes, t)
        if "fednode" in methods:
            for k in peers:
                t = time.perf_counter()
                mean_acc, min_acc, nbytes = fednode(
                    task,
                    data,
                    args.seed,
                    args.rounds,
                    learner,
                    k,
                    args.weighted,
                    args.await_replies,
                )
                label = "full gossip" if k >= args.nodes - 1 else f"k={k} push-pull"
                label += ", sample-weighted" if args.weighted else ""
                label += ", await replies" if args.await_replies and k < args.nodes - 1 else ""
                record(f"fednode, no server, {label}", mean_acc, min_acc, nbytes, t)
    print()
    print(
        f"MNIST-1D, {args.nodes} nodes, Dirichlet({args.alpha}), {args.rounds} rounds x "
        f"{args.local_steps} local Adam steps (lr 1e-2, batch 100), seed {args.seed}, 2 cores"
    )
    print("| model | method | test accuracy (node mean) | worst node | payload MB | wall s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['method']} | {r['acc']:.3f} | {r['min']:.3f} | "
            f"{r['bytes'] / 1e6:.1f} | {r['sec']:.0f} |"
        )
    cmd = "python bench/bench_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\nreproduce: {cmd.strip()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
