"""Sans-I/O SPSA engine: one node's scalar-gossip rounds as a state machine.

Like :class:`~node.training.engine.RoundEngine` (and h11), the engine performs no I/O,
owns no task and never sleeps. A driver (the daemon's :mod:`node.daemon.spsa_runtime`, or
a test in one process) feeds it events and executes the actions it returns:

- clock ticks (:meth:`SpsaEngine.tick`), which open and close rounds;
- this node's own batch (:meth:`SpsaEngine.on_own_batch`, the answer to :class:`ComputeBatch`);
- batches pushed by peers (:meth:`SpsaEngine.screen`, :meth:`SpsaEngine.admit`, then
  :meth:`SpsaEngine.on_stored` once the driver stored them) and batches pulled from peers
  (:meth:`SpsaEngine.fresh`, :meth:`SpsaEngine.on_pulled_stored`);
- membership changes (:meth:`SpsaEngine.on_membership`, a :class:`PeerView` snapshot).

Round ``r`` on one node::

    tick, no round open ──> JoinRound(R) when f + 1 live members signed batches of
                            rounds >= R > r + 1 (the network is ahead), else
                            ComputeBatch(r) (or SendBatch of a batch already stored)
    on_own_batch ──> SendBatch(to every live member, or to its k tree children)  [WAITING]
    tick while WAITING ──> RequestBatches(r) once after min(2 s, timeout / 3)
    every expected origin's batch of r is in, or round_timeout ──> CloseRound(r)

Batches are persisted *before* they count: :meth:`~SpsaEngine.admit` claims a batch, the
driver stores it, :meth:`~SpsaEngine.on_stored` applies it to the
:class:`~node.training.spsa.ledger.RoundLedger` and says where to forward it. A node that
crashes between the two re-reads the batch from its store at start.

Refusals (returned as :class:`RefuseBatch`, counted in :attr:`SpsaEngine.stats`; the
state is untouched): ``not_ready`` (still catching up), ``duplicate``, ``equivocation``
(a different batch signed by the same origin for the same round), ``bad_round`` (the
envelope's round is not the batch's), ``stale_round`` (final here), ``future_round``
(beyond ``round + future``), ``unknown_origin``, ``banned``, ``duplicate_seed``, and, as
a second line behind the wire checks (:func:`node.wire.spsa_batch.check_batch`), ``bad_shape``
/ ``oversized`` (entry count), ``nonfinite`` and ``out_of_bounds`` (scalar values).
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from node.training.learners.spsa import (
    Distribution,
    ScalarBatch,
    ScalarEntry,
    Schedule,
)
from node.training.spsa.digest import digest_of
from node.training.spsa.ledger import RoundLedger

__all__ = [
    "DIRECT_PUSH_MAX_MEMBERS",
    "MAX_ABS_SCALAR",
    "Action",
    "CheckedBatch",
    "Checkpoint",
    "CloseRound",
    "ComputeBatch",
    "Dissemination",
    "Finished",
    "JoinRound",
    "LedgerSpec",
    "PeerView",
    "Phase",
    "RefuseBatch",
    "ReplayLog",
    "RequestBatches",
    "SendBatch",
    "SpsaEngine",
    "SpsaSettings",
]

#: Largest accepted |scalar| (a projected-gradient estimate; cross-entropy differences
#: divided by 2 eps stay far below this in practice, a poisoned value does not).
MAX_ABS_SCALAR = 1.0e4
# A network of at most this many live members gets each batch straight from its origin
# (N - 1 copies); receivers do not forward what came from the origin itself. Larger
# networks use a per-round spanning tree of fan-out k (or, as before, push gossip with
# fan-out k). Either way anti-entropy pulls repair losses.
DIRECT_PUSH_MAX_MEMBERS = 32

Dissemination = Literal["tree", "gossip"]
"""How a batch spreads past ``direct_push_max`` members.

``tree``: along a k-ary spanning tree rooted at the origin, the same for every node that
has the same view (members ordered by a hash of the round); each member gets each batch
once. ``gossip``: each node forwards a batch it sees first to k random members (about k
copies per member, a fraction ~e^-k of members missed; measured in docs/spsa.md).
"""


@dataclass(frozen=True)
class CheckedBatch:
    """A batch whose wire form, origin signature and seed ids were checked.

    Built by :func:`node.wire.spsa_batch.check_batch`; the engine only reads it.
    """

    round: int
    origin: str
    batch: ScalarBatch
    entries: tuple[ScalarEntry, ...]
    wire: bytes
    """Serialized wire batch (what is stored and relayed, byte for byte)."""

    @property
    def key(self) -> tuple[int, str]:
        """``(round, origin)``: at most one batch per origin and round."""
        return (self.round, self.origin)


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComputeBatch:
    """Compute, debit, sign and store this node's batch of ``round``; answer ``on_own_batch``."""

    round: int


@dataclass(frozen=True)
class SendBatch:
    """Push the signed batch ``wire`` of ``round``.

    To ``peers`` when given (every live member: direct push), else to ``fanout`` members
    sampled at random, none of them in ``exclude``.
    """

    round: int
    wire: bytes
    peers: tuple[str, ...] | None = None
    fanout: int = 0
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RequestBatches:
    """Anti-entropy: pull the batches of rounds ``>= since`` (and ``< until``, when given)
    from one random peer."""

    since: int
    until: int | None = None


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Rounds ``< round`` became final: ``vector`` is their model, ``digest`` their entries'."""

    round: int
    vector: torch.Tensor
    digest: str


@dataclass(frozen=True, eq=False)
class CloseRound:
    """Round ``round`` closed: persist the round, write ``checkpoint``, evaluate when asked.

    ``digest`` (entries of rounds ``<= round``), ``final`` (base round), ``final_digest``
    and ``entries`` are what the node logs, so nodes can be compared round by round.
    """

    round: int
    next_round: int
    digest: str
    final: int
    final_digest: str
    entries: int
    checkpoint: Checkpoint | None
    evaluate: bool


@dataclass(frozen=True)
class JoinRound:
    """The node skipped to the network's open round ``round`` (earlier rounds closed)."""

    round: int
    skipped_from: int


@dataclass(frozen=True)
class RefuseBatch:
    """A batch was refused (tell the sender ``reason``; state is untouched)."""

    round: int
    origin: str
    reason: str
    detail: str


@dataclass(frozen=True)
class ReplayLog:
    """Pulled batches reach into final rounds the base lacks: :meth:`SpsaEngine.replay` them."""


@dataclass(frozen=True)
class Finished:
    """``max_rounds`` reached: the node trains no more, it keeps serving its peers."""

    rounds: int


Action = (
    ComputeBatch
    | SendBatch
    | RequestBatches
    | CloseRound
    | JoinRound
    | RefuseBatch
    | ReplayLog
    | Finished
)


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerView:
    """What membership says, as the engine needs it (ids are lowercase hex).

    Parameters
    ----------
    known : frozenset of str
        Every member in the view, any state (a batch of another origin is refused).
    live : frozenset of str
        Alive or suspect members: only they count as evidence of the network's round.
    alive : frozenset of str
        Alive members.
    releasing : frozenset of str
        Members whose record says they release batches (the others send none).
    banned : frozenset of str
        Banned by the operator: their batches are refused, nobody waits for them.
    quarantined : frozenset of str
        Quarantined for misbehaving: no evidence of the network's round.
    checks_origins : bool, default True
        False when the node has no membership at all (no ``unknown_origin`` check).
    """

    known: frozenset[str] = frozenset()
    live: frozenset[str] = frozenset()
    alive: frozenset[str] = frozenset()
    releasing: frozenset[str] = frozenset()
    banned: frozenset[str] = frozenset()
    quarantined: frozenset[str] = frozenset()
    checks_origins: bool = True


@dataclass(frozen=True)
class LedgerSpec:
    """How entries become a model (see :class:`~node.training.spsa.ledger.RoundLedger`)."""

    lr: float
    weight: float
    distribution: Distribution = "rademacher"
    schedule: Schedule = "per_node"
    shared_rule: str = "mean"
    shared_trim: int = 0

    def ledger(self, base: torch.Tensor, base_round: int = 0) -> RoundLedger:
        """A fresh ledger over ``base``, the model of ``base_round``."""
        return RoundLedger(
            base,
            lr=self.lr,
            weight=self.weight,
            distribution=self.distribution,
            schedule=self.schedule,
            shared_rule=self.shared_rule,
            shared_trim=self.shared_trim,
            base_round=base_round,
        )


@dataclass(frozen=True)
class SpsaSettings:
    """The engine's parameters (the daemon derives them from the genesis).

    Parameters
    ----------
    node_id : str
        This node's id (hex).
    steps_per_round : int
        Most entries in one batch.
    round_timeout : float
        Seconds a round waits for missing batches after this node's own one.
    past : int, default 1
        Rounds older than ``round - past`` are final: their batches are refused.
    future : int, default 1
        Batches up to ``round + future`` are kept; later ones are refused.
    fanout : int, default 1
        Peers a batch is pushed to (or forwarded to) in a large network.
    eval_every : int, default 1
        Evaluate every ``eval_every`` rounds (and after the last).
    max_rounds : int or None, default None
    byzantine : int, default 0
        ``f``: members that may lie; ``f + 1`` must show the network is ahead.
    max_abs_scalar : float, default MAX_ABS_SCALAR
    direct_push_max : int, default DIRECT_PUSH_MAX_MEMBERS
    dissemination : {"tree", "gossip"}, default "tree"
        How batches spread in a network larger than ``direct_push_max``.
    """

    node_id: str
    steps_per_round: int
    round_timeout: float
    past: int = 1
    future: int = 1
    fanout: int = 1
    eval_every: int = 1
    max_rounds: int | None = None
    byzantine: int = 0
    max_abs_scalar: float = MAX_ABS_SCALAR
    direct_push_max: int = DIRECT_PUSH_MAX_MEMBERS
    dissemination: Dissemination = "tree"

    def __post_init__(self) -> None:
        if self.steps_per_round < 1 or self.past < 1 or self.future < 1 or self.fanout < 1:
            raise ValueError("steps_per_round, past, future and fanout must be >= 1")
        if self.dissemination not in ("tree", "gossip"):
            raise ValueError(f"dissemination must be tree or gossip: {self.dissemination!r}")
        if not self.round_timeout > 0 or self.eval_every < 1:
            raise ValueError("round_timeout must be > 0 and eval_every >= 1")

    @property
    def pull_after(self) -> float:
        """Seconds into a round after which one anti-entropy pull asks for its batches."""
        return min(2.0, self.round_timeout / 3)


class Phase(enum.Enum):
    """Where this node's current round is."""

    IDLE = "idle"
    COMPUTING = "computing"
    WAITING = "waiting"
    DONE = "done"


@dataclass
class _Open:
    index: int
    own: bool = False
    deadline: float = math.inf
    pull_at: float = math.inf
    pulled: bool = False


class SpsaEngine:
    """One node's SPSA rounds (see the module docstring).

    Parameters
    ----------
    settings : SpsaSettings
    ledger : RoundLedger
        Entries held so far (restored from the store, or empty over the genesis model).
    ledger_spec : LedgerSpec
        How a new ledger is built (a checkpoint base, a replay).
    start_round : int, default 0
        This node's round (restored); rounds before it are closed in ``ledger``.
    held : mapping of (round, origin) to bytes, optional
        Signed wire batches already stored (served to peers, re-sent after a restart).
    """

    def __init__(
        self,
        settings: SpsaSettings,
        ledger: RoundLedger,
        ledger_spec: LedgerSpec,
        *,
        start_round: int = 0,
        held: Mapping[tuple[int, str], bytes] | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.ledger = ledger
        self.ledger_spec = ledger_spec
        self.round = max(start_round, ledger.base_round)
        if self.round > 0:
            ledger.close_through(self.round - 1)
        self.phase = Phase.IDLE
        self.ready = False
        self.view = PeerView()
        self.stats: Counter[str] = Counter()
        self._held: dict[tuple[int, str], bytes] = dict(held or {})
        self._claimed: set[tuple[int, str]] = set()
        self._open: _Open | None = None
        # Per round: the member order and each member's index in it (see tree_children).
        # Batches of two or three rounds flow at once; recent rounds only, reset on a
        # membership change.
        self._orders: dict[int, tuple[list[str], dict[str, int]]] = {}

    # -- queries -------------------------------------------------------------------------------
    def held(self, key: tuple[int, str]) -> bytes | None:
        """The stored wire batch of ``(round, origin)``, if any."""
        return self._held.get(key)

    def held_keys(self, since: int = 0) -> list[tuple[int, str]]:
        """``(round, origin)`` of every held batch of rounds ``>= since``, sorted."""
        return sorted(k for k in self._held if k[0] >= since)

    def held_count(self) -> int:
        """Number of signed batches held."""
        return len(self._held)

    def expected_origins(self) -> set[str]:
        """Whose batch of a round this node waits for: itself and every live, releasing,
        not banned member (one that announced ``no-release`` sends none)."""
        v = self.view
        return set((v.alive - v.banned) & v.releasing) | {self.node_id}

    def direct_push(self) -> bool:
        """True when the live network is small enough for origins to reach every member."""
        return len(self.expected_origins()) <= self.settings.direct_push_max

    def missing(self) -> set[str]:
        """Expected origins whose batch of the open round has not arrived (empty if none open)."""
        cur = self._open
        if cur is None or self.phase != Phase.WAITING:
            return set()
        out = self.expected_origins() - self.ledger.origins(cur.index)
        if not cur.own:
            out.discard(self.node_id)
        return out

    def next_deadline(self) -> float | None:
        """Earliest clock time at which :meth:`tick` would act on its own (None: events only)."""
        cur = self._open
        if cur is None or self.phase != Phase.WAITING:
            return None
        return cur.deadline if cur.pulled else min(cur.deadline, cur.pull_at)

    def network_round(self, r: int) -> int | None:
        """The round the network is in when it is beyond ``r + 1``, else None.

        The largest round ``R > r + 1`` such that ``f + 1`` distinct live members (not
        banned or quarantined) signed batches for rounds ``>= R``: ``f`` identities pushing
        batches of the furthest round the engine admits cannot make this node skip rounds.
        """
        ledger = self.ledger
        if ledger.newest_round() <= r + 1:
            return None
        v = self.view
        excluded = v.banned | v.quarantined
        origins: set[str] = set()
        for rnd in sorted((x for x in ledger.rounds() if x > r + 1), reverse=True):
            for origin in ledger.origins(rnd):
                if origin == self.node_id or origin in excluded:
                    continue
                if v.checks_origins and origin not in v.live:
                    continue
                origins.add(origin)
            if len(origins) >= self.settings.byzantine + 1:
                return rnd
        return None

    def wants_checkpoint(self, batches: Sequence[CheckedBatch]) -> bool:
        """A node holding nothing that pulled batches past the final window: a checkpoint
        that peers agree on saves replaying the rounds before it."""
        newest = max((b.round for b in batches), default=-1)
        fresh = any(b.key not in self._held for b in batches)
        return fresh and len(self.ledger) == 0 and newest - self.settings.past > 0

    # -- membership and readiness --------------------------------------------------------------
    def on_membership(self, view: PeerView) -> None:
        """The current membership view (the driver refreshes it before ticks and batches)."""
        if view != self.view:
            self._orders.clear()
        self.view = view

    def tree_children(self, round_idx: int, origin: str) -> tuple[str, ...] | None:
        """Whom this node passes ``origin``'s batch of ``round_idx`` to along the tree.

        The members (alive, not banned, and this node) are ordered by a hash of the round
        and their id, then rotated so that ``origin`` is at position 0; the member at
        position ``j`` sends to positions ``k j + 1 .. k j + k``. Every member is an inner
        node for about ``1/k`` of the origins, so the sending load is spread evenly, and
        the order changes every round, so a slow or dead member is not under the same
        subtree twice. Nodes with equal views build equal trees: each member receives each
        batch once. Views that differ cost a few duplicates or misses (pulls repair them).

        Returns None when ``origin`` or this node is not in the view (no tree to follow).
        """
        cached = self._orders.get(round_idx)
        if cached is None:
            v = self.view
            members = (v.alive - v.banned) | {self.node_id}
            order = sorted(members, key=lambda m: _tree_rank(round_idx, m))
            cached = (order, {m: i for i, m in enumerate(order)})
            if len(self._orders) >= 4:
                del self._orders[min(self._orders)]
            self._orders[round_idx] = cached
        order, index = cached
        root = index.get(origin)
        me = index.get(self.node_id)
        if root is None or me is None:
            return None
        n = len(order)
        k = self.settings.fanout
        j = (me - root) % n
        return tuple(order[(root + c) % n] for c in range(k * j + 1, min(k * j + k + 1, n)))

    def set_ready(self) -> list[Action]:
        """Catch-up is over: peers' batches are taken from now on.

        Returns the pull that fetches what was refused (``not_ready``) meanwhile.
        """
        self.ready = True
        return [RequestBatches(max(0, self.round - 1))]

    # -- the round clock -----------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Advance the clock: finish, join the network's round, open a round, pull, close."""
        if self.phase == Phase.DONE:
            return []
        if self.phase == Phase.IDLE:
            return self._open_round(now)
        cur = self._open
        assert cur is not None
        if self.phase != Phase.WAITING:
            return []
        if not self.missing() or now >= cur.deadline:
            if self.missing():
                self.stats["timeouts"] += 1
            return self._close(cur.index)
        if not cur.pulled and now >= cur.pull_at:
            cur.pulled = True
            return [RequestBatches(cur.index)]
        return []

    def on_own_batch(self, round_idx: int, wire: bytes | None, now: float) -> list[Action]:
        """This node's batch of ``round_idx`` is stored (``wire``), or None: it releases nothing.

        Starts the round's wait (``round_timeout`` from now) and pushes the batch.
        """
        cur = self._open
        if cur is None or cur.index != round_idx or self.phase != Phase.COMPUTING:
            return []
        return self._wait(cur, wire, now)

    def _open_round(self, now: float) -> list[Action]:
        r = self.round
        s = self.settings
        if s.max_rounds is not None and r >= s.max_rounds:
            self.phase = Phase.DONE
            return [Finished(r)]
        newest = self.network_round(r)
        if newest is not None:
            # More than a round behind the network: our batches for the rounds in between
            # would arrive when peers already closed (or finalised) them. Join its round.
            self.jump(newest)
            self.stats["joined"] += 1
            return [JoinRound(newest, r)]
        cur = _Open(index=r)
        self._open = cur
        # A batch already stored (a restart) is re-sent as is: it was debited when made.
        stored = self._held.get((r, self.node_id))
        if stored is not None:
            return self._wait(cur, stored, now)
        self.phase = Phase.COMPUTING
        return [ComputeBatch(r)]

    def _wait(self, cur: _Open, wire: bytes | None, now: float) -> list[Action]:
        self.phase = Phase.WAITING
        cur.own = wire is not None
        cur.deadline = now + self.settings.round_timeout
        cur.pull_at = now + self.settings.pull_after
        actions: list[Action] = []
        if wire is not None:
            actions.append(self._own_send(cur.index, wire))
        if not self.missing():
            actions += self._close(cur.index)
        return actions

    def _own_send(self, round_idx: int, wire: bytes) -> SendBatch:
        if not self.direct_push():
            if self.settings.dissemination == "tree":
                children = self.tree_children(round_idx, self.node_id)
                assert children is not None  # this node is always in its own tree
                return SendBatch(round_idx, wire, peers=children)
            return SendBatch(round_idx, wire, fanout=self.settings.fanout)
        # Also members that release nothing themselves: they follow the model all the same.
        v = self.view
        peers = tuple(sorted((v.alive - v.banned) - {self.node_id}))
        return SendBatch(round_idx, wire, peers=peers)

    def _close(self, r: int) -> list[Action]:
        ledger = self.ledger
        s = self.settings
        ledger.close_through(r)
        self.round = r + 1
        self._open = None
        self.phase = Phase.IDLE
        self.stats["rounds"] += 1
        moved = ledger.finalize_before(self.round - s.past)
        actions: list[Action] = []
        if r % 2 == 0:
            # Periodic anti-entropy: a batch lost by push gossip (or refused while this
            # node was busy) is fetched while its round can still change, i.e. before it
            # becomes final here and at the peers. Each round is covered ~past/2 times.
            # Closed rounds only: batches of the next round are being pushed right now, and
            # one pulled ahead of its push would not be passed down the tree.
            actions.append(RequestBatches(max(ledger.base_round, r - s.past + 1), self.round))
        last = s.max_rounds is not None and self.round >= s.max_rounds
        checkpoint = (
            Checkpoint(ledger.base_round, ledger.base.clone(), ledger.folded_digest())
            if moved
            else None
        )
        actions.append(
            CloseRound(
                round=r,
                next_round=self.round,
                digest=ledger.digest_through(r),
                final=ledger.base_round,
                final_digest=ledger.folded_digest(),
                entries=len(ledger),
                checkpoint=checkpoint,
                evaluate=self.round % s.eval_every == 0 or last,
            )
        )
        return actions

    def jump(self, round_idx: int) -> None:
        """Join the network's open round ``round_idx``: every earlier round closes."""
        self.round = round_idx
        self.ledger.close_through(round_idx - 1)
        self.ledger.finalize_before(round_idx - self.settings.past)

    # -- pushed batches ------------------------------------------------------------------------
    def screen(self, round_idx: int, origin: str, wire: bytes) -> RefuseBatch | None:
        """Cheap refusals before any signature is verified (``wire`` as received)."""
        if not self.ready:
            return self._refuse(round_idx, origin, "not_ready", "catching up")
        return self._duplicate(round_idx, origin, wire, verified=False)

    def admit(self, batch: CheckedBatch, *, sender: str, envelope_round: int) -> RefuseBatch | None:
        """Decide on a checked pushed batch; on None it is claimed: store it, then
        :meth:`on_stored` (or :meth:`release` if storing failed)."""
        if not self.ready:
            return self._refuse(batch.round, batch.origin, "not_ready", "catching up")
        if envelope_round != batch.round:
            return self._refuse(
                batch.round,
                batch.origin,
                "bad_round",
                "envelope round differs from the batch round",
            )
        refused = (
            self._window(batch)
            or self._duplicate(batch.round, batch.origin, batch.wire, verified=True)
            or self._shape(batch)
        )
        if refused is not None:
            return refused
        v = self.view
        if batch.origin != self.node_id and v.checks_origins and batch.origin not in v.known:
            return self._refuse(
                batch.round,
                batch.origin,
                "unknown_origin",
                f"origin {batch.origin[:16]} is not a member",
            )
        if batch.origin in v.banned:
            return self._refuse(
                batch.round, batch.origin, "banned", f"origin {batch.origin[:16]} is banned here"
            )
        return self.claim(batch)

    def claim(self, batch: CheckedBatch) -> RefuseBatch | None:
        """Reserve ``batch`` for storing (own batches come here directly).

        Returns ``duplicate`` when it is held or being stored already (the claim then does
        not hold), ``duplicate_seed`` when one of its seed ids is applied.
        """
        if batch.key in self._claimed or batch.key in self._held:
            return self._refuse(
                batch.round, batch.origin, "duplicate", "batch arrived twice at once"
            )
        if any(self.ledger.has(e.key) for e in batch.entries):
            return self._refuse(
                batch.round,
                batch.origin,
                "duplicate_seed",
                "a seed id of this batch is already applied",
            )
        self._claimed.add(batch.key)
        return None

    def release(self, batch: CheckedBatch) -> None:
        """Drop the claim on ``batch`` (the driver could not store it)."""
        self._claimed.discard(batch.key)

    def on_stored(self, batch: CheckedBatch, *, sender: str | None = None) -> list[Action]:
        """A claimed batch is stored: apply it; returns where to forward it.

        ``sender`` is the peer that pushed it (None for this node's own batch: the round
        clock sends that one). Returns ``stale_round`` when its round became final while it
        was being stored (the row stays in the store, harmlessly: the digest of a final
        round is fixed by the checkpoint).
        """
        self._claimed.discard(batch.key)
        if batch.round < self.ledger.base_round:
            return [
                self._refuse(
                    batch.round,
                    batch.origin,
                    "stale_round",
                    f"round {batch.round} became final meanwhile",
                )
            ]
        self.ledger.add(batch.entries)
        self._held[batch.key] = batch.wire
        self.stats["accepted"] += 1
        if sender is None or (sender == batch.origin and self.direct_push()):
            return []  # own batch, or the origin pushed to every member itself
        exclude = frozenset({sender, batch.origin, self.node_id})
        if self.settings.dissemination == "tree" and not self.direct_push():
            children = self.tree_children(batch.round, batch.origin)
            if children is not None:
                peers = tuple(p for p in children if p not in exclude)
                return [SendBatch(batch.round, batch.wire, peers=peers)] if peers else []
            # The origin is not in our view: no tree to follow, gossip it on once.
        return [SendBatch(batch.round, batch.wire, fanout=self.settings.fanout, exclude=exclude)]

    def changes_model(self, batch: CheckedBatch) -> bool:
        """True when ``batch`` falls in a closed round (the model moves when it is applied)."""
        return batch.round < self.ledger.frontier

    # -- pulled batches ------------------------------------------------------------------------
    def fresh(
        self, batches: Iterable[CheckedBatch], *, final_ok: bool = False
    ) -> list[CheckedBatch]:
        """Pulled batches not held yet, in order (and, unless ``final_ok``, not of final rounds)."""
        base = self.ledger.base_round
        return [b for b in batches if b.key not in self._held and (final_ok or b.round >= base)]

    def on_pulled_stored(
        self, batches: Sequence[CheckedBatch], *, folded_ok: bool = False
    ) -> list[Action]:
        """Pulled batches are stored (any round: this node asked for them); apply them.

        Batches of rounds already final here are folded into the base when ``folded_ok``
        (the base is a checkpoint whose digest covers exactly them); otherwise the base
        lacks them and :class:`ReplayLog` asks the driver to rebuild from genesis.
        """
        new = [b for b in batches if b.key not in self._held]
        for b in new:
            self._held[b.key] = b.wire
        self.stats["pulled"] += len(new)
        ledger = self.ledger
        old = [e for b in new if b.round < ledger.base_round for e in b.entries]
        if old and not folded_ok and any(not ledger.has(e.key) for e in old):
            return [ReplayLog()]
        ledger.add(old, folded=True)
        ledger.add([e for b in new if b.round >= ledger.base_round for e in b.entries])
        return []

    def replay(self, init: torch.Tensor, batches: Iterable[CheckedBatch]) -> None:
        """Rebuild the ledger from the genesis model ``init`` and every held batch."""
        frontier = self.ledger.frontier
        ledger = self.ledger_spec.ledger(init, 0)
        ledger.add([e for b in batches for e in b.entries])
        ledger.close_through(frontier - 1)
        ledger.finalize_before(frontier - self.settings.past)
        self.ledger = ledger
        self.stats["replays"] += 1

    def use_checkpoint(self, vector: torch.Tensor, round_idx: int) -> None:
        """Start over from an agreed checkpoint: the model of rounds ``< round_idx``."""
        self.ledger = self.ledger_spec.ledger(vector, round_idx)

    def folded_digest_of(self, batches: Iterable[CheckedBatch], round_idx: int) -> str:
        """Digest of the entries of ``batches`` in rounds ``< round_idx`` (checks a checkpoint)."""
        return digest_of(e.key for b in batches if b.round < round_idx for e in b.entries)

    # -- internals -----------------------------------------------------------------------------
    def _refuse(self, round_idx: int, origin: str, reason: str, detail: str) -> RefuseBatch:
        self.stats[f"rejected_{reason}"] += 1
        return RefuseBatch(round_idx, origin, reason, detail)

    def _window(self, batch: CheckedBatch) -> RefuseBatch | None:
        base = self.ledger.base_round
        if batch.round < base:
            return self._refuse(
                batch.round,
                batch.origin,
                "stale_round",
                f"round {batch.round} is final here (rounds < {base})",
            )
        limit = self.round + self.settings.future
        if batch.round > limit:
            return self._refuse(
                batch.round,
                batch.origin,
                "future_round",
                f"round {batch.round} is beyond {self.round} + {self.settings.future}",
            )
        return None

    def _duplicate(
        self, round_idx: int, origin: str, wire: bytes, *, verified: bool
    ) -> RefuseBatch | None:
        known = self._held.get((round_idx, origin))
        if (round_idx, origin) in self._claimed or known == wire:
            return self._refuse(
                round_idx,
                origin,
                "duplicate",
                f"batch of round {round_idx} from {origin[:16]} known",
            )
        if known is not None and verified:
            # Two different batches both signed by the origin for one round: provable.
            return self._refuse(
                round_idx,
                origin,
                "equivocation",
                f"a different signed batch of round {round_idx} from {origin[:16]} is known",
            )
        return None

    def _shape(self, batch: CheckedBatch) -> RefuseBatch | None:
        # The wire check refused all of these already; a driver that builds batches itself
        # (a simulation, a test) meets the same rules here.
        n = len(batch.entries)
        if n == 0 or any(e.round != batch.round or e.node != batch.origin for e in batch.entries):
            return self._refuse(
                batch.round, batch.origin, "bad_shape", "empty batch or foreign entry"
            )
        if n > self.settings.steps_per_round:
            return self._refuse(
                batch.round,
                batch.origin,
                "oversized",
                f"{n} entries, at most {self.settings.steps_per_round}",
            )
        for e in batch.entries:
            if not math.isfinite(e.scalar):
                return self._refuse(batch.round, batch.origin, "nonfinite", "scalar is NaN or Inf")
            if abs(e.scalar) > self.settings.max_abs_scalar:
                return self._refuse(
                    batch.round,
                    batch.origin,
                    "out_of_bounds",
                    f"|scalar| above {self.settings.max_abs_scalar:g}",
                )
        return None


def _tree_rank(round_idx: int, member: str) -> bytes:
    # A hash, not the id itself: ids are chosen by their owners (grinding an id next to a
    # victim's would otherwise put the victim under the attacker's subtree every round).
    return hashlib.blake2b(f"{round_idx}:{member}".encode(), digest_size=8).digest()
