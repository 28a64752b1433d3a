"""Sans-I/O round engine: one node's training rounds as a state machine.

Like h11/h2, the engine performs no I/O, owns no thread and never sleeps. A
driver (the gRPC daemon, or :mod:`node.sim.rounds` in one process)
feeds it events — clock ticks, sampled peers, the local learner's result,
peers' updates, aggregation and evaluation results — and executes the actions
it returns. Each node runs its own clock; there is no global barrier.

Round ``r`` on one node::

    start ──> SamplePeers(r, k) + TrainLocal(r)
    peers + own result ──> SendUpdate(peers, r, own)           [phase EXCHANGING]
    push from a peer in round r ──> SendUpdate([peer], r, own)  (push-pull reply)
    >= wait_for distinct senders (await_replies: every sampled peer answered),
        or round_timeout ──> Aggregate(r, own, received)
    on_aggregated ──> Evaluate(r) every eval_every rounds, then round r+1 starts

Update admission (each rejection is returned as :class:`RejectUpdate` and
counted in :attr:`RoundEngine.stats`):

- from ourselves, wrong length, non-finite: rejected;
- round > current + ``max_future``: rejected (from the future);
- round < current - ``max_staleness``: rejected (stale);
- the same ``(sender, round)`` twice: rejected (duplicate/replay);
- otherwise buffered; an update ``s`` rounds old is used with weight
  ``staleness_discount ** s``, i.e. pulled towards our own vector by that factor
  (so any aggregation rule, not only a weighted mean, sees the discount).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from node.training.spec import RoundSpec

__all__ = [
    "Action",
    "Aggregate",
    "Evaluate",
    "Phase",
    "Received",
    "RejectUpdate",
    "RoundEngine",
    "SamplePeers",
    "SendUpdate",
    "TrainLocal",
    "aggregate_round",
    "checked_local",
    "vector_refusal",
]


def vector_refusal(vector: torch.Tensor, numel: int | None) -> str | None:
    """Why a peer's vector cannot be merged: ``"shape"``, ``"nonfinite"``, or None if it can.

    ``numel`` is the expected length (None: not known yet, any flat vector passes).
    """
    if vector.dim() != 1 or (numel is not None and vector.numel() != numel):
        return "shape"
    if not vector.is_floating_point() or not bool(torch.isfinite(vector).all()):
        return "nonfinite"
    return None


def checked_local(vector: torch.Tensor, numel: int | None) -> torch.Tensor:
    """The learner's result as a flat float32 vector (``numel`` None: any length).

    Raises
    ------
    ValueError
        If it does not hold ``numel`` values or holds NaN or Inf: the learner is broken,
        which no peer may be blamed for.
    """
    vec = vector.detach().to(torch.float32).reshape(-1)
    if numel is not None and vec.numel() != numel:
        raise ValueError(f"local result has {vec.numel()} elements, expected {numel}")
    if not bool(torch.isfinite(vec).all()):
        raise ValueError("local result contains NaN or Inf")
    return vec


@dataclass(frozen=True)
class SamplePeers:
    """Ask membership for ``k`` random live peers; answer with ``on_sampled_peers``."""

    round: int
    k: int


@dataclass(frozen=True)
class TrainLocal:
    """Run the local learner for ``round``; answer with ``on_local_result``."""

    round: int


@dataclass(frozen=True, eq=False)
class SendUpdate:
    """Send ``payload`` (flat float32) of ``round`` to ``peers``; ``reply``: a push-pull answer.

    ``clock``: the asynchronous mode's logical clock of the payload, sent beside ``round``
    (there the model's version); None in rounds, where the round is the clock.
    """

    peers: tuple[str, ...]
    round: int
    payload: torch.Tensor
    reply: bool = False
    clock: int | None = None


@dataclass(frozen=True, eq=False)
class Received:
    """A buffered peer update and the weight staleness gives it."""

    sender: str
    round: int
    vector: torch.Tensor
    weight: float
    num_examples: int = 0


@dataclass(frozen=True, eq=False)
class Aggregate:
    """Merge ``own`` with ``received`` by ``rule``; answer with ``on_aggregated``.

    Run it with :func:`aggregate_round` (possibly in an executor).
    """

    round: int
    own: torch.Tensor
    received: tuple[Received, ...]
    rule: str
    f: int
    params: Mapping[str, Any]
    payload: str
    base: torch.Tensor | None = None
    own_examples: int = 0
    weight_by_examples: bool = False
    variance_correction: bool = False
    layer_sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Evaluate:
    """Evaluate the current model on the local test split; answer with ``on_evaluated``."""

    round: int


@dataclass(frozen=True)
class RejectUpdate:
    """An incoming update was refused (log it; state is untouched)."""

    sender: str
    round: int
    reason: str


Action = SamplePeers | TrainLocal | SendUpdate | Aggregate | Evaluate | RejectUpdate


class Phase(enum.Enum):
    """Where the current round is."""

    IDLE = "idle"
    TRAINING = "training"
    EXCHANGING = "exchanging"
    AGGREGATING = "aggregating"
    DONE = "done"


@dataclass
class _Round:
    index: int
    started: float
    peers: tuple[str, ...] | None = None
    own: torch.Tensor | None = None
    base: torch.Tensor | None = None
    own_examples: int = 0
    own_ready_at: float | None = None
    sent_to: set[str] = field(default_factory=set)
    pending_replies: list[str] = field(default_factory=list)
    exchange_deadline: float | None = None
    # Sampled peers whose answer came but was beyond our window (await_replies).
    answered_unusable: set[str] = field(default_factory=set)
    # Sampled peers known not to answer this round (push failed or refused, peer dead or
    # no longer releasing): nobody waits for them.
    unavailable: set[str] = field(default_factory=set)
    # This node released nothing this round: it sends nothing and waits for nobody.
    silent: bool = False


class RoundEngine:
    """Per-node round state machine (see the module docstring).

    Parameters
    ----------
    node_id
        This node's id (its own updates are refused as peer updates).
    spec
        Round parameters (k, timeouts, staleness, evaluation period, rule).
    start_round
        First round to run (a restarted node resumes here; default 0).
    numel
        Expected vector length; if None it is fixed by the first local result.
    layer_sizes
        Element count of each layer in vector order (``ParamLayout.sizes``); needed
        only with ``spec.variance_correction``, which works per layer (default None).

    Raises
    ------
    ValueError
        If ``spec`` breaks a :class:`RoundSpec` rule (it is re-validated here, since
        ``model_copy(update=...)`` skips validation), or variance correction is on
        without ``layer_sizes``, or they do not add up to ``numel``.
    """

    def __init__(
        self,
        node_id: str,
        spec: RoundSpec,
        *,
        start_round: int = 0,
        numel: int | None = None,
        layer_sizes: Sequence[int] | None = None,
    ):
        # The daemon builds its spec with model_copy(update=...) (rule from the genesis
        # [aggregation] table), which skips validators: check the combination here.
        RoundSpec.model_validate(spec.model_dump())
        sizes = tuple(int(s) for s in layer_sizes) if layer_sizes is not None else None
        if sizes is not None:
            if any(s < 1 for s in sizes):
                raise ValueError("layer_sizes must be positive element counts")
            if numel is not None and sum(sizes) != numel:
                raise ValueError(f"layer_sizes add up to {sum(sizes)}, but numel is {numel}")
            numel = sum(sizes) if numel is None else numel
        if spec.variance_correction and sizes is None:
            raise ValueError(
                "rounds.variance_correction works per layer: build the RoundEngine with "
                "layer_sizes=layout.sizes"
            )
        self.layer_sizes = sizes
        self.node_id = node_id
        self.spec = spec
        self.round = start_round
        self.phase = Phase.IDLE
        if spec.max_rounds is not None and start_round >= spec.max_rounds:
            # Restarted after its last round: starting round `start_round` would train
            # past the genesis limit (seen as round 11 of 10 after a container restart).
            self.phase = Phase.DONE
        self.numel = numel
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
            "timeouts": 0,
            "rounds": 0,
        }
        self._cur: _Round | None = None
        self._buffer: dict[tuple[str, int], Received] = {}
        self._seen: set[tuple[str, int]] = set()
        self._final: tuple[int, torch.Tensor] | None = None
        self._answered_when_done: set[str] = set()
        # Sampled peers that let a round time out without answering: later rounds still
        # push to them and merge what they send, but do not wait for them until they
        # deliver an update again (a live peer that never answers, e.g. a silent Byzantine
        # one, costs one round_timeout, not one per round).
        self._unresponsive: set[str] = set()

    # -- queries ---------------------------------------------------------
    def next_deadline(self) -> float | None:
        """Earliest clock time at which :meth:`tick` would act (None: waits for events only)."""
        cur = self._cur
        if cur is None or self.phase == Phase.DONE:
            return None
        if self.phase == Phase.EXCHANGING and cur.exchange_deadline is not None:
            return cur.exchange_deadline
        if self.phase == Phase.TRAINING and cur.own is not None and cur.peers is None:
            assert cur.own_ready_at is not None
            return cur.own_ready_at + self.spec.round_timeout
        return None

    def awaited_peers(self) -> tuple[str, ...]:
        """Sampled peers of the current round this node still waits for (may be empty)."""
        cur = self._cur
        if cur is None or cur.peers is None or self.phase != Phase.EXCHANGING:
            return ()
        fresh = {s for s, rec in self._usable().items() if rec.round >= self.round}
        gone = cur.answered_unusable | cur.unavailable | self._unresponsive
        return tuple(p for p in cur.peers if p not in fresh and p not in gone)

    # -- events ----------------------------------------------------------
    def on_peer_unavailable(self, round_idx: int, peer: str, now: float) -> list[Action]:
        """``peer`` will not answer in round ``round_idx``: stop waiting for it.

        The driver calls this when a push to a sampled peer failed or was refused, or when
        the peer left, died or announced that it releases no updates. Its update, should
        one still come, is merged as usual.
        """
        cur = self._cur
        if cur is None or round_idx != cur.index or cur.peers is None or peer not in cur.peers:
            return []
        cur.unavailable.add(peer)
        if self.phase == Phase.EXCHANGING and self._enough():
            return self._aggregate()
        return []

    def tick(self, now: float) -> list[Action]:
        """Advance the clock: start the first round, or fire timeouts."""
        if self.phase == Phase.DONE:
            return []
        if self._cur is None and self.phase == Phase.IDLE:
            return self._start(now)
        cur = self._cur
        assert cur is not None
        if self.phase == Phase.TRAINING and cur.own is not None and cur.peers is None:
            assert cur.own_ready_at is not None
            if now >= cur.own_ready_at + self.spec.round_timeout:
                # Membership never answered: proceed alone rather than stall.
                self.stats["timeouts"] += 1
                return self.on_sampled_peers(cur.index, (), now)
        if (
            self.phase == Phase.EXCHANGING
            and cur.exchange_deadline is not None
            and now >= cur.exchange_deadline
        ):
            self.stats["timeouts"] += 1
            self._unresponsive.update(self.awaited_peers())
            return self._aggregate()
        return []

    def on_sampled_peers(self, round_idx: int, peers: Sequence[str], now: float) -> list[Action]:
        """Membership's answer to :class:`SamplePeers`."""
        cur = self._cur
        if cur is None or round_idx != cur.index or cur.peers is not None:
            return []
        cur.peers = tuple(p for p in dict.fromkeys(peers) if p != self.node_id)
        return self._maybe_send(now)

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
        """The learner's output for :class:`TrainLocal` (a model, or a delta plus ``base``).

        With ``silent`` this node released nothing this round (e.g. its privacy budget is
        spent): it pushes to nobody, answers nobody, and aggregates at once what peers
        pushed so far; peers that sampled it are told by the driver, not by the engine.
        """
        cur = self._cur
        if (
            cur is None
            or round_idx != cur.index
            or self.phase != Phase.TRAINING
            or cur.own is not None
        ):
            return []
        vec = vector.detach().to(torch.float32).reshape(-1)
        if self.numel is None:
            self.numel = vec.numel()
            # Updates buffered before the length was known are re-checked now.
            bad = [k for k, v in self._buffer.items() if v.vector.numel() != self.numel]
            for k in bad:
                del self._buffer[k]
                self.stats["accepted"] -= 1
                self.stats["rejected_shape"] += 1
        vec = checked_local(vec, self.numel)
        if self.spec.payload == "delta" and base is None:
            raise ValueError("payload 'delta' needs the base vector with the local result")
        cur.own = vec
        cur.base = base
        cur.own_examples = num_examples
        cur.own_ready_at = now
        cur.silent = silent
        return self._maybe_send(now)

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
        """A peer's update arrived (already signature- and network-checked by the caller).

        ``clock`` (the asynchronous engine's staleness stamp) is not used: in rounds the
        round is the clock.
        """
        reason = self._admit(sender, round_idx, vector)
        if reason is not None:
            self.stats[f"rejected_{reason}"] += 1
            out: list[Action] = [RejectUpdate(sender, round_idx, reason)]
            cur = self._cur
            if reason == "future" and cur is not None and cur.peers and sender in cur.peers:
                # A sampled peer far ahead has answered; waiting for it would only time out.
                cur.answered_unusable.add(sender)
                if self.phase == Phase.EXCHANGING and self._enough():
                    out += self._aggregate()
            if (
                reason == "done"
                and self.spec.reply
                and self._final is not None
                and sender not in self._answered_when_done
            ):
                # A finished node still answers (once per peer, so two finished nodes
                # cannot ping-pong) so that slower peers are not left waiting.
                self._answered_when_done.add(sender)
                out.append(SendUpdate((sender,), self._final[0], self._final[1], reply=True))
            return out
        self._seen.add((sender, round_idx))
        self._unresponsive.discard(sender)
        self._buffer[(sender, round_idx)] = Received(
            sender, round_idx, vector.detach().to(torch.float32).reshape(-1), 1.0, num_examples
        )
        self.stats["accepted"] += 1
        actions: list[Action] = []
        cur = self._cur
        # Push-pull: answer pushes of our round and of older rounds (the pusher is
        # behind; our newer vector is within its max_future window).
        if (
            cur is not None
            and self.spec.reply
            and round_idx <= cur.index
            and sender not in cur.sent_to
        ):
            if cur.own is not None and cur.peers is not None:
                cur.sent_to.add(sender)
                actions.append(SendUpdate((sender,), cur.index, cur.own, reply=True))
            elif sender not in cur.pending_replies:
                cur.pending_replies.append(sender)
        if self.phase == Phase.EXCHANGING and self._enough():
            actions += self._aggregate()
        return actions

    def on_aggregated(self, round_idx: int, vector: torch.Tensor, now: float) -> list[Action]:
        """Result of :class:`Aggregate`; finishes the round and starts the next."""
        cur = self._cur
        if cur is None or round_idx != cur.index or self.phase != Phase.AGGREGATING:
            return []
        if vector.numel() != self.numel or not bool(torch.isfinite(vector).all()):
            raise ValueError("aggregated vector has the wrong length or non-finite values")
        self.stats["rounds"] += 1
        actions: list[Action] = []
        last = self.spec.max_rounds is not None and round_idx + 1 >= self.spec.max_rounds
        if (round_idx + 1) % self.spec.eval_every == 0 or last:
            actions.append(Evaluate(round_idx))
        self.round = round_idx + 1
        # What a finished node answers late pushers with: the update it already released
        # for its last round, never the aggregate. A second, different payload signed for
        # the same round is exactly what peers prove equivocation with (node/wire/equivocation.py).
        self._final = (round_idx, cur.own) if cur.own is not None else None
        self._cur = None
        self._prune()
        if last:
            self.phase = Phase.DONE
            return actions
        self.phase = Phase.IDLE
        return actions + self._start(now)

    def on_evaluated(self, round_idx: int, metrics: Mapping[str, float]) -> None:
        """Record evaluation metrics of ``round_idx``."""
        self.metrics.append((round_idx, dict(metrics)))

    # -- internals -------------------------------------------------------
    def _start(self, now: float) -> list[Action]:
        self._cur = _Round(index=self.round, started=now)
        self.phase = Phase.TRAINING
        return [SamplePeers(self.round, self.spec.peers_per_round), TrainLocal(self.round)]

    def _admit(self, sender: str, round_idx: int, vector: torch.Tensor) -> str | None:
        if sender == self.node_id:
            return "self"
        if self.phase == Phase.DONE:
            return "done"
        if round_idx > self.round + self.spec.max_future:
            return "future"
        if round_idx < self.round - self.spec.max_staleness:
            return "stale"
        if (sender, round_idx) in self._seen:
            return "duplicate"
        return vector_refusal(vector, self.numel)

    def _maybe_send(self, now: float) -> list[Action]:
        cur = self._cur
        assert cur is not None
        if cur.own is None or self.phase != Phase.TRAINING:
            return []
        if cur.silent:
            # Nothing to send and nobody owes us an answer: no reason to wait for peers.
            cur.peers = ()
            cur.pending_replies.clear()
            self.phase = Phase.EXCHANGING
            return self._aggregate()
        if cur.peers is None:
            return []
        self.phase = Phase.EXCHANGING
        cur.exchange_deadline = now + self.spec.round_timeout
        targets = tuple(p for p in cur.peers if p not in cur.sent_to)
        cur.sent_to.update(targets)
        actions: list[Action] = []
        if targets:
            actions.append(SendUpdate(targets, cur.index, cur.own))
        if self.spec.reply:
            # Pushes of this round that arrived while we were still in an earlier one.
            early = sorted(s for (s, r) in self._buffer if r == cur.index)
            for p in [*cur.pending_replies, *early]:
                if p not in cur.sent_to:
                    cur.sent_to.add(p)
                    actions.append(SendUpdate((p,), cur.index, cur.own, reply=True))
        cur.pending_replies.clear()
        if self._enough():
            actions += self._aggregate()
        return actions

    def _usable(self) -> dict[str, Received]:
        # Newest update per sender within [round - max_staleness, round + max_future]: a
        # peer that is ahead contributes its newer model rather than making us wait.
        lo = self.round - self.spec.max_staleness
        hi = self.round + self.spec.max_future
        best: dict[str, Received] = {}
        for (sender, r), rec in self._buffer.items():
            if lo <= r <= hi and (sender not in best or r > best[sender].round):
                best[sender] = rec
        return best

    def _enough(self) -> bool:
        cur = self._cur
        assert cur is not None
        want = self.spec.wait_for
        if cur.peers is not None:
            # A sampled peer known not to answer cannot count towards the wait.
            want = min(want, len(set(cur.peers) - cur.unavailable - self._unresponsive))
        # Stale updates are merged when present but never satisfy the wait.
        fresh = {s for s, rec in self._usable().items() if rec.round >= self.round}
        if self.spec.reply and self.spec.await_replies and cur.peers:
            # Push-pull owes us an answer from every peer we pushed to: merge them all
            # (and every other push that came meanwhile) in this round rather than
            # letting the later ones arrive after we aggregated, discounted as stale.
            gone = cur.answered_unusable | cur.unavailable | self._unresponsive
            return all(p in fresh or p in gone for p in cur.peers)
        return len(fresh) >= want

    def _aggregate(self) -> list[Action]:
        cur = self._cur
        assert cur is not None and cur.own is not None
        self.phase = Phase.AGGREGATING
        usable = self._usable()
        received = []
        for sender in sorted(usable):
            rec = usable[sender]
            age = max(0, self.round - rec.round)
            received.append(
                Received(
                    rec.sender,
                    rec.round,
                    rec.vector,
                    self.spec.staleness_discount**age,
                    rec.num_examples,
                )
            )
        # Updates at or below this round are done with. A peer's future-round vector
        # stays: it is that peer's contribution to our next round too (it will not
        # send that round again, as we are already in its sent set).
        self._buffer = {k: v for k, v in self._buffer.items() if k[1] > self.round}
        return [
            Aggregate(
                round=cur.index,
                own=cur.own,
                received=tuple(received),
                rule=self.spec.aggregation,
                f=self.spec.aggregation_f,
                params=dict(self.spec.aggregation_params),
                payload=self.spec.payload,
                base=cur.base,
                own_examples=cur.own_examples,
                weight_by_examples=self.spec.weight_by_examples,
                variance_correction=self.spec.variance_correction,
                layer_sizes=self.layer_sizes,
            )
        ]

    def _prune(self) -> None:
        lo = self.round - self.spec.max_staleness - 1
        self._seen = {k for k in self._seen if k[1] >= lo}


RuleFn = Callable[..., torch.Tensor]
#: Decentralized rules that clip/score around the node's own vector (``reference=``).
_NEEDS_REFERENCE = frozenset({"self_centered_clipping", "bristle"})


def _rules() -> Mapping[str, RuleFn]:
    from aggregation import RULES

    return RULES


def aggregate_round(action: Aggregate, rules: Mapping[str, RuleFn] | None = None) -> torch.Tensor:
    """Execute an :class:`Aggregate` action.

    Each received vector ``v`` with staleness weight ``w`` enters the stack as
    ``own + w (v - own)``; the stack ``[own, *received]`` goes to
    ``rules[action.rule](stack, f=action.f, **action.params)`` (rules default to
    ``aggregation.RULES``). ``self_centered_clipping`` and ``bristle`` (also after
    ``nnm+``) get ``reference=own``; ``bristle``'s ``score_fn`` must come in ``params``.
    With payload ``delta`` the result is added to ``action.base``.

    With ``action.variance_correction`` each layer of the result is rescaled about
    its mean so that its (population) std equals a target computed from the same
    layer of the stacked rows (Tian et al. 2024, "Vanishing Variance"):

    - rule ``mean``: the mean of the rows' stds, weighted like the mean (by example
      counts with ``weight_by_examples``) — exactly
      :func:`aggregation.variance.variance_corrected_layer`;
    - any other rule: the *median* of the rows' stds (the lower middle one for an
      even count), so that fewer than half Byzantine rows cannot inflate the target:
      the corrected layer's std stays within the honest rows' std range.

    Layers with fewer than 2 entries or an aggregated std below 1e-12 are left as
    the rule returned them.
    """
    table = rules if rules is not None else _rules()
    if action.rule not in table:
        raise KeyError(f"aggregation rule {action.rule!r} is not in aggregation.RULES")
    own = action.own
    rows = [own] + [
        own + r.weight * (r.vector - own) if r.weight != 1.0 else r.vector for r in action.received
    ]
    counts: torch.Tensor | None = None
    if action.weight_by_examples and len(rows) > 1:
        counts = torch.tensor(
            [action.own_examples, *(r.num_examples for r in action.received)],
            dtype=torch.float64,
        )
        if bool((counts <= 0).any()):
            raise ValueError("weight_by_examples needs a positive num_examples for every row")
    if len(rows) == 1:
        combined = own.clone()
    else:
        params = dict(action.params)
        if action.rule.split("+")[-1] in _NEEDS_REFERENCE:
            params.setdefault("reference", own)
        stack = torch.stack(rows)
        if counts is not None:
            # FedAvg's sample weighting through the plain mean: scaling row i by
            # n_i / mean(n) makes mean(rows) equal sum(n_i x_i) / sum(n_i).
            scale = (counts / counts.mean()).to(stack.dtype)
            combined = table[action.rule](stack * scale.unsqueeze(1), f=action.f, **params)
        elif action.rule.split("+")[-1] == "bristle":
            # Bristle scores candidate models on local data: it needs absolute vectors.
            combined = table[action.rule](stack, f=action.f, **params)
        else:
            # Distance-based rules build a float32 Gram matrix; on raw model vectors that
            # share a large offset it cancels catastrophically. Every rule here is
            # translation-equivariant, so aggregate around our own vector and shift back.
            if "reference" in params:
                params["reference"] = params["reference"] - own
            combined = table[action.rule](stack - own, f=action.f, **params) + own
        if action.variance_correction:
            if action.payload != "model":
                raise ValueError("variance_correction needs payload 'model'")
            if action.layer_sizes is None or sum(action.layer_sizes) != own.numel():
                raise ValueError("variance_correction needs layer_sizes that add up to numel")
            combined = _restore_layer_std(
                combined,
                stack,
                action.layer_sizes,
                weights=counts,
                robust=action.rule != "mean",
            )
    if action.payload == "delta":
        if action.base is None:
            raise ValueError("delta payload without a base vector")
        return action.base + combined
    return combined


def _restore_layer_std(
    combined: torch.Tensor,
    rows: torch.Tensor,
    sizes: Sequence[int],
    *,
    weights: torch.Tensor | None,
    robust: bool,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Rescale each layer of ``combined`` about its mean to the rows' target std."""
    out = combined.clone()
    k = rows.shape[0]
    w = (
        torch.full((k,), 1.0 / k, dtype=torch.float64)
        if weights is None
        else weights.to(torch.float64) / weights.sum()
    )
    start = 0
    for size in sizes:
        seg = slice(start, start + size)
        start += size
        if size < 2:
            continue
        stds = rows[:, seg].to(torch.float64).std(dim=1, unbiased=False)
        target = stds.median() if robust else w @ stds
        layer = combined[seg].to(torch.float64)
        current = layer.std(unbiased=False)
        if float(current) < eps:
            continue
        mu = layer.mean()
        out[seg] = (mu + (layer - mu) * (target / current)).to(out.dtype)
    return out
