"""The daemon's training loop: drives the sans-I/O round engine with real I/O.

Each node runs its own clock. The runtime executes the engine's actions: it samples peers
from membership, trains in an executor (torch work never blocks the event loop), streams
its vector to the sampled peers over ``Node.PushUpdate``, feeds verified peer updates
back to the engine, aggregates through ``aggregation.RULES``, evaluates on the local test
split, and checkpoints every round so a restarted node resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc
import torch

from aggregation import ATTACKS
from aggregation.sybil import SimilarityHistory
from fednode_proto.v1 import admin_pb2
from fednode_proto.v1.training_pb2 import PullRequest, ScalarBatch, TensorHeader
from node.base.logs import log
from node.daemon.catchup import (
    Adoption,
    LagEvidence,
    PulledCheckpoint,
    VoucherPolicy,
    adopt_checkpoints,
    catchup_quorum,
    pull_checkpoint,
    serve_checkpoint,
)
from node.daemon.context import BanList, MembershipView, NodeContext
from node.daemon.evaluations import load_history, record_evaluation
from node.daemon.history_gossip import HistoryExchange
from node.daemon.participation import NO_REPLY, is_no_reply
from node.daemon.peer_wait import wait_for_peers
from node.daemon.privacy_guard import RecordMechanism, ReleaseGuard, ReleaseRefused, tensor_digest
from node.daemon.tasks import TaskSet
from node.storage import Store
from node.training import engine as eng
from node.training import policy
from node.training.asynchronous import AsyncEngine
from node.training.attack_spec import parse_attack
from node.training.params import (
    checkpoint_tensors,
    decode_checkpoint,
    encode_state,
    vector_hash,
)
from node.training.sampled import DrawSample, SampledAction, SampledRoundEngine, make_engine
from node.training.trainer import Trainer, make_trainer
from node.training.usercode import TaskSetupError
from node.wire.envelope import SeqCounter, Verified, seal
from node.wire.exchange import UpdateError, chunks_for, decode_update, encode_update
from node.wire.service import Rejected

__all__ = ["TrainingRuntime"]

STATE_ROUND = "training.round"
#: Seconds between two "round finished" progress lines.
PROGRESS_EVERY_S = 5.0
#: Re-sends of an update refused ``not_member``/``not_ready`` (a peer that has not yet
#: learned of this node by gossip), ADMISSION_RETRY_S apart.
ADMISSION_RETRIES = 3
ADMISSION_RETRY_S = 1.0
#: Last round this node released an update for: it never signs a second, different update
#: for a round (peers would hold proof of equivocation, node/wire/equivocation.py).
STATE_RELEASED = "training.released_round"
# The asynchronous mode: the highest model version this node has pushed (written before
# the push, so a restarted node starts above it: one version never names two models) and
# that push's logical clock (where a restarted node's clock starts).
STATE_ASYNC_VERSION = "training.async_version"
STATE_ASYNC_CLOCK = "training.async_clock"


class TrainingRuntime:
    """Training on one daemon (learners ``sgd`` and ``flower``).

    Built complete by :meth:`create`, which loads the learner and the stored state; the
    constructor takes what it loaded.

    Parameters
    ----------
    ctx : NodeContext
        Identity, genesis, settings, store, metrics and peer channels.
    membership : MembershipView
        Whom to push to and who may vouch.
    bans : BanList
        Peers never sampled nor trusted as vouchers.
    guard : ReleaseGuard
        The node's release guard (every release goes through it).
    shard : int
        Index of this node's data shard in the genesis partition.
    trainer : Trainer
        The node's learner, its model restored from the latest checkpoint if any.
    engine : RoundEngine, SampledRoundEngine or AsyncEngine
        The genesis' engine, at the stored round (asynchronous mode: local trainings).
    released_round : int
        Last round this node released an update for (-1: none).
    evaluations : list of (round, accuracy, loss, unix time)
        The stored accuracy curve (it survives restarts).
    attack : str or None
        Testnets only: make this node Byzantine with the named attack.
    collusion : object, optional
        Testnet attackers only: a ``node.testnet.collusion.ColludingAttacker`` handed over
        by the CLI (join/observe/vector); ignored without ``attack``.
    """

    def __init__(
        self,
        ctx: NodeContext,
        membership: MembershipView,
        bans: BanList,
        guard: ReleaseGuard,
        shard: int,
        *,
        trainer: Trainer,
        engine: eng.RoundEngine | SampledRoundEngine | AsyncEngine,
        released_round: int,
        evaluations: list[tuple[int, float, float, float]],
        attack: str | None = None,
        collusion: Any = None,
    ) -> None:
        # Training and evaluation both run in executor threads and may overlap (the engine
        # asks for round r's evaluation and round r+1's training together); they share the
        # model (a Flower client sets its weights in place), so they take turns.
        self._compute = threading.Lock()
        self.ctx = ctx
        self.membership = membership
        self.bans = bans
        self.shard = shard
        self.attack = attack
        self.identity = ctx.identity
        self.node_id = self.identity.node_id_hex
        self.seq = SeqCounter()
        self.engine = engine
        # The asynchronous mode has no rounds to catch up on: every model is merged as it
        # comes (staleness-discounted), so catch-up and its lag evidence stay off.
        self.asynchronous = engine.spec.asynchronous is not None
        self._pushed_version = engine.version - 1 if isinstance(engine, AsyncEngine) else -1
        self._version_lock = asyncio.Lock()
        self.trainer = trainer
        self.last_accuracy = 0.0
        self.last_loss = float("nan")
        # The accuracy curve survives restarts.
        self.evaluations = evaluations
        if evaluations:
            _, self.last_accuracy, self.last_loss, _ = evaluations[-1]
        self.model_hash = vector_hash(trainer.vector(), trainer.layout)
        # User code (a Flower client, a task factory) fails with one line, no traceback.
        self.tasks = TaskSet("training", brief=(TaskSetupError,))
        # The base of the round being trained (None before the first round trained).
        self._base: torch.Tensor | None = None
        self._recent: list[torch.Tensor] = []
        # The last model that is post-processing of released values (our last release or
        # merge): what a peer's vector is compared with, never the model mid-training.
        self._public: torch.Tensor = trainer.vector()
        self._silent: set[int] = set()  # rounds in which this node released nothing
        self._released_round = released_round  # see STATE_RELEASED
        self._byz_sent: tuple[int, torch.Tensor] | None = None
        self._byz_lock = asyncio.Lock()
        # Testnet attackers only: node.testnet.collusion.ColludingAttacker, handed over by
        # the CLI (the daemon never imports the testnet); join/observe/vector.
        self.collusion: Any = collusion if attack else None
        self.guard = guard
        g = ctx.genesis
        # Sybil weighting (genesis [aggregation] sybil_weighting): the per-sender histories
        # and their exchange with peers; None when the network does not weigh Sybils.
        self.history: SimilarityHistory | None = None
        self.history_exchange: HistoryExchange | None = None
        if g.aggregation.sybil_weighting:
            self.history = policy.similarity_history(
                trainer.layout.numel, seed=g.network.seed, self_id=self.node_id
            )
            # The daemon puts it behind the service's PushHistory once create() returned.
            self.history_exchange = HistoryExchange(
                ctx, membership, self.history, lambda: self.engine.round
            )
        # Catch-up of a node many rounds behind (node/daemon/catchup.py). Keys are free:
        # only members with standing vouch, 2f of them (f lying), and they must outnumber
        # the standing members we hear inside our window.
        self.catchup_f, quorum = catchup_quorum(g.catchup.byzantine, g.task.num_nodes)
        self.lag = LagEvidence(
            engine.spec.max_future,
            quorum=quorum,
            max_rounds=engine.spec.max_rounds,
            window_s=max(30.0, 6 * engine.spec.round_timeout),
        )
        self.vouchers = VoucherPolicy(
            membership,
            min_standing_s=g.catchup.min_standing_s,
            excluded=bans.is_banned,
        )
        self.catchups = 0
        self._catching_up = False
        self._catchup_task: asyncio.Task[Any] | None = None
        self._catchup_not_before = 0.0
        self._last_progress = 0.0
        # The round a restart resumes from: status reports it, not the engine's round,
        # which advances before the checkpoint that makes it durable is written.
        self.stored_round = engine.round

    @classmethod
    async def create(
        cls,
        ctx: NodeContext,
        membership: MembershipView,
        bans: BanList,
        guard: ReleaseGuard,
        shard: int,
        attack: str | None = None,
        collusion: Any = None,
    ) -> TrainingRuntime:
        """Build the learner, restore the stored round and start the training loop.

        Raises
        ------
        TaskSetupError
            The task cannot be built (user code, model folder, data file).
        """
        d = ctx
        # Many nodes share few cores in a testnet: torch's default of one thread per core
        # would oversubscribe them.
        torch.set_num_threads(d.settings.torch_threads)
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        node_id = ctx.identity.node_id_hex
        trainer = await loop.run_in_executor(
            None,
            lambda: make_trainer(
                d.genesis.task,
                d.genesis.learner,
                seed=d.genesis.network.seed,
                node_index=shard,
                node_id=node_id,
            ),
        )
        _record_mechanism(trainer, guard)
        start_round = int(d.store.get_state(STATE_ROUND, 0) or 0)
        released = d.store.get_state(STATE_RELEASED, None)
        if start_round > 0:
            restored = await loop.run_in_executor(None, _restore, d.store, trainer)
            if not restored:
                start_round = 0
        history = await loop.run_in_executor(None, load_history, d.store)
        # The genesis [aggregation] table is the one source of the rule and its parameters.
        rounds = d.genesis.round_spec()
        engine = make_engine(
            node_id,
            rounds,
            seed=d.genesis.network.seed,
            start_round=start_round,
            numel=trainer.layout.numel,
            layer_sizes=trainer.layout.sizes,
            clock=int(d.store.get_state(STATE_ASYNC_CLOCK, 0)),
            version=int(d.store.get_state(STATE_ASYNC_VERSION, -1)) + 1,
        )
        runtime = cls(
            ctx,
            membership,
            bans,
            guard,
            shard,
            trainer=trainer,
            engine=engine,
            released_round=-1 if released is None else int(released),
            evaluations=history,
            attack=attack,
            collusion=collusion,
        )
        log.info(
            "training ready",
            extra={
                "fields": {
                    "task": d.genesis.task.name,
                    "learner": d.genesis.learner.kind,
                    "params": trainer.layout.numel,
                    "shard": shard,
                    "examples": trainer.num_examples,
                    "start_round": start_round,
                    **(
                        {"clock": engine.clock, "version": engine.version}
                        if isinstance(engine, AsyncEngine)
                        else {}
                    ),
                    "max_rounds": rounds.max_rounds or "none (until fednode stop)",
                    "setup_s": round(time.monotonic() - t0, 2),
                }
            },
        )
        if runtime.collusion is not None:
            runtime.collusion.join(node_id)
        runtime.tasks.start(runtime._run(), "training")
        return runtime

    # --- lifecycle -----------------------------------------------------------------------

    async def stop(self) -> None:
        await self.tasks.stop()

    # --- the loop ------------------------------------------------------------------------

    async def _wait_for_peers(self) -> None:
        """Let membership find peers before round 0, so nobody trains its first rounds alone.

        Waits until ``min(peers_per_round, task.num_nodes - 1)`` peers are alive, or at most
        the genesis start-up allowance ``start_wait_s`` (a node alone then trains alone).
        """
        spec = self.ctx.genesis
        want = min(spec.rounds.peers_per_round, max(0, spec.task.num_nodes - 1))
        if await wait_for_peers(
            lambda: len(self._sample(want)), want, spec, lambda: self.tasks.stopping
        ):
            return
        log.info("starting training with fewer peers than wanted", extra={"fields": {"want": want}})

    async def _run(self) -> None:
        await self._wait_for_peers()
        await self._execute(self.engine.tick(time.monotonic()))
        while not self.tasks.stopping:
            deadline = self.engine.next_deadline()
            timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            await self.tasks.nap(timeout)
            await self._drop_departed()
            await self._execute(self.engine.tick(time.monotonic()))

    async def _drop_departed(self) -> None:
        """Stop waiting for sampled peers that died, left or no longer release updates."""
        membership = self.membership
        engine = self.engine
        if self._catching_up:
            return
        for peer in engine.awaited_peers():
            if not membership.takes_part(bytes.fromhex(peer)):
                await self._peer_unavailable(peer, engine.round, "peer no longer takes part")

    async def _peer_unavailable(self, peer: str, round_idx: int, why: str) -> None:
        engine = self.engine
        if peer not in engine.awaited_peers():
            return
        log.info(
            "not waiting for a peer this round",
            extra={"fields": {"round": round_idx, "peer": peer, "why": why}},
        )
        await self._execute(engine.on_peer_unavailable(round_idx, peer, time.monotonic()))

    def _sync_participation(self) -> bool:
        """Tell peers (through our member record) whether this node still releases.

        Returns that state: False once a budget (or an unusable ledger) stopped releases for
        good, not merely because this round released nothing.
        """
        releasing = bool(self.guard.releasing or not self.guard.private)
        self.membership.set_releasing(releasing)
        return releasing

    async def _execute(self, actions: Sequence[SampledAction]) -> None:
        if self._catching_up:
            return  # the engine that asked is being replaced (see _catch_up)
        for action in actions:
            if isinstance(action, DrawSample):
                engine = self.engine
                assert isinstance(engine, SampledRoundEngine)
                members, candidates = self._sample_members()
                await self._execute(
                    engine.on_members(
                        action.round,
                        members,
                        self._public,
                        time.monotonic(),
                        candidates=candidates,
                    )
                )
            elif isinstance(action, eng.SamplePeers):
                peers = self._sample(action.k)
                await self._execute(
                    self.engine.on_sampled_peers(action.round, peers, time.monotonic())
                )
            elif isinstance(action, eng.TrainLocal):
                self.tasks.spawn(self._train(action.round))
            elif isinstance(action, eng.SendUpdate):
                if self.asynchronous:
                    await self._persist_version(action.round, action.clock or 0)
                for peer in action.peers:
                    self.tasks.spawn(self._send(peer, action.round, action.payload, action.clock))
            elif isinstance(action, eng.Aggregate):
                self.tasks.spawn(self._aggregate(action))
            elif isinstance(action, eng.Evaluate):
                self.tasks.spawn(self._evaluate(action.round))
            elif isinstance(action, eng.RejectUpdate):
                self.ctx.metrics.messages_rejected.labels(reason=f"update_{action.reason}").inc()
                self._note_rejection(action)

    async def _persist_version(self, version: int, clock: int) -> None:
        """Record durably that ``version`` names a model, before any push names it.

        Serialised: a second push of the same version waits for the first one's write
        instead of going out before the version is on disk.
        """
        async with self._version_lock:
            if version <= self._pushed_version:
                return
            store = self.ctx.store

            def write() -> None:
                store.set_state(STATE_ASYNC_CLOCK, clock)
                store.set_state(STATE_ASYNC_VERSION, version)

            await asyncio.get_running_loop().run_in_executor(None, write)
            self._pushed_version = version

    def _sample_members(self) -> tuple[list[str], list[str]]:
        """Sampled rounds' member list and the candidates the sample is drawn from.

        Members: the live members (all receive the round's model). Candidates: those that
        still release, this node included only while it does, as its member record tells
        the others (:meth:`_sync_participation`), so that every view draws the same sample.
        """
        live = [
            m.node_id.hex()
            for m in self.membership.members()
            if self.membership.is_member(m.node_id)
        ]
        candidates = [n for n in live if self.membership.takes_part(bytes.fromhex(n))]
        if self.guard.releasing or not self.guard.private:
            candidates.append(self.node_id)
        return sorted({*live, self.node_id}), sorted(set(candidates))

    def _sample(self, k: int) -> list[str]:
        if k == 0:
            return []
        if self.history is not None:
            return self._sample_unflagged(k, self.history)
        return [m.node_id.hex() for m in self.membership.sample(k)]

    def _address(self, node_id_hex: str) -> str | None:
        member = self.membership.get(bytes.fromhex(node_id_hex))
        return None if member is None else member.address

    async def _train(self, round_idx: int) -> None:
        """Train one round and release the result through the guard (the release path).

        The guard is asked before training: once a budget is spent the node trains no
        more (its data is never touched again) and its round contribution is its current
        model, which it does not send. Otherwise the update is privatized and debited
        with the digest of the exact vector that will be sent, and that released value
        replaces the trained model, so the model, its checkpoints and everything sent
        later are post-processing of released values.
        """
        loop = asyncio.get_running_loop()
        base = self.trainer.vector()
        self._base = base
        ticket = None
        if round_idx > self._released_round:
            # A round already released (before a restart, or before the engine restarted
            # its round) stays silent: a second, different update would be equivocation.
            try:
                ticket = await loop.run_in_executor(None, lambda: self.guard.open("update"))
            except ReleaseRefused:
                ticket = None
        own = base
        if ticket is not None:
            result = await self._train_local(round_idx, base)
            if policy.local_or_base(self.trainer.vector(), base)[1]:
                # Never released (and nothing debited): the round goes on silent below.
                log.warning(
                    "local training diverged (NaN/Inf): this round stays silent",
                    extra={"fields": {"round": round_idx}},
                )
                self.ctx.metrics.messages_rejected.labels(reason="nonfinite_local").inc()
                ticket = None
        if ticket is not None:
            private = ticket.privatize_update(result.update)
            model = base + private if ticket.noised else self.trainer.vector()
            own = private if self.engine.spec.payload == "delta" else model
            try:
                await loop.run_in_executor(None, self._commit_release, ticket, round_idx, own)
            except ReleaseRefused:
                ticket = None
            else:
                self.trainer.set_vector(model)
                self._public = model
        if ticket is None:
            # Nothing is released this round: keep (or go back to) the public model.
            self._silent = {r for r in self._silent if r > round_idx - 16} | {round_idx}
            self.trainer.set_vector(base)
            own = torch.zeros_like(base) if self.engine.spec.payload == "delta" else base
        releasing = self._sync_participation()
        if not releasing and self.engine.spec.max_rounds is None:
            # No round limit: rounds without a release would spin as fast as the CPU goes
            # and change nothing. Stop here; the node keeps serving its peers.
            log.warning(
                "rounds stopped: this node releases no more updates",
                extra={"fields": {"round": round_idx, "reason": self.guard.reason}},
            )
            return
        actions = self.engine.on_local_result(
            round_idx,
            own,
            time.monotonic(),
            base=base,
            num_examples=self.trainer.num_examples,
            silent=ticket is None,
        )
        await self._execute(actions)

    def _commit_release(self, ticket: Any, round_idx: int, own: torch.Tensor) -> None:
        """Debit the release, then record its round durably, both before anything is sent."""
        self.guard.commit(ticket, tensor_digest(own))
        self.ctx.store.set_state(STATE_RELEASED, round_idx)
        self._released_round = round_idx

    async def _train_local(self, round_idx: int, start: torch.Tensor) -> Any:
        """The learner's round (two retries on failure, from the same start)."""
        loop = asyncio.get_running_loop()
        for attempt in range(1, 4):
            try:
                return await loop.run_in_executor(None, self._locked, self.trainer.train, round_idx)
            except Exception as exc:
                # A learner error must not silently stop this node's rounds (its peers
                # would wait for it every round); a transient one gets two more tries.
                fields = {"round": round_idx, "attempt": attempt}
                if isinstance(exc, TaskSetupError):  # user code: one line with its file
                    log.error("local training failed: %s", exc, extra={"fields": fields})
                else:
                    log.exception("local training failed", extra={"fields": fields})
                if attempt == 3:
                    raise
                self.trainer.set_vector(start)
                await asyncio.sleep(1.0 * attempt)
        raise AssertionError("unreachable")

    async def _send(
        self, peer: str, round_idx: int, vector: torch.Tensor, clock: int | None = None
    ) -> None:
        address = self._address(peer)
        if address is None:
            return
        if round_idx in self._silent and not self.asynchronous:
            # Nothing was released for this round. (An asynchronous push is the merged
            # model, post-processing of released values whatever the last training did.)
            return
        d = self.ctx
        outgoing = await self._byzantine_once(round_idx, vector) if self.attack else vector
        header, payload = encode_update(
            outgoing,
            round=round_idx,
            # An example count is computed from the data: under DP it is not sent.
            num_samples=0 if self.guard.private else self.trainer.num_examples,
            model_hash=self.model_hash,
            base_round=clock,
        )
        stub = d.channels.stub(address)
        for attempt in range(ADMISSION_RETRIES + 1):
            env = seal(
                self.identity,
                d.genesis.network_id,
                "update",
                header.SerializeToString(),
                seq=self.seq.next("update"),
                round=round_idx,
            )
            try:
                receipt = await stub.PushUpdate(chunks_for(env, payload), timeout=30.0)
                break
            except grpc.aio.AioRpcError as exc:
                # Nodes started together: the peer may not have learned of us by gossip yet
                # (node/wire/admission.py refuses non-members). Re-sealed: the refused copy's
                # sequence number is spent.
                details = exc.details() or ""
                if attempt < ADMISSION_RETRIES and details.startswith(("not_member", "not_ready")):
                    await asyncio.sleep(ADMISSION_RETRY_S)
                    continue
                log.debug(
                    "update push failed",
                    extra={"fields": {"peer": peer[:12], "code": exc.code().name}},
                )
                await self._peer_unavailable(peer, round_idx, f"push failed: {exc.code().name}")
                return
        else:  # pragma: no cover - the loop always breaks or returns
            return
        d.metrics.bytes.labels(direction="out", kind="update").inc(env.ByteSize() + len(payload))
        if not receipt.accepted:
            log.debug(
                "peer refused update",
                extra={"fields": {"peer": peer[:12], "reason": receipt.reason}},
            )
            # A duplicate was delivered before, and a finished peer answers with its last
            # model: both still answer. Any other refusal means no answer is coming.
            if not receipt.reason.startswith(("duplicate", "done")):
                await self._peer_unavailable(peer, round_idx, f"refused: {receipt.reason}")
        elif is_no_reply(receipt.reason):
            await self._peer_unavailable(peer, round_idx, receipt.reason)

    async def _byzantine_once(self, round_idx: int, vector: torch.Tensor) -> torch.Tensor:
        """The round's Byzantine vector, computed once: every peer gets the same one.

        A testnet attacker plays the aggregation attack, not equivocation (different
        vectors per peer would be proven and quarantined by node/wire/equivocation.py).
        """
        async with self._byz_lock:
            cached = self._byz_sent
            if cached is None or cached[0] != round_idx:
                if self.collusion is not None:
                    loop = asyncio.get_running_loop()
                    out = await loop.run_in_executor(None, self._colluding, round_idx, vector)
                else:
                    out = self._byzantine(vector)
                cached = (round_idx, out)
                self._byz_sent = cached
        return cached[1]

    def _colluding(self, round_idx: int, vector: torch.Tensor) -> torch.Tensor:
        """A colluding attacker's vector from what every colluder received."""
        base = self._base if self._base is not None else vector
        out: torch.Tensor = self.collusion.vector(round_idx, base=base, own=vector)
        return out

    def _byzantine(self, vector: torch.Tensor) -> torch.Tensor:
        """Testnets only: what a Byzantine node sends instead of its honest vector.

        The attacks of ``aggregation.ATTACKS`` are defined on updates; this node plays the
        omniscient attacker of the papers with what it can see: the honest vectors it
        received last round (its own honest one before it has any), as deltas from its base.
        """
        base = self._base if self._base is not None else vector
        seen = self._recent or [vector]
        deltas = torch.stack([v - base for v in seen])
        spec = parse_attack(self.attack)  # type: ignore[arg-type]
        malicious = ATTACKS[spec.name](deltas, f=1, **spec.kwargs)[0]
        return base + malicious

    async def _aggregate(self, action: eng.Aggregate) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        if self.attack:
            self._recent = [r.vector for r in action.received]
        if self.history is not None and action.received:
            action = await loop.run_in_executor(None, self._sybil_filter, action)
        if self.history_exchange is not None:
            self.tasks.spawn(self.history_exchange.after_round(action.round))
        merged = await loop.run_in_executor(None, self._merge, action)
        self.ctx.metrics.aggregation_seconds.observe(time.perf_counter() - t0)
        self.trainer.set_vector(merged)
        self._public = merged
        self.model_hash = vector_hash(merged, self.trainer.layout)
        trained = self.engine.round
        actions = self.engine.on_aggregated(action.round, merged, time.monotonic())
        if not self.asynchronous:
            await loop.run_in_executor(None, self._checkpoint, action.round + 1, merged.clone())
        elif self.engine.round != trained:
            # Asynchronous merges come several a second; a checkpoint per local training
            # is what a restart resumes from.
            await loop.run_in_executor(None, self._checkpoint, self.engine.round, merged.clone())
        self.ctx.metrics.round.set(self.engine.round)
        self._progress(action)
        await self._execute(actions)

    def _progress(self, action: eng.Aggregate) -> None:
        """One "round finished" line at most every PROGRESS_EVERY_S seconds.

        Evaluations (and their log lines) come every ``eval_every`` rounds; without this a
        node could train for long stretches without saying anything.
        """
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        log.info(
            "round finished",
            extra={
                "fields": {
                    "round": self.engine.round if self.asynchronous else action.round + 1,
                    "max_rounds": self.engine.spec.max_rounds,
                    "merged_peers": len(action.received),
                }
            },
        )

    # --- Sybil histories on the wire (node/daemon/history_gossip.py) -----------------------------

    def _sample_unflagged(self, k: int, history: SimilarityHistory) -> list[str]:
        """Sample ``k`` members our Sybil weights do not flag (:func:`policy.unflagged`)."""
        picked = [m.node_id.hex() for m in self.membership.sample(2 * k + 4)]
        threshold = self.ctx.genesis.aggregation.sybil_threshold
        return policy.unflagged(picked, history, threshold=threshold)[:k]

    def _merge(self, action: eng.Aggregate) -> torch.Tensor:
        """Merge the round (:func:`policy.merge`: f lowered to the rows, own if not finite)."""
        result = policy.merge(action, observed=self.ctx.genesis.aggregation.observed_f)
        if result.kept_own:
            log.info(
                "too few updates for the rule: kept own vector",
                extra={"fields": {"round": action.round, "rows": 1 + len(action.received)}},
            )
        if result.nonfinite:
            # Each row was finite, but an unprotected rule (e.g. the mean under IPM) can
            # grow the model until it overflows.
            log.warning(
                "merged model is not finite; keeping our own for this round",
                extra={"fields": {"round": action.round, "rule": action.rule}},
            )
            self.ctx.metrics.messages_rejected.labels(reason="nonfinite_merge").inc()
        return result.vector

    def _sybil_filter(self, action: eng.Aggregate) -> eng.Aggregate:
        """Drop suspiciously similar senders from the round (:func:`policy.sybil_filter`)."""
        history = self.history
        if history is None:  # the network does not weigh Sybils
            return action
        verdict = policy.sybil_filter(
            history,
            [r.sender for r in action.received],
            [r.vector for r in action.received],
            base=action.base if action.base is not None else action.own,
            round_idx=action.round,
            threshold=self.ctx.genesis.aggregation.sybil_threshold,
        )
        kept = tuple(action.received[i] for i in verdict.kept)
        dropped = len(verdict.dropped)
        if dropped:
            self.ctx.metrics.messages_rejected.labels(reason="sybil_weight").inc(dropped)
            log.info(
                "dropped Sybil-like updates",
                extra={"fields": {"round": action.round, "dropped": dropped}},
            )
        return dataclasses.replace(action, received=kept)

    def _checkpoint(self, next_round: int, vector: torch.Tensor) -> None:
        store = self.ctx.store
        store.save_checkpoint(
            next_round,
            checkpoint_tensors(vector, self.trainer.layout),
            model_sha256=self.model_hash,
        )
        store.set_state(STATE_ROUND, next_round)
        self.stored_round = next_round
        store.prune_checkpoints(keep=2)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._compute:
            return fn(*args)

    async def _evaluate(self, round_idx: int) -> None:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, self._locked, self.trainer.evaluate)
        self.last_accuracy = float(result.accuracy)
        self.last_loss = float(result.loss)
        m = self.ctx.metrics
        m.accuracy.set(self.last_accuracy)
        m.loss.set(self.last_loss if math.isfinite(self.last_loss) else 0.0)
        self.engine.on_evaluated(
            round_idx, {"accuracy": self.last_accuracy, "loss": self.last_loss}
        )
        store = self.ctx.store
        await loop.run_in_executor(
            None, record_evaluation, store, round_idx + 1, self.last_accuracy, self.last_loss
        )
        # Shown by status only once stored: a restart never shows a shorter history.
        self.evaluations.append((round_idx + 1, self.last_accuracy, self.last_loss, time.time()))
        log.info(
            "evaluated",
            extra={"fields": {"round": round_idx + 1, "accuracy": round(self.last_accuracy, 4)}},
        )
        if self.engine.phase.value == "done" and round_idx + 1 == self.engine.round:
            log.info(
                "training finished: rounds.max_rounds reached; the node keeps serving its "
                "peers until `fednode stop`",
                extra={"fields": {"rounds": self.engine.round}},
            )

    # --- catch-up (a node many rounds behind) -----------------------------------------------

    def _observe_round(self, sender: str, round_idx: int) -> bool:
        """Record a verified update's round as lag evidence; False if its sender may not vouch."""
        if self.asynchronous:
            return False
        refusal = self.vouchers.refusal(sender)
        if refusal == "catchup_no_standing":
            # A member too new to vouch yet: keep its claim (members only, so bounded by the
            # view) and look again once it has standing; target() admits it only then. A
            # late joiner whose peers have finished hears each of them once, early.
            self.lag.observe(sender, round_idx, time.monotonic())
            standing = self.vouchers.view.standing_s(bytes.fromhex(sender)) or 0.0
            delay = max(0.0, self.vouchers.min_standing_s - standing) + 0.1
            asyncio.get_running_loop().call_later(delay, self._maybe_catch_up)
            return False
        if refusal is not None:
            return False
        self.lag.observe(sender, round_idx, time.monotonic())
        return True

    def _note_rejection(self, action: eng.RejectUpdate) -> None:
        """A peer's update beyond our window proves (signed) that the peer is that far ahead.

        Only a standing member's proof counts, and only together with the others: see
        :meth:`node.daemon.catchup.LagEvidence.target`.
        """
        if action.reason != "future":
            return
        if not self._observe_round(action.sender, action.round):
            self.ctx.metrics.messages_rejected.labels(reason="catchup_voucher").inc()
            return
        self._maybe_catch_up()

    def _maybe_catch_up(self) -> None:
        """Start a catch-up if the standing members' claims prove this node is behind."""
        if self.asynchronous:
            return
        now = time.monotonic()
        if self._catching_up or self.tasks.stopping or now < self._catchup_not_before:
            return
        if self._catchup_task is not None and not self._catchup_task.done():
            return
        target = self.lag.target(self.engine.round, now, self.vouchers)
        if target is None:
            return
        self._catchup_task = self.tasks.spawn(self._catch_up(target), name="catch-up")

    def _pull_request(self) -> Any:
        body = PullRequest(what=PullRequest.CHECKPOINT).SerializeToString()
        env = seal(
            self.identity,
            self.ctx.genesis.network_id,
            "request",
            body,
            seq=self.seq.next("request"),
        )
        self.ctx.metrics.bytes.labels(direction="out", kind="request").inc(env.ByteSize())
        return env

    async def _catch_up(self, target: int) -> None:
        """Merge vouching members' checkpoints and restart the engine at their round.

        Checkpoints are pulled from up to ``2 f + 1`` standing members that claimed
        ``target`` or beyond, each checked strictly (node/daemon/catchup.py) and of a round in
        ``(ours + max_future, claim + max_future + 2]``; ``quorum`` of them and our
        own model go through the robust rule (:func:`node.daemon.catchup.adopt_checkpoints`) and
        the engine restarts at their lowest round, at most ``target + max_future + 2``.
        In-flight training/aggregation of the old engine finishes first, so it cannot
        overwrite the adopted model or checkpoint.
        """
        d = self.ctx
        spec = self.engine.spec
        t0 = time.monotonic()
        from_round = self.engine.round
        # On failure, wait a round before trying again.
        self._catchup_not_before = t0 + spec.round_timeout
        pulls = []
        asked: list[str] = []
        for peer in self.lag.vouchers(target, t0, self.vouchers)[: 2 * self.catchup_f + 1]:
            address = self._address(peer)
            if address is None:
                continue
            asked.append(peer)
            pulls.append(
                pull_checkpoint(
                    d.channels,
                    address,
                    expect_sender=peer,
                    request=self._pull_request(),
                    network_id=d.genesis.network_id,
                    layout=self.trainer.layout,
                    max_bytes=d.settings.max_update_bytes,
                    metrics=d.metrics,
                )
            )
        results = await asyncio.gather(*pulls)
        slack = spec.max_future + 2  # the peers kept training since they vouched
        lo = from_round + spec.max_future + 1
        good: list[PulledCheckpoint] = []
        for peer, res in zip(asked, results, strict=True):
            # A voucher ahead of the target serves a later checkpoint: fine, the engine
            # restarts at most at target + slack whatever the checkpoints' rounds.
            hi = max(target, self.lag.claim(peer) or 0) + slack
            if isinstance(res, PulledCheckpoint) and lo <= res.round <= hi:
                good.append(res)
                continue
            if isinstance(res, str):
                reason = res
                self.lag.forget(peer)  # it failed a check: its claims are worthless too
            else:
                reason = f"round {res.round} outside [{lo}, {hi}]"
            log.info(
                "catch-up checkpoint refused",
                extra={"fields": {"peer": peer[:12], "reason": reason[:160]}},
            )
            d.metrics.messages_rejected.labels(reason="catchup_checkpoint").inc()
        if not good or self.tasks.stopping:
            return
        # Exactly quorum = 2f checkpoints with our own model: 2f + 1 rows, at most f forged
        # while at most f vouchers lie (closest claims first: liars tend to inflate theirs).
        good = good[: self.lag.quorum]
        # Never beyond what the quorum vouched for, whatever one checkpoint claims.
        start = min(min(c.round for c in good), target + slack)
        if spec.max_rounds is not None:
            start = min(start, spec.max_rounds - 1)
        agg = d.genesis.aggregation
        own = self._public
        adopted = adopt_checkpoints(
            own,
            good,
            rule=agg.rule,
            f=self.catchup_f,
            params=agg.params,
            max_norm=agg.max_update_norm,
            min_rows=self.lag.quorum,
        )
        if not isinstance(adopted, Adoption):
            log.info("catch-up refused", extra={"fields": {"reason": adopted[:160]}})
            d.metrics.messages_rejected.labels(reason="catchup_refused").inc()
            return
        for peer, why in adopted.refused:
            log.info(
                "catch-up checkpoint refused",
                extra={"fields": {"peer": peer[:12], "reason": why[:160]}},
            )
            d.metrics.messages_rejected.labels(reason="catchup_checkpoint").inc()
        vector = adopted.vector
        self._catching_up = True
        swapped = False
        try:
            drained = await self._drain_compute(timeout=4 * spec.round_timeout)
            if not drained or self.engine.round + spec.max_future >= start:
                return  # caught up meanwhile, or the old round would not finish
            loop = asyncio.get_running_loop()
            self.trainer.set_vector(vector)
            self._public = vector
            self.model_hash = vector_hash(vector, self.trainer.layout)
            await loop.run_in_executor(None, self._checkpoint, start, vector.clone())
            detail = {
                "from_round": from_round,
                "to_round": start,
                "target": target,
                "peers": len(good),
                "rule": adopted.rule,
                "rows": adopted.rows,
                "seconds": round(time.monotonic() - t0, 2),
            }
            store = d.store
            await loop.run_in_executor(None, lambda: store.log_event("catchup", detail))
            # No await from here to the end of the finally: a tick of the new engine while
            # _catching_up is still set would have its first actions dropped.
            self.engine = self._fresh_engine(start)
            swapped = True
            self._base = None
            self._recent = []
            self.catchups += 1
            d.metrics.training_catchups.inc()
            d.metrics.round.set(start)
            log.info("caught up", extra={"fields": detail})
        finally:
            if not swapped:
                # The old engine lost the actions dropped while we waited: it restarts its
                # own round (its model is whatever its last aggregation left).
                self.engine = self._fresh_engine(self.engine.round)
            self._catching_up = False
            self.tasks.wake()

    def _fresh_engine(self, start_round: int) -> eng.RoundEngine | SampledRoundEngine | AsyncEngine:
        """A new engine like the current one (same spec and layout) at ``start_round``."""
        old = self.engine
        return make_engine(
            self.node_id,
            old.spec,
            seed=self.ctx.genesis.network.seed,
            start_round=start_round,
            numel=self.trainer.layout.numel,
            layer_sizes=self.trainer.layout.sizes,
            clock=self.engine.clock if isinstance(self.engine, AsyncEngine) else 0,
            version=self._pushed_version + 1,
        )

    async def _drain_compute(self, timeout: float) -> bool:
        """Wait for in-flight train/aggregate/evaluate tasks (they touch the trainer/store).

        Returns False if some were still running after ``timeout`` seconds.
        """
        names = {"_train", "_aggregate", "_evaluate"}
        deadline = time.monotonic() + timeout
        while True:
            busy = [
                t
                for t in self.tasks.inflight
                if getattr(t.get_coro(), "__name__", "") in names and not t.done()
            ]
            if not busy:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(busy, timeout=left)

    # --- inbound -------------------------------------------------------------------------

    @property
    def update_numel(self) -> int:
        """Values in an update of this model (the service checks headers against it)."""
        return int(self.trainer.layout.numel)

    async def on_update(self, msg: Verified, header: TensorHeader, payload: bytes) -> str | None:
        """Take a verified update; returns a note for the receipt (None: none).

        A node that releases nothing still merges what it is sent, but it will not answer:
        its receipt says so (:data:`~node.daemon.participation.NO_REPLY`), so the pusher does not
        wait for it until its new member record has spread.
        """
        try:
            vector = decode_update(header, payload, self.trainer.layout.numel)
        except UpdateError as exc:
            raise Rejected(exc.reason, str(exc)) from None
        if header.round != msg.round:
            raise Rejected("bad_round", "header round differs from the signed envelope round")
        ours = self._public
        refusal = policy.admit_update(
            vector,
            ours,
            numel=self.trainer.layout.numel,
            max_norm=self.ctx.genesis.aggregation.max_update_norm,
        )
        if refusal is not None:
            raise Rejected(refusal.reason, refusal.detail)
        if self.collusion is not None:
            self.collusion.observe(int(header.round), msg.sender_id.hex(), vector)
        actions = self.engine.on_update(
            msg.sender_id.hex(),
            int(header.round),
            vector,
            time.monotonic(),
            num_examples=int(header.num_samples),
            # The model's clock, signed: the asynchronous mode's staleness stamp.
            clock=int(header.base_round),
        )
        rejected = [a for a in actions if isinstance(a, eng.RejectUpdate)]
        if not rejected or rejected[0].reason in ("stale", "duplicate"):
            # In step (or behind us): a standing member heard inside our window outvotes
            # a voucher that claims we are behind (node/daemon/catchup.py).
            self._observe_round(msg.sender_id.hex(), int(header.round))
        await self._execute([a for a in actions if not isinstance(a, eng.RejectUpdate)])
        if rejected:
            self._note_rejection(rejected[0])
            # Counted once, by the service, under this reason.
            reason = {"shape": "bad_shape"}.get(rejected[0].reason, rejected[0].reason)
            raise Rejected(reason, f"update of round {header.round} refused")
        self.tasks.wake()
        if not (self.guard.releasing or not self.guard.private):
            return f"{NO_REPLY}: this node releases no more updates ({self.guard.reason})"
        return None

    async def on_scalars(self, msg: Verified, batch: ScalarBatch) -> None:
        raise Rejected("wrong_learner", "this network's learner does not use SPSA scalars")

    async def pull(self, msg: Verified, request: PullRequest) -> Any:
        if request.what != PullRequest.CHECKPOINT:
            raise Rejected("unsupported", "this learner serves only checkpoints")
        # Our checkpoints are post-processing of released values (see _train), also once
        # the budget is spent: the node then stops training rather than keep un-noised work.
        d = self.ctx

        async for chunk in serve_checkpoint(
            d.store, self.trainer.layout, self.identity, d.genesis.network_id, self.seq, d.metrics
        ):
            yield chunk

    async def pull_scalars(self, msg: Verified, request: PullRequest) -> Any:
        raise Rejected("unsupported", "pull is not served by this learner")
        yield  # pragma: no cover

    # --- operator ------------------------------------------------------------------------

    def fill_status(self, reply: admin_pb2.StatusReply) -> None:
        reply.learner = self.ctx.genesis.learner.kind
        reply.learner_state = "running"  # built and restored in create()
        reply.round = self.stored_round
        reply.last_accuracy = self.last_accuracy
        reply.model_hash = self.model_hash
        for r, acc, loss, ts in self.evaluations:
            reply.history.append(
                admin_pb2.Evaluation(
                    round=r, accuracy=acc, loss=loss if math.isfinite(loss) else 0.0, unix_time=ts
                )
            )

    def export(self) -> admin_pb2.ExportReply:
        tensors = self.trainer.layout.split(self.trainer.vector())
        return admin_pb2.ExportReply(
            model_safetensors=encode_state(tensors),
            round=self.engine.round,
            model_hash=self.model_hash,
        )


def _record_mechanism(trainer: Trainer, guard: ReleaseGuard) -> None:
    """Tell the guard what record-level DP the learner runs per round (DP-SGD)."""
    learner = getattr(trainer, "learner", None)
    dp_round = getattr(learner, "dp_round", None)
    got = dp_round(trainer.num_examples) if dp_round is not None else None
    if got is None or got[0] <= 0:
        return
    guard.set_record_mechanism(RecordMechanism("dp_sgd", *got))
    # The learner's own accountant continues from the durable ledger after a restart.
    learner.resume_accounting(  # type: ignore[union-attr]
        [(r.noise_multiplier, r.sample_rate, r.steps) for r in guard.record.rows]
    )


def _restore(store: Store, trainer: Trainer) -> bool:
    """Load the latest checkpoint into ``trainer``; False if there is none or it is unusable."""
    ckpt = store.latest_checkpoint()
    if ckpt is None:
        return False
    try:
        vector = decode_checkpoint(store.checkpoint_bytes(ckpt), trainer.layout)
        trainer.set_vector(vector)
    except Exception as exc:  # a corrupt or foreign checkpoint: start over, don't crash
        log.warning(
            "checkpoint unusable, starting from round 0", extra={"fields": {"error": str(exc)}}
        )
        return False
    return True
