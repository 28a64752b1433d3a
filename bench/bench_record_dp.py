"""Record-level DP measured: fednode's DP-SGD / DP-ZO next to centralized DP-SGD and no DP.

Part ``mnist`` (issue 13, first Measure item). MNIST-1D, the anchor CNN
(``node.training.models.build_model``, genesis-seeded init), 8 nodes, Dirichlet(0.5):

* **fednode, record-level DP-SGD**: the in-process decentralized simulation
  (``node.sim.rounds.simulate``: the daemon's round engine, full gossip k = 7,
  push-pull, ``mean`` rule) with ``LearnerSpec(dp_sgd=True, dp_sgd_noise_multiplier=z,
  dp_sgd_max_grad_norm=C)``: R rounds x K Poisson-sampled DP-SGD steps per node (q_i =
  batch / shard_i). One z for all nodes, ``noise_multiplier_for(eps, max_i q_i, R*K,
  delta)``, so every node is within the target; each node's own epsilon
  (``privacy.accounting.epsilon(z, q_i, R*K, delta)``) is reported.
* **centralized DP-SGD, Opacus on the pooled data**: the same model and init, Opacus
  ``PrivacyEngine.make_private`` (Poisson sampling, RDP accountant), the same optimizer
  and clip, R*K steps of expected batch ``nodes * batch`` over the 4000 pooled examples:
  the same number of steps and of examples seen as the 8 nodes together. z from the same
  ``noise_multiplier_for`` (dp-accounting RDP); Opacus's own RDP epsilon is reported.
* **no DP**: fednode and centralized with the same optimizer, steps and batch.

Part ``sentiment`` (second Measure item): MiniLM-L6 + LoRA, ``TaskSpec(name="sentiment")``
with iid shards, SPSA through ``simulate_spsa`` (every node applies every node's scalars)
without DP and with DP-ZO at each epsilon (z from ``noise_multiplier_for(eps, q, R*m,
delta)``, q = batch / shard), and sgd DP-SGD on the LoRA parameters through ``simulate``
(z for ``q, R*K``). Rounds and exact wire bytes (the daemon's signed messages, as
``bench/bench_sentiment.py`` counts them) to a target accuracy.

Part ``plot`` draws accuracy vs epsilon per mode from the parts' JSON files.

Run:  .venv/bin/python bench/bench_record_dp.py mnist --out /tmp/rdp [--quick]
      [--rounds 20] [--local-steps 20] [--epsilons 1,3,8] [--clips 1.0] [--lrs 1e-2]
      .venv/bin/python bench/bench_record_dp.py sentiment --out /tmp/rdp [--quick]
      .venv/bin/python bench/bench_record_dp.py plot --out /tmp/rdp
      [--png docs/img/record_dp_accuracy.png]

Results and their reading: docs/privacy.md, "Record-level DP (measured)".
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from node.sim.rounds import simulate, simulate_spsa
from node.training.datasets import TaskData, load_task, node_data
from node.training.evaluate import evaluate
from node.training.models import build_model
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec, recommended_settings
from privacy import epsilon, noise_multiplier_for

DELTA = 1e-5
# dp-accounting logs every RDP order whose series does not converge (those orders are
# dropped from the minimum, which only makes epsilon larger); hundreds of lines per run.
logging.getLogger("absl").setLevel(logging.ERROR)


def _load() -> float:
    return os.getloadavg()[0]


def _recorder(rows: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    """Return ``add(row)``: stamp the load average on ``row``, keep it in ``rows``, print it.

    Rows are printed as JSON lines on stderr, so a long run shows them as they come.
    """

    def add(row: dict[str, Any]) -> None:
        row["load"] = _load()
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    return add


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def opacus_epsilon(z: float, q: float, steps: int, delta: float) -> float:
    """Opacus's RDP accountant on ``steps`` Poisson-subsampled Gaussian(z) steps."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(z, q, steps)]
    return float(acc.get_epsilon(delta=delta))


# --- mnist ------------------------------------------------------------------------------


def shard_sizes(task: TaskSpec, data: TaskData, seed: int) -> list[int]:
    return [node_data(task, seed, i, task=data).num_examples for i in range(task.num_nodes)]


def fednode_run(
    task: TaskSpec,
    data: TaskData,
    learner: LearnerSpec,
    rounds: int,
    seed: int,
    peers: int,
) -> tuple[float, float, int, float]:
    """Mean and worst node accuracy, bytes sent, wall seconds of one simulation."""
    spec = RoundSpec(peers_per_round=peers, eval_every=rounds, aggregation="mean")
    t0 = time.perf_counter()
    res = simulate(task, learner, spec, seed=seed, num_rounds=rounds, task_data=data, jitter=0.2)
    return (
        res.mean_accuracy,
        float(np.min(res.final_accuracy)),
        res.bytes_sent,
        time.perf_counter() - t0,
    )


def centralized_run(
    task: TaskSpec,
    data: TaskData,
    seed: int,
    *,
    steps: int,
    batch: int,
    lr: float,
    dp: tuple[float, float] | None,
) -> tuple[float, float | None, float]:
    """Accuracy, Opacus's epsilon (None without DP) and wall seconds on the pooled data.

    ``dp = (z, C)``: Opacus ``PrivacyEngine`` with Poisson sampling at ``q = batch / n``
    and its RDP accountant; without ``dp`` uniform minibatches of ``batch``.
    """
    model = build_model(task, seed, input_dim=data.input_dim, num_classes=data.num_classes)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    eps_spent: float | None = None
    model.train()
    if dp is None:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, len(y), (batch,), generator=gen)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    else:
        import warnings

        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        z, clip = dp
        engine = PrivacyEngine(accountant="rdp")
        loader = DataLoader(TensorDataset(x, y), batch_size=batch)
        with warnings.catch_warnings():
            # secure_mode needs torchcsprng (not installed); the baseline's noise source
            # does not change its accuracy.
            warnings.filterwarnings("ignore", message=".*[Ss]ecure.*")
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            model, opt, loader = engine.make_private(
                module=model,
                optimizer=opt,
                data_loader=loader,
                noise_multiplier=z,
                max_grad_norm=clip,
                poisson_sampling=True,
            )
            done = 0
            while done < steps:
                for xb, yb in loader:
                    if done >= steps:
                        break
                    # Opacus's loader returns an empty batch for an empty Poisson draw
                    # (never at q = 0.2 of 4000 examples); the step is then noise only.
                    opt.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(model(xb), yb).backward()
                    opt.step()
                    done += 1
        eps_spent = float(engine.get_epsilon(DELTA))
        model = model._module  # the plain module under the GradSampleModule
    model.eval()
    acc = evaluate(model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)).accuracy
    return acc, eps_spent, time.perf_counter() - t0


def run_mnist(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.rounds, args.local_steps, args.epsilons = 4, 5, "3"
    torch.set_num_threads(1)
    task = TaskSpec(
        name="mnist1d",
        model="cnn",
        partition="dirichlet",
        alpha=args.alpha,
        num_nodes=args.nodes,
        batch_size=args.batch,
    )
    seed = args.seed
    data = load_task(task, seed)
    sizes = shard_sizes(task, data, seed)
    qs = [min(1.0, args.batch / n) for n in sizes]
    q_max = max(qs)
    steps = args.rounds * args.local_steps
    central_batch = args.nodes * args.batch
    q_c = min(1.0, central_batch / len(data.y))
    epsilons = [float(e) for e in args.epsilons.split(",") if e]
    clips = [float(c) for c in args.clips.split(",") if c]
    lrs = [float(v) for v in args.lrs.split(",") if v]
    methods = set(args.methods.split(","))
    header = (
        f"MNIST-1D CNN, {args.nodes} nodes, Dirichlet({args.alpha}), shards {sizes}, "
        f"batch {args.batch} (q_i {min(qs):.3f}-{q_max:.3f}), {args.rounds} rounds x "
        f"{args.local_steps} steps = {steps} steps/node, full gossip k={args.nodes - 1}, "
        f"Adam; centralized: {len(data.y)} pooled examples, expected batch {central_batch} "
        f"(q {q_c:.3f}), {steps} steps; delta {DELTA:g}; seed {seed}"
    )
    print(f"# {header}\n# load average {_load():.1f}, {os.cpu_count()} cores", flush=True)
    rows: list[dict[str, Any]] = []
    add = _recorder(rows)

    for lr in lrs:
        base = LearnerSpec(lr=lr, local_steps=args.local_steps, optimizer="adam")
        if not args.no_baseline:
            acc, worst, nbytes, secs = fednode_run(task, data, base, args.rounds, seed, 7)
            add(
                dict(
                    mode="fednode, no DP",
                    eps=None,
                    lr=lr,
                    clip=None,
                    z=0.0,
                    acc=acc,
                    min=worst,
                    bytes=nbytes,
                    sec=secs,
                )
            )
            acc, _, secs = centralized_run(
                task, data, seed, steps=steps, batch=central_batch, lr=lr, dp=None
            )
            add(
                dict(
                    mode="centralized, no DP",
                    eps=None,
                    lr=lr,
                    clip=None,
                    z=0.0,
                    acc=acc,
                    min=acc,
                    bytes=0,
                    sec=secs,
                )
            )
        for target in epsilons:
            z = noise_multiplier_for(target, q_max, steps, DELTA)
            z_c = noise_multiplier_for(target, q_c, steps, DELTA)
            node_eps = [epsilon(z, q, steps, DELTA) for q in qs]
            node_eps_opacus = [opacus_epsilon(z, q, steps, DELTA) for q in qs]
            if max(node_eps) > target:
                raise AssertionError(f"a node spends {max(node_eps)} > target {target}")
            for clip in clips:
                if "fednode" in methods:
                    learner = base.model_copy(
                        update={
                            "dp_sgd": True,
                            "dp_sgd_noise_multiplier": z,
                            "dp_sgd_max_grad_norm": clip,
                        }
                    )
                    acc, worst, nbytes, secs = fednode_run(
                        task, data, learner, args.rounds, seed, 7
                    )
                    add(
                        dict(
                            mode="fednode, record-level DP-SGD",
                            eps=target,
                            lr=lr,
                            clip=clip,
                            z=z,
                            acc=acc,
                            min=worst,
                            bytes=nbytes,
                            sec=secs,
                            node_eps=node_eps,
                            node_eps_opacus=node_eps_opacus,
                        )
                    )
                if "centralized" in methods:
                    acc, eps_opacus, secs = centralized_run(
                        task, data, seed, steps=steps, batch=central_batch, lr=lr, dp=(z_c, clip)
                    )
                    eps_lib = epsilon(z_c, q_c, steps, DELTA)
                    add(
                        dict(
                            mode="centralized DP-SGD (Opacus)",
                            eps=target,
                            lr=lr,
                            clip=clip,
                            z=z_c,
                            acc=acc,
                            min=acc,
                            bytes=0,
                            sec=secs,
                            node_eps=[eps_lib],
                            node_eps_opacus=[eps_opacus],
                        )
                    )
    result = {"part": "mnist", "header": header, "args": vars(args), "rows": rows}
    print_mnist(result)
    return result


def print_mnist(result: dict[str, Any]) -> None:
    print(f"\n{result['header']}\n")
    print(
        "| mode | target eps | lr | clip C | noise z | eps spent (RDP, dp-accounting) "
        "| eps (Opacus RDP) | mean acc | worst node | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        spent = r.get("node_eps")
        opac = r.get("node_eps_opacus")
        if spent:
            s = f"{min(spent):.3f}-{max(spent):.3f}" if len(spent) > 1 else f"{spent[0]:.3f}"
            o = f"{min(opac):.3f}-{max(opac):.3f}" if len(opac) > 1 else f"{opac[0]:.3f}"
        else:
            s = o = "-"
        print(
            f"| {r['mode']} | {_fmt(r['eps'], 0) if r['eps'] else 'no DP'} | {r['lr']:g} "
            f"| {_fmt(r['clip'], 2) if r['clip'] else '-'} | {r['z']:.3f} | {s} | {o} "
            f"| {r['acc']:.3f} | {r['min']:.3f} | {r['sec']:.0f} |"
        )


# --- sentiment --------------------------------------------------------------------------


def majority(y: np.ndarray) -> float:
    y = np.asarray(y)
    return float(max((y == c).mean() for c in range(int(y.max()) + 1)))


def first_at(history: dict[int, list[float]], target: float) -> int | None:
    """1-based round of the first evaluation whose node-mean accuracy is >= target."""
    for r, accs in sorted(history.items()):
        if float(np.mean(accs)) >= target:
            return r + 1
    return None


def run_sentiment(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.spsa_rounds, args.sgd_rounds, args.epsilons, args.max_test = 2, 1, "8", 64
        args.eval_every = 1
    torch.set_num_threads(1)
    task_over, sgd_over = recommended_settings("sentiment", "sgd")
    _, spsa_over = recommended_settings("sentiment", "spsa")
    task_over.update(
        partition="iid",  # the SPSA preset's partition (docs/training.md); sgd uses the same
        batch_size=args.batch if args.batch else task_over["batch_size"],
        max_length=args.max_length if args.max_length else task_over["max_length"],
    )
    task = TaskSpec(name="sentiment", num_nodes=args.nodes, **task_over)
    seed = args.seed
    full = load_task(task, seed)
    # The shared test set, capped: every node evaluates it, and MiniLM forwards dominate.
    data = TaskData(
        x=full.x,
        y=full.y,
        x_test=full.x_test[: args.max_test],
        y_test=full.y_test[: args.max_test],
        num_classes=full.num_classes,
        class_names=full.class_names,
    )
    sizes = shard_sizes(task, data, seed)
    q_max = max(min(1.0, task.batch_size / n) for n in sizes)
    maj = majority(data.y_test)
    spsa = LearnerSpec(kind="spsa", **spsa_over)
    sgd = LearnerSpec(kind="sgd", optimizer="adam", **sgd_over)
    spsa_steps = args.spsa_rounds * spsa.spsa_steps
    sgd_steps = args.sgd_rounds * sgd.local_steps
    header = (
        f"sentiment (MiniLM-L6 + LoRA), {args.nodes} nodes iid, shards {sizes}, batch "
        f"{task.batch_size} (q {q_max:.3f}), max_length {task.max_length}, max_samples "
        f"{task.max_samples}, test {len(data.y_test)} tweets (majority {maj:.3f}); spsa lr "
        f"{spsa.lr:g} eps {spsa.spsa_eps:g}, {spsa.spsa_steps} steps x {args.spsa_rounds} "
        f"rounds; sgd Adam lr {sgd.lr:g}, {sgd.local_steps} steps x {args.sgd_rounds} rounds, "
        f"k={args.peers}; DP-ZO clip {args.zo_clip or spsa.dp_zo_clip:g}, "
        f"DP-SGD clip {args.sgd_clip:g}; "
        f"delta {DELTA:g}; seed {seed}; target {args.target}"
    )
    print(f"# {header}\n# load average {_load():.1f}", flush=True)
    rows: list[dict[str, Any]] = []
    add = _recorder(rows)

    targets = {"majority": maj, "target": args.target}

    def to_targets(history: dict[int, list[float]], per_round: float) -> dict[str, Any]:
        """Rounds and payload bytes (at the run's mean bytes per round) to each target."""
        out: dict[str, Any] = {}
        for name, value in targets.items():
            reached = first_at(history, value)
            out[f"reached_{name}"] = reached
            out[f"bytes_{name}"] = None if reached is None else int(per_round * reached)
        return out

    def spsa_run(mode: str, eps: float | None, learner: LearnerSpec) -> None:
        t0 = time.perf_counter()
        res = simulate_spsa(
            task,
            learner,
            seed=seed,
            num_rounds=args.spsa_rounds,
            eval_every=args.eval_every,
            task_data=data,
        )
        hist = {r: float(np.mean(a)) for r, a in res.history.items()}
        add(
            dict(
                mode=mode,
                eps=eps,
                z=learner.dp_zo_noise_multiplier if learner.dp_zo else 0.0,
                clip=learner.dp_zo_clip if learner.dp_zo else None,
                acc=res.mean_accuracy,
                history=hist,
                bytes=res.bytes_sent,
                rounds=args.spsa_rounds,
                **to_targets(res.history, res.bytes_sent / args.spsa_rounds),
                max_abs_diff=res.max_abs_diff,
                sec=time.perf_counter() - t0,
            )
        )

    def sgd_run(mode: str, eps: float | None, learner: LearnerSpec) -> None:
        t0 = time.perf_counter()
        spec = RoundSpec(peers_per_round=args.peers, eval_every=args.eval_every)
        res = simulate(
            task,
            learner,
            spec,
            seed=seed,
            num_rounds=args.sgd_rounds,
            task_data=data,
            jitter=0.2,
        )
        hist = {r: float(np.mean(a)) for r, a in res.history.items()}
        add(
            dict(
                mode=mode,
                eps=eps,
                z=learner.dp_sgd_noise_multiplier if learner.dp_sgd else 0.0,
                clip=learner.dp_sgd_max_grad_norm if learner.dp_sgd else None,
                acc=res.mean_accuracy,
                history=hist,
                bytes=res.bytes_sent,
                rounds=args.sgd_rounds,
                **to_targets(res.history, res.bytes_sent / args.sgd_rounds),
                sec=time.perf_counter() - t0,
            )
        )

    modes = set(args.modes.split(","))
    epsilons = [float(e) for e in args.epsilons.split(",") if e]
    if "spsa" in modes:
        spsa_run("SPSA, no DP", None, spsa)
    for target in epsilons:
        if "dpzo" in modes:
            z = noise_multiplier_for(target, q_max, spsa_steps, DELTA)
            learner = spsa.model_copy(
                update={
                    "dp_zo": True,
                    "dp_zo_noise_multiplier": z,
                    "dp_zo_clip": spsa.dp_zo_clip if args.zo_clip is None else args.zo_clip,
                }
            )
            spsa_run("SPSA + DP-ZO", target, learner)
        if "dpsgd" in modes:
            z = noise_multiplier_for(target, q_max, sgd_steps, DELTA)
            learner = sgd.model_copy(
                update={
                    "dp_sgd": True,
                    "dp_sgd_noise_multiplier": z,
                    "dp_sgd_max_grad_norm": args.sgd_clip,
                }
            )
            sgd_run("sgd + DP-SGD (LoRA)", target, learner)
    if "sgd" in modes:
        sgd_run("sgd, no DP", None, sgd)
    result = {
        "part": "sentiment",
        "header": header,
        "majority": maj,
        "target": args.target,
        "rows": rows,
        "args": vars(args),
    }
    print_sentiment(result)
    return result


def print_sentiment(result: dict[str, Any]) -> None:
    print(f"\n{result['header']}\n")
    print(
        f"| mode | target eps | noise z | final acc | acc by round | rounds to majority "
        f"({result['majority']:.3f}) | payload bytes to majority | rounds to "
        f"{result['target']} | payload bytes to {result['target']} | payload bytes, all "
        "rounds | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        hist = ", ".join(
            f"{int(k) + 1}: {v:.3f}"
            for k, v in sorted(r["history"].items(), key=lambda kv: int(kv[0]))
        )
        cells = []
        for name in ("majority", "target"):
            reached = r[f"reached_{name}"]
            cells.append(str(reached) if reached is not None else f"> {r['rounds']}")
            cells.append(f"{r[f'bytes_{name}']:,}" if reached is not None else "-")
        print(
            f"| {r['mode']} | {_fmt(r['eps'], 0) if r['eps'] else 'no DP'} | {r['z']:.3f} "
            f"| {r['acc']:.3f} | {hist} | {' | '.join(cells)} | {r['bytes']:,} "
            f"| {r['sec']:.0f} |"
        )


# --- plot -------------------------------------------------------------------------------


def plot(out: Path, png: Path) -> Path:
    """Accuracy vs epsilon, one line per mode and setting; no-DP runs as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = {"mnist": [], "sentiment": []}  # type: dict[str, list[dict[str, Any]]]
    for path in sorted(out.glob("*.json")):
        obj = json.loads(path.read_text())
        if obj.get("part") in parts:
            parts[obj["part"]].extend(obj["rows"])
    parts = {k: v for k, v in parts.items() if v}  # a panel per part that has runs
    if not parts:
        raise SystemExit(f"no mnist or sentiment results in {out}")
    fig, axes_ = plt.subplots(1, len(parts), figsize=(5 * len(parts), 4), squeeze=False)
    axes = list(axes_[0])
    titles = {
        "mnist": "MNIST-1D CNN, 8 nodes, Dirichlet(0.5)",
        "sentiment": "tweet sentiment, MiniLM-L6 LoRA, 4 nodes",
    }
    for ax, (part, rows) in zip(axes, parts.items(), strict=True):
        lines: dict[str, list[tuple[float, float]]] = {}
        labelled = 0
        for r in rows:
            label = r["mode"]
            if part == "mnist":
                label += f", lr {r['lr']:g}" + (f", C {r['clip']:g}" if r["clip"] else "")
            elif r.get("clip"):
                label += f", C {r['clip']:g}"
            if r["eps"] is None:
                ax.axhline(r["acc"], ls="--", lw=1, color="grey" if "central" in label else "k")
                # Baselines often share a value (every run at the majority class): stack
                # their labels instead of printing them over each other.
                ax.text(
                    0.01,
                    r["acc"] + 0.045 * labelled,
                    f" {label}: {r['acc']:.3f}",
                    fontsize=7,
                    va="bottom",
                    transform=ax.get_yaxis_transform(),
                )
                labelled += 1
            else:
                lines.setdefault(label, []).append((float(r["eps"]), float(r["acc"])))
        swept: set[str] = set()
        for k, (label, pts) in enumerate(sorted(lines.items())):
            pts.sort()
            mode = label.split(", lr")[0]
            color = "C0" if "central" in mode or "no DP" in mode else f"C{1 + k % 8}"
            if len(pts) == 1:
                # A sweep point at one epsilon: hollow marker, one legend entry per mode.
                ax.scatter(
                    [pts[0][0]],
                    [pts[0][1]],
                    facecolors="none",
                    edgecolors="C0" if "central" in mode else "C1",
                    label=None if mode in swept else f"{mode}: lr/clip sweep",
                )
                swept.add(mode)
                continue
            # Distinct markers and dashes keep coinciding lines visible.
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="osD^"[k % 4],
                ls=["-", "--", ":", "-."][k % 4],
                color=color if part == "mnist" else None,
                label=label,
            )
        ax.set_xscale("log")
        ax.set_xlim(0.7, 12)
        ax.set_xticks([1, 3, 8], ["1", "3", "8"])
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("record-level epsilon (delta = 1e-5)")
        ax.set_ylabel("test accuracy")
        ax.set_title(titles[part], fontsize=9)
        if lines:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


# --- entry point ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    sub = ap.add_subparsers(dest="part", required=True)
    mn = sub.add_parser("mnist", help="MNIST-1D CNN: fednode vs centralized DP-SGD")
    mn.add_argument("--out", type=Path, required=True, help="directory for the JSON result")
    mn.add_argument("--rounds", type=int, default=20)
    mn.add_argument("--local-steps", type=int, default=20)
    mn.add_argument("--epsilons", default="1,3,8")
    mn.add_argument("--clips", default="1.0", help="per-example clip norms C to try")
    mn.add_argument("--lrs", default="1e-2", help="Adam learning rates to try")
    mn.add_argument("--nodes", type=int, default=8)
    mn.add_argument("--alpha", type=float, default=0.5)
    mn.add_argument("--batch", type=int, default=100, help="expected batch per node")
    mn.add_argument("--seed", type=int, default=0)
    mn.add_argument("--no-baseline", action="store_true", help="skip the no-DP runs")
    mn.add_argument("--methods", default="fednode,centralized", help="subset to run")
    mn.add_argument("--tag", default="", help="suffix of the JSON file name")
    mn.add_argument("--quick", action="store_true", help="smoke run: 4 rounds x 5 steps, eps 3")
    se = sub.add_parser("sentiment", help="MiniLM LoRA: DP-ZO vs SPSA vs DP-SGD")
    se.add_argument("--out", type=Path, required=True, help="directory for the JSON result")
    se.add_argument("--nodes", type=int, default=4)
    se.add_argument("--batch", type=int, default=0, help="0: the preset's (16)")
    se.add_argument("--max-length", type=int, default=0, help="0: the preset's (32)")
    se.add_argument("--max-test", type=int, default=200, help="test tweets evaluated")
    se.add_argument("--spsa-rounds", type=int, default=30)
    se.add_argument("--sgd-rounds", type=int, default=6)
    se.add_argument("--eval-every", type=int, default=5)
    se.add_argument("--peers", type=int, default=1, help="sgd: k push-pull peers")
    se.add_argument("--epsilons", default="3,8")
    se.add_argument("--zo-clip", type=float, default=None, help="DP-ZO clip C [the preset's: 5]")
    se.add_argument("--sgd-clip", type=float, default=1.0, help="DP-SGD clip C")
    se.add_argument("--target", type=float, default=0.75)
    se.add_argument("--modes", default="spsa,dpzo,dpsgd,sgd")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--tag", default="", help="suffix of the JSON file name")
    se.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, eps 8")
    pl = sub.add_parser("plot", help="accuracy vs epsilon from the parts' JSON")
    pl.add_argument("--out", type=Path, required=True, help="directory of the JSON results")
    pl.add_argument("--png", type=Path, default=Path("docs/img/record_dp_accuracy.png"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "plot":
        print(f"wrote {plot(args.out, args.png)}")
        return 0
    if args.part in ("mnist", "sentiment"):
        result = run_mnist(args) if args.part == "mnist" else run_sentiment(args)
        result["args"] = {k: str(v) for k, v in result["args"].items()}
        result["command"] = ".venv/bin/python bench/bench_record_dp.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        result["load_end"] = _load()
        path = args.out / f"{args.part}{args.tag}.json"
        path.write_text(json.dumps(result, indent=1))
        print(f"\nload average at the end {_load():.1f}; wrote {path}")
        print(f"command: {result['command']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
