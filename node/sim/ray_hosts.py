"""Simulated nodes spread over a Ray cluster: a bounded pool of actors, never a process per node.

Each actor (:class:`_Shelf`) holds the models, data shards and learners of the nodes
``i`` with ``i % actors == k`` and trains or evaluates them one call at a time, from the
vector the simulation sends with the call. The protocol state stays in the driver
(:func:`node.sim.rounds.simulate`), which submits a node's training when its round
engine asks and collects the result when the simulated clock reaches the end of that
training, so every actor works while the event loop runs on. Ray runs one caller's calls
to an actor in the order they were made, and every node's result depends only on (seed,
node, round, vector), so the results equal :class:`~node.sim.hosts.LocalHosts`'s bit for
bit.

Memory: each actor loads the task once and keeps one model, optimizer and shard per node
it holds; the driver keeps one vector per node and the round engines' buffers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from node.sim.hosts import Trained, build_trainers, evaluate_one, train_one
from node.training.datasets import TaskData, load_task
from node.training.evaluate import EvalResult
from node.training.spec import LearnerSpec, TaskSpec

__all__ = ["RayHosts", "RayUnavailable", "connect"]


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster at the address cannot be reached."""


def connect(address: str, *, num_cpus: int | None = None) -> dict[str, float]:
    """Start or join Ray and return the cluster's resources.

    Parameters
    ----------
    address
        ``"local"``: start a Ray instance on this machine with ``num_cpus`` CPUs
        (default: all), no dashboard, and a 256 MiB object store (the simulation sends
        only vectors). Otherwise the address of a running cluster (``ray start --head``
        prints it, e.g. ``"10.0.0.5:6379"``), or ``"auto"``.

    Raises
    ------
    RayUnavailable
        Ray is not importable, or ``ray.init`` failed (the message says why).
    """
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a pinned dependency
        raise RayUnavailable(f"--ray needs the 'ray' package ({exc})") from None
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    # Each worker runs the nodes' torch on one thread, as a testnet node does.
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}
    try:
        if address == "local":
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                object_store_memory=256 * 2**20,
                log_to_driver=False,
                runtime_env=env,
            )
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
    except Exception as exc:
        raise RayUnavailable(f"cannot start or join Ray at {address!r}: {exc}") from None
    return dict(ray.cluster_resources())


@dataclass(frozen=True)
class _Ref:
    """A Ray object reference as a :class:`~node.sim.hosts.Pending`."""

    ref: Any

    def done(self) -> bool:
        import ray

        ready, _ = ray.wait([self.ref], timeout=0)
        return bool(ready)

    def result(self) -> Any:
        import ray

        return ray.get(self.ref)


class _Shelf:
    """One actor's nodes: their trainers, built inside the actor."""

    def __init__(
        self,
        task: TaskSpec,
        learner: LearnerSpec,
        seed: int,
        nodes: Sequence[int],
        data: TaskData | None,
        independent_init: bool,
    ) -> None:
        torch.set_num_threads(1)
        if data is None and learner.kind != "flower" and task.name != "python":
            data = load_task(task, seed)
        self.trainers = build_trainers(
            task, learner, seed=seed, nodes=nodes, data=data, independent_init=independent_init
        )

    def describe(self) -> dict[int, tuple[torch.Tensor, int, list[int]]]:
        return {
            i: (tr.vector(), tr.num_examples, list(tr.layout.sizes))
            for i, tr in self.trainers.items()
        }

    def train(self, node: int, round_idx: int, vector: torch.Tensor) -> Trained:
        return train_one(self.trainers[node], round_idx, vector)

    def evaluate(self, node: int, vector: torch.Tensor) -> EvalResult:
        return evaluate_one(self.trainers[node], vector)

    def rss_bytes(self) -> int:
        """This actor's resident memory (Linux ``/proc``; 0 elsewhere)."""
        try:
            with open(f"/proc/{os.getpid()}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0


class RayHosts:
    """The nodes of a simulated network in ``actors`` Ray actors.

    Parameters
    ----------
    task, learner, seed
        The genesis settings, as :func:`node.sim.rounds.simulate` gets them.
    actors
        How many actors hold the nodes (node ``i`` lives in actor ``i % actors``); at
        most this many nodes train at once. Capped at ``task.num_nodes``.
    task_data
        Default None: each actor loads the task itself. Otherwise sent to every actor
        through Ray's object store.
    independent_init
        As in :func:`node.sim.rounds.simulate`.
    cpus_per_actor
        Default 1. The CPUs Ray reserves for each actor; below 1 lets more actors than
        CPUs share the cluster (Ray never starts an actor whose CPUs are not free).

    Ray must be initialised first (:func:`connect`). :meth:`close` ends the actors.
    """

    def __init__(
        self,
        task: TaskSpec,
        learner: LearnerSpec,
        *,
        seed: int,
        actors: int,
        task_data: TaskData | None = None,
        independent_init: bool = False,
        cpus_per_actor: float = 1.0,
    ) -> None:
        import ray

        if actors < 1:
            raise ValueError("actors must be at least 1")
        n = task.num_nodes
        self.actors = min(actors, n)
        shelf = ray.remote(num_cpus=cpus_per_actor)(_Shelf)
        data = ray.put(task_data) if task_data is not None else None
        self._shelves: list[Any] = [
            shelf.remote(
                task, learner, seed, list(range(k, n, self.actors)), data, independent_init
            )
            for k in range(self.actors)
        ]
        described: dict[int, tuple[torch.Tensor, int, list[int]]] = {}
        for part in ray.get([s.describe.remote() for s in self._shelves]):
            described.update(part)
        self._initial = [described[i][0] for i in range(n)]
        self._examples = [described[i][1] for i in range(n)]
        self._sizes = described[0][2]

    def _shelf(self, node: int) -> Any:
        return self._shelves[node % self.actors]

    def initial(self) -> list[torch.Tensor]:
        return [v.clone() for v in self._initial]

    def layer_sizes(self) -> list[int]:
        return list(self._sizes)

    def num_examples(self) -> list[int]:
        return list(self._examples)

    def train(self, node: int, round_idx: int, vector: torch.Tensor) -> _Ref:
        return _Ref(self._shelf(node).train.remote(node, round_idx, vector))

    def evaluate(self, node: int, vector: torch.Tensor) -> _Ref:
        return _Ref(self._shelf(node).evaluate.remote(node, vector))

    def actor_rss_bytes(self) -> list[int]:
        """Each actor's resident memory now."""
        import ray

        return [int(b) for b in ray.get([s.rss_bytes.remote() for s in self._shelves])]

    def close(self) -> None:
        import ray

        for s in self._shelves:
            ray.kill(s)
        self._shelves = []
