"""The ``spsa`` learner on a running daemon: scalar batches by gossip, one model everywhere.

This module is the driver: sockets, timers, the store, the executor. The round rules are
the sans-I/O :class:`~node.training.spsa.SpsaEngine` (what to send, when a round closes,
which batch to refuse); the ledger and digest are :mod:`node.training.spsa`, the signed
wire format :mod:`node.wire.spsa_batch`.

Each node runs its own round clock. In round ``r`` it computes ``spsa_steps`` (seed id,
scalar) pairs on its shard with :class:`~node.training.learners.spsa.SPSALearner`, signs
the batch as its *origin* (so relays cannot alter it), stores it in SQL and pushes it to
every live member (networks of up to ``DIRECT_PUSH_MAX_MEMBERS``) or to its ``k``
children in the batch's spanning tree. A node that sees a batch for the first time
verifies it and stores it; in a large network it passes it on to its own ``k`` children
in that tree, so every batch reaches every node about once (docs/spsa.md).
Anti-entropy pulls list what the puller holds, so peers resend only missing batches. The round
closes when every live member's batch of the round is in, or after ``round_timeout``.

Deterministic application (why models agree bit for bit)
---------------------------------------------------------
The model is ``genesis init - lr/N * sum(scalar * z(seed))`` over every accepted entry.
Mathematically that is order independent; float addition is not. So the model is a pure
function of the *set* of entries: rounds are applied in increasing order and, inside a
round, in sorted ``(seed id, origin)`` order (:func:`~node.training.learners.spsa.apply_scalars`).
:class:`~node.training.spsa.RoundLedger` keeps one snapshot per open round (``W_r`` =
everything of rounds ``< r`` applied); a batch that arrives after its round closed marks
that round dirty and the snapshots from there on are recomputed, so arrival order never
shows in the bits.
Rounds older than ``max_staleness`` behind the node's clock are *final*: batches for them
are refused (``stale_round``) and the snapshot becomes the base, written as a checkpoint
that a late joiner can start from.

Catch-up: a joiner (or a restarted node) pulls every signed batch from a peer
(``PullScalars``, ``SCALARS_SINCE``), verifies each origin signature, and either takes
a final checkpoint (``Pull``, ``CHECKPOINT``) that ``f + 1`` members with standing serve
bit for bit (``[catchup]``, node/daemon/catchup.py) and whose seed-set digest equals the digest
of the pulled batches of the rounds it covers, or replays the whole log from the genesis
initialisation (exact, needs no trust).
A fresh node makes that first pull while its data and model load, then pulls again until a
pull brings nothing new, so it joins the round the network is in by then (a late joiner
agrees within 5 rounds; each node logs a ``round closed`` line per round with the
digest of its final rounds, which is how that is measured).
A restarted node rebuilds from its own SQL log and checkpoint, then catches up the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import torch

from fednode_proto.v1 import admin_pb2
from fednode_proto.v1 import training_pb2 as pb
from fednode_proto.v1.envelope_pb2 import Envelope
from node.base.identity import Identity
from node.base.logs import log
from node.daemon.catchup import VoucherPolicy, catchup_quorum, pull_checkpoint, serve_checkpoint
from node.daemon.context import BanList, BatchWitness, MembershipView, NodeContext
from node.daemon.evaluations import load_history, record_evaluation
from node.daemon.participation import releases
from node.daemon.peer_wait import wait_for_peers
from node.daemon.privacy_guard import RecordMechanism, ReleaseGuard, ReleaseRefused, Ticket
from node.daemon.tasks import TaskSet
from node.storage.records import SpsaBatchRecord, SpsaEntry
from node.training.genesis import Genesis
from node.training.learners.spsa import ScalarBatch, ScalarEntry, SPSALearner
from node.training.params import (
    ParamLayout,
    checkpoint_tensors,
    decode_checkpoint,
    encode_state,
    flatten,
    layout_of,
    load_vector,
    vector_hash,
)
from node.training.spsa import (
    Action,
    CheckedBatch,
    CloseRound,
    ComputeBatch,
    Finished,
    JoinRound,
    LedgerSpec,
    PeerView,
    Phase,
    RefuseBatch,
    ReplayLog,
    RequestBatches,
    RoundLedger,
    SendBatch,
    ServedCheckpoint,
    SpsaEngine,
    SpsaSettings,
    agreed_checkpoint,
    digest_of,
    entry_key,
    parse_entry_key,
)
from node.training.tasks import LocalTask, build_local_task, spsa_learner
from node.training.usercode import TaskSetupError
from node.wire.envelope import EnvelopeError, SeqCounter, Verified, check_envelope, seal
from node.wire.service import Rejected
from node.wire.spsa_batch import (
    batch_to_wire,
    check_batch,
    have_key,
    parse_batch,
    release_digest,
)

__all__ = ["SpsaRuntime"]

#: Most batches one catch-up pull may return (bad-input bound).
MAX_PULL_BATCHES = 200_000
STATE_ROUND = "spsa.round"
#: The model hash and seed-set digest at the stored round: status reports them while a
#: restarted node rebuilds its model from the log (until then it has no model to hash).
STATE_MODEL_HASH = "spsa.model_hash"
STATE_DIGEST = "spsa.digest"
#: Idle iterations (after the last round) that pull a peer's whole log.
FULL_SYNC_AT = frozenset({2, 4, 6, 9, 12, 16, 20})
#: Most log pulls of a late joiner's catch-up (the first one included).
CATCH_UP_PULLS = 4
MAX_HAVE_KEYS = 65_536
_META_ROUND = "fednode.spsa.round"
_META_DIGEST = "fednode.spsa.digest"
_META_HASH = "fednode.model_hash"


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (JSON header only; nothing else parsed)."""
    if len(data) < 8:
        return {}
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > len(data) - 8 or n > 1 << 24:
        return {}
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _rows(batch: CheckedBatch) -> list[SpsaEntry]:
    """The SQL log rows of a batch (quantised code and scale, as the origin signed them)."""
    return [
        SpsaEntry(
            seed_id=entry_key(e.seed_id, e.node),
            round=e.round,
            sender=e.node,
            step=e.step,
            scalar=float(code),
            scale=batch.batch.scale,
        )
        for e, code in zip(batch.entries, batch.batch.codes.tolist(), strict=True)
    ]


class _Peers:
    """What both phases of the runtime use to reach peers: sampling, requests, verified pulls.

    Shared by :class:`SpsaRuntime` (a fresh node's first pull runs while the model loads)
    and the :class:`_SpsaDriver` it builds, so sequence numbers and refusal counts are one.
    """

    def __init__(
        self,
        ctx: NodeContext,
        membership: MembershipView,
        bans: BanList,
        stopping: Callable[[], bool],
        witness: BatchWitness | None = None,
    ) -> None:
        self.ctx = ctx
        self.membership = membership
        self.bans = bans
        self.stopping = stopping
        self.witness = witness
        self.identity: Identity = ctx.identity
        g = ctx.genesis
        self.spec = g.learner
        self.network_id = g.network_id
        self.seed = g.network.seed
        self.seq = SeqCounter()
        self.rejected: Counter[str] = Counter()

    def members(self) -> list[Any]:
        return list(self.membership.members())

    def sample(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
        if k <= 0:
            return []
        skip = set(exclude)
        picked = self.membership.sample(k + len(skip))
        return [(m.node_id.hex(), m.address) for m in picked if m.node_id.hex() not in skip][:k]

    def view(self) -> PeerView:
        """Membership as the engine sees it (a snapshot; rebuilt before each decision)."""
        membership = self.membership
        banned = frozenset(self.bans.banned)
        members = self.members()
        known = frozenset(m.node_id.hex() for m in members)
        return PeerView(
            known=known,
            live=frozenset(m.node_id.hex() for m in members if membership.is_member(m.node_id)),
            alive=frozenset(
                m.node_id.hex() for m in members if getattr(m.state, "value", m.state) == "alive"
            ),
            releasing=frozenset(
                m.node_id.hex() for m in members if releases(getattr(m, "capabilities", ()))
            ),
            banned=banned,
            quarantined=frozenset(k for k in known if self.bans.is_quarantined(bytes.fromhex(k))),
        )

    async def wait_for_peers(
        self, want: int | None = None, *, timeout: float | None = None, then: str = "training alone"
    ) -> None:
        """Wait until ``want`` peers are alive (default ``min(k, N - 1)``), at most
        ``timeout`` seconds (default: the genesis start-up allowance ``start_wait_s``)."""
        g = self.ctx.genesis
        if want is None:
            want = min(g.rounds.peers_per_round, max(0, g.task.num_nodes - 1))
        await wait_for_peers(
            lambda: len(self.sample(want)), want, g, self.stopping, timeout=timeout, then=then
        )

    def checked(self, wire: pb.ScalarBatch, *, verify: bool = True) -> CheckedBatch:
        return check_batch(
            wire,
            network_id=self.network_id,
            genesis_seed=self.seed,
            schedule=self.spec.spsa_seed_schedule,
            dtype=self.spec.spsa_scalar_dtype,
            steps_per_round=self.spec.spsa_steps,
            verify=verify,
        )

    def request(
        self, what: int, since_round: int = 0, have: Sequence[bytes] = (), until: int = 0
    ) -> Envelope:
        request = pb.PullRequest(
            what=what,  # type: ignore[arg-type]
            since_round=since_round,
            have=list(have),
            until_round=until,
        )
        body = request.SerializeToString()
        env = seal(self.identity, self.network_id, "request", body, seq=self.seq.next("request"))
        self.ctx.metrics.bytes.labels(direction="out", kind="request").inc(env.ByteSize())
        return env

    async def pull_batches(
        self, address: str, since: int, have: Sequence[bytes] = (), until: int | None = None
    ) -> list[CheckedBatch]:
        """Every batch of rounds >= ``since`` that a peer holds, each verified; [] on failure.

        ``have`` names the batches we hold already (the peer leaves them out); ``until``
        bounds the rounds (``< until``) when given.
        """
        stub = self.ctx.channels.stub(address)
        got: list[CheckedBatch] = []
        metric = self.ctx.metrics.bytes.labels(direction="in", kind="spsa")
        try:
            call = stub.PullScalars(
                self.request(pb.PullRequest.SCALARS_SINCE, since, have, until or 0),
                timeout=60.0,
            )
            async for env in call:
                metric.inc(env.ByteSize())
                if len(got) >= MAX_PULL_BATCHES:
                    break
                try:
                    verified = check_envelope(
                        env, self.network_id, replay=None, kinds=frozenset({"spsa"})
                    )
                    wire = pb.ScalarBatch()
                    wire.ParseFromString(verified.body)
                    got.append(self.checked(wire))
                    if self.witness is not None:
                        # Pulled batches are compared too: an equivocating origin may have
                        # pushed its other batch to the peer we pull from.
                        self.witness.seen_batch(wire)
                except (EnvelopeError, Rejected, ValueError) as exc:
                    reason = getattr(exc, "reason", "malformed")
                    self.rejected[f"pulled_{reason}"] += 1
                    self.ctx.metrics.messages_rejected.labels(reason=f"spsa_{reason}").inc()
        except grpc.aio.AioRpcError as exc:
            log.info("scalar pull failed", extra={"fields": {"code": exc.code().name}})
        return got


@dataclass(frozen=True)
class _Model:
    """This node's SPSA task: model, shard and learner (built once, in an executor)."""

    task: LocalTask
    layout: ParamLayout
    learner: SPSALearner
    #: The genesis initialisation (the base of a full replay).
    init_vector: torch.Tensor

    @property
    def model(self) -> torch.nn.Module:
        return self.task.model

    @property
    def data(self) -> Any:
        return self.task.data


def _build_model(ctx: NodeContext, shard: int, guard: ReleaseGuard) -> _Model:
    """Build the task and learner; tell the guard the learner's record-level DP."""
    g = ctx.genesis
    task = build_local_task(g.task, g.network.seed, shard % g.task.num_nodes)
    learner = spsa_learner(
        task,
        g.learner,
        batch_size=g.task.batch_size,
        seed=g.network.seed,
        node=ctx.identity.node_id_hex,
    )
    dp_round = learner.dp_round(task.data.num_examples)
    if dp_round is not None:
        # Record-level DP-ZO: every round's m steps are debited with its batch.
        guard.set_record_mechanism(RecordMechanism("dp_zo", *dp_round))
    return _Model(task, layout_of(task.model), learner, flatten(task.model).clone())


def _ledger_spec(g: Genesis) -> LedgerSpec:
    rule = g.aggregation.rule if g.aggregation.rule in {"median", "trimmed_mean"} else "mean"
    return LedgerSpec(
        lr=g.learner.lr,
        weight=1.0 / g.task.num_nodes,
        distribution=g.learner.spsa_distribution,
        schedule=g.learner.spsa_seed_schedule,
        shared_rule=rule,
        shared_trim=g.aggregation.f if rule == "trimmed_mean" else 0,
    )


def _settings(g: Genesis, node_id: str) -> SpsaSettings:
    f, _ = catchup_quorum(g.catchup.byzantine, g.task.num_nodes)
    past = max(1, g.rounds.max_staleness)
    return SpsaSettings(
        node_id=node_id,
        steps_per_round=g.learner.spsa_steps,
        round_timeout=g.rounds.round_timeout,
        past=past,
        # Batches of peers slightly ahead are kept, not refused: refusing them would make
        # this node depend on a later pull to ever see them.
        future=max(1, g.rounds.max_future, past),
        fanout=max(1, g.rounds.peers_per_round),
        eval_every=g.rounds.eval_every,
        max_rounds=g.rounds.max_rounds,
        byzantine=f,
    )


def _restore_engine(ctx: NodeContext, model: _Model, peers: _Peers) -> SpsaEngine:
    """Rebuild from our own SQL state: signed batches, the log, the last checkpoint."""
    store = ctx.store
    held: dict[tuple[int, str], bytes] = {}
    for stored in store.spsa_batches():
        with contextlib.suppress(Exception):  # a damaged row is skipped, never fatal
            checked = peers.checked(parse_batch(stored.wire), verify=False)
            held[checked.key] = checked.wire
    entries: list[ScalarEntry] = []
    for row in store.spsa_since():
        try:
            sid, origin = parse_entry_key(row.seed_id)
        except ValueError:
            continue
        value = float(np.float32(row.scalar) * np.float32(row.scale))
        entries.append(ScalarEntry(sid, row.round, origin, row.step, value))
    base, base_round = model.init_vector, 0
    ckpt = store.latest_checkpoint()
    if ckpt is not None and entries:
        try:
            vec = decode_checkpoint(store.checkpoint_bytes(ckpt), model.layout)
            folded = digest_of(e.key for e in entries if e.round < ckpt.round)
            if folded == ckpt.applied_seed_digest:
                base, base_round = vec, ckpt.round
        except Exception as exc:  # corrupt checkpoint: replay the log instead
            log.warning("checkpoint unusable, replaying the SPSA log", exc_info=exc)
    spec = _ledger_spec(ctx.genesis)
    ledger = spec.ledger(base, base_round)
    ledger.add([e for e in entries if e.round < base_round], folded=True)
    ledger.add([e for e in entries if e.round >= base_round])
    return SpsaEngine(
        _settings(ctx.genesis, ctx.identity.node_id_hex),
        ledger,
        spec,
        start_round=int(store.get_state(STATE_ROUND, 0) or 0),
        held=held,
    )


# --- the runtime ---------------------------------------------------------------------------


class SpsaRuntime:
    """SPSA training on one daemon (implements the service's ``TrainingHandler``).

    Data, model and SQL state load in the background: the daemon reports itself started
    (and answers status) meanwhile, and peer batches are refused with ``not_ready`` until
    the node has caught up. Once loaded, a :class:`_SpsaDriver` drives the
    :class:`~node.training.spsa.SpsaEngine` (ticks, membership views, this node's and
    peers' batches) and carries out its actions (pushes, pulls, storage, checkpoints,
    evaluations); this object hands peers and the operator to it.

    Parameters
    ----------
    ctx : NodeContext
        Identity, genesis, settings, store, metrics and peer channels.
    membership : MembershipView
        Whom to push to, whose batches count.
    bans : BanList
        Peers whose batches are refused and who never vouch.
    guard : ReleaseGuard
        The node's release guard (every release goes through it).
    shard : int
        Index of this node's data shard in the genesis partition.
    stored_round : int
        The round in the store, reported until the log is restored.
    stored_hash, stored_digest : str
        The model hash and seed-set digest at that round, reported likewise [default: ""].
    evaluations : list of (round, accuracy, loss, unix time)
        The stored accuracy curve (it survives restarts).
    witness : BatchWitness, optional
        Shown every pulled batch (equivocation evidence); the daemon's evidence exchange.
    """

    #: SPSA exchanges scalars, never update vectors: pushes are refused before their body.
    update_numel: int | None = None

    def __init__(
        self,
        ctx: NodeContext,
        membership: MembershipView,
        bans: BanList,
        guard: ReleaseGuard,
        shard: int,
        *,
        stored_round: int,
        evaluations: list[tuple[int, float, float, float]],
        witness: BatchWitness | None = None,
        stored_hash: str = "",
        stored_digest: str = "",
    ) -> None:
        self.ctx = ctx
        self.guard = guard
        self.shard = shard
        self.tasks = TaskSet("spsa")
        self.peers = _Peers(ctx, membership, bans, lambda: self.tasks.stopping, witness)
        self._stored_round = stored_round
        self._stored_hash = stored_hash
        self._stored_digest = stored_digest
        self.evaluations = evaluations
        self._last = evaluations[-1] if evaluations else (0, 0.0, float("nan"), 0.0)
        self._driver: _SpsaDriver | None = None  # None while the model and log load
        # What status says while there is no driver: "loading", "replaying" or "failed".
        self._phase = "loading"

    @classmethod
    async def create(
        cls,
        ctx: NodeContext,
        membership: MembershipView,
        bans: BanList,
        guard: ReleaseGuard,
        shard: int,
        witness: BatchWitness | None = None,
    ) -> SpsaRuntime:
        """Start the runtime: the stored round now, the task and scalar log in the background.

        Status reports the stored round and accuracy history (read here, two cheap
        queries) while the rest loads, not round 0.
        """
        store = ctx.store
        loop = asyncio.get_running_loop()
        stored_round = int(await loop.run_in_executor(None, store.get_state, STATE_ROUND, 0) or 0)
        stored_hash = await loop.run_in_executor(None, store.get_state, STATE_MODEL_HASH, "")
        stored_digest = await loop.run_in_executor(None, store.get_state, STATE_DIGEST, "")
        history = await loop.run_in_executor(None, load_history, store)
        runtime = cls(
            ctx,
            membership,
            bans,
            guard,
            shard,
            stored_round=stored_round,
            evaluations=history,
            witness=witness,
            stored_hash=str(stored_hash or ""),
            stored_digest=str(stored_digest or ""),
        )
        runtime.tasks.start(runtime._run(), "spsa")
        return runtime

    async def stop(self) -> None:
        await self.tasks.stop()

    @property
    def last_loss(self) -> float:
        """Loss of the last evaluation (NaN before the first)."""
        return self._driver.last_loss if self._driver is not None else self._last[2]

    async def _run(self) -> None:
        # Loading data and model (executor) overlaps finding a peer and pulling the network's
        # log: on a loaded machine each takes seconds, and the network keeps closing rounds
        # meanwhile, so a late joiner that did them one after the other started far behind.
        setup = asyncio.create_task(
            _SpsaDriver.create(
                self.ctx,
                self.peers,
                self.guard,
                self.tasks,
                self.evaluations,
                self.shard,
                on_replay=self._replaying,
            )
        )
        try:
            prefetched = await self._prefetch()
        except Exception:  # a failed pull only costs the head start; catch-up pulls again
            log.warning("spsa log prefetch failed", exc_info=True)
            prefetched = None
        try:
            driver = await setup
        except Exception as exc:  # the daemon keeps serving membership; the operator sees the log
            if isinstance(exc, TaskSetupError):
                log.error("spsa learner could not start: %s", exc)
            else:
                log.exception("spsa learner could not start")
            self._phase = "failed"
            return
        self._driver = driver
        await driver.run(prefetched)

    def _replaying(self) -> None:
        # Only a restarted node has a log worth the name: a new node's replay is empty.
        if self._stored_round > 0:
            self._phase = "replaying"

    async def _prefetch(self) -> tuple[str, list[CheckedBatch]] | None:
        """A fresh node's first pull of the network's whole log (runs while the model loads).

        Only for a node without SPSA state: a restarted node pulls from its own base round
        once its store is read. Returns the serving peer's address and the verified batches.
        """
        store = self.ctx.store
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, store.get_state, STATE_ROUND, None) is not None:
            return None
        # One round at most: the round-0 wait after it gives late peers the full allowance.
        await self.peers.wait_for_peers(
            1, timeout=self.ctx.genesis.rounds.round_timeout, then="skipping the first log pull"
        )
        peers = self.peers.sample(1)
        if not peers:
            return None
        address = peers[0][1]
        # Nothing is held yet: the peer sends everything.
        return address, await self.peers.pull_batches(address, 0)

    # --- peers -----------------------------------------------------------------------------

    async def on_update(self, msg: Verified, header: pb.TensorHeader, payload: bytes) -> None:
        raise Rejected("wrong_learner", "this network's learner is spsa: it exchanges scalars")

    async def on_scalars(self, msg: Verified, batch: pb.ScalarBatch) -> None:
        if self._driver is None:
            raise Rejected("not_ready", "catching up")
        await self._driver.on_scalars(msg, batch)

    async def pull_scalars(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[Envelope]:
        if self._driver is None:
            return
        async for env in self._driver.pull_scalars(msg, request):
            yield env

    async def pull(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[pb.TensorChunk]:
        if self._driver is None:
            return
        async for chunk in self._driver.pull(msg, request):
            yield chunk

    # --- operator --------------------------------------------------------------------------

    def fill_status(self, reply: admin_pb2.StatusReply) -> None:
        if self._driver is not None:
            self._driver.fill_status(reply)
            return
        reply.learner = "spsa"
        reply.learner_state = self._phase
        # Until the log is restored, the stored round, model hash and digest (not 0 and
        # empty) are the truth: the node resumes from them.
        reply.round = self._stored_round
        reply.model_hash = self._stored_hash
        reply.spsa_digest = self._stored_digest
        reply.last_accuracy = self._last[1]
        _fill_history(reply, self.evaluations)

    def export(self) -> admin_pb2.ExportReply:
        if self._driver is None:
            raise LookupError("the spsa model is still loading")
        return self._driver.export()


class _SpsaDriver:
    """The loaded SPSA learner: drives the :class:`~node.training.spsa.SpsaEngine`.

    Built by :meth:`create` once the task and the node's own log are loaded; every field
    is set from then on.
    """

    def __init__(
        self,
        ctx: NodeContext,
        peers: _Peers,
        guard: ReleaseGuard,
        tasks: TaskSet,
        model: _Model,
        engine: SpsaEngine,
        evaluations: list[tuple[int, float, float, float]],
    ) -> None:
        self.ctx = ctx
        self.peers = peers
        self.membership = peers.membership
        self.bans = peers.bans
        self.guard = guard
        self.tasks = tasks
        self.identity: Identity = ctx.identity
        self.node_id = self.identity.node_id_hex
        g = ctx.genesis
        self.spec = g.learner
        self.network_id = g.network_id
        self.seq = peers.seq
        self.task = model.task
        self.model = model.model
        self.data = model.data
        self.layout = model.layout
        self.learner = model.learner
        self.init_vector = model.init_vector
        self.engine = engine
        self.evaluations = evaluations
        self.last_accuracy = 0.0
        self.last_loss = float("nan")
        if evaluations:
            _, self.last_accuracy, self.last_loss, _ = evaluations[-1]
        self.model_hash = vector_hash(engine.ledger.vector(), model.layout)
        self.catchup: dict[str, Any] = {}

    @classmethod
    async def create(
        cls,
        ctx: NodeContext,
        peers: _Peers,
        guard: ReleaseGuard,
        tasks: TaskSet,
        evaluations: list[tuple[int, float, float, float]],
        shard: int,
        on_replay: Callable[[], None] | None = None,
    ) -> _SpsaDriver:
        """Build the task and learner and restore the node's log (both in the executor).

        ``on_replay`` is called once the model is built, before the stored log is replayed.

        Raises
        ------
        TaskSetupError
            The task cannot be built (user code, model folder, data file).
        """
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        model = await loop.run_in_executor(None, _build_model, ctx, shard, guard)
        if on_replay is not None:
            on_replay()
        engine = await loop.run_in_executor(None, _restore_engine, ctx, model, peers)
        driver = cls(ctx, peers, guard, tasks, model, engine, evaluations)
        log.info(
            "spsa ready",
            extra={
                "fields": {
                    "task": ctx.genesis.task.name,
                    "params": model.layout.numel,
                    "shard": shard,
                    "start_round": engine.round,
                    "logged_entries": len(engine.ledger),
                    "setup_s": round(time.monotonic() - t0, 2),
                }
            },
        )
        return driver

    # --- the engine's state ------------------------------------------------------------------

    @property
    def ledger(self) -> RoundLedger:
        """The engine's ledger."""
        return self.engine.ledger

    @property
    def round(self) -> int:
        """This node's open round."""
        return self.engine.round

    # --- the round loop ----------------------------------------------------------------------

    async def run(self, prefetched: tuple[str, list[CheckedBatch]] | None) -> None:
        """Catch up with the network (``prefetched``: a first pull already made), then train."""
        await self._initial_catch_up(prefetched)
        if self.round == 0:
            # A network that is starting: do not train the first rounds alone.
            await self.peers.wait_for_peers()
        engine = self._sync_view()
        # Batches pushed while we were catching up were refused (not_ready): fetch them.
        for action in engine.set_ready():
            if isinstance(action, RequestBatches):
                await self._anti_entropy(action.since)
        while not self.tasks.stopping:
            engine = self._sync_view()
            actions = engine.tick(time.monotonic())
            for action in actions:
                await self._act(action)
            if engine.phase is Phase.DONE:
                await self._idle()
                return
            if not actions and engine.phase is Phase.WAITING:
                await self.tasks.nap(0.25)

    async def _pull_batches(
        self, address: str, since: int, until: int | None = None
    ) -> list[CheckedBatch]:
        """Every batch of rounds >= ``since`` (< ``until``) a peer holds and we do not."""
        return await self.peers.pull_batches(address, since, self._have_keys(since), until)

    def _sync_view(self) -> SpsaEngine:
        self.engine.on_membership(self.peers.view())
        return self.engine

    async def _act(self, action: Action) -> None:
        """Carry out one action of the engine's round clock."""
        engine = self.engine
        if isinstance(action, ComputeBatch):
            wire = await self._release_own(action.round)
            # Computing takes seconds on a loaded machine: push to the members alive now,
            # not to those alive when the round opened.
            self._sync_view()
            for follow in engine.on_own_batch(action.round, wire, time.monotonic()):
                await self._act(follow)
        elif isinstance(action, SendBatch):
            self._send(action)
        elif isinstance(action, RequestBatches):
            self.tasks.spawn(self._anti_entropy(action.since, action.until))
        elif isinstance(action, CloseRound):
            await self._close(action)
        elif isinstance(action, JoinRound):
            self._refresh_hash()
        elif isinstance(action, Finished):
            log.info(
                "training finished: rounds.max_rounds reached; the node keeps serving its "
                "peers until `fednode stop`",
                extra={"fields": {"rounds": action.rounds}},
            )
        elif isinstance(action, ReplayLog):
            self._replay_all()
        elif isinstance(action, RefuseBatch):  # pragma: no cover - the clock refuses nothing
            log.debug(
                "spsa refusal from the round clock", extra={"fields": {"reason": action.reason}}
            )

    def _send(self, action: SendBatch) -> None:
        if action.peers is None:
            targets = self.peers.sample(action.fanout, exclude=action.exclude)
        else:
            wanted = set(action.peers)
            targets = [
                (m.node_id.hex(), m.address)
                for m in self.peers.members()
                if m.node_id.hex() in wanted and m.address
            ]
        for peer, address in targets:
            self.tasks.spawn(self._push(peer, address, action.round, action.wire))

    async def _store(self, batches: Sequence[CheckedBatch]) -> None:
        """Write batches to SQL: their log rows and the signed wire batches (one transaction)."""
        store = self.ctx.store
        rows = [row for b in batches for row in _rows(b)]
        signed = [SpsaBatchRecord(b.round, b.origin, b.wire) for b in batches]
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: store.append_spsa(rows, batches=signed)
        )

    async def _ingest(self, checked: CheckedBatch, sender: str | None = None) -> list[Action]:
        """Store a batch the engine claimed, then apply it; returns the engine's follow-ups.

        Raises :class:`~node.wire.service.Rejected` when its round became final meanwhile.
        """
        engine = self.engine
        try:
            await self._store([checked])
        except BaseException:
            engine.release(checked)
            raise
        self._sync_view()  # where to forward depends on who is alive after the write
        actions = engine.on_stored(checked, sender=sender)
        for a in actions:
            if isinstance(a, RefuseBatch):
                raise Rejected(a.reason, a.detail)
        if engine.changes_model(checked):
            self._refresh_hash()
        self.tasks.wake()
        return actions

    async def _release_own(self, r: int) -> bytes | None:
        """Compute, debit and store this node's batch of round ``r`` (the release path).

        The guard is asked first (no computation once the budget is spent), privatizes
        every scalar as the learner computes it, and debits the ledger with the digest of
        the signed batch before the batch is stored, and so before anyone can receive it.
        Returns the stored wire bytes, or None when this node releases nothing this round.
        """
        loop = asyncio.get_running_loop()
        engine = self.engine
        guard = self.guard
        try:
            ticket = await loop.run_in_executor(
                None, lambda: guard.open("spsa", steps=self.spec.spsa_steps)
            )
        except ReleaseRefused:
            self._sync_participation()
            return None  # the guard logged why, once; the node keeps following the network
        vector = engine.ledger.vector().clone()
        batch = await loop.run_in_executor(None, self._compute, vector, r, ticket)
        wire = batch_to_wire(batch, self.identity, self.network_id)
        try:
            await loop.run_in_executor(
                None, guard.commit, ticket, release_digest(self.network_id, wire)
            )
        except ReleaseRefused:
            self._sync_participation()
            return None
        try:
            checked = self.peers.checked(wire)
            refused = engine.claim(checked)
            if refused is not None and refused.reason != "duplicate":
                raise Rejected(refused.reason, refused.detail)
            if refused is None:
                await self._ingest(checked)
        except Rejected as exc:  # e.g. a diverged loss gave non-finite scalars: skip
            log.warning(
                "own SPSA batch refused", extra={"fields": {"round": r, "reason": exc.reason}}
            )
            return None
        return checked.wire

    def _sync_participation(self) -> None:
        """Tell peers (through our member record) that this node releases no more batches."""
        self.membership.set_releasing(self.guard.releasing or not self.guard.private)

    def _compute(self, vector: torch.Tensor, r: int, ticket: Ticket) -> ScalarBatch:
        load_vector(self.model, vector)
        privatize = ticket.privatize_scalar if ticket.noised else None
        return self.learner.train_round(self.model, self.data, r, privatize=privatize)

    async def _close(self, closed: CloseRound) -> None:
        self._refresh_hash()
        # One line per round: what this node closed it with. Comparing these lines across
        # nodes (same round, same digest and model hash) is how agreement and a late
        # joiner's catch-up are measured while rounds are still open elsewhere.
        log.info(
            "round closed",
            extra={
                "fields": {
                    "round": closed.round,
                    "digest": closed.digest[:16],
                    "model_hash": self.model_hash[:16],
                    "final": closed.final,
                    "final_digest": closed.final_digest[:16],
                    "entries": closed.entries,
                }
            },
        )
        d = self.ctx
        d.metrics.round.set(closed.next_round)
        loop = asyncio.get_running_loop()
        store = d.store
        # One transaction: a restarted node reports this round's hash and digest with it.
        stored = {
            STATE_MODEL_HASH: self.model_hash,
            STATE_DIGEST: self.ledger.digest(),
            STATE_ROUND: closed.next_round,
        }
        await loop.run_in_executor(None, store.set_states, stored)
        ckpt = closed.checkpoint
        if ckpt is not None:
            await loop.run_in_executor(None, self._checkpoint, ckpt.round, ckpt.vector, ckpt.digest)
        if closed.evaluate:
            await self._evaluate(closed.next_round)

    def _checkpoint(self, base_round: int, vector: torch.Tensor, digest: str) -> None:
        store = self.ctx.store
        mhash = vector_hash(vector, self.layout)
        store.save_checkpoint(
            base_round,
            checkpoint_tensors(vector, self.layout),
            model_sha256=mhash,
            applied_seed_digest=digest,
            metadata={_META_ROUND: str(base_round), _META_DIGEST: digest, _META_HASH: mhash},
        )
        store.prune_checkpoints(keep=2)

    async def _idle(self) -> None:
        """After the last round: keep serving, and reconcile with peers now and then."""
        waits = [1.0, 2.0, 3.0, 5.0, 8.0]
        i = 0
        while not self.tasks.stopping:
            await asyncio.sleep(waits[min(i, len(waits) - 1)] if i < 12 else 15.0)
            i += 1
            before = self.ledger.digest()
            if i in FULL_SYNC_AT:
                await self._full_sync()
            else:
                await self._anti_entropy(self.ledger.base_round)
            if self.ledger.digest() != before:
                self._refresh_hash()
                await self._evaluate(self.round)

    async def _full_sync(self) -> int:
        """Pull a peer's whole log; a batch of a round final here triggers a replay.

        Pushes cannot change a final round, but a batch that some peer accepted and this
        node never saw would otherwise keep the digests apart for good. After training,
        the node therefore takes the union of what its peers hold (origin signatures are
        verified) and, if that reaches into final rounds, rebuilds from the genesis
        initialisation so the model stays a function of the entry set.
        """
        peers = self.peers.sample(1)
        if not peers:
            return 0
        batches = await self._pull_batches(peers[0][1], 0)
        n = await self._ingest_pulled(batches)
        if n:
            self._refresh_hash()
        return n

    def _refresh_hash(self) -> None:
        self.model_hash = vector_hash(self.ledger.vector(), self.layout)

    async def _evaluate(self, round_idx: int) -> None:
        vector = self.ledger.vector().clone()

        def work() -> Any:
            load_vector(self.model, vector)
            return self.task.evaluate()

        result = await asyncio.get_running_loop().run_in_executor(None, work)
        self.last_accuracy = float(result.accuracy)
        self.last_loss = float(result.loss)
        await asyncio.get_running_loop().run_in_executor(
            None,
            record_evaluation,
            self.ctx.store,
            round_idx,
            self.last_accuracy,
            self.last_loss,
        )
        # Shown by status only once stored: a restart never shows a shorter history.
        self.evaluations.append((round_idx, self.last_accuracy, self.last_loss, time.time()))
        m = self.ctx.metrics
        m.accuracy.set(self.last_accuracy)
        m.loss.set(self.last_loss if math.isfinite(self.last_loss) else 0.0)
        log.info(
            "evaluated",
            extra={"fields": {"round": round_idx, "accuracy": round(self.last_accuracy, 4)}},
        )

    # --- sending ---------------------------------------------------------------------------

    async def _push(self, peer: str, address: str, round_idx: int, body: bytes) -> None:
        d = self.ctx
        env = seal(
            self.identity, self.network_id, "spsa", body, seq=self.seq.next("spsa"), round=round_idx
        )
        d.metrics.bytes.labels(direction="out", kind="spsa").inc(env.ByteSize())
        try:
            receipt = await d.channels.stub(address).PushScalars(env, timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            log.debug(
                "scalar push failed", extra={"fields": {"peer": peer[:12], "code": exc.code().name}}
            )
            return
        if not receipt.accepted and not receipt.reason.startswith("duplicate"):
            log.debug(
                "peer refused scalars",
                extra={"fields": {"peer": peer[:12], "reason": receipt.reason}},
            )

    def _have_keys(self, since: int) -> list[bytes]:
        """Compact keys of the batches we hold for rounds >= ``since`` (see PullRequest.have)."""
        keys = self.engine.held_keys(since)[:MAX_HAVE_KEYS]
        return [have_key(r, origin) for r, origin in keys]

    # --- receiving -------------------------------------------------------------------------

    async def on_scalars(self, msg: Verified, batch: pb.ScalarBatch) -> None:
        engine = self.engine
        if not engine.ready:
            raise Rejected("not_ready", "catching up")
        wire_bytes = batch.SerializeToString(deterministic=True)
        rounds = {int(e.round) for e in batch.entries}
        if len(rounds) == 1 and batch.origin_id:
            _raise(engine.screen(next(iter(rounds)), batch.origin_id.hex(), wire_bytes))
        checked = self.peers.checked(batch)
        engine = self._sync_view()
        sender = msg.sender_id.hex()
        _raise(engine.admit(checked, sender=sender, envelope_round=msg.round))
        for action in await self._ingest(checked, sender):
            if isinstance(action, SendBatch):
                self._send(action)

    # --- serving catch-up ------------------------------------------------------------------

    async def pull_scalars(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[Envelope]:
        engine = self.engine
        if request.what != pb.PullRequest.SCALARS_SINCE:
            return
        since = int(request.since_round)
        have = set(request.have[:MAX_HAVE_KEYS])
        until = int(request.until_round) or None
        keys = [
            k
            for k in engine.held_keys(since)
            if have_key(*k) not in have and (until is None or k[0] < until)
        ][:MAX_PULL_BATCHES]
        out = self.ctx.metrics.bytes.labels(direction="out", kind="spsa")
        for r, origin in keys:
            body = engine.held((r, origin))
            if body is None:
                continue
            env = seal(
                self.identity, self.network_id, "spsa", body, seq=self.seq.next("spsa"), round=r
            )
            out.inc(env.ByteSize())
            yield env

    async def pull(self, msg: Verified, request: pb.PullRequest) -> AsyncIterator[pb.TensorChunk]:
        if request.what != pb.PullRequest.CHECKPOINT:
            return
        async for chunk in serve_checkpoint(
            self.ctx.store,
            self.layout,
            self.identity,
            self.network_id,
            self.seq,
            self.ctx.metrics,
        ):
            yield chunk

    # --- catching up -----------------------------------------------------------------------

    async def _agreed_checkpoint(self) -> tuple[int, torch.Tensor, dict[str, str], bytes] | None:
        """A final checkpoint that ``f + 1`` standing members serve bit for bit, or None.

        Final SPSA state is a deterministic function of the signed log, so honest members
        at the same final round serve identical checkpoints; ``f`` liars (members with
        standing, ``catchup.byzantine``) cannot make ``f + 1`` agree on a forgery. Waits at
        most ``catchup.min_standing_s`` for enough standing members; on no agreement the
        caller replays the whole log from the genesis initialisation (exact, needs no trust).
        """
        d = self.ctx
        g = d.genesis
        membership = self.membership
        f, _ = catchup_quorum(g.catchup.byzantine, g.task.num_nodes)
        need = f + 1
        policy = VoucherPolicy(
            membership,
            min_standing_s=g.catchup.min_standing_s,
            excluded=self.bans.is_banned,
        )
        deadline = time.monotonic() + g.catchup.min_standing_s + 1.0
        while True:
            standing = [
                (m.node_id.hex(), m.address)
                for m in self.peers.members()
                if m.node_id != self.identity.node_id and policy(m.node_id.hex())
            ]
            if len(standing) >= need or time.monotonic() > deadline or self.tasks.stopping:
                break
            await asyncio.sleep(0.2)
        if len(standing) < need:
            log.info(
                "no agreed checkpoint: too few standing members",
                extra={"fields": {"standing": len(standing), "need": need}},
            )
            return None
        picked = standing[: 2 * f + 1]
        got = await asyncio.gather(*(self._pull_checkpoint(a, sender) for sender, a in picked))
        served = [
            None if c is None else ServedCheckpoint(c[0], c[1], c[2].get(_META_DIGEST, ""))
            for c in got
        ]
        agreed = agreed_checkpoint(served, need)
        if agreed is None:
            log.info(
                "no agreed checkpoint: members serve different ones",
                extra={"fields": {"asked": len(picked), "need": need}},
            )
            self.ctx.metrics.messages_rejected.labels(reason="catchup_disagreement").inc()
            return None
        log.info(
            "agreed checkpoint",
            extra={"fields": {"round": agreed.round, "members": agreed.members, "need": need}},
        )
        return got[agreed.index]

    async def _pull_checkpoint(
        self, address: str, expect_sender: str | None = None
    ) -> tuple[int, torch.Tensor, dict[str, str], bytes] | None:
        """A peer's latest final checkpoint, checked (hash, safetensors, shape, finite)."""
        got = await pull_checkpoint(
            self.ctx.channels,
            address,
            expect_sender=expect_sender,
            request=self.peers.request(pb.PullRequest.CHECKPOINT),
            network_id=self.network_id,
            layout=self.layout,
            max_bytes=self.ctx.settings.max_update_bytes,
            metrics=self.ctx.metrics,
        )
        if isinstance(got, str):
            log.info("peer checkpoint refused", extra={"fields": {"error": got[:120]}})
            return None
        return got.round, got.vector, _safetensors_metadata(got.data), got.data

    async def _initial_catch_up(
        self, prefetched: tuple[str, list[CheckedBatch]] | None = None
    ) -> None:
        """Fetch the network's log (and a checkpoint when it helps), then join its round.

        ``prefetched`` is a pull already made by :meth:`_prefetch` (serving address and
        batches). After the first pull, which can take many seconds on a loaded machine, the
        node pulls again from other peers what was added meanwhile (at most
        ``CATCH_UP_PULLS`` times, until a pull brings nothing new), so it joins the network's
        current round instead of one that peers have already closed.
        """
        engine = self.engine
        t0 = time.monotonic()
        start_base = engine.ledger.base_round
        if prefetched is not None:
            address, batches = prefetched
            batches = [b for b in batches if b.round >= start_base]
        else:
            peers = self.peers.sample(1)
            if not peers:
                return
            _, address = peers[0]
            batches = await self._pull_batches(address, start_base)
        t_pull = time.monotonic()
        fresh = engine.fresh(batches, final_ok=True)
        newest = max((b.round for b in batches), default=-1)
        used_checkpoint = False
        if engine.wants_checkpoint(batches):
            ckpt = await self._agreed_checkpoint()
            if ckpt is not None:
                ck_round, vec, meta, data = ckpt
                folded = engine.folded_digest_of(batches, ck_round)
                if meta.get(_META_DIGEST) == folded and meta.get(_META_ROUND) == str(ck_round):
                    store = self.ctx.store
                    await asyncio.get_running_loop().run_in_executor(
                        None,
                        lambda: store.save_checkpoint_bytes(
                            ck_round,
                            data,
                            model_sha256=vector_hash(vec, self.layout),
                            applied_seed_digest=folded,
                        ),
                    )
                    engine.use_checkpoint(vec, ck_round)
                    used_checkpoint = True
                else:
                    log.info(
                        "agreed checkpoint does not match the pulled log; replaying it",
                        extra={"fields": {"round": ck_round}},
                    )
        await self._ingest_pulled(fresh, folded_ok=used_checkpoint)
        if newest > engine.round:
            engine.jump(newest)
        t_apply = time.monotonic()
        pulls, got = 1, len(fresh)
        while fresh and pulls < CATCH_UP_PULLS and not self.tasks.stopping:
            peers = self.peers.sample(1)
            if not peers:
                break
            since = max(engine.ledger.base_round, engine.round - 1)
            more = await self._pull_batches(peers[0][1], since)
            pulls += 1
            n = await self._ingest_pulled(engine.fresh(more))
            got += n
            top = max((b.round for b in more), default=-1)
            if top > engine.round:
                engine.jump(top)
            if n == 0:
                break
        self._refresh_hash()
        self.catchup = {
            "batches": got,
            "checkpoint": used_checkpoint,
            "round": engine.round,
            "pulls": pulls,
            "pull_s": round(t_pull - t0, 3),
            "apply_s": round(t_apply - t_pull, 3),
            "seconds": round(time.monotonic() - t0, 3),
        }
        if got:
            log.info("caught up", extra={"fields": self.catchup})

    async def _ingest_pulled(
        self, batches: Sequence[CheckedBatch], *, folded_ok: bool = False
    ) -> int:
        """Store and apply pulled batches (any round: we asked for them).

        Batches of rounds already final here are folded into the base when ``folded_ok``
        (the base is a checkpoint whose digest covers exactly them); otherwise the base
        lacks them and the whole log is replayed from the genesis initialisation.
        """
        engine = self.engine
        new = engine.fresh(batches, final_ok=True)
        if not new:
            return 0
        # Two transactions for the whole pull, not one per batch.
        await self._store(new)
        for action in engine.on_pulled_stored(new, folded_ok=folded_ok):
            await self._act(action)
        self.tasks.wake()
        return len(new)

    def _wire_batches(self) -> list[CheckedBatch]:
        engine = self.engine
        out = []
        for key in engine.held_keys():
            raw = engine.held(key)
            if raw is not None:
                out.append(self.peers.checked(parse_batch(raw), verify=False))
        return out

    def _replay_all(self) -> None:
        """Rebuild the model from the genesis initialisation and every stored batch."""
        self.engine.replay(self.init_vector, self._wire_batches())
        log.info(
            "replayed the SPSA log from genesis",
            extra={"fields": {"entries": len(self.engine.ledger)}},
        )

    async def _anti_entropy(self, since: int, until: int | None = None) -> int:
        """Pull batches of rounds >= ``since`` (< ``until``) from one random peer; take the
        missing ones."""
        peers = self.peers.sample(1)
        if not peers:
            return 0
        since = max(since, self.engine.ledger.base_round)
        batches = await self._pull_batches(peers[0][1], since, until)
        n = await self._ingest_pulled(self.engine.fresh(batches))
        if n:
            self._refresh_hash()
        return n

    # --- operator --------------------------------------------------------------------------

    def fill_status(self, reply: admin_pb2.StatusReply) -> None:
        reply.learner = "spsa"
        reply.learner_state = "running"
        reply.round = self.round
        reply.last_accuracy = self.last_accuracy
        reply.model_hash = self.model_hash
        reply.spsa_digest = self.ledger.digest()
        _fill_history(reply, self.evaluations)

    def export(self) -> admin_pb2.ExportReply:
        tensors = self.layout.split(self.ledger.vector())
        return admin_pb2.ExportReply(
            model_safetensors=encode_state(tensors), round=self.round, model_hash=self.model_hash
        )


def _raise(refused: RefuseBatch | None) -> None:
    """Turn the engine's refusal into the service's :class:`~node.wire.service.Rejected`."""
    if refused is not None:
        raise Rejected(refused.reason, refused.detail)


def _fill_history(
    reply: admin_pb2.StatusReply, evaluations: list[tuple[int, float, float, float]]
) -> None:
    for r, acc, loss, ts in evaluations:
        reply.history.append(
            admin_pb2.Evaluation(
                round=r, accuracy=acc, loss=loss if math.isfinite(loss) else 0.0, unix_time=ts
            )
        )
