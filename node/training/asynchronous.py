"""Sans-I/O asynchronous gossip learning: local training and gossip on independent clocks.

In the asynchronous mode (``[rounds.asynchronous]`` in the genesis) no node waits for
another: as in DADAO (Nabli and Oyallon, "DADAO: Decoupled Accelerated Decentralized
Asynchronous Optimization", ICML 2023), each node runs two independent Poisson clocks,

- a **compute clock**: after a local training ends, the next one starts after an
  exponential wait of mean ``1 / compute_rate`` seconds;
- a **gossip clock**: every exponential wait of mean ``1 / gossip_rate`` seconds, the node
  pushes its current model to one random peer.

A model that arrives is merged at once with the node's own by the genesis rule (the
pairwise gossip averaging of DADAO's communication step with ``mean``); one that arrives
while the node trains waits and is merged with the trained model (only the newest model
of each sender is kept). Pushes that fall due while the node trains wait for the trained
model too: the model it holds then lacks the training under way, and averaging peers
with it would undo their progress. A slow node therefore
holds nobody back: fast nodes train more often, and a slow node's pushes are merged
whenever they come. (DADAO's accelerated dual updates are not reproduced; this is its
clock structure over the daemon's learners and rules.)

Staleness uses a logical clock, not the local step count: a node's ``clock`` is one more
than the largest clock among the models it merged or trained from (Lamport's rule), so a
slow node that merged fresh models sends a fresh clock.

A push is identified by a **version**, not by the clock: the clock does not move when a
peer's older model is merged in, so one clock may stand for several models, while a
signed push names one round and two different payloads under one round are equivocation
to the receivers (:mod:`node.wire.equivocation`). So a push carries the model's version
as its round (a per-node counter that rises with every model pushed, and never names two
models) and the clock beside it (``SendUpdate.clock``; on the wire the header's signed
``base_round``). A restarted node starts one above the last version it pushed.

A model ``s`` clock ticks older than ours is pulled towards our own by
``staleness_discount ** s`` (as in :mod:`node.training.engine`) and refused beyond
``max_staleness``. ``max_rounds`` counts local trainings, ``eval_every`` evaluates after
every ``E``-th, and updates from one sender are accepted only with a version above the
last one accepted from it (replay). A node that has finished its trainings refuses
models but answers each sender, once, with its final model.

The engine emits the round engine's actions (:mod:`node.training.engine`), with the
action's ``round`` set to the model's version (``SendUpdate``, which also carries the
clock), the node's clock (``Aggregate``, ``SamplePeers``) or the local training's index
(``TrainLocal``, ``Evaluate``).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence

import torch

from node.training.engine import (
    Action,
    Aggregate,
    Evaluate,
    Received,
    RejectUpdate,
    SamplePeers,
    SendUpdate,
    TrainLocal,
    checked_local,
    vector_refusal,
)
from node.training.seeding import derive_seed
from node.training.spec import RoundSpec

__all__ = ["AsyncEngine", "AsyncPhase"]


class AsyncPhase(enum.Enum):
    """What the node is doing now."""

    IDLE = "idle"
    TRAINING = "training"
    MERGING = "merging"
    DONE = "done"


class AsyncEngine:
    """One node of the asynchronous mode (see the module docstring).

    Parameters
    ----------
    node_id
        This node's id (its own updates are refused as peer updates).
    spec
        Round parameters; ``spec.asynchronous`` must be set (its rates), and
        ``max_rounds`` bounds the local trainings.
    seed
        Genesis seed; the clocks draw from ``derive_seed("async-clock", seed, node_id)``,
        so a run is reproducible.
    numel
        Expected vector length; if None it is fixed by the first local result.
    layer_sizes
        Element count of each layer in vector order (for ``variance_correction``).
    start_round
        Local trainings already done (a restarted node's stored count); default 0.
    clock
        Logical clock to start from (a restarted node's last pushed clock); default 0.
    version
        First version to push; a restarted node passes one more than the last version it
        pushed, so no version ever names two models. Default 0.

    Raises
    ------
    ValueError
        If ``spec.asynchronous`` is unset or the spec is invalid.
    """

    def __init__(
        self,
        node_id: str,
        spec: RoundSpec,
        *,
        seed: int,
        numel: int | None = None,
        layer_sizes: Sequence[int] | None = None,
        start_round: int = 0,
        clock: int = 0,
        version: int = 0,
    ) -> None:
        RoundSpec.model_validate(spec.model_dump())
        if spec.asynchronous is None:
            raise ValueError("AsyncEngine needs rounds.asynchronous (the clock rates)")
        self.node_id = node_id
        self.spec = spec
        self.rates = spec.asynchronous
        self.numel = numel
        self.layer_sizes = tuple(layer_sizes) if layer_sizes is not None else None
        self.phase = AsyncPhase.IDLE
        self.clock = clock
        self.round = start_round
        """Local trainings finished (the round engine's ``round``: what ``max_rounds`` bounds)."""
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.stats: dict[str, int] = {
            "accepted": 0,
            "rejected_self": 0,
            "rejected_shape": 0,
            "rejected_nonfinite": 0,
            "rejected_stale": 0,
            "rejected_duplicate": 0,
            "rejected_done": 0,
            "rounds": 0,
            "merges": 0,
            "pushes": 0,
        }
        self._rng = random.Random(derive_seed("async-clock", seed, node_id))
        self._vector: torch.Tensor | None = None
        self._next_compute: float | None = None
        self._next_gossip: float | None = None
        self._buffer: dict[str, Received] = {}
        self._pushes_due = 0
        self.version = version
        """The version the next new model pushed gets."""
        self._vector_version: int | None = None  # the current model's, once pushed
        self._last_from: dict[str, int] = {}
        self._merging_trained = False
        self._answered: set[str] = set()  # peers a finished node sent its final model
        self._own_examples = 0
        self._started = False

    # -- queries ---------------------------------------------------------
    def next_deadline(self) -> float | None:
        """Earliest clock time at which :meth:`tick` would act (None: events only)."""
        if self.phase == AsyncPhase.DONE:
            return None
        if not self._started:
            return 0.0
        times = [
            t
            for t in (
                self._next_compute if self.phase == AsyncPhase.IDLE else None,
                self._next_gossip if self._vector is not None else None,
            )
            if t is not None
        ]
        return min(times) if times else None

    def awaited_peers(self) -> tuple[str, ...]:
        """Nobody: the asynchronous mode never waits for a peer."""
        return ()

    # -- events ----------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Advance the clock: start a local training or push to a peer when due."""
        if self.phase == AsyncPhase.DONE:
            return []
        out: list[Action] = []
        if not self._started:
            self._started = True
            self._next_gossip = now + self._wait(self.rates.gossip_rate)
            return self._train()
        if (
            self.phase == AsyncPhase.IDLE
            and self._next_compute is not None
            and now >= self._next_compute
        ):
            out += self._train()
        if self._vector is not None and self._next_gossip is not None and now >= self._next_gossip:
            self._next_gossip = now + self._wait(self.rates.gossip_rate)
            if self.phase == AsyncPhase.IDLE:
                out.append(SamplePeers(self.clock, 1))
            else:
                self._pushes_due += 1
        return out

    def on_sampled_peers(self, round_idx: int, peers: Sequence[str], now: float) -> list[Action]:
        """Membership's answer to :class:`SamplePeers`: push the current model to them."""
        targets = tuple(p for p in dict.fromkeys(peers) if p != self.node_id)
        if self.phase == AsyncPhase.DONE or self._vector is None or not targets:
            return []
        if self.phase != AsyncPhase.IDLE:
            # The model is about to change (a training or merge under way): push the
            # new one once it is there, as pushes that fall due meanwhile do.
            self._pushes_due += 1
            return []
        self.stats["pushes"] += len(targets)
        return [SendUpdate(targets, self._push_version(), self._vector, clock=self.clock)]

    def on_peer_unavailable(self, round_idx: int, peer: str, now: float) -> list[Action]:
        """A push failed: nothing waits for it, so nothing changes."""
        return []

    def on_local_result(
        self,
        round_idx: int,
        vector: torch.Tensor,
        now: float,
        *,
        base: torch.Tensor | None = None,
        num_examples: int = 0,
        silent: bool = False,
    ) -> list[Action]:
        """The learner's model for :class:`TrainLocal`; merged with what arrived meanwhile."""
        if self.phase != AsyncPhase.TRAINING or round_idx != self.round:
            return []
        if self.numel is None:
            self.numel = vector.numel()
        vec = checked_local(vector, self.numel)
        self.clock += 1
        self._own_examples = num_examples
        self._merging_trained = True
        return [self._merge(vec)]

    def on_update(
        self,
        sender: str,
        round_idx: int,
        vector: torch.Tensor,
        now: float,
        *,
        num_examples: int = 0,
        clock: int | None = None,
    ) -> list[Action]:
        """A peer's model arrived (already signature- and network-checked by the caller).

        ``round_idx`` is the push's version (replay: only a version above the last one
        accepted from the sender is taken) and ``clock`` its sender's clock (staleness);
        without ``clock`` the version is taken as the clock.
        """
        stamp = round_idx if clock is None else clock
        reason = self._admit(sender, round_idx, stamp, vector)
        if reason is not None:
            self.stats[f"rejected_{reason}"] += 1
            out: list[Action] = [RejectUpdate(sender, round_idx, reason)]
            if (
                reason == "done"
                and self.spec.reply
                and self._vector is not None
                and sender not in self._answered
            ):
                # A finished node answers each peer still training once with its final
                # model (as a finished round node answers pushes), so the last nodes to
                # finish do not end on trainings that nobody merged with.
                self._answered.add(sender)
                self.stats["pushes"] += 1
                out.append(
                    SendUpdate(
                        (sender,), self._push_version(), self._vector, reply=True, clock=self.clock
                    )
                )
            return out
        self._last_from[sender] = round_idx
        self.stats["accepted"] += 1
        # A newer model of the same sender supersedes the one waiting.
        self._buffer[sender] = Received(
            sender, stamp, vector.detach().to(torch.float32).reshape(-1), 1.0, num_examples
        )
        if self.phase == AsyncPhase.IDLE and self._vector is not None:
            return [self._merge(self._vector)]
        return []  # merged with the trained model, or after the merge under way

    def on_aggregated(self, round_idx: int, vector: torch.Tensor, now: float) -> list[Action]:
        """Result of :class:`Aggregate`: the node's new model."""
        if self.phase != AsyncPhase.MERGING:
            return []
        if vector.numel() != self.numel or not bool(torch.isfinite(vector).all()):
            raise ValueError("aggregated vector has the wrong length or non-finite values")
        self._vector = vector.detach().to(torch.float32).reshape(-1)
        self._vector_version = None  # a new model: its first push gets a new version
        self.stats["merges"] += 1
        out: list[Action] = []
        if self._merging_trained:
            self._merging_trained = False
            done = self.round
            self.round += 1
            self.stats["rounds"] += 1
            last = self.spec.max_rounds is not None and self.round >= self.spec.max_rounds
            if self.round % self.spec.eval_every == 0 or last:
                out.append(Evaluate(done))
            if last:
                self.phase = AsyncPhase.DONE
                self._buffer.clear()
                return out
            self._next_compute = now + self._wait(self.rates.compute_rate)
        self.phase = AsyncPhase.IDLE
        if self._buffer:
            out.append(self._merge(self._vector))
        elif self._pushes_due:
            out.append(SamplePeers(self.clock, self._pushes_due))
            self._pushes_due = 0
        return out

    def on_evaluated(self, round_idx: int, metrics: Mapping[str, float]) -> None:
        """Record evaluation metrics of local training ``round_idx``."""
        self.metrics.append((round_idx, dict(metrics)))

    # -- internals -------------------------------------------------------
    def _wait(self, rate: float) -> float:
        return self._rng.expovariate(rate)

    def _train(self) -> list[Action]:
        self.phase = AsyncPhase.TRAINING
        self._next_compute = None
        return [TrainLocal(self.round)]

    def _merge(self, own: torch.Tensor) -> Aggregate:
        received = []
        for rec in self._buffer.values():
            age = max(0, self.clock - rec.round)
            self.clock = max(self.clock, rec.round)
            received.append(
                Received(
                    rec.sender,
                    rec.round,
                    rec.vector,
                    self.spec.staleness_discount**age,
                    rec.num_examples,
                )
            )
        self._buffer = {}
        self.phase = AsyncPhase.MERGING
        return Aggregate(
            round=self.clock,
            own=own,
            received=tuple(received),
            rule=self.spec.aggregation,
            f=self.spec.aggregation_f,
            params=self.spec.aggregation_params,
            payload="model",
            own_examples=self._own_examples,
            weight_by_examples=self.spec.weight_by_examples,
            variance_correction=self.spec.variance_correction,
            layer_sizes=self.layer_sizes,
        )

    def _push_version(self) -> int:
        """The current model's version, given on its first push."""
        if self._vector_version is None:
            self._vector_version = self.version
            self.version += 1
        return self._vector_version

    def _admit(self, sender: str, round_idx: int, stamp: int, vector: torch.Tensor) -> str | None:
        if sender == self.node_id:
            return "self"
        if self.phase == AsyncPhase.DONE:
            return "done"
        if stamp < self.clock - self.spec.max_staleness:
            return "stale"
        last = self._last_from.get(sender)
        if last is not None and round_idx <= last:
            return "duplicate"
        return vector_refusal(vector, self.numel)
