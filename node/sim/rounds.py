"""In-process decentralized simulation: N round engines over an in-memory exchange.

A discrete-event loop on a simulated clock drives one :class:`RoundEngine`
per node: local training takes ``train_time`` (optionally jittered) simulated
seconds, messages take ``latency``; peers are sampled uniformly from the other
nodes. The compute is real (the same trainers and aggregation a daemon
uses); only sockets and wall-clock waits are replaced. Everything is
deterministic from ``seed``.

:func:`simulate_spsa` runs the SPSA learner the same way it runs over gossip:
every node's scalar batch reaches every node (in a seeded random order) and
each node applies the full set, sorted, once per round.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from node.sim.hosts import LocalHosts, NodeHosts, Pending, Trained, build_trainers
from node.training import policy
from node.training.asynchronous import AsyncEngine
from node.training.datasets import TaskData, load_task, node_data
from node.training.engine import (
    Aggregate,
    Evaluate,
    RejectUpdate,
    RoundEngine,
    RuleFn,
    SamplePeers,
    SendUpdate,
    TrainLocal,
)
from node.training.evaluate import EvalResult, evaluate
from node.training.learners.spsa import ScalarBatch, ScalarLog, SPSALearner, apply_round
from node.training.models import build_model
from node.training.params import flatten, load_vector, model_hash
from node.training.sampled import DrawSample, SampledRoundEngine, make_engine
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec

__all__ = ["SimResult", "SpsaSimResult", "simulate", "simulate_spsa"]


@dataclass
class SimResult:
    """Outcome of :func:`simulate`.

    ``history`` maps round -> per-node accuracy list (rounds where every node that ran
    evaluated); ``final_accuracy`` is each node's last evaluated accuracy.
    """

    history: dict[int, list[float]]
    final_accuracy: list[float]
    messages: int
    bytes_sent: int
    rejected: int
    stats: list[dict[str, int]]
    sim_time: float
    """Simulated time at which the last round of the last node was aggregated."""
    final_vectors: list[torch.Tensor] = field(default_factory=list)
    """Each node's trainable vector at the end of its last round."""
    vectors: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    """With ``record_vectors``: round -> each node's vector after that round's aggregation
    (rounds where every node evaluated)."""
    bytes_sent_by_node: list[int] = field(default_factory=list)
    """Vector payload bytes each node sent (``bytes_sent`` is their sum)."""
    bytes_received_by_node: list[int] = field(default_factory=list)
    """Vector payload bytes delivered to each node."""
    unresponsive: frozenset[int] = frozenset()
    """Indices of the nodes that never ran (their final accuracy is NaN)."""
    timeline: list[tuple[float, int, int, float]] = field(default_factory=list)
    """Every evaluation as (simulated time, node, round, accuracy), in time order."""

    @property
    def mean_accuracy(self) -> float:
        """Mean of the final accuracies of the nodes that ran."""
        return float(
            np.mean([a for i, a in enumerate(self.final_accuracy) if i not in self.unresponsive])
        )


@dataclass(order=True)
class _Event:
    time: float
    seq: int
    kind: str = field(compare=False)
    node: int = field(compare=False)
    data: Any = field(compare=False, default=None)


def simulate(
    task: TaskSpec,
    learner: LearnerSpec,
    rounds: RoundSpec,
    *,
    seed: int = 0,
    num_rounds: int = 10,
    train_time: float = 1.0,
    jitter: float = 0.0,
    latency: float = 0.01,
    task_data: TaskData | None = None,
    rules: Mapping[str, RuleFn] | None = None,
    on_round: Callable[[int, list[float]], None] | None = None,
    release: Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    independent_init: bool = False,
    record_vectors: bool = False,
    unresponsive: Collection[int] = (),
    detected: bool = True,
    hosts: NodeHosts | None = None,
    slowdown: Sequence[float] | None = None,
    until: float | None = None,
) -> SimResult:
    """Run ``task.num_nodes`` nodes for ``num_rounds`` rounds in one process.

    Parameters
    ----------
    task, learner, rounds
        The genesis training settings (learner ``sgd`` or ``flower``).
    seed
        Genesis seed; also seeds peer sampling and timing jitter.
    num_rounds
        Rounds per node (overrides ``rounds.max_rounds``).
    train_time, jitter, latency
        Simulated seconds of one local round (multiplied by ``1 + jitter*U(0,1)``)
        and of one message.
    task_data
        Preloaded task (default: load it).
    rules
        Aggregation rules (default ``aggregation.RULES``).
    on_round
        Called with (round, accuracies) whenever all nodes evaluated a round.
    release
        Default None (vectors leave unchanged). Otherwise called once per node and
        round when local training ends, as ``release(node_index, round, vector,
        base)`` with the trained vector and the round-start vector; what it returns
        replaces the node's vector and is what the node sends (and every reply of
        that round resends), as the daemon does with its privacy guard's output.
    independent_init
        Default False: every node starts from the genesis-seeded model, as a
        network does. True: node ``i`` starts from its own initialisation
        (model seed ``derive_seed("independent-init", seed, i)``), the setting of
        gossip learning studied by the variance-correction paper (``sgd`` only).
    record_vectors
        Default False. True keeps every node's vector at each evaluated round in
        :attr:`SimResult.vectors` (memory: nodes x evaluated rounds x d floats).
    unresponsive
        Default empty. Indices of nodes that never run nor answer (crashed from the
        start): a push to one fails after ``latency``, as a refused connection does, and
        the pusher stops waiting for it (no bytes counted).
    detected
        Default True: membership has already removed the unresponsive nodes, so peers
        and samples are drawn from the others (what SWIM's failure detector gives a
        daemon). False: they stay in every member list, so samples include them and the
        rounds lean on the failed pushes and timeouts.
    hosts
        Default None: every node's model and data in this process
        (:class:`~node.sim.hosts.LocalHosts`), built from ``task``, ``learner``, ``seed``,
        ``task_data`` and ``independent_init``. Otherwise the hosts that train and
        evaluate the nodes, built from the same settings (for example
        :class:`~node.sim.ray_hosts.RayHosts`); ``task_data`` and ``independent_init`` are
        then theirs, and the caller closes them. Results do not depend on the hosts.
    slowdown
        Default None (every node 1). Node ``i``'s local training takes ``slowdown[i]``
        times ``train_time`` (a straggler that is 4x slower has 4).
    until
        Default None (run until every node finished ``num_rounds``). Otherwise stop at
        this simulated time: events after it are dropped, and each node's final accuracy
        is its last evaluation by then.

    With ``rounds.asynchronous`` set the nodes run the asynchronous mode
    (:class:`~node.training.asynchronous.AsyncEngine`): no rounds, local trainings and
    pushes on each node's Poisson clocks, and ``num_rounds`` local trainings per node.

    With ``rounds.sample_trainers`` set the nodes run sampled participation
    (:class:`~node.training.sampled.SampledRoundEngine`): each round's trainers and
    aggregators come from :func:`~node.training.participation.sample_round` over the
    member list, and only trainers train and call ``release``.
    """
    n = task.num_nodes
    spec = rounds.model_copy(update={"max_rounds": num_rounds})
    ids = [f"node-{i}" for i in range(n)]
    index = {nid: i for i, nid in enumerate(ids)}
    dead = frozenset(int(i) for i in unresponsive)
    if any(not 0 <= i < n for i in dead):
        raise ValueError(f"unresponsive node indices must be in [0, {n})")
    if len(dead) >= n:
        raise ValueError("at least one node must be responsive")
    listed = [nid for i, nid in enumerate(ids) if i not in dead] if detected else ids
    live = n - len(dead)
    own_hosts = hosts is None
    if hosts is None:
        data = (
            task_data
            if task_data is not None
            # Flower clients and task factories bring their own data.
            else (
                None if learner.kind == "flower" or task.name == "python" else load_task(task, seed)
            )
        )
        built = build_trainers(
            task, learner, seed=seed, nodes=range(n), data=data, independent_init=independent_init
        )
        hosts = LocalHosts([built[i] for i in range(n)])
    try:
        return _run(
            hosts,
            spec,
            seed=seed,
            ids=ids,
            index=index,
            listed=listed,
            dead=dead,
            live=live,
            train_time=train_time,
            jitter=jitter,
            latency=latency,
            rules=rules,
            on_round=on_round,
            release=release,
            record_vectors=record_vectors,
            slowdown=list(slowdown) if slowdown is not None else [1.0] * n,
            until=until,
        )
    finally:
        if own_hosts:
            hosts.close()


def _run(
    hosts: NodeHosts,
    spec: RoundSpec,
    *,
    seed: int,
    ids: list[str],
    index: dict[str, int],
    listed: list[str],
    dead: frozenset[int],
    live: int,
    train_time: float,
    jitter: float,
    latency: float,
    rules: Mapping[str, RuleFn] | None,
    on_round: Callable[[int, list[float]], None] | None,
    release: Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor] | None,
    record_vectors: bool,
    slowdown: list[float],
    until: float | None,
) -> SimResult:
    n = len(ids)
    if len(slowdown) != n or any(not s > 0 for s in slowdown):
        raise ValueError(f"slowdown needs {n} positive factors, one per node")
    # The protocol state lives here; models and data live in the hosts, which train and
    # evaluate from the vector they are handed.
    current = hosts.initial()
    examples = hosts.num_examples()
    sizes = hosts.layer_sizes()
    engines: list[RoundEngine | SampledRoundEngine | AsyncEngine] = [
        (
            AsyncEngine(ids[i], spec, seed=seed, numel=sum(sizes), layer_sizes=sizes)
            if spec.asynchronous is not None
            else make_engine(ids[i], spec, seed=seed, numel=sum(sizes), layer_sizes=sizes)
        )
        for i in range(n)
    ]
    training: dict[int, Pending[Trained]] = {}
    # Evaluations in the order they were asked for; each is recorded once it is done and
    # every earlier one is, so progress reports come in the same order on every host.
    evaluating: deque[tuple[float, int, int, Pending[EvalResult]]] = deque()
    timeline: list[tuple[float, int, int, float]] = []
    rng = random.Random(seed)
    queue: list[_Event] = []
    seq = 0
    messages = 0
    bytes_sent = 0
    rejected = 0
    evals: dict[int, dict[int, float]] = {}
    snapshots: dict[int, dict[int, torch.Tensor]] = {}
    last_acc = [math.nan] * n
    bases: dict[int, torch.Tensor] = {}  # round-start vectors, for ``release``
    sent_by = [0] * n
    received_by = [0] * n
    finished = 0.0

    def push(t: float, kind: str, node: int, data: Any = None) -> None:
        nonlocal seq
        heapq.heappush(queue, _Event(t, seq, kind, node, data))
        seq += 1

    def dispatch(i: int, actions: list[Any], now: float) -> None:
        nonlocal messages, bytes_sent, rejected, finished
        pending = list(actions)
        while pending:
            act = pending.pop(0)
            eng = engines[i]
            if isinstance(act, SamplePeers):
                others = [nid for nid in listed if nid != ids[i]]
                peers = rng.sample(others, min(act.k, len(others)))
                pending += eng.on_sampled_peers(act.round, peers, now)
            elif isinstance(act, DrawSample):
                assert isinstance(eng, SampledRoundEngine)
                pending += eng.on_members(act.round, listed, current[i].clone(), now)
            elif isinstance(act, TrainLocal):
                if release is not None:
                    bases[i] = current[i]
                training[i] = hosts.train(i, act.round, current[i])
                dt = train_time * slowdown[i] * (1.0 + jitter * rng.random())
                push(now + dt, "trained", i, act.round)
            elif isinstance(act, SendUpdate):
                for p in act.peers:
                    if index[p] in dead:
                        push(now + latency, "unavailable", i, (act.round, p))
                        continue
                    size = act.payload.numel() * 4
                    messages += 1
                    bytes_sent += size
                    sent_by[i] += size
                    received_by[index[p]] += size
                    push(
                        now + latency,
                        "deliver",
                        index[p],
                        (ids[i], act.round, act.payload, examples[i], act.clock),
                    )
            elif isinstance(act, Aggregate):
                # The daemon's merge: f lowered to the rows at hand, own model if not finite.
                vec = policy.merge(act, rules).vector
                current[i] = vec
                pending += eng.on_aggregated(act.round, vec, now)
                finished = max(finished, now)
            elif isinstance(act, Evaluate):
                evaluating.append((now, i, act.round, hosts.evaluate(i, current[i])))
                if record_vectors:
                    snapshots.setdefault(act.round, {})[i] = current[i].clone()
                record_evaluations(wait=False)
            elif isinstance(act, RejectUpdate):
                rejected += 1
        deadline = engines[i].next_deadline()
        if deadline is not None:
            push(deadline, "tick", i)

    def record_evaluations(*, wait: bool) -> None:
        while evaluating and (wait or evaluating[0][3].done()):
            at, i, r, job = evaluating.popleft()
            res = job.result()
            timeline.append((at, i, r, res.accuracy))
            engines[i].on_evaluated(r, res.as_dict())
            last_acc[i] = res.accuracy
            evals.setdefault(r, {})[i] = res.accuracy
            if on_round is not None and len(evals[r]) == live:
                on_round(r, [evals[r][j] for j in sorted(evals[r])])

    for i in range(n):
        if i not in dead:
            push(0.0, "tick", i)
    now = 0.0
    while queue:
        ev = heapq.heappop(queue)
        if until is not None and ev.time > until:
            break
        now = ev.time
        eng = engines[ev.node]
        if ev.kind == "tick":
            dispatch(ev.node, eng.tick(now), now)
        elif ev.kind == "trained":
            done = training.pop(ev.node).result()
            vec = done.vector
            if release is not None:
                vec = release(ev.node, ev.data, vec, bases.pop(ev.node))
            current[ev.node] = vec
            examples[ev.node] = num = done.num_examples
            dispatch(ev.node, eng.on_local_result(ev.data, vec, now, num_examples=num), now)
        elif ev.kind == "deliver":
            sender, r, payload, num, clock = ev.data
            got = eng.on_update(sender, r, payload, now, num_examples=num, clock=clock)
            dispatch(ev.node, got, now)
        elif ev.kind == "unavailable":
            r, peer = ev.data
            dispatch(ev.node, eng.on_peer_unavailable(r, peer, now), now)
    record_evaluations(wait=True)
    history = {
        r: [accs[j] for j in sorted(accs)] for r, accs in sorted(evals.items()) if len(accs) == live
    }
    return SimResult(
        history=history,
        final_accuracy=last_acc,
        messages=messages,
        bytes_sent=bytes_sent,
        rejected=rejected,
        stats=[dict(e.stats) for e in engines],
        sim_time=finished,
        final_vectors=[v.clone() for v in current],
        vectors={
            r: [vs[j] for j in sorted(vs)]
            for r, vs in sorted(snapshots.items())
            if len(vs) == live and r in history
        },
        bytes_sent_by_node=sent_by,
        bytes_received_by_node=received_by,
        unresponsive=dead,
        timeline=timeline,
    )


@dataclass
class SpsaSimResult:
    """Outcome of :func:`simulate_spsa`: accuracies, agreement and traffic."""

    history: dict[int, list[float]]
    final_accuracy: list[float]
    digests: list[str]
    model_hashes: list[str]
    max_abs_diff: float
    bytes_sent: int
    entries: int
    bytes_sent_by_node: list[int] = field(default_factory=list)
    """Scalar-batch bytes each node sent (its batch to each other node; ``bytes_sent`` is
    their sum); every node receives every other node's batches."""

    @property
    def mean_accuracy(self) -> float:
        """Mean of the nodes' final accuracies."""
        return float(np.mean(self.final_accuracy))


def simulate_spsa(
    task: TaskSpec,
    learner: LearnerSpec,
    *,
    seed: int = 0,
    num_rounds: int = 10,
    eval_every: int = 5,
    task_data: TaskData | None = None,
    shared_rule: str = "mean",
    shared_trim: int = 0,
    on_round: Callable[[int, list[float]], None] | None = None,
) -> SpsaSimResult:
    """Run SPSA nodes that broadcast scalar batches and apply every entry once.

    Each round every node computes its batch at its own (identical) model,
    batches are serialised to bytes and delivered to every node in a seeded
    random order, each node validates them in its :class:`ScalarLog` and
    applies the round's entries with ``weight = 1/num_nodes`` (per_node
    schedule) or the per-seed combination by ``shared_rule`` trimming
    ``shared_trim`` scalars per side (shared schedule, default 0). ``on_round``
    (default None) is called with (round, accuracies) after every evaluation.
    """
    n = task.num_nodes
    data_all = task_data if task_data is not None else load_task(task, seed)
    ids = [f"node-{i}" for i in range(n)]
    models = [
        build_model(task, seed, input_dim=data_all.input_dim, num_classes=data_all.num_classes)
        for _ in range(n)
    ]
    datas = [node_data(task, seed, i, task=data_all) for i in range(n)]
    learners = [
        SPSALearner(learner, batch_size=task.batch_size, seed=seed, node=ids[i]) for i in range(n)
    ]
    logs = [
        ScalarLog(seed, schedule=learner.spsa_seed_schedule, steps_per_round=learner.spsa_steps)
        for _ in range(n)
    ]
    rng = random.Random(seed)
    history: dict[int, list[float]] = {}
    bytes_sent = 0
    sent_by = [0] * n
    for r in range(num_rounds):
        wires = [learners[i].train_round(models[i], datas[i], r).encode() for i in range(n)]
        bytes_sent += sum(len(w) for w in wires) * (n - 1)
        for i, wire in enumerate(wires):
            sent_by[i] += len(wire) * (n - 1)
        for i in range(n):
            order = list(range(n))
            rng.shuffle(order)
            for j in order:
                logs[i].add(ScalarBatch.decode(wires[j]))
            entries = logs[i].round_entries(r)
            w = apply_round(
                flatten(models[i]),
                entries,
                learner.lr,
                schedule=learner.spsa_seed_schedule,
                distribution=learner.spsa_distribution,
                num_nodes=n,
                shared_rule=shared_rule,
                trim=shared_trim,
            )
            load_vector(models[i], w)
        if (r + 1) % eval_every == 0 or r + 1 == num_rounds:
            history[r] = [
                evaluate(models[i], datas[i].x_test, datas[i].y_test).accuracy for i in range(n)
            ]
            if on_round is not None:
                on_round(r, history[r])
    vecs = torch.stack([flatten(m) for m in models])
    return SpsaSimResult(
        history=history,
        final_accuracy=history[num_rounds - 1],
        digests=[log.digest() for log in logs],
        model_hashes=[model_hash(m) for m in models],
        max_abs_diff=float((vecs - vecs[0]).abs().max()),
        bytes_sent=bytes_sent,
        entries=len(logs[0]),
        bytes_sent_by_node=sent_by,
    )
