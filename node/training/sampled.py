"""Sans-I/O round engine for sampled participation (``[rounds] sample_trainers``).

The drop-in sibling of :class:`~node.training.engine.RoundEngine` (same actions, same
driver calls) for networks where only a sample works each round, as in MoDeST (de Vos
et al., arXiv 2302.13837). Round
``r`` on one node::

    start ──> DrawSample(r); the driver answers on_members(r, members, model)
    sample = sample_round(seed, r, members, s, a)   (node.training.participation)
    trainer:    TrainLocal(r) ──> SendUpdate(aggregators, r, own)   then as "other"
    aggregator: every trainer's update (or round_timeout) ──> Aggregate(r, model, updates)
                ──> SendUpdate(its share of the members, r, merged model)
    other:      the merged model from its aggregator ──> Aggregate(r, that model, ())
                (adopt it), or after 2 x round_timeout keep its own model
    on_aggregated ──> Evaluate(r) every eval_every rounds, then round r+1 starts

Only trainers get :class:`TrainLocal`, so only they touch their data and release (a
node's privacy ledger is debited only in rounds it trains). An aggregator does not train
in the same round (the samples are disjoint), so every ``(sender, round)`` carries one
payload: a trained update or a merged model, never both (no false equivocation).

Simplifications against MoDeST, kept on purpose:

- the merged model goes to every member (each once, from one aggregator), not only to the
  next round's sample, so every node holds the current model and can be evaluated;
- an aggregator merges its own current model with the trainers' updates (row 0 of the
  rule, the reference of the robust rules), which damps the step by 1/(s+1) with the mean;
- there is no registration or activity protocol of its own: the member list is the
  driver's membership view (the daemon's is SWIM's live members, the candidates those
  that release), and sampled nodes that never answer cost one ``round_timeout``
  (aggregators) or two (the others).

Update admission: from ourselves, after the last round, more than ``max_future`` rounds
ahead, older than our round, a repeated ``(sender, round)``, the wrong length or
non-finite: rejected as the round engine does; an update of our round from a sender whose
role in the sample does not fit (a trained update at a non-aggregator, a model not from
an aggregator) is rejected as ``role``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from node.training.asynchronous import AsyncEngine
from node.training.engine import (
    Action,
    Aggregate,
    Evaluate,
    Phase,
    Received,
    RejectUpdate,
    RoundEngine,
    SendUpdate,
    TrainLocal,
    checked_local,
    vector_refusal,
)
from node.training.participation import RoundSample, recipients, sample_round
from node.training.spec import RoundSpec

__all__ = ["DrawSample", "SampledAction", "SampledRoundEngine", "make_engine"]


@dataclass(frozen=True)
class DrawSample:
    """Ask for the member list and the current model; answer with ``on_members``."""

    round: int


SampledAction = Action | DrawSample


@dataclass
class _Round:
    index: int
    started: float
    members: tuple[str, ...] = ()
    sample: RoundSample | None = None
    model: torch.Tensor | None = None
    own_ready_at: float | None = None
    deadline: float | None = None
    unavailable: set[str] = field(default_factory=set)


class SampledRoundEngine:
    """Per-node state machine of sampled rounds (see the module docstring).

    Parameters
    ----------
    node_id
        This node's id.
    spec
        Round parameters; ``spec.sample_trainers`` must be set.
    seed
        Genesis seed (the samples are drawn from it).
    start_round
        First round to run (default 0).
    numel
        Expected vector length; if None it is fixed by the first model seen.
    layer_sizes
        Element count of each layer (``ParamLayout.sizes``); needed only with
        ``spec.variance_correction`` (default None).

    Raises
    ------
    ValueError
        ``spec`` is not a sampled one, or breaks a :class:`RoundSpec` rule.
    """

    def __init__(
        self,
        node_id: str,
        spec: RoundSpec,
        *,
        seed: int,
        start_round: int = 0,
        numel: int | None = None,
        layer_sizes: Sequence[int] | None = None,
    ):
        RoundSpec.model_validate(spec.model_dump())
        if spec.sample_trainers is None:
            raise ValueError("SampledRoundEngine needs rounds.sample_trainers")
        sizes = tuple(int(s) for s in layer_sizes) if layer_sizes is not None else None
        if spec.variance_correction and sizes is None:
            raise ValueError("rounds.variance_correction needs layer_sizes")
        self.node_id = node_id
        self.spec = spec
        self.seed = seed
        self.layer_sizes = sizes
        self.numel = numel if numel is not None or sizes is None else sum(sizes)
        self.round = start_round
        self.phase = Phase.IDLE
        if spec.max_rounds is not None and start_round >= spec.max_rounds:
            self.phase = Phase.DONE
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.stats: dict[str, int] = {
            "accepted": 0,
            "rejected_self": 0,
            "rejected_shape": 0,
            "rejected_nonfinite": 0,
            "rejected_future": 0,
            "rejected_stale": 0,
            "rejected_duplicate": 0,
            "rejected_done": 0,
            "rejected_role": 0,
            "timeouts": 0,
            "rounds": 0,
            "trained": 0,
            "aggregated": 0,
        }
        self._cur: _Round | None = None
        # (sender, round) -> update, in arrival order (the first model from an aggregator wins).
        self._buffer: dict[tuple[str, int], Received] = {}
        self._seen: set[tuple[str, int]] = set()

    # -- queries ---------------------------------------------------------
    @property
    def sample(self) -> RoundSample | None:
        """The current round's sample (None before ``on_members``)."""
        return None if self._cur is None else self._cur.sample

    def next_deadline(self) -> float | None:
        """Earliest clock time at which :meth:`tick` would act (None: events only)."""
        cur = self._cur
        if cur is None or self.phase != Phase.EXCHANGING:
            return None
        return cur.deadline

    def awaited_peers(self) -> tuple[str, ...]:
        """Peers this node still waits for in the current round (may be empty)."""
        cur = self._cur
        if cur is None or cur.sample is None or self.phase != Phase.EXCHANGING:
            return ()
        got = {s for (s, r) in self._buffer if r == cur.index}
        return tuple(p for p in self._expected(cur) if p not in got and p not in cur.unavailable)

    # -- events ----------------------------------------------------------
    def tick(self, now: float) -> list[SampledAction]:
        """Advance the clock: start the first round, or fire the round's timeout."""
        if self.phase == Phase.DONE:
            return []
        if self._cur is None and self.phase == Phase.IDLE:
            return self._start(now)
        cur = self._cur
        if (
            cur is not None
            and self.phase == Phase.EXCHANGING
            and cur.deadline is not None
            and now >= cur.deadline
        ):
            self.stats["timeouts"] += 1
            return self._finish(timed_out=True)
        return []

    def on_sampled_peers(
        self, round_idx: int, peers: Sequence[str], now: float
    ) -> list[SampledAction]:
        """Unused in sampled rounds (the sample replaces peer sampling)."""
        return []

    def on_members(
        self,
        round_idx: int,
        members: Sequence[str],
        model: torch.Tensor,
        now: float,
        *,
        candidates: Sequence[str] | None = None,
    ) -> list[SampledAction]:
        """The driver's answer to :class:`DrawSample`: member ids and the current model.

        ``members`` is this node's view of the live members (itself added if missing);
        they all receive the merged model. ``candidates`` (default None: ``members``) are
        those the sample is drawn from, the members that still release updates (this
        node only if it does): a node that releases nothing is never sampled but still
        gets the model.
        """
        cur = self._cur
        if cur is None or round_idx != cur.index or cur.sample is not None:
            return []
        vec = model.detach().to(torch.float32).reshape(-1)
        if self.numel is None:
            self.numel = vec.numel()
        if vec.numel() != self.numel:
            raise ValueError(f"model has {vec.numel()} elements, expected {self.numel}")
        ids = tuple(sorted(set(members) | {self.node_id}))
        pool = ids if candidates is None else tuple(sorted(set(candidates) & set(ids)))
        assert self.spec.sample_trainers is not None
        cur.members = ids
        cur.sample = sample_round(
            self.seed,
            cur.index,
            pool or (self.node_id,),
            self.spec.sample_trainers,
            self.spec.aggregators,
        )
        cur.model = vec
        timeout = self.spec.round_timeout
        if cur.sample.trains(self.node_id):
            self.phase = Phase.TRAINING
            self.stats["trained"] += 1
            return [TrainLocal(cur.index)]
        self.phase = Phase.EXCHANGING
        cur.deadline = now + (timeout if cur.sample.aggregates(self.node_id) else 2 * timeout)
        return self._progress()

    def on_local_result(
        self,
        round_idx: int,
        vector: torch.Tensor,
        now: float,
        *,
        base: torch.Tensor | None = None,
        num_examples: int = 0,
        silent: bool = False,
    ) -> list[SampledAction]:
        """The trained model of :class:`TrainLocal`; sent to the round's aggregators.

        With ``silent`` nothing was released (e.g. the privacy budget is spent): nothing
        is sent and the node only waits for the merged model.
        """
        cur = self._cur
        if cur is None or round_idx != cur.index or self.phase != Phase.TRAINING:
            return []
        assert cur.sample is not None
        vec = checked_local(vector, self.numel)
        cur.own_ready_at = now
        self.phase = Phase.EXCHANGING
        cur.deadline = max(cur.started + 2 * self.spec.round_timeout, now + self.spec.round_timeout)
        actions: list[SampledAction] = []
        if cur.sample.aggregates(self.node_id):
            # Alone in the network: trainer and aggregator at once.
            if not silent:
                self._buffer[(self.node_id, cur.index)] = Received(
                    self.node_id, cur.index, vec, 1.0, num_examples
                )
        else:
            targets = tuple(a for a in cur.sample.aggregators if a != self.node_id)
            if targets and not silent:
                actions.append(SendUpdate(targets, cur.index, vec))
        return actions + self._progress()

    def on_update(
        self,
        sender: str,
        round_idx: int,
        vector: torch.Tensor,
        now: float,
        *,
        num_examples: int = 0,
        clock: int | None = None,
    ) -> list[SampledAction]:
        """A peer's trained update or merged model (already verified by the caller).

        ``clock`` is not used: in rounds the round is the clock.
        """
        reason = self._admit(sender, round_idx, vector)
        if reason is not None:
            self.stats[f"rejected_{reason}"] += 1
            return [RejectUpdate(sender, round_idx, reason)]
        self._seen.add((sender, round_idx))
        self._buffer[(sender, round_idx)] = Received(
            sender, round_idx, vector.detach().to(torch.float32).reshape(-1), 1.0, num_examples
        )
        self.stats["accepted"] += 1
        if self.phase == Phase.EXCHANGING:
            return self._progress()
        return []

    def on_peer_unavailable(self, round_idx: int, peer: str, now: float) -> list[SampledAction]:
        """``peer`` will not answer in ``round_idx`` (push failed, peer dead or silent)."""
        cur = self._cur
        if cur is None or round_idx != cur.index or cur.sample is None:
            return []
        cur.unavailable.add(peer)
        if self.phase == Phase.EXCHANGING:
            return self._progress()
        return []

    def on_aggregated(
        self, round_idx: int, vector: torch.Tensor, now: float
    ) -> list[SampledAction]:
        """Result of :class:`Aggregate`; aggregators send it on; the next round starts."""
        cur = self._cur
        if cur is None or round_idx != cur.index or self.phase != Phase.AGGREGATING:
            return []
        if vector.numel() != self.numel or not bool(torch.isfinite(vector).all()):
            raise ValueError("aggregated vector has the wrong length or non-finite values")
        assert cur.sample is not None
        actions: list[SampledAction] = []
        if cur.sample.aggregates(self.node_id) and len(cur.members) > 1:
            share = recipients(cur.sample, cur.members, self.node_id)
            if share:
                actions.append(SendUpdate(share, cur.index, vector.detach().clone()))
        self.stats["rounds"] += 1
        last = self.spec.max_rounds is not None and round_idx + 1 >= self.spec.max_rounds
        if (round_idx + 1) % self.spec.eval_every == 0 or last:
            actions.append(Evaluate(round_idx))
        self.round = round_idx + 1
        self._cur = None
        self._buffer = {k: v for k, v in self._buffer.items() if k[1] >= self.round}
        self._seen = {k for k in self._seen if k[1] >= self.round}
        if last:
            self.phase = Phase.DONE
            return actions
        self.phase = Phase.IDLE
        return actions + self._start(now)

    def on_evaluated(self, round_idx: int, metrics: Mapping[str, float]) -> None:
        """Record evaluation metrics of ``round_idx``."""
        self.metrics.append((round_idx, dict(metrics)))

    # -- internals -------------------------------------------------------
    def _start(self, now: float) -> list[SampledAction]:
        self._cur = _Round(index=self.round, started=now)
        self.phase = Phase.TRAINING
        return [DrawSample(self.round)]

    def _admit(self, sender: str, round_idx: int, vector: torch.Tensor) -> str | None:
        if sender == self.node_id:
            return "self"
        if self.phase == Phase.DONE:
            return "done"
        if round_idx > self.round + self.spec.max_future:
            return "future"
        if round_idx < self.round:
            return "stale"
        if (sender, round_idx) in self._seen:
            return "duplicate"
        refusal = vector_refusal(vector, self.numel)
        if refusal is not None:
            return refusal
        cur = self._cur
        if (
            cur is not None
            and cur.sample is not None
            and round_idx == cur.index
            and not self._fits(cur.sample, sender)
        ):
            return "role"
        return None

    def _fits(self, sample: RoundSample, sender: str) -> bool:
        if sample.aggregates(self.node_id):
            return sample.trains(sender)
        return sample.aggregates(sender)

    def _expected(self, cur: _Round) -> tuple[str, ...]:
        sample = cur.sample
        assert sample is not None
        if sample.aggregates(self.node_id):
            return tuple(t for t in sample.trainers if t != self.node_id)
        return tuple(
            a
            for a in sample.aggregators
            if a != self.node_id and self.node_id in recipients(sample, cur.members, a)
        )

    def _progress(self) -> list[SampledAction]:
        cur = self._cur
        assert cur is not None and cur.sample is not None
        if self.phase != Phase.EXCHANGING:
            return []
        if cur.sample.aggregates(self.node_id):
            if self.awaited_peers():
                return []
            return self._finish(timed_out=False)
        if any(self._fresh(cur)) or not self.awaited_peers():
            return self._finish(timed_out=False)
        return []

    def _fresh(self, cur: _Round) -> list[Received]:
        assert cur.sample is not None
        fits = [
            rec
            for (s, r), rec in self._buffer.items()
            if r == cur.index and self._fits(cur.sample, s)
        ]
        # Buffered before the sample was known: drop what does not fit the role.
        return fits

    def _finish(self, *, timed_out: bool) -> list[SampledAction]:
        cur = self._cur
        assert cur is not None and cur.sample is not None and cur.model is not None
        self.phase = Phase.AGGREGATING
        fresh = self._fresh(cur)
        spec = self.spec
        if cur.sample.aggregates(self.node_id):
            self.stats["aggregated"] += 1
            return [
                Aggregate(
                    round=cur.index,
                    own=cur.model,
                    received=tuple(sorted(fresh, key=lambda r: r.sender)),
                    rule=spec.aggregation,
                    f=spec.aggregation_f,
                    params=dict(spec.aggregation_params),
                    payload="model",
                    own_examples=0,
                    weight_by_examples=False,
                    variance_correction=spec.variance_correction,
                    layer_sizes=self.layer_sizes,
                )
            ]
        # Adopt the first merged model that came (or keep ours after a timeout): a rule
        # over one row returns it unchanged.
        model = fresh[0].vector if fresh else cur.model
        return [
            Aggregate(
                round=cur.index,
                own=model,
                received=(),
                rule="mean",
                f=0,
                params={},
                payload="model",
            )
        ]


def make_engine(
    node_id: str,
    spec: RoundSpec,
    *,
    seed: int,
    start_round: int = 0,
    numel: int | None = None,
    layer_sizes: Sequence[int] | None = None,
    clock: int = 0,
    version: int = 0,
) -> RoundEngine | SampledRoundEngine | AsyncEngine:
    """The engine ``spec`` asks for.

    Sampled rounds with ``sample_trainers``, the asynchronous mode with ``asynchronous``
    (``start_round`` then counts local trainings; ``clock`` and ``version`` are where its
    clock and its push versions start),
    else gossip rounds.
    """
    if spec.asynchronous is not None:
        return AsyncEngine(
            node_id,
            spec,
            seed=seed,
            numel=numel,
            layer_sizes=layer_sizes,
            start_round=start_round,
            clock=clock,
            version=version,
        )
    if spec.sampled:
        return SampledRoundEngine(
            node_id,
            spec,
            seed=seed,
            start_round=start_round,
            numel=numel,
            layer_sizes=layer_sizes,
        )
    return RoundEngine(node_id, spec, start_round=start_round, numel=numel, layer_sizes=layer_sizes)
