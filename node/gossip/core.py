"""Sans-I/O membership: SWIM failure detection with Lifeguard, signed gossip, push-pull.

:class:`Membership` is a state machine in the style of h11/h2. It owns no socket, no
timer and no task; the caller passes the clock (``now``, seconds on any monotonic scale)
and feeds it four kinds of input, each returning a list of *actions*:

* :meth:`Membership.tick` — time passed: probes, suspicion timeouts, gossip, push-pull.
* :meth:`Membership.receive` — an inbound request (sender id from the verified envelope,
  body = serialized ``GossipMessage``); the reply comes as a :class:`Reply` action with
  the same ``token``, immediately or (for an indirect probe) on a later call.
* :meth:`Membership.on_reply` / :meth:`Membership.on_failure` — the outcome of a
  :class:`Send` the caller performed (transport error or timeout → ``on_failure``).
* :meth:`Membership.join` / :meth:`Membership.leave`.

Actions are :class:`Send` (perform one request with a timeout) and :class:`Reply` (answer
the inbound request ``token``). :meth:`Membership.next_deadline` says when ``tick`` next
has something to do. Every random choice comes from the injected ``random.Random``, so a
simulation driven from a seed replays exactly.

Protocol (see docs/gossip.md): each probe period one member (round-robin over a shuffled
list) is pinged; without an ack within the probe timeout, ``indirect_checks`` others are
asked to ping it (they nack if the target stays silent); without any ack by the end of the
period the member becomes *suspect* by a statement this node signs. Other nodes' signed
suspicions of the same incarnation are confirmations that shorten the suspicion timeout
(Lifeguard); at the timeout this node signs *dead*. A member refutes by re-signing its
record with a higher incarnation. Changes ride piggybacked on every message (retransmit
limit ``retransmit_mult * ceil(log10(n+1))``), on piggyback-only gossip, and a periodic
full-state push-pull with one random member repairs anything missed. Dead members are
periodically push-pulled too, which re-merges healed partitions.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from google.protobuf.message import DecodeError

from fednode_proto.v1 import gossip_pb2 as pb
from node.base.errors import ReasonError
from node.base.identity import node_id_for, pow_check, verify_signature
from node.base.ratelimit import RateLimiter

from .admission import IntroductionQueue, Verdict
from .awareness import Awareness
from .broadcast import BroadcastQueue
from .config import GossipConfig
from .records import (
    MAX_INCARNATION,
    MemberRecord,
    RecordError,
    RecordVerifier,
    Signer,
    Statement,
    StatementKind,
    Verify,
    sign_record,
    sign_statement,
)
from .suspicion import Suspicion
from .topology import Topology

__all__ = [
    "Action",
    "GossipRejected",
    "Member",
    "MemberState",
    "Membership",
    "Reply",
    "Send",
]

MAX_STATES_PER_PUSH_PULL_FACTOR = 2
MAX_UPDATES_PER_MESSAGE = 1024
MAX_PENDING_RELAYS = 64


class MemberState(StrEnum):
    """A member's state as this node sees it."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)
_GONE = (MemberState.DEAD, MemberState.LEFT)


@dataclass(frozen=True, slots=True)
class Member:
    """A snapshot of one member for callers (CLI, metrics, training's peer sampling).

    ``last_seen`` is on the caller's clock (the ``now`` passed in), None if this node never
    heard from the member directly; ``rtt_ms`` is the round trip of the last direct ping.
    ``first_seen`` is when this member entered this node's view (core clock); admission and
    catch-up use the age ``now - first_seen`` as standing, which a fresh identity lacks.
    ``established`` is True once the member answered a request of this node and is at
    least ``promotion_min_age`` old: it is never evicted for a newcomer and is preferred
    by :meth:`Membership.sample`.
    """

    node_id: bytes
    public_key: bytes
    address: str
    state: MemberState
    incarnation: int
    last_seen: float | None
    rtt_ms: float | None
    capabilities: tuple[str, ...]
    state_since: float
    first_seen: float = 0.0
    established: bool = False

    @property
    def node_id_hex(self) -> str:
        """Node id as 64 hex characters."""
        return self.node_id.hex()


@dataclass(frozen=True, slots=True)
class Send:
    """Perform a request: deliver ``body`` to ``address`` and wait up to ``timeout`` s.

    Report the reply body with ``on_reply(now, request_id, body)`` and any error or
    timeout with ``on_failure(now, request_id)``. ``node_id`` is the member expected to
    answer (None for a join to a bare address).
    """

    request_id: int
    address: str
    node_id: bytes | None
    body: bytes
    timeout: float
    kind: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply ``body`` to the inbound request that was given ``token``."""

    token: int
    body: bytes


Action = Send | Reply


class GossipRejected(
    ReasonError,
    ValueError,
    # A record or statement the request carried is refused with the record's own code.
    faults=RecordError.FAULTS | {"malformed", "sender_mismatch", "wrong_target", "bad_pow"},
    others=(RecordError.REASONS - RecordError.FAULTS)
    | {"rate_limited", "join_rate_limited", "unexpected", "reply_mismatch", "table_full"},
):
    """An inbound request was refused; ``reason`` is the metrics label."""


@dataclass(slots=True)
class _Entry:
    record: MemberRecord
    state: MemberState
    incarnation: int
    state_since: float
    statement: Statement | None = None
    suspicion: Suspicion | None = None
    last_seen: float | None = None
    rtt_ms: float | None = None
    record_pb: pb.MemberRecord | None = None
    first_seen: float = 0.0
    answered: bool = False  # it answered a request of ours (reachable at its address)
    established: bool = False

    def pb_record(self) -> pb.MemberRecord:
        if self.record_pb is None:
            self.record_pb = self.record.to_pb()
        return self.record_pb


def _update_wire(update: pb.Update) -> bytes:
    """``update`` encoded as one entry of ``GossipMessage.updates`` (field 15, length-delimited)."""
    body = update.SerializeToString()
    n = len(body)
    head = bytearray(b"\x7a")  # (15 << 3) | 2
    while n >= 0x80:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + body


@dataclass(slots=True)
class _Pending:
    kind: str
    node_id: bytes | None
    sent: float
    deadline: float
    seq: int = 0
    token: int = 0
    address: str = ""


@dataclass(slots=True)
class _Probe:
    target: bytes
    seq: int
    start: float
    timeout_at: float
    deadline: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    done: bool = False


@dataclass(slots=True)
class _Schedule:
    probe: float = 0.0
    gossip: float = 0.0
    push_pull: float = 0.0
    reconnect: float = 0.0
    join: float = math.inf
    reap: float = 0.0
    admit: float = 0.0


class Membership:
    """The membership state machine of one node.

    Parameters
    ----------
    signer : Signer
        This node's identity (``node.base.identity.Identity`` fits): signs its record and its
        suspect/dead statements.
    address : str
        ``host:port`` peers reach this node at.
    config : GossipConfig
        Protocol parameters (see :mod:`node.gossip.config`).
    network_id : bytes
        Network id; records and statements of other networks are refused.
    difficulty : int
        PoW bits required of every member record.
    rng : random.Random
        Source of every random choice (probe order, gossip targets, sampling).
    now : float, default 0.0
        Current time on the caller's clock (start of the schedule).
    incarnation : int, default 0
        Initial incarnation. A restarted node should pass one above the highest it used
        before (the daemon stores it); otherwise it refutes its old death on first contact.
    capabilities : sequence of str, default ()
        Advertised in the record (e.g. ``"spsa"``, ``"lora"``).
    wall_offset : float, default 0.0
        Added to ``now`` to get unix seconds for record timestamps (informational).
    verify : callable, default Ed25519
        Signature check; only large simulations replace it (:mod:`node.sim.gossip`).
    """

    def __init__(
        self,
        signer: Signer,
        address: str,
        config: GossipConfig,
        network_id: bytes,
        difficulty: int,
        rng: random.Random,
        *,
        now: float = 0.0,
        incarnation: int = 0,
        capabilities: Sequence[str] = (),
        wall_offset: float = 0.0,
        verify: Verify = verify_signature,
    ) -> None:
        self.config = config
        self.network_id = network_id
        self.difficulty = difficulty
        self.rng = rng
        self.signer = signer
        self.node_id = node_id_for(signer.public_key)
        self.address = address
        self.capabilities = tuple(capabilities)
        self.wall_offset = wall_offset
        self.rejected: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.verifier = RecordVerifier(
            network_id, difficulty, verify=verify, rejected=self.rejected
        )
        if not 0 <= incarnation <= MAX_INCARNATION:
            raise ValueError(f"incarnation must be in [0, 2**63-1], got {incarnation}")
        self._now = now
        self._source: bytes | None = None
        self._incarnation = incarnation
        self._left = False
        self._record = self._sign_self()
        self._record_pb = self._record.to_pb()
        self._table: dict[bytes, _Entry] = {}
        self._suspects: dict[bytes, _Entry] = {}
        self._live = 0
        # Updates waiting to be piggybacked, each pre-encoded as a GossipMessage.updates entry.
        self._queue = BroadcastQueue()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._seq = 0
        self._probe: _Probe | None = None
        self._probe_list: list[bytes] = []
        self._probe_index = 0
        self._awareness = Awareness(config.awareness_max_multiplier)
        self._changes: list[Member] = []
        self._join_addresses: list[str] = []
        self._seed_addresses: list[str] = []
        self._relays = 0
        self._sched = _Schedule(
            probe=now + rng.random() * config.probe_interval,
            gossip=now + rng.random() * config.gossip_interval,
            push_pull=now + config.push_pull_interval * (0.5 + rng.random() / 2),
            reconnect=now + config.reconnect_interval * (0.5 + rng.random() / 2),
            reap=now + max(1.0, config.dead_reclaim_time / 4),
        )
        clock = self._clock
        self._inbound = RateLimiter(
            config.inbound_rate, config.inbound_burst, max_keys=4 * config.max_members, clock=clock
        )
        self._join_peer = RateLimiter(
            config.join_rate_per_peer,
            config.join_burst_per_peer,
            max_keys=4 * config.max_members,
            clock=clock,
        )
        # Identities new to us enter only through this (global + per-introducer budgets,
        # deferred records come back in fair order); see node/gossip/admission.py.
        self._intro: IntroductionQueue[MemberRecord] = IntroductionQueue(
            rate_global=config.introductions_rate_global,
            burst_global=config.introductions_burst_global,
            rate_per_introducer=config.introductions_rate_per_introducer,
            burst_per_introducer=config.introductions_burst_per_introducer,
            max_pending=config.introductions_max_pending,
            max_introducers=4 * config.max_members,
        )
        self._exempt = False  # True while merging the state that answers our own join
        self._queue_self()

    # ------------------------------------------------------------------ public views
    def _clock(self) -> float:
        return self._now

    @property
    def incarnation(self) -> int:
        """This node's current incarnation."""
        return self._incarnation

    @property
    def record(self) -> MemberRecord:
        """This node's current signed record."""
        return self._record

    @property
    def awareness(self) -> int:
        """Lifeguard local-health score (0 = healthy); timeouts scale by ``score + 1``."""
        return self._awareness.score

    @property
    def left(self) -> bool:
        """True after :meth:`leave`."""
        return self._left

    def num_live(self) -> int:
        """Alive and suspect members other than this node."""
        return self._live

    def get(self, node_id: bytes) -> Member | None:
        """Snapshot of one member (None if unknown)."""
        e = self._table.get(node_id)
        return None if e is None else self._snapshot(e)

    def members(self, *, states: Iterable[MemberState] | None = None) -> list[Member]:
        """Snapshots of all known members (not this node), optionally filtered by state."""
        wanted = None if states is None else frozenset(states)
        return [
            self._snapshot(e) for e in self._table.values() if wanted is None or e.state in wanted
        ]

    def record_of(self, node_id: bytes) -> MemberRecord | None:
        """The signed record held for ``node_id`` (to persist in the peer table)."""
        e = self._table.get(node_id)
        return None if e is None else e.record

    def records(self) -> list[MemberRecord]:
        """Signed records of live members (for the node's persisted peer table)."""
        return [e.record for e in self._table.values() if e.state in _LIVE]

    def pending_introductions(self) -> int:
        """Records of identities new to us waiting for admission budget."""
        return len(self._intro)

    def sample(
        self,
        k: int,
        *,
        exclude_suspect: bool = True,
        topology: Topology | None = None,
        rng: random.Random | None = None,
        prefer_established: bool = True,
    ) -> list[Member]:
        """Up to ``k`` distinct live members (for training's peer exchange).

        Established members (answered us, older than ``promotion_min_age``) are drawn
        first, at random with weights proportional to their age in this node's view
        (``now - first_seen``); only when fewer than ``k`` of them qualify is the sample
        filled with the *oldest* other members. A burst of fresh identities (the youngest
        of all) thus cannot capture the fan-out, and once promoted it gains share only as
        it ages.

        Parameters
        ----------
        k : int
            Sample size; fewer when fewer qualify.
        exclude_suspect : bool, default True
            Leave out members currently suspected.
        topology : Topology, optional
            Restrict to this node's neighbours in an overlay (e.g. ``Ring``,
            ``RandomRegular``) computed over the live ids.
        rng : random.Random, optional
            Defaults to the membership's generator.
        prefer_established : bool, default True
            False: uniform over all qualifying members.
        """
        if k < 0:
            raise ValueError(f"sample size must be >= 0, got {k}")
        ok = (MemberState.ALIVE,) if exclude_suspect else _LIVE
        cands = sorted(
            (e for e in self._table.values() if e.state in ok), key=lambda e: e.record.node_id
        )
        if topology is not None:
            allowed = topology.neighbors(self.node_id, [e.record.node_id for e in cands])
            cands = [e for e in cands if e.record.node_id in allowed]
        gen = rng or self.rng
        if not prefer_established:
            chosen = gen.sample(cands, min(k, len(cands)))
            return [self._snapshot(e) for e in chosen]
        est = [e for e in cands if e.established]
        if len(est) <= k:
            chosen = est
        else:
            # Weighted by standing (age in our view) without replacement (Efraimidis-
            # Spirakis: the k largest log(u)/w). Identities that arrived in one burst and
            # were promoted together get a share of the fan-out of about
            # B*tau / (B*tau + sum of the older members' ages) tau seconds after their
            # arrival, instead of B / (B + H) under a uniform draw.
            now = self._now

            def key(e: _Entry) -> float:
                w = max(1e-3, now - e.first_seen)
                return math.log(gen.random() or 1e-300) / w

            chosen = sorted(est, key=key, reverse=True)[:k]
        if len(chosen) < k:
            rest = sorted(
                (e for e in cands if not e.established),
                key=lambda e: (e.first_seen, e.record.node_id),
            )
            chosen.extend(rest[: k - len(chosen)])
        return [self._snapshot(e) for e in chosen]

    def drain_changes(self) -> list[Member]:
        """Members whose state, incarnation or address changed since the last call."""
        out, self._changes = self._changes, []
        return out

    def state_digest(self) -> dict[bytes, tuple[MemberState, int]]:
        """``node_id -> (state, incarnation)`` of every known member (tests, benches)."""
        return {k: (e.state, e.incarnation) for k, e in self._table.items()}

    # ------------------------------------------------------------------ seeding / joining
    def restore(self, records: Iterable[MemberRecord]) -> int:
        """Seed join candidates from a persisted peer table; returns how many were kept.

        Records are verified (a tampered table cannot inject anything) but not entered as
        members: their liveness is unknown. Their addresses are tried by :meth:`join` and
        by join retries, so a restarted node rejoins even when every bootstrap is gone.
        """
        kept = 0
        for rec in records:
            if rec.node_id == self.node_id:
                # Our own past life: start above its incarnation so nobody ignores us.
                if rec.incarnation >= self._incarnation:
                    self._bump_incarnation(rec.incarnation + 1)
                continue
            try:
                self.verifier.check_record(rec)
            except RecordError:
                continue
            if rec.address not in self._seed_addresses:
                self._seed_addresses.append(rec.address)
                kept += 1
        return kept

    def join(self, now: float, addresses: Iterable[str]) -> list[Action]:
        """Contact bootstrap ``addresses`` (and restored peers); retried until joined."""
        self._now = now
        for a in addresses:
            if a != self.address and a not in self._join_addresses:
                self._join_addresses.append(a)
        self._sched.join = now
        return self._join_step(now, force=True)

    def leave(self, now: float) -> list[Action]:
        """Announce a graceful leave (signed ``left``) to a few members."""
        self._now = now
        if self._left:
            return []
        self._left = True
        st = sign_statement(
            self.signer,
            StatementKind.LEFT,
            target_id=self.node_id,
            incarnation=self._incarnation,
            network_id=self.network_id,
            timestamp_ms=self._wall_ms(),
        )
        self._enqueue(self.node_id, pb.Update(statement=st.to_pb()), own=True)
        targets = self._random_members(2 * self.config.gossip_nodes, _LIVE)
        return [
            self._send(
                now,
                "gossip",
                e.record.node_id,
                e.record.address,
                self._message(gossip=pb.Gossip()),
                self.config.request_timeout,
            )
            for e in targets
        ]

    def set_capabilities(self, now: float, capabilities: Sequence[str]) -> bool:
        """Re-announce this node's record with new ``capabilities``; True if they changed.

        The incarnation is bumped so that every member prefers the new record over the
        old one (an equal incarnation with another signature is refused as conflicting).
        """
        caps = tuple(capabilities)
        if caps == self.capabilities:
            return False
        self._now = now
        self.capabilities = caps
        self._bump_incarnation(self._incarnation + 1)
        return True

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float:
        """Earliest time at which :meth:`tick` has work (may be in the past)."""
        if self._left:
            return math.inf
        s = self._sched
        t = min(s.probe, s.push_pull, s.reconnect, s.join, s.reap)
        if self._queue:
            t = min(t, s.gossip)
        if self._intro:
            t = min(t, s.admit)
        p = self._probe
        if p is not None and not p.done:
            t = min(t, p.deadline if p.indirect_sent else p.timeout_at)
        for e in self._suspects.values():
            if e.suspicion is not None:
                t = min(t, e.suspicion.deadline)
        return t

    def tick(self, now: float) -> list[Action]:
        """Advance the clock to ``now`` and do whatever is due."""
        self._now = now
        if self._left:
            return []
        out: list[Action] = []
        self._probe_step(now, out)
        self._suspicion_step(now)
        if self._intro and now >= self._sched.admit:
            self._sched.admit = now + self.config.gossip_interval
            self._admit_deferred(now)
        if now >= self._sched.gossip:
            self._sched.gossip = now + self.config.gossip_interval
            self._gossip_step(now, out)
        if now >= self._sched.push_pull:
            self._sched.push_pull = now + self.config.push_pull_period(self._live + 1)
            self._push_pull_step(now, out, _LIVE, "push_pull")
        if now >= self._sched.reconnect:
            self._sched.reconnect = now + self.config.reconnect_interval
            self._push_pull_step(now, out, (MemberState.DEAD,), "reconnect")
        if (
            self._live == 0
            and math.isinf(self._sched.join)
            and (self._join_addresses or self._seed_addresses)
        ):
            # Isolated (everyone we knew is gone): go back to bootstraps and stored peers.
            self._sched.join = now
        if now >= self._sched.join:
            out.extend(self._join_step(now))
        if now >= self._sched.reap:
            self._sched.reap = now + max(1.0, self.config.dead_reclaim_time / 4)
            self._reap(now)
        self._expire_pending(now)
        return out

    # ------------------------------------------------------------------ inbound
    def receive(self, now: float, sender_id: bytes, body: bytes, token: int) -> list[Action]:
        """Handle an inbound request from the (envelope-verified) ``sender_id``.

        Returns actions; the reply to this request is a :class:`Reply` with ``token``,
        either in this list or from a later call (indirect probes).

        Raises
        ------
        GossipRejected
            The request was refused (rate limit, malformed, forged sender record, ...);
            the reason is counted in :attr:`rejected`.
        """
        self._now = now
        self._source = sender_id
        try:
            return self._receive(now, sender_id, body, token)
        finally:
            self._source = None

    def _receive(self, now: float, sender_id: bytes, body: bytes, token: int) -> list[Action]:
        if not self._inbound.allow(sender_id):
            raise self._rejected("rate_limited", "too many gossip messages from this peer")
        msg = self._parse(body)
        kind = msg.WhichOneof("body")
        if kind is None or kind == "ack":
            raise self._rejected("unexpected", f"gossip request of kind {kind!r}")
        if kind == "ping" and msg.ping.target_id != self.node_id:
            raise self._rejected("wrong_target", "ping for another node")
        if kind == "join" and not self._join_peer.allow(sender_id):
            raise self._rejected("join_rate_limited", "too many joins from this peer")
        if sender_id not in self._table and sender_id != self.node_id:
            # A new identity costs table space and a signature check. The PoW stamp (one
            # hash) is checked first, so stampless identities cannot reach the admission
            # budgets at all; stamped ones go through them in _apply_alive (a sender over
            # budget is answered but waits in the introduction queue, not in the table).
            s = msg.sender
            if not pow_check(bytes(s.public_key), s.pow_nonce, self.difficulty):
                raise self._rejected("bad_pow", "sender record lacks the network's PoW")
        self._accept_sender(now, sender_id, msg)
        self.stats[f"recv_{kind}"] += 1
        self._apply_updates(now, msg.updates)
        if self._left:
            return [Reply(token, self._message(ack=pb.Ack(seq=0)))]
        if kind == "ping":
            return [Reply(token, self._message(ack=pb.Ack(seq=msg.ping.seq), to=sender_id))]
        if kind == "gossip":
            return [Reply(token, self._message(ack=pb.Ack(seq=0), to=sender_id))]
        if kind == "ping_req":
            return self._relay(now, msg.ping_req, token)
        # A sender still waiting for admission (over the introduction budgets) gets only a
        # bounded part of our state: answering every fresh identity of a flood with the
        # whole table would turn the budgets into an amplifier (1.2 MB per reply at 4096).
        limit = None if sender_id in self._table else self.config.unadmitted_state_members
        if limit is not None and kind in ("push_pull", "join"):
            self.stats["state_cut_unadmitted"] += 1
        if kind == "push_pull":
            self._merge_states(now, msg.push_pull.states)
            state = self._full_state(limit)
            return [Reply(token, self._message(push_pull=state, to=sender_id))]
        # join: answer with our state (all of it once the sender is admitted).
        state = self._full_state(limit)
        state.join = True
        return [Reply(token, self._message(push_pull=state, to=sender_id))]

    def on_reply(self, now: float, request_id: int, body: bytes) -> list[Action]:
        """The request ``request_id`` was answered with ``body``."""
        self._now = now
        p = self._pending.pop(request_id, None)
        if p is None:
            return []
        self._source = p.node_id
        # The state answering our own join is exempt from the introduction budgets: the
        # operator chose the bootstrap, and a newcomer needs the whole view at once.
        self._exempt = p.kind == "join"
        try:
            return self._on_reply(now, request_id, body, p)
        finally:
            self._source = None
            self._exempt = False

    def _on_reply(self, now: float, request_id: int, body: bytes, p: _Pending) -> list[Action]:
        try:
            msg = self._parse(body)
            responder = bytes(msg.sender.node_id)
            if p.node_id is not None and responder != p.node_id:
                raise self._rejected("reply_mismatch", "reply from an unexpected member")
            self._source = responder
            self._accept_sender(now, responder, msg)
        except GossipRejected:
            return self.on_failure(now, request_id, _pending=p)
        answered = self._table.get(responder)
        if answered is not None:
            # It answered at the address of its signed record: reachable, not just a key.
            answered.answered = True
            self._maybe_promote(now, answered)
        self._apply_updates(now, msg.updates)
        kind = msg.WhichOneof("body")
        out: list[Action] = []
        if p.kind == "ping" and kind == "ack":
            e = self._table.get(responder)
            if e is not None:
                e.rtt_ms = (now - p.sent) * 1000.0
            probe = self._probe
            if probe is not None and not probe.done and probe.seq == msg.ack.seq:
                probe.done = True
                self._adjust_awareness(-1)
        elif p.kind == "ping_req" and kind == "ack":
            probe = self._probe
            if probe is not None and not probe.done and probe.seq == p.seq:
                if msg.ack.nack:
                    probe.nacks += 1
                elif msg.ack.seq == p.seq:
                    probe.done = True
        elif p.kind == "relay":
            self._relays -= 1
            ok = kind == "ack" and not msg.ack.nack
            out.append(Reply(p.token, self._message(ack=pb.Ack(seq=p.seq, nack=not ok))))
        elif p.kind in ("push_pull", "reconnect", "join") and kind == "push_pull":
            self._merge_states(now, msg.push_pull.states)
            if len(msg.push_pull.states) == self.config.unadmitted_state_members + 1:
                # Probably cut short because the responder has not admitted us yet (over
                # its introduction budget): ask again soon rather than a full period later.
                early = now + self.config.probe_interval * (0.5 + self.rng.random())
                self._sched.push_pull = min(self._sched.push_pull, early)
            if p.kind == "join":
                self.stats["joined"] += 1
                # The contact's state predates members joining right after us, and their
                # alive gossip has a bounded retransmit budget: one early push-pull with
                # a random member closes that gap instead of waiting a full period.
                early = now + self.config.probe_interval * (0.5 + self.rng.random())
                self._sched.push_pull = min(self._sched.push_pull, early)
        return out

    def on_failure(
        self, now: float, request_id: int, *, _pending: _Pending | None = None
    ) -> list[Action]:
        """The request ``request_id`` failed (transport error, timeout, bad reply)."""
        self._now = now
        p = _pending if _pending is not None else self._pending.pop(request_id, None)
        if p is None:
            return []
        self.stats[f"fail_{p.kind}"] += 1
        out: list[Action] = []
        if p.kind == "relay":
            self._relays -= 1
            out.append(Reply(p.token, self._message(ack=pb.Ack(seq=p.seq, nack=True))))
        elif p.kind == "ping":
            probe = self._probe
            if (
                probe is not None
                and not probe.done
                and probe.seq == p.seq
                and not probe.indirect_sent
            ):
                # Refused outright (no need to wait for the probe timeout).
                self._send_indirect(now, probe, out)
        return out

    # ------------------------------------------------------------------ internals: messages
    def _wall_ms(self) -> int:
        return int((self._now + self.wall_offset) * 1000)

    def _sign_self(self) -> MemberRecord:
        return sign_record(
            self.signer,
            address=self.address,
            incarnation=self._incarnation,
            network_id=self.network_id,
            timestamp_ms=self._wall_ms(),
            capabilities=self.capabilities,
        )

    def _bump_incarnation(self, incarnation: int) -> None:
        # Clamped: at the ceiling a refutation re-signs at the same incarnation rather than
        # overflowing the u64 signing layout (which used to silence this node for good).
        self._incarnation = min(incarnation, MAX_INCARNATION)
        self._record = self._sign_self()
        self._record_pb = self._record.to_pb()
        self._queue_self()

    def _queue_self(self) -> None:
        self._enqueue(self.node_id, pb.Update(alive=self._record_pb), own=True)

    def _rejected(self, reason: str, message: str) -> GossipRejected:
        self.rejected[reason] += 1
        return GossipRejected(reason, message)

    def _parse(self, body: bytes) -> pb.GossipMessage:
        msg = pb.GossipMessage()
        try:
            msg.ParseFromString(body)
        except DecodeError:
            raise self._rejected("malformed", "gossip body is not a GossipMessage") from None
        if not msg.HasField("sender"):
            raise self._rejected("malformed", "gossip message without sender record")
        if len(msg.updates) > MAX_UPDATES_PER_MESSAGE:
            raise self._rejected("malformed", "too many piggybacked updates")
        return msg

    def _message(self, *, to: bytes | None = None, **body: object) -> bytes:
        msg = pb.GossipMessage(sender=self._record_pb, **body)  # type: ignore[arg-type]
        # Piggybacked updates are appended as pre-encoded field-15 entries: a protobuf
        # message followed by more of its repeated fields is the same message, and this
        # spares copying every update into every message (the simulator's hot spot).
        return msg.SerializeToString() + b"".join(self._piggyback(to))

    def _piggyback(self, to: bytes | None) -> list[bytes]:
        out: list[bytes] = []
        cfg = self.config
        budget = cfg.max_piggyback_bytes
        count = 0
        if to is not None:
            # Lifeguard's buddy system: tell a suspect it is suspected, first thing (and a
            # member we hold dead that it is, so it can refute after a partition heals).
            e = self._table.get(to)
            if (
                e is not None
                and e.statement is not None
                and e.state in (MemberState.SUSPECT, MemberState.DEAD)
            ):
                wire = _update_wire(pb.Update(statement=e.statement.to_pb()))
                out.append(wire)
                budget -= len(wire)
                count += 1
        if not self._queue:
            return out
        out.extend(
            self._queue.take(
                max_count=cfg.max_piggyback - count,
                budget=budget,
                limit=cfg.retransmit_limit(self._live + 1),
                to=to,
            )
        )
        return out

    def _enqueue(self, key: bytes, update: pb.Update, *, own: bool = False) -> None:
        about = key if update.HasField("alive") else None
        source = None if own else self._source
        self._queue.enqueue(key, _update_wire(update), source=source, about=about)

    def _send(
        self,
        now: float,
        kind: str,
        node_id: bytes | None,
        address: str,
        body: bytes,
        timeout: float,
        *,
        seq: int = 0,
        token: int = 0,
    ) -> Send:
        rid = self._next_id
        self._next_id += 1
        self._pending[rid] = _Pending(kind, node_id, now, now + timeout, seq, token, address)
        self.stats[f"send_{kind}"] += 1
        return Send(rid, address, node_id, body, timeout, kind)

    def _expire_pending(self, now: float) -> None:
        # The caller reports every outcome; this only guards against a caller that lost
        # one, so the table cannot grow without bound.
        if len(self._pending) < 256:
            return
        grace = 2 * self.config.request_timeout
        stale = [rid for rid, p in self._pending.items() if p.deadline + grace < now]
        for rid in stale:
            p = self._pending.pop(rid)
            if p.kind == "relay":
                self._relays -= 1

    def _full_state(self, limit: int | None = None) -> pb.PushPull:
        out = pb.PushPull()
        out.states.append(pb.MemberState(record=self._record_pb))
        entries: Iterable[_Entry] = self._table.values()
        if limit is not None:
            live = [e for e in self._table.values() if e.state is MemberState.ALIVE]
            est = [e for e in live if e.established]
            pool = est if len(est) >= limit else live
            entries = pool if len(pool) <= limit else self.rng.sample(pool, limit)
        for e in entries:
            ms = out.states.add()
            ms.record.CopyFrom(e.pb_record())
            if e.statement is not None and e.state is not MemberState.ALIVE:
                ms.statement.CopyFrom(e.statement.to_pb())
        return out

    # ------------------------------------------------------------------ internals: state
    def _snapshot(self, e: _Entry) -> Member:
        r = e.record
        return Member(
            node_id=r.node_id,
            public_key=r.public_key,
            address=r.address,
            state=e.state,
            incarnation=e.incarnation,
            last_seen=e.last_seen,
            rtt_ms=e.rtt_ms,
            capabilities=r.capabilities,
            state_since=e.state_since,
            first_seen=e.first_seen,
            established=e.established,
        )

    def _set_state(self, e: _Entry, state: MemberState) -> None:
        was_live = e.state in _LIVE
        e.state = state
        e.state_since = self._now
        if state is not MemberState.SUSPECT:
            e.suspicion = None
            self._suspects.pop(e.record.node_id, None)
        now_live = state in _LIVE
        self._live += int(now_live) - int(was_live)

    def _changed(self, e: _Entry) -> None:
        self._changes.append(self._snapshot(e))

    def _admit(self, node_id: bytes) -> bool:
        if len(self._table) < self.config.max_members:
            return True
        # Full: forget the longest-gone dead/left member, else the longest suspect that is
        # not established, else the *youngest* alive member that is not established. An
        # established member is never evicted for a newcomer, and a flood of fresh
        # identities into a full table only displaces its own kind (the youngest).
        gone = [e for e in self._table.values() if e.state in _GONE]
        if gone:
            victim = min(gone, key=lambda e: (e.state_since, e.record.node_id))
        else:
            fresh = [e for e in self._table.values() if not e.established]
            suspects = [e for e in fresh if e.state is MemberState.SUSPECT]
            if suspects:
                victim = min(suspects, key=lambda e: (e.state_since, e.record.node_id))
            elif fresh:
                victim = max(fresh, key=lambda e: (e.first_seen, e.record.node_id))
            else:
                self.rejected["table_full"] += 1
                return False
        self._forget(victim.record.node_id)
        self.stats["evicted"] += 1
        return True

    def _maybe_promote(self, now: float, e: _Entry) -> None:
        if (
            not e.established
            and e.state is MemberState.ALIVE
            and now - e.first_seen >= self.config.promotion_min_age
        ):
            e.established = True
            self.stats["promoted"] += 1

    def _admit_deferred(self, now: float) -> None:
        for nid, rec in self._intro.drain(now):
            if nid in self._table or nid == self.node_id:
                continue
            self.stats["introduction_admitted_late"] += 1
            self._apply_alive(now, rec, admitted=True)

    def _forget(self, node_id: bytes) -> None:
        e = self._table.pop(node_id)
        self._suspects.pop(node_id, None)
        if e.state in _LIVE:
            self._live -= 1
        self._queue.discard(node_id)

    def _reap(self, now: float) -> None:
        horizon = now - self.config.dead_reclaim_time
        for nid in [
            k for k, e in self._table.items() if e.state in _GONE and e.state_since <= horizon
        ]:
            self._forget(nid)

    def _accept_sender(self, now: float, sender_id: bytes, msg: pb.GossipMessage) -> None:
        if bytes(msg.sender.node_id) != sender_id:
            raise self._rejected("sender_mismatch", "sender record is not the sender's")
        if sender_id == self.node_id:
            raise self._rejected("sender_mismatch", "message claims to come from this node")
        e = self._table.get(sender_id)
        if e is None or msg.sender.signature != e.record.signature:
            try:
                self._apply_alive(now, self.verifier.parse_record(msg.sender))
            except RecordError as exc:
                raise GossipRejected(exc.reason, str(exc)) from None
            e = self._table.get(sender_id)
            if e is None:
                if sender_id in self._intro:
                    return  # answered, but waits for admission budget outside the table
                raise GossipRejected("table_full", "member table is full")
        e.last_seen = now
        if e.answered and not e.established:
            self._maybe_promote(now, e)

    def _apply_updates(self, now: float, updates: Iterable[pb.Update]) -> None:
        table, stats = self._table, self.stats
        for u in updates:
            which = u.WhichOneof("update")
            try:
                if which == "alive":
                    a = u.alive  # one accessor call: these loops dominate large simulations
                    nid, sig = a.node_id, a.signature
                    e = table.get(nid)
                    if e is not None and sig == e.record.signature:
                        stats["duplicate"] += 1
                        continue
                    if nid == self.node_id and sig == self._record.signature:
                        continue
                    waiting = self._intro.get(nid) if e is None else None
                    if waiting is not None and sig == waiting.signature:
                        stats["duplicate"] += 1
                        continue
                    self._apply_alive(now, self.verifier.parse_record(a))
                elif which == "statement":
                    self._apply_statement(now, self.verifier.parse_statement(u.statement))
                else:
                    self.rejected["malformed"] += 1
            except RecordError:
                continue  # counted by the verifier

    def _apply_alive(self, now: float, rec: MemberRecord, *, admitted: bool = False) -> bool:
        """Apply an alive record; True when it changed our view.

        ``admitted``: a deferred introduction whose turn came (already verified).
        """
        nid = rec.node_id
        if nid == self.node_id:
            if rec.incarnation >= self._incarnation and rec.signature != self._record.signature:
                # A record of ours we did not sign in this life (e.g. before a restart):
                # check it, then outbid it so nobody prefers it over our current one.
                self.verifier.check_record(rec)
                self._bump_incarnation(rec.incarnation + 1)
            return False
        e = self._table.get(nid)
        if e is not None:
            if rec.signature == e.record.signature:
                return False
            if rec.incarnation < e.incarnation or (
                rec.incarnation == e.incarnation and e.record.incarnation == e.incarnation
            ):
                reason = (
                    "stale_incarnation" if rec.incarnation < e.incarnation else "conflicting_record"
                )
                self.rejected[reason] += 1
                return False
        elif not admitted and not self._exempt and self._source is not None:
            # An identity new to us: only through the admission budgets (global and per
            # introducer; a direct sender introduces itself). Verified first, so only valid
            # records take queue space; over budget it is deferred, never silently lost.
            waiting = self._intro.get(nid)
            if waiting is not None and (
                rec.incarnation < waiting.incarnation or rec.signature == waiting.signature
            ):
                return False
            self.verifier.check_record(rec)
            verdict = self._intro.offer(now, self._source, nid, rec)
            if verdict is Verdict.DEFERRED:
                self.stats["introduction_deferred"] += 1
                return False
            if verdict is Verdict.DROPPED:
                self.rejected["introduction_dropped"] += 1
                return False
            admitted = True
        if not admitted:
            self.verifier.check_record(rec)
        if e is None:
            if not self._admit(nid):
                return False
            e = _Entry(
                record=rec,
                state=MemberState.ALIVE,
                incarnation=rec.incarnation,
                state_since=now,
                first_seen=now,
            )
            self._table[nid] = e
            self._live += 1
            self.stats["learned"] += 1
            self._intro.discard(nid)
        elif rec.incarnation == e.incarnation:
            # The record for an incarnation we only knew from a statement: keep the state.
            e.record, e.record_pb = rec, None
            return True
        else:
            e.record, e.record_pb = rec, None
            e.incarnation = rec.incarnation
            e.statement = None
            self._set_state(e, MemberState.ALIVE)
        self._enqueue(nid, pb.Update(alive=e.pb_record()))
        self._changed(e)
        return True

    def _reporter_key(self, reporter_id: bytes) -> bytes | None:
        if reporter_id == self.node_id:
            return self.signer.public_key
        e = self._table.get(reporter_id)
        return None if e is None else e.record.public_key

    def _apply_statement(
        self, now: float, st: Statement, *, from_state: bool = False, fresh: bool = False
    ) -> None:
        target = st.target_id
        known = self._incarnation if target == self.node_id else None
        if known is None and (e0 := self._table.get(target)) is not None:
            known = e0.incarnation
        if known is not None and st.incarnation > known + self.config.max_incarnation_step:
            # A claim nobody honest could make (incarnations grow by one per refutation or
            # restart): refused, so a liar cannot push a member towards the ceiling fast.
            self.rejected["incarnation_jump"] += 1
            return
        if target == self.node_id:
            if st.incarnation >= self._incarnation and not self._left:
                self.verifier.check_statement(st, self._reporter_key(st.reporter_id))
                if st.reporter_id == self.node_id and st.kind is not StatementKind.LEFT:
                    return
                # Refute: outbid the statement with a freshly signed record.
                self.stats["refuted"] += 1
                self._adjust_awareness(+1)
                self._bump_incarnation(st.incarnation + 1)
            return
        e = self._table.get(target)
        if e is None:
            self.stats["unknown_target"] += 1
            return
        if st.incarnation < e.incarnation:
            self.rejected["stale_incarnation"] += 1
            return
        if e.statement is not None and st.signature == e.statement.signature:
            self.stats["duplicate"] += 1
            return
        if st.kind is StatementKind.SUSPECT:
            if e.state in _GONE and st.incarnation <= e.incarnation:
                return
            s = e.suspicion
            if e.state is MemberState.SUSPECT and s is not None and st.incarnation == e.incarnation:
                if (
                    st.reporter_id in s.confirmations
                    or e.statement is None
                    or st.reporter_id == e.statement.reporter_id
                ):
                    self.stats["duplicate"] += 1
                    return
                self.verifier.check_statement(st, self._reporter_key(st.reporter_id))
                self._confirm(now, e, st)
                return
            self.verifier.check_statement(st, self._reporter_key(st.reporter_id))
            self._start_suspicion(now, e, st)
            return
        key: bytes | None
        if st.kind is StatementKind.LEFT:
            key = e.record.public_key
        else:
            if e.state in _GONE and st.incarnation <= e.incarnation:
                return
            key = self._reporter_key(st.reporter_id)
        self.verifier.check_statement(st, key)
        if from_state and not fresh and st.kind is StatementKind.DEAD:
            # Memberlist's rule for anti-entropy: a remote "dead" only makes us suspect,
            # giving the member a full suspicion timeout to refute (partition heals).
            if e.state is MemberState.ALIVE:
                own = self._statement(StatementKind.SUSPECT, target, st.incarnation)
                self._start_suspicion(now, e, own)
            return
        e.incarnation = st.incarnation
        e.statement = st
        self._set_state(e, MemberState.LEFT if st.kind is StatementKind.LEFT else MemberState.DEAD)
        self._enqueue(target, pb.Update(statement=st.to_pb()))
        self._changed(e)

    def _statement(self, kind: StatementKind, target: bytes, incarnation: int) -> Statement:
        return sign_statement(
            self.signer,
            kind,
            target_id=target,
            incarnation=incarnation,
            network_id=self.network_id,
            timestamp_ms=self._wall_ms(),
        )

    def _start_suspicion(self, now: float, e: _Entry, st: Statement) -> None:
        n = self._live + 1  # before _set_state, which counts a dead member suspected anew
        e.incarnation = st.incarnation
        e.statement = st
        self._set_state(e, MemberState.SUSPECT)
        e.suspicion = Suspicion.begin(now, n, self.config)
        self._suspects[e.record.node_id] = e
        self._enqueue(st.target_id, pb.Update(statement=st.to_pb()))
        self._changed(e)

    def _confirm(self, now: float, e: _Entry, st: Statement) -> None:
        s = e.suspicion
        assert s is not None
        s.confirm(st.reporter_id)
        self.stats["confirmations"] += 1
        # Re-gossip the confirmation so other nodes can count it as well.
        self._enqueue(st.target_id, pb.Update(statement=st.to_pb()))

    def _adjust_awareness(self, delta: int) -> None:
        self._awareness.apply_delta(delta)

    def _merge_states(self, now: float, states: Sequence[pb.MemberState]) -> None:
        limit = MAX_STATES_PER_PUSH_PULL_FACTOR * self.config.max_members
        states = states[:limit]
        fresh: set[bytes] = set()
        # Records first, so statements can be checked against reporters listed later on.
        for ms in states:
            if not ms.HasField("record"):
                continue
            nid = bytes(ms.record.node_id)
            e = self._table.get(nid)
            known = (e is not None and ms.record.signature == e.record.signature) or (
                nid == self.node_id and ms.record.signature == self._record.signature
            )
            if known:
                continue
            try:
                if self._apply_alive(now, self.verifier.parse_record(ms.record)) and e is None:
                    fresh.add(nid)
            except RecordError:
                continue
        for ms in states:
            if not ms.HasField("statement"):
                continue
            try:
                st = self.verifier.parse_statement(ms.statement)
                # A member first heard of in this very exchange was never seen alive by
                # us: take the remote's verdict as is instead of suspecting it anew.
                self._apply_statement(now, st, from_state=True, fresh=st.target_id in fresh)
            except RecordError:
                continue

    # ------------------------------------------------------------------ internals: steps
    def _random_members(
        self,
        k: int,
        states: tuple[MemberState, ...],
        exclude: bytes | None = None,
        *,
        established: bool = False,
    ) -> list[_Entry]:
        cands = [
            e for e in self._table.values() if e.state in states and e.record.node_id != exclude
        ]
        if established:
            # Anti-entropy partners and indirect-probe helpers are trusted with our view and
            # our verdicts: take established members when there are enough of them.
            est = [e for e in cands if e.established]
            if len(est) >= k:
                cands = est
        if len(cands) <= k:
            self.rng.shuffle(cands)
            return cands
        return self.rng.sample(cands, k)

    def _scale(self, t: float) -> float:
        return self._awareness.scale(t)

    def _probe_step(self, now: float, out: list[Action]) -> None:
        p = self._probe
        if p is not None and not p.done:
            if not p.indirect_sent and now >= p.timeout_at:
                self._send_indirect(now, p, out)
            if now >= p.deadline:
                p.done = True
                self._probe_failed(now, p)
        if now < self._sched.probe:
            return
        self._sched.probe = now + self._scale(self.config.probe_interval)
        target = self._next_probe_target()
        if target is None:
            return
        self._seq += 1
        probe = _Probe(
            target=target.record.node_id,
            seq=self._seq,
            start=now,
            timeout_at=now + self._scale(self.config.probe_timeout),
            deadline=now + self._scale(self.config.probe_interval),
        )
        self._probe = probe
        body = self._message(ping=pb.Ping(seq=probe.seq, target_id=probe.target), to=probe.target)
        out.append(
            self._send(
                now,
                "ping",
                probe.target,
                target.record.address,
                body,
                probe.deadline - now,
                seq=probe.seq,
            )
        )

    def _next_probe_target(self) -> _Entry | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_list):
                nid = self._probe_list[self._probe_index]
                self._probe_index += 1
                e = self._table.get(nid)
                if e is not None and e.state in _LIVE:
                    return e
            self._probe_list = [k for k, e in self._table.items() if e.state in _LIVE]
            self.rng.shuffle(self._probe_list)
            self._probe_index = 0
            if not self._probe_list:
                return None
        return None

    def _send_indirect(self, now: float, p: _Probe, out: list[Action]) -> None:
        p.indirect_sent = True
        target = self._table.get(p.target)
        if target is None:
            return
        helpers = self._random_members(
            self.config.indirect_checks, (MemberState.ALIVE,), exclude=p.target, established=True
        )
        remaining = max(0.001, p.deadline - now)
        for h in helpers:
            req = pb.PingReq(
                seq=p.seq,
                target_id=p.target,
                target_address=target.record.address,
                timeout_ms=max(1, int(remaining * 1000)),
            )
            out.append(
                self._send(
                    now,
                    "ping_req",
                    h.record.node_id,
                    h.record.address,
                    self._message(ping_req=req, to=h.record.node_id),
                    remaining,
                    seq=p.seq,
                )
            )
        p.expected_nacks = len(helpers)

    def _probe_failed(self, now: float, p: _Probe) -> None:
        if p.expected_nacks > 0:
            self._adjust_awareness(max(0, p.expected_nacks - p.nacks))
        else:
            self._adjust_awareness(+1)
        e = self._table.get(p.target)
        if e is None or e.state not in _LIVE:
            return
        self.stats["probe_failed"] += 1
        st = self._statement(StatementKind.SUSPECT, p.target, e.incarnation)
        if e.state is MemberState.SUSPECT and e.suspicion is not None:
            if e.statement is not None and e.statement.reporter_id != self.node_id:
                self._confirm(now, e, st)
            return
        self._start_suspicion(now, e, st)

    def _relay(self, now: float, req: pb.PingReq, token: int) -> list[Action]:
        if req.target_id == self.node_id:
            return [Reply(token, self._message(ack=pb.Ack(seq=req.seq)))]
        target = bytes(req.target_id)
        known = self._table.get(target)
        # Prefer the address from the target's own signed record over the requester's.
        address = known.record.address if known is not None else req.target_address
        if self._relays >= MAX_PENDING_RELAYS or not address:
            return [Reply(token, self._message(ack=pb.Ack(seq=req.seq, nack=True)))]
        self._relays += 1
        self._seq += 1
        timeout = max(0.001, req.timeout_ms / 1000.0 * self.config.nack_fraction)
        body = self._message(ping=pb.Ping(seq=self._seq, target_id=target), to=target)
        return [self._send(now, "relay", target, address, body, timeout, seq=req.seq, token=token)]

    def _suspicion_step(self, now: float) -> None:
        due = [
            e for e in self._suspects.values() if e.suspicion is not None and e.suspicion.due(now)
        ]
        for e in due:
            st = self._statement(StatementKind.DEAD, e.record.node_id, e.incarnation)
            e.statement = st
            self._set_state(e, MemberState.DEAD)
            self.stats["declared_dead"] += 1
            self._enqueue(e.record.node_id, pb.Update(statement=st.to_pb()))
            self._changed(e)

    def _gossip_step(self, now: float, out: list[Action]) -> None:
        if not self._queue:
            return
        cands = [
            e
            for e in self._table.values()
            if e.state in _LIVE
            or (
                e.state is MemberState.DEAD
                and now - e.state_since < self.config.gossip_to_the_dead_time
            )
        ]
        k = self.config.gossip_nodes
        targets = cands if len(cands) <= k else self.rng.sample(cands, k)
        for e in targets:
            if not self._queue:
                break
            nid = e.record.node_id
            out.append(
                self._send(
                    now,
                    "gossip",
                    nid,
                    e.record.address,
                    self._message(gossip=pb.Gossip(), to=nid),
                    self.config.request_timeout,
                )
            )

    def _push_pull_step(
        self, now: float, out: list[Action], states: tuple[MemberState, ...], kind: str
    ) -> None:
        peers = self._random_members(1, states, established=kind == "push_pull")
        if not peers:
            return
        e = peers[0]
        nid = e.record.node_id
        out.append(
            self._send(
                now,
                kind,
                nid,
                e.record.address,
                self._message(push_pull=self._full_state(), to=nid),
                self.config.request_timeout,
            )
        )

    def _join_step(self, now: float, *, force: bool = False) -> list[Action]:
        if self._live > 0 and not force:
            # Someone knows us or we know someone: gossip does the rest. tick() re-arms
            # joining if the node ever finds itself alone again.
            self._sched.join = math.inf
            return []
        self._sched.join = now + self.config.join_retry_interval
        seeds = [a for a in self._seed_addresses if a not in self._join_addresses]
        if len(seeds) > 3:
            seeds = self.rng.sample(seeds, 3)
        addresses = [a for a in self._join_addresses + seeds if a != self.address]
        if not addresses:
            self._sched.join = math.inf
            return []
        body = self._message(join=pb.Join())
        return [
            self._send(now, "join", None, a, body, self.config.request_timeout)
            for a in dict.fromkeys(addresses)
        ]
