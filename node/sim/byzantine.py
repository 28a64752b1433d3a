"""In-process decentralized training with omniscient Byzantine nodes (no sockets, no server).

``H`` honest nodes hold the shards of a ``num_nodes = H`` partition (the Byzantine nodes hold no
data: they are the omniscient attackers of the robustness literature) and ``f`` Byzantine nodes
join the all-to-all exchange. One synchronous round ``r``:

1. every honest node ``i`` starts from its model ``b_i`` and trains ``local_steps`` steps
   (the ``sgd`` learner: fresh Adam, minibatches seeded by ``(seed, node, round)``) to ``w_i``;
2. every honest node receives the other honest nodes' models ``w_j`` and one message from each
   Byzantine node. The attacker sees all honest models of the round and tailors its messages
   to each receiver: ``b_i + ATTACKS[attack]({w_j - b_i}_j, f=f)``, i.e. the attack runs on the
   honest *updates relative to the receiver's round-start model*. That is the daemon's
   ``TrainingRuntime._byzantine`` (``base + attack(deltas from base)``, sent as a model
   payload) with the attacker's own base replaced by the receiver's and last round's honest
   vectors replaced by this round's (the stronger, ByzFL/ClippedGossip threat model);
3. received rows pass the daemon's admission, :func:`node.training.policy.admit_update`
   (non-finite and wrongly sized rows are dropped; optionally rows farther than ``max_norm``
   from the receiver's base) and the node merges with the daemon's
   :func:`node.training.policy.merge` (``f`` lowered if the rows at hand need it, own model
   kept if the result is not finite) around :func:`node.training.engine.aggregate_round`: the
   stack ``[own, *received]`` goes to ``aggregation.RULES[rule](stack - own, f=f) + own``,
   self-centred rules get ``reference=own``, Bristle gets absolute models and a ``score_fn``
   (accuracy on up to ``bristle_samples`` examples of the node's own shard).

Two engines compute step 1. ``"trainer"`` runs one real
:func:`~node.training.trainer.make_trainer` trainer per node. ``"batched"`` (default; 2-7x
faster for the CNN on one loaded core in our measurements) trains all honest nodes at once:
the same models, written as batched matrix products over a leading node axis, the same
minibatch draws and Adam on the stacked parameters (Adam is elementwise, so this is each
node's own Adam). The two agree to float32 rounding (tested); it supports the MNIST-1D MLP
and CNN.

Everything is deterministic from ``seed``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from aggregation import ATTACKS, RULES
from aggregation.preconditions import PreconditionError
from node.training import policy
from node.training.attack_spec import AttackSpec, AttackSpecError
from node.training.attack_spec import parse_attack as _parse_attack
from node.training.datasets import NodeData, TaskData, load_task, node_data
from node.training.engine import Aggregate, Received
from node.training.models import build_model
from node.training.params import layout_of
from node.training.seeding import derive_seed
from node.training.spec import LearnerSpec, TaskSpec
from node.training.trainer import ModelTrainer, make_trainer

__all__ = [
    "AttackSpec",
    "BatchedLearner",
    "ByzantineSimError",
    "ByzantineSimResult",
    "check_rule_preconditions",
    "parse_attack",
    "simulate_byzantine",
]

#: Rules that take the node's own vector as ``reference=`` (also after ``nnm+``).
_SELF_CENTRED = frozenset({"self_centered_clipping", "bristle"})


class ByzantineSimError(ValueError):
    """A Byzantine simulation was configured inconsistently (the message names the setting)."""


def parse_attack(text: str) -> AttackSpec:
    """Parse ``name`` or ``name:key=value,...`` (values are floats) into an :class:`AttackSpec`.

    The testnet's attacker daemons parse with :func:`node.training.attack_spec.parse_attack`;
    this is the same parser with the simulation's error type.

    Raises
    ------
    ByzantineSimError
        Unknown attack name or a malformed parameter.
    """
    try:
        return _parse_attack(text)
    except AttackSpecError as exc:
        raise ByzantineSimError(str(exc)) from None


def check_rule_preconditions(rule: str, *, n: int, f: int) -> None:
    """Raise if ``rule`` cannot run on ``n`` rows (own model included) with ``f`` Byzantine.

    Runs the rule once on a small dummy stack, so the check is exactly the rule's own
    documented precondition.

    Raises
    ------
    ByzantineSimError
        Unknown rule, or the rule's f-vs-n precondition fails (message from the rule).
    """
    if rule not in RULES:
        raise ByzantineSimError(f"unknown rule {rule!r}; known: {sorted(RULES)}")
    dummy = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    params: dict[str, Any] = {}
    if rule.split("+")[-1] in _SELF_CENTRED:
        params["reference"] = torch.zeros(2)
    if rule.split("+")[-1] == "bristle":
        params["score_fn"] = lambda v: 0.0
    try:
        RULES[rule](dummy, f=f, **params)
    except PreconditionError as exc:
        raise ByzantineSimError(f"rule {rule!r} with {n} rows and f={f}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Batched learner: H nodes' models as one stacked set of parameters.


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # h (N, B, I), w (N, O, I) as nn.Linear, b (N, O)
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _conv1d(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int, pad: int
) -> torch.Tensor:
    # h (N, B, L, C) channels-last; w (N, O, C, k) as nn.Conv1d; b (N, O).
    # im2col by k strided slices: unfold's backward was 5x slower than the whole step.
    n, batch, _length, c = h.shape
    k = w.shape[-1]
    h = nn.functional.pad(h, (0, 0, pad, pad))
    out_len = (h.shape[2] - k) // stride + 1
    cols = torch.cat([h[:, :, j : j + stride * (out_len - 1) + 1 : stride] for j in range(k)], -1)
    wm = w.permute(0, 3, 2, 1).reshape(n, k * c, -1)
    y = torch.baddbmm(b.unsqueeze(1), cols.reshape(n, batch * out_len, k * c), wm)
    return y.reshape(n, batch, out_len, -1)


_MLP_SHAPES = (
    "net.0.weight",
    "net.0.bias",
    "net.2.weight",
    "net.2.bias",
    "net.4.weight",
    "net.4.bias",
)
_CNN_SHAPES = (
    "conv.0.weight",
    "conv.0.bias",
    "conv.2.weight",
    "conv.2.bias",
    "conv.4.weight",
    "conv.4.bias",
    "head.weight",
    "head.bias",
)


class BatchedLearner:
    """All honest nodes' models of the MNIST-1D MLP or CNN, trained in one batched pass.

    Parameters
    ----------
    task
        Task spec (``model`` ``"mlp"`` or ``"cnn"``; ``batch_size``).
    learner
        Learner spec (``sgd`` kind: ``lr``, ``local_steps``, ``optimizer``, ``momentum``).
    datas
        One :class:`NodeData` per node (shards; the test split is shared).
    node_ids
        Node identities, used for the minibatch seeds exactly as :class:`SGDLearner` does.
    seed
        Genesis seed.
    init
        The model every node starts from (built by ``build_model``).

    Raises
    ------
    ByzantineSimError
        If the model is not the MNIST-1D MLP/CNN layout this class implements.
    """

    def __init__(
        self,
        task: TaskSpec,
        learner: LearnerSpec,
        datas: Sequence[NodeData],
        node_ids: Sequence[str],
        *,
        seed: int,
        init: nn.Module,
    ):
        names = tuple(n for n, _ in init.named_parameters())
        if task.model == "mlp" and names == _MLP_SHAPES:
            self.kind = "mlp"
        elif task.model == "cnn" and names == _CNN_SHAPES:
            self.kind = "cnn"
        else:
            raise ByzantineSimError(
                f"engine 'batched' supports the mnist1d mlp/cnn models, not {task.model!r} "
                f"with parameters {names}; use engine='trainer'"
            )
        if learner.kind != "sgd":
            raise ByzantineSimError(f"learner kind must be 'sgd', got {learner.kind!r}")
        self.task = task
        self.learner = learner
        self.datas = list(datas)
        self.node_ids = list(node_ids)
        self.seed = seed
        self.layout = layout_of(init)
        h = len(self.datas)
        self.params = [
            p.detach().unsqueeze(0).repeat(h, *([1] * p.dim())).contiguous()
            for _, p in init.named_parameters()
        ]

    @property
    def num_nodes(self) -> int:
        """Number of honest nodes."""
        return len(self.datas)

    def vectors(self) -> torch.Tensor:
        """``(H, d)`` float32 flat vectors, in each model's layout order."""
        h = self.num_nodes
        return torch.cat([p.detach().reshape(h, -1) for p in self.params], dim=1).float()

    def set_vectors(self, vectors: torch.Tensor) -> None:
        """Load ``(H, d)`` flat vectors."""
        h = self.num_nodes
        if tuple(vectors.shape) != (h, self.layout.numel):
            raise ByzantineSimError(f"vectors must be ({h}, {self.layout.numel})")
        out = []
        start = 0
        for p in self.params:
            size = p[0].numel()
            out.append(vectors[:, start : start + size].reshape(p.shape).clone())
            start += size
        self.params = out

    def forward(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, B, classes)`` of ``N`` stacked models on ``x`` ``(N, B, 40)``."""
        if self.kind == "mlp":
            h = x
            for layer in range(3):
                h = _linear(h, params[2 * layer], params[2 * layer + 1])
                if layer < 2:
                    h = torch.relu(h)
            return h
        h = x.unsqueeze(-1)
        for layer in range(3):
            h = torch.relu(_conv1d(h, params[2 * layer], params[2 * layer + 1], 2, 1))
        # nn.Flatten of (B, C, L) is channel-major.
        h = h.transpose(2, 3).reshape(h.shape[0], h.shape[1], -1)
        return _linear(h, params[6], params[7])

    def train_round(self, round_idx: int) -> None:
        """Every node: ``local_steps`` steps from its current model (fresh optimizer)."""
        spec = self.learner
        leaves = [p.clone().requires_grad_(True) for p in self.params]
        opt: torch.optim.Optimizer
        if spec.optimizer == "adam":
            opt = torch.optim.Adam(leaves, lr=spec.lr)
        else:
            opt = torch.optim.SGD(leaves, lr=spec.lr, momentum=spec.momentum)
        gens = [
            torch.Generator().manual_seed(derive_seed("sgd-batch", self.seed, nid, round_idx))
            for nid in self.node_ids
        ]
        sizes = [d.num_examples for d in self.datas]
        if min(sizes) == 0:
            raise ByzantineSimError("a node has no training examples")
        bss = [min(self.task.batch_size, s) for s in sizes]
        width = max(bss)
        # Shards smaller than the batch draw fewer examples (as SGDLearner does); pad them with
        # weight-0 rows so the stack stays rectangular.
        weight = torch.zeros(self.num_nodes, width)
        for i, bs in enumerate(bss):
            weight[i, :bs] = 1.0 / bs
        feat = self.datas[0].x.shape[1]
        for _ in range(spec.local_steps):
            xs = torch.zeros(self.num_nodes, width, feat)
            ys = torch.zeros(self.num_nodes, width, dtype=torch.int64)
            for i, data in enumerate(self.datas):
                idx = torch.randint(0, sizes[i], (bss[i],), generator=gens[i])
                xs[i, : bss[i]] = data.x[idx]
                ys[i, : bss[i]] = data.y[idx]
            opt.zero_grad(set_to_none=True)
            logits = self.forward(leaves, xs)
            ce = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), ys.reshape(-1), reduction="none"
            )
            # Sum over nodes of each node's mean loss: node i's gradient is its own.
            (ce.reshape(self.num_nodes, width) * weight).sum().backward()
            opt.step()
        self.params = [p.detach() for p in leaves]

    @torch.no_grad()
    def accuracy(self, vectors: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N,)`` accuracies of ``N`` flat vectors on one labelled set ``x``, ``y``."""
        n = vectors.shape[0]
        params = []
        start = 0
        for p in self.params:
            size = p[0].numel()
            params.append(vectors[:, start : start + size].reshape(n, *p.shape[1:]))
            start += size
        logits = self.forward(params, x.unsqueeze(0).expand(n, -1, -1))
        return (logits.argmax(-1) == y.unsqueeze(0)).float().mean(1)


# --------------------------------------------------------------------------------------------


@dataclass
class ByzantineSimResult:
    """Outcome of :func:`simulate_byzantine`.

    Attributes
    ----------
    final_accuracy:
        Each honest node's accuracy on the shared test split after the last round.
    history:
        Round -> mean honest accuracy, at the evaluated rounds.
    rejected:
        Rows dropped by hygiene over the run (all receivers).
    spread:
        Mean L2 distance of the honest models from their average after the last round.
    seconds:
        Wall time of the run.
    config:
        The settings of the run (JSON-serialisable).
    vectors:
        ``(H, d)`` final honest models (not part of :meth:`as_dict`).
    """

    final_accuracy: list[float]
    history: dict[int, float]
    rejected: int
    spread: float
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    vectors: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))

    @property
    def mean_accuracy(self) -> float:
        """Mean of the honest nodes' final accuracies."""
        return float(sum(self.final_accuracy) / len(self.final_accuracy))

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            **self.config,
            "mean_accuracy": self.mean_accuracy,
            "final_accuracy": self.final_accuracy,
            "history": {str(k): v for k, v in self.history.items()},
            "rejected": self.rejected,
            "spread": self.spread,
            "seconds": self.seconds,
        }


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ByzantineSimError(f"{name} must be an int >= {low}, got {value!r}")


def simulate_byzantine(
    *,
    rule: str,
    f: int,
    attack: str | AttackSpec | None,
    honest: int = 10,
    alpha: float = 0.5,
    model: Literal["mlp", "cnn"] = "cnn",
    rounds: int = 40,
    local_steps: int = 20,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    rule_params: Mapping[str, Any] | None = None,
    max_norm: float | None = None,
    engine: Literal["batched", "trainer"] = "batched",
    eval_every: int = 0,
    bristle_samples: int = 256,
    task_data: TaskData | None = None,
) -> ByzantineSimResult:
    """Run ``honest`` honest nodes plus ``f`` Byzantine ones, all-to-all, for ``rounds`` rounds.

    Parameters
    ----------
    rule:
        Name in ``aggregation.RULES`` every honest node merges with.
    f:
        Number of Byzantine nodes; also the ``f`` the rule is told (default protocol of the
        ByzFL benchmarks). ``f = 0`` with ``attack=None`` is the attack-free run.
    attack:
        Name (or :class:`AttackSpec`, or ``"name:key=value"``) in ``aggregation.ATTACKS``;
        ``None`` only with ``f = 0``. ``optimal_ipm``/``optimal_alie`` optimise against the
        receiver's own rule (in update space, with its own update as reference).
    honest:
        Honest node count (default 10); the training set is partitioned over them only.
    alpha:
        Dirichlet label concentration of the partition (default 0.5).
    model:
        ``"cnn"`` (default) or ``"mlp"``, the MNIST-1D anchor models.
    rounds, local_steps, batch_size, lr:
        Protocol: default 40 rounds of 20 local Adam steps, batch 64, lr 1e-2 (ANCHORS'
        server-side ByzFL protocol).
    seed:
        Genesis seed: partition, initial model, minibatches and Gaussian attack noise.
    rule_params:
        Extra keyword parameters for the rule (default none).
    max_norm:
        Hygiene bound on a received model's distance from the receiver's round-start model
        (default ``None``: no bound, as the daemon).
    engine:
        ``"batched"`` (default) or ``"trainer"`` (one real trainer per node); see module doc.
    eval_every:
        Also record the mean honest accuracy every this many rounds (default 0: final only).
    bristle_samples:
        Examples of a node's own shard that Bristle's ``score_fn`` scores on (default 256).
    task_data:
        Preloaded MNIST-1D (default: load it).

    Returns
    -------
    ByzantineSimResult

    Raises
    ------
    ByzantineSimError
        On an unknown rule or attack, an ``f`` the rule cannot tolerate with ``honest + f``
        rows, a missing attack with ``f > 0``, or invalid counts.
    """
    _check_int("honest", honest, 1)
    _check_int("f", f, 0)
    _check_int("rounds", rounds, 1)
    _check_int("local_steps", local_steps, 1)
    _check_int("eval_every", eval_every, 0)
    if engine not in ("batched", "trainer"):
        raise ByzantineSimError(f"engine must be 'batched' or 'trainer', got {engine!r}")
    if model not in ("mlp", "cnn"):
        raise ByzantineSimError(f"model must be 'mlp' or 'cnn', got {model!r}")
    spec = parse_attack(attack) if isinstance(attack, str) else attack
    if f > 0 and spec is None:
        raise ByzantineSimError(f"f={f} Byzantine nodes need an attack")
    if f == 0 and spec is not None:
        raise ByzantineSimError(f"attack {spec} given but f=0")
    check_rule_preconditions(rule, n=honest + f, f=f)
    if max_norm is not None and not (0.0 < max_norm < math.inf):
        raise ByzantineSimError(f"max_norm must be finite and > 0, got {max_norm!r}")

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    task = TaskSpec(
        name="mnist1d", model=model, num_nodes=honest, alpha=alpha, batch_size=batch_size
    )
    learner = LearnerSpec(lr=lr, local_steps=local_steps)
    data = task_data if task_data is not None else load_task(task, seed)
    ids = [f"node-{i}" for i in range(honest)]
    datas = [node_data(task, seed, i, task=data) for i in range(honest)]
    init = build_model(task, seed, input_dim=data.input_dim, num_classes=data.num_classes)
    # A plain model object for scoring one vector (Bristle) and for the trainer engine.
    batched = BatchedLearner(task, learner, datas, ids, seed=seed, init=init)
    trainers: list[ModelTrainer] = []
    if engine == "trainer":
        for i in range(honest):
            tr = make_trainer(
                task, learner, seed=seed, node_index=i, node_id=ids[i], task_data=data
            )
            assert isinstance(tr, ModelTrainer)
            trainers.append(tr)
    x_test, y_test = datas[0].x_test, datas[0].y_test
    d = batched.layout.numel
    kind = rule.split("+")[-1]
    extra = dict(rule_params or {})
    rejected = 0
    history: dict[int, float] = {}

    def vectors() -> torch.Tensor:
        if trainers:
            return torch.stack([tr.vector() for tr in trainers])
        return batched.vectors()

    def set_vectors(v: torch.Tensor) -> None:
        if trainers:
            for tr, row in zip(trainers, v, strict=True):
                tr.set_vector(row)
        else:
            batched.set_vectors(v)

    def scorer(i: int) -> Callable[[torch.Tensor], float]:
        val = datas[i]
        k = min(bristle_samples, val.num_examples)
        xv, yv = val.x[:k], val.y[:k]
        return lambda vec: float(batched.accuracy(vec.unsqueeze(0), xv, yv)[0])

    for r in range(rounds):
        base = vectors()
        if trainers:
            for tr in trainers:
                tr.train(r)
        else:
            batched.train_round(r)
        trained = vectors()
        for i in range(honest):
            trained[i] = policy.local_or_base(trained[i], base[i])[0]
        merged = torch.empty_like(trained)
        for i in range(honest):
            params: dict[str, Any] = dict(extra)
            if kind == "bristle":
                params.setdefault("score_fn", scorer(i))
            received_rows = [trained[j] for j in range(honest) if j != i]
            senders = [ids[j] for j in range(honest) if j != i]
            if spec is not None and f > 0:
                deltas = trained - base[i]
                byz = _attack(spec, deltas, f, rule, params, base[i], trained[i], seed, r, i)
                received_rows += list(base[i] + byz)
                senders += [f"byz-{k}" for k in range(f)]
            admitted = [
                k
                for k, row in enumerate(received_rows)
                if policy.admit_update(row, base[i], numel=d, max_norm=max_norm) is None
            ]
            rejected += len(received_rows) - len(admitted)
            received = tuple(Received(senders[k], r, received_rows[k], 1.0, 0) for k in admitted)
            action = Aggregate(
                round=r,
                own=trained[i],
                received=received,
                rule=rule,
                f=f,
                params=params,
                payload="model",
            )
            merged[i] = policy.merge(action, RULES).vector
        set_vectors(merged)
        if eval_every and ((r + 1) % eval_every == 0) and r + 1 < rounds:
            history[r] = float(batched.accuracy(merged, x_test, y_test).mean())
    final = vectors()
    accs = [float(a) for a in batched.accuracy(final, x_test, y_test)]
    history[rounds - 1] = float(sum(accs) / len(accs))
    spread = float(torch.linalg.vector_norm(final - final.mean(0), dim=1).mean())
    config = {
        "rule": rule,
        "f": f,
        "attack": None if spec is None else str(spec),
        "honest": honest,
        "alpha": alpha,
        "model": model,
        "rounds": rounds,
        "local_steps": local_steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "engine": engine,
        "max_norm": max_norm,
        "rule_params": {k: v for k, v in extra.items() if isinstance(v, int | float | str)},
        "cpu_seconds": time.process_time() - cpu0,
    }
    return ByzantineSimResult(
        final_accuracy=accs,
        history=history,
        rejected=rejected,
        spread=spread,
        seconds=time.perf_counter() - t0,
        config=config,
        vectors=final,
    )


def _attack(
    spec: AttackSpec,
    deltas: torch.Tensor,
    f: int,
    rule: str,
    params: Mapping[str, Any],
    base: torch.Tensor,
    own: torch.Tensor,
    seed: int,
    round_idx: int,
    receiver: int,
) -> torch.Tensor:
    """The ``(f, d)`` Byzantine updates sent to one receiver (relative to its round-start base)."""
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if spec.name == "gaussian":
        kwargs["generator"] = torch.Generator().manual_seed(
            derive_seed("byz-gaussian", seed, round_idx, receiver)
        )
    if spec.name.startswith("optimal_"):
        own_delta = own - base
        rule_kw = {k: v for k, v in params.items() if k != "score_fn"}
        kind = rule.split("+")[-1]
        if kind in _SELF_CENTRED:
            rule_kw["reference"] = own_delta
        if kind == "bristle":
            score = params["score_fn"]
            rule_kw["score_fn"] = lambda v: score(base + v)
        target = RULES[rule]

        def in_update_space(x: torch.Tensor, *, f: int, **_: Any) -> torch.Tensor:
            return target(x, f=f, **rule_kw)

        kwargs["rule"] = in_update_space
    out = ATTACKS[spec.name](deltas, f=f, **kwargs)
    return out.to(deltas.dtype)
