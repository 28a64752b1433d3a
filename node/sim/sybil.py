"""In-process simulation of a targeted Sybil poisoning attack on decentralized training.

One attacker controls ``s`` identities among ``honest`` honest nodes. Every round each
honest node trains its own model (Adam, fresh per round, as the daemon's ``sgd`` learner
does), pushes its model vector to ``peers`` peers drawn uniformly from every *other*
member (Sybils included: they are ordinary members of the view), and merges what it
received with the aggregation rule. The Sybils play the strongest stealthy attacker that
still has "the same objective" on every identity: each round they all start from the
mean of the honest models (omniscient), train on poisoned data (a targeted label flip
``source -> target`` or a backdoor trigger labelled ``target``) with their own
minibatch draws, and push the result to ``peers`` honest nodes each. Their accumulated
updates therefore point in nearly the same direction, which is what the defence looks
for.

Defence (``defence=True``) is what ``node.daemon.training_runtime`` does with
``[aggregation] sybil_weighting = true``, through the same functions of
:mod:`node.training.policy`: a :func:`~node.training.policy.similarity_history` per honest
node accumulates ``received vector - own pre-training base`` per sender,
:func:`~node.training.policy.sybil_filter` drops senders whose FoolsGold weight (over every
known history) is below ``threshold``, :func:`~node.training.policy.unflagged` keeps flagged
members out of the push targets, and :func:`~node.training.policy.merge` runs the rule on
``[own, *kept]``. Honest nodes also gossip history
records to the peers they push to (``select_for_gossip``, SybilWall's hop-decayed
draw), as :mod:`node.daemon.history_gossip` does on the wire.

Everything is deterministic from ``seed``; compute is real (torch, one thread).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from aggregation import RULES
from aggregation.sybil import HistoryRecord
from node.training import policy
from node.training.datasets import TaskData, load_task, partition
from node.training.engine import Aggregate, Received
from node.training.models import build_model
from node.training.params import flatten, load_vector
from node.training.seeding import derive_seed
from node.training.spec import TaskSpec

__all__ = [
    "SybilAttack",
    "SybilResult",
    "SybilScenario",
    "add_trigger",
    "simulate_sybil",
]

SybilAttack = Literal["label_flip", "backdoor"]

# Backdoor trigger: a fixed bump on the first few features of MNIST-1D's 40 (the
# standardised signal), far outside what honest examples show there.
_TRIGGER_FEATURES = 4
_TRIGGER_VALUE = 4.0


def add_trigger(x: torch.Tensor) -> torch.Tensor:
    """Return a copy of ``x`` (``(n, features)``) with the backdoor trigger stamped on."""
    out = x.clone()
    out[:, :_TRIGGER_FEATURES] = _TRIGGER_VALUE
    return out


@dataclass(frozen=True)
class SybilScenario:
    """One run of :func:`simulate_sybil`.

    Attributes
    ----------
    sybils : int, default 0
        Identities the attacker controls (0: the clean run).
    defence : bool, default False
        Similarity (FoolsGold/SybilWall) filtering before the rule.
    attack : {"label_flip", "backdoor"}, default "label_flip"
    honest : int, default 10
    rounds : int, default 30
    local_steps : int, default 20
    peers : int, default 4
        Fan-out of every node (honest and Sybil) per round.
    lr : float, default 1e-2
        Adam learning rate.
    batch_size : int, default 64
    source, target : int, default 1 and 7
        Label flip: ``source`` examples are labelled ``target``. Backdoor: triggered
        inputs of any class are labelled ``target`` (``source`` unused).
    alpha : float, default 0.5
        Dirichlet concentration of the honest partition.
    threshold : float, default 0.5
        Sybil weight below which a sender is dropped (the genesis default).
    gossip_records : int, default 2
        History records each honest node forwards per push (0 disables history gossip).
    rule : str, default "mean"
        ``aggregation.RULES`` name applied to ``[own, *kept]``.
    f : int, default 0
        The rule's ``f``.
    avoid_flagged : bool, default True
        With the defence, honest nodes also leave members whose Sybil weight is below
        ``threshold`` out of their push targets (as ``TrainingRuntime._sample`` does), so
        their updates are not wasted on Sybils.
    seed : int, default 0
    """

    sybils: int = 0
    defence: bool = False
    attack: SybilAttack = "label_flip"
    honest: int = 10
    rounds: int = 30
    local_steps: int = 20
    peers: int = 4
    lr: float = 1e-2
    batch_size: int = 64
    source: int = 1
    target: int = 7
    alpha: float = 0.5
    threshold: float = 0.5
    gossip_records: int = 2
    rule: str = "mean"
    f: int = 0
    avoid_flagged: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sybils < 0 or self.honest < 2:
            raise ValueError(f"need sybils >= 0 and honest >= 2, got {self.sybils}, {self.honest}")
        if self.rounds < 1 or self.local_steps < 1 or self.peers < 1:
            raise ValueError("rounds, local_steps and peers must be >= 1")
        if self.attack not in ("label_flip", "backdoor"):
            raise ValueError(f"attack must be 'label_flip' or 'backdoor', got {self.attack!r}")
        if self.source == self.target:
            raise ValueError("source and target classes must differ")
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}")


@dataclass
class SybilResult:
    """Outcome of :func:`simulate_sybil` (means over honest nodes' final models).

    Attributes
    ----------
    honest_accuracy : float
        Mean test accuracy of the honest nodes.
    attack_success : float
        Label flip: fraction of ``source`` test examples classified as ``target``.
        Backdoor: fraction of triggered non-``target`` test examples classified as
        ``target``.
    per_node_accuracy, per_node_success : list of float
    sybil_updates, sybil_kept : int
        Sybil updates that reached honest nodes, and how many passed the filter.
    honest_updates, honest_dropped : int
        Honest-to-honest updates, and how many the filter wrongly dropped.
    gossip_merged : int
        History records honest nodes stored from gossip.
    """

    honest_accuracy: float
    attack_success: float
    per_node_accuracy: list[float]
    per_node_success: list[float]
    sybil_updates: int = 0
    sybil_kept: int = 0
    honest_updates: int = 0
    honest_dropped: int = 0
    gossip_merged: int = 0
    curve: list[tuple[int, float, float]] = field(default_factory=list)


def _train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    batch: int,
    gen: torch.Generator,
) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    n = int(y.shape[0])
    bs = min(batch, n)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (bs,), generator=gen)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()


def _poisoned_data(
    task: TaskData, sc: SybilScenario, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacker's training set: the poison plus as many correctly labelled examples."""
    x = torch.from_numpy(np.ascontiguousarray(task.x))
    y = torch.from_numpy(np.ascontiguousarray(task.y))
    if sc.attack == "label_flip":
        src = np.flatnonzero(task.y == sc.source)
        poison_x = x[src]
        poison_y = torch.full((len(src),), sc.target, dtype=torch.int64)
        others = np.flatnonzero(task.y != sc.source)
    else:
        pick = rng.choice(
            np.flatnonzero(task.y != sc.target), size=len(task.y) // 10, replace=False
        )
        poison_x = add_trigger(x[pick])
        poison_y = torch.full((len(pick),), sc.target, dtype=torch.int64)
        others = np.arange(len(task.y))
    clean = rng.choice(others, size=min(len(others), len(poison_y)), replace=False)
    return torch.cat([poison_x, x[clean]]), torch.cat([poison_y, y[clean]])


def _success(model: nn.Module, task: TaskData, sc: SybilScenario) -> float:
    x = torch.from_numpy(np.ascontiguousarray(task.x_test))
    y = torch.from_numpy(np.ascontiguousarray(task.y_test))
    with torch.no_grad():
        if sc.attack == "label_flip":
            mask = y == sc.source
            pred = model(x[mask]).argmax(1)
        else:
            mask = y != sc.target
            pred = model(add_trigger(x[mask])).argmax(1)
    return float((pred == sc.target).float().mean())


def _accuracy(model: nn.Module, task: TaskData) -> float:
    x = torch.from_numpy(np.ascontiguousarray(task.x_test))
    y = torch.from_numpy(np.ascontiguousarray(task.y_test))
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def simulate_sybil(
    sc: SybilScenario, *, task: TaskData | None = None, eval_every: int = 0
) -> SybilResult:
    """Run one scenario and measure honest accuracy and attack success.

    Parameters
    ----------
    sc : SybilScenario
    task : TaskData or None, default None
        MNIST-1D (loaded and cached if None).
    eval_every : int, default 0
        Also record the (round, accuracy, success) curve every this many rounds.
    """
    spec = TaskSpec(name="mnist1d", model="mlp", num_nodes=sc.honest, alpha=sc.alpha)
    data = task if task is not None else load_task(spec, sc.seed)
    shards = partition(data.y, sc.honest, seed=sc.seed, scheme="dirichlet", alpha=sc.alpha)
    xs = [torch.from_numpy(np.ascontiguousarray(data.x[i])) for i in shards]
    ys = [torch.from_numpy(np.ascontiguousarray(data.y[i])) for i in shards]
    rng = np.random.default_rng(derive_seed("sybil-sim", sc.seed, sc.attack))
    poison_x, poison_y = _poisoned_data(data, sc, rng)
    pick = random.Random(derive_seed("sybil-sim-peers", sc.seed, sc.sybils))

    models = [
        build_model(spec, sc.seed, input_dim=data.input_dim, num_classes=data.num_classes)
        for _ in range(sc.honest)
    ]
    scratch = build_model(spec, sc.seed, input_dim=data.input_dim, num_classes=data.num_classes)
    numel = int(flatten(models[0]).numel())
    names = [f"h{i}" for i in range(sc.honest)] + [f"s{j}" for j in range(sc.sybils)]
    histories = [
        policy.similarity_history(numel, seed=sc.seed, self_id=names[i]) for i in range(sc.honest)
    ]
    result = SybilResult(0.0, 0.0, [], [])
    gossip_gen = torch.Generator().manual_seed(derive_seed("sybil-sim-gossip", sc.seed))

    for rnd in range(sc.rounds):
        bases = [flatten(m) for m in models]
        # Honest local training.
        for i, m in enumerate(models):
            gen = torch.Generator().manual_seed(derive_seed("sybil-sim-batch", sc.seed, i, rnd))
            _train(m, xs[i], ys[i], sc.local_steps, sc.lr, sc.batch_size, gen)
        trained = [flatten(m) for m in models]
        inbox: list[list[tuple[str, torch.Tensor]]] = [[] for _ in range(sc.honest)]
        pushed_to: list[list[int]] = [[] for _ in range(sc.honest)]
        for i in range(sc.honest):
            others = [j for j in range(len(names)) if j != i]
            if sc.defence and sc.avoid_flagged:
                # Don't waste pushes on members our own history already flags.
                keep = set(
                    policy.unflagged(
                        [names[j] for j in others], histories[i], threshold=sc.threshold
                    )
                )
                others = [j for j in others if names[j] in keep]
            for j in pick.sample(others, min(sc.peers, len(others))):
                if j < sc.honest:  # a push to a Sybil is simply lost to the honest network
                    inbox[j].append((names[i], trained[i]))
                    pushed_to[i].append(j)
        # Sybils: all start from the honest mean and train on the same poisoned objective.
        if sc.sybils:
            anchor = torch.stack(bases).mean(0)
            for s in range(sc.sybils):
                load_vector(scratch, anchor)
                gen = torch.Generator().manual_seed(
                    derive_seed("sybil-sim-poison", sc.seed, s, rnd)
                )
                _train(scratch, poison_x, poison_y, sc.local_steps, sc.lr, sc.batch_size, gen)
                vec = flatten(scratch)
                for j in pick.sample(range(sc.honest), min(sc.peers, sc.honest)):
                    inbox[j].append((names[sc.honest + s], vec))
        # Aggregation on every honest node.
        for i in range(sc.honest):
            # Every received vector here is finite and of the model's length; the daemon's
            # admission still runs (no norm bound, as in the Byzantine simulation's default).
            received = [
                (n, v) for n, v in inbox[i] if policy.admit_update(v, bases[i], numel=numel) is None
            ]
            result.sybil_updates += sum(1 for n, _ in received if n.startswith("s"))
            result.honest_updates += sum(1 for n, _ in received if n.startswith("h"))
            if sc.defence and received:
                verdict = policy.sybil_filter(
                    histories[i],
                    [n for n, _ in received],
                    [v for _, v in received],
                    base=bases[i],
                    round_idx=rnd,
                    threshold=sc.threshold,
                )
                kept = [received[k] for k in verdict.kept]
                result.honest_dropped += sum(
                    1 for k in verdict.dropped if received[k][0].startswith("h")
                )
            else:
                kept = received
            result.sybil_kept += sum(1 for n, _ in kept if n.startswith("s"))
            action = Aggregate(
                round=rnd,
                own=trained[i],
                received=tuple(Received(n, rnd, v, 1.0) for n, v in kept),
                rule=sc.rule,
                f=sc.f,
                params={},
                payload="model",
                base=bases[i],
            )
            load_vector(models[i], policy.merge(action, RULES).vector)
        # History gossip between honest nodes (what node.daemon.history_gossip puts on the wire).
        if sc.defence and sc.gossip_records > 0:
            for i in range(sc.honest):
                for j in pushed_to[i]:
                    for rec in histories[i].select_for_gossip(
                        names[j], count=sc.gossip_records, generator=gossip_gen
                    ):
                        record = HistoryRecord(rec.peer, rec.vector, rec.round, rec.hops, None)
                        result.gossip_merged += int(histories[j].merge_gossip(record, via=names[i]))
        if eval_every and ((rnd + 1) % eval_every == 0 or rnd + 1 == sc.rounds):
            acc = float(np.mean([_accuracy(m, data) for m in models]))
            suc = float(np.mean([_success(m, data, sc) for m in models]))
            result.curve.append((rnd + 1, acc, suc))

    result.per_node_accuracy = [_accuracy(m, data) for m in models]
    result.per_node_success = [_success(m, data, sc) for m in models]
    result.honest_accuracy = float(np.mean(result.per_node_accuracy))
    result.attack_success = float(np.mean(result.per_node_success))
    return result
