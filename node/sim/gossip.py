"""Deterministic in-memory network driving many :class:`Membership` cores in one process.

:class:`SimNetwork` is a discrete-event simulator with a virtual clock: it keeps one event
queue for every node's ticks and every message, delivers requests and replies after a
random latency, drops them with a loss probability or across a partition, and turns a
request that got no reply into ``on_failure`` at its timeout, exactly as a real transport
would. Keys, latencies, losses and every protocol choice derive from ``seed``, so the same
seed gives the same history (``SimNetwork.history``) bit for bit.

Crypto: nodes sign with real Ed25519 by default; verification goes through
:class:`CachedVerify`, a shared memo of real checks (each distinct record is verified once
for the whole simulation instead of once per node). ``fast_crypto=True`` swaps in
:class:`FastSigner` / :func:`fast_verify`, a keyed-hash stand-in that anybody can forge;
it exists only so several-hundred-node simulations spend their time in the protocol rather
than in signature checks. Protocol-correctness tests never use it.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from node.base.identity import Identity, pow_solve, verify_signature
from node.gossip.config import GossipConfig
from node.gossip.core import GossipRejected, Member, Membership, MemberState, Reply, Send
from node.gossip.records import Signer, Verify

__all__ = [
    "CachedVerify",
    "FastSigner",
    "SimNetwork",
    "SimNode",
    "deterministic_identity",
    "fast_verify",
]


@dataclass(frozen=True)
class FastSigner:
    """SIMULATION ONLY: ``signature = sha512(public_key || message)``; forgeable by anyone."""

    public_key: bytes
    pow_nonce: int = 0

    @classmethod
    def from_seed(cls, seed: bytes) -> FastSigner:
        """Signer whose public key is ``sha256(seed)``."""
        return cls(hashlib.sha256(b"fast-signer" + seed).digest())

    def sign(self, message: bytes) -> bytes:
        """64-byte keyed hash standing in for a signature."""
        return hashlib.sha512(self.public_key + message).digest()


def fast_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """SIMULATION ONLY: check a :class:`FastSigner` signature."""
    return hashlib.sha512(public_key + message).digest() == signature


def deterministic_identity(seed: bytes, difficulty: int = 0) -> Identity:
    """An Ed25519 identity derived from ``seed`` (tests and simulations only)."""
    private_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
    public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Identity(private_key, public_key, pow_solve(public_key, difficulty), difficulty)


@dataclass
class SimNode:
    """One simulated node: its core and its liveness in the simulation."""

    address: str
    core: Membership
    up: bool = True
    next_tick: float = math.inf
    version: int = 0
    passive: bool = False

    @property
    def node_id(self) -> bytes:
        """The core's node id."""
        return self.core.node_id


_Event = tuple[float, int, str, tuple[object, ...]]


class CachedVerify:
    """Memoised signature check shared by all simulated nodes.

    Still the real check (the key is the full public key, signature and message, so no
    forgery can hit the cache); it only spares hundreds of nodes from re-verifying the
    same record, which is what dominates a large simulation's run time.
    """

    def __init__(self, inner: Verify, max_entries: int = 200_000) -> None:
        self.inner = inner
        self.max_entries = max_entries
        self.calls = 0
        self.misses = 0
        self._cache: dict[tuple[bytes, bytes, bytes], bool] = {}

    def __call__(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        self.calls += 1
        key = (public_key, signature, message)
        hit = self._cache.get(key)
        if hit is None:
            self.misses += 1
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            hit = self._cache[key] = self.inner(public_key, signature, message)
        return hit


@dataclass
class _InFlight:
    origin: str
    request_id: int
    sent: float
    timeout: float
    dest: str
    body: bytes


class SimNetwork:
    """A virtual-time network of membership cores.

    Parameters
    ----------
    seed : int
        Drives keys, latencies, losses and every core's random choices.
    config : GossipConfig
        Shared protocol configuration.
    latency : (float, float), default (0.001, 0.005)
        One-way delay drawn uniformly from this range (seconds).
    loss : float, default 0.0
        Probability that any one request or reply is dropped.
    difficulty : int, default 0
        PoW bits of the network (identities are minted at it).
    fast_crypto : bool, default False
        Use :class:`FastSigner` instead of Ed25519 (large simulations only).
    record_history : bool, default True
        Keep ``(time, observer, member, state, incarnation)`` for every view change.
    """

    def __init__(
        self,
        seed: int,
        config: GossipConfig,
        *,
        latency: tuple[float, float] = (0.001, 0.005),
        loss: float = 0.0,
        difficulty: int = 0,
        fast_crypto: bool = False,
        record_history: bool = True,
    ) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {loss}")
        if latency[0] < 0 or latency[1] < latency[0]:
            raise ValueError(f"latency range must be 0 <= lo <= hi, got {latency}")
        self.seed = seed
        self.config = config
        self.latency = latency
        self.loss = loss
        self.difficulty = difficulty
        self.fast_crypto = fast_crypto
        self.network_id = hashlib.sha256(b"sim-network" + seed.to_bytes(8, "little")).digest()
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self.by_id: dict[bytes, SimNode] = {}
        self.history: list[tuple[float, bytes, bytes, str, int]] = []
        self.record_history = record_history
        self.messages = 0
        self.dropped = 0
        self._events: list[_Event] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._inflight: dict[int, _InFlight] = {}
        self._groups: dict[str, int] | None = None
        self._counter = itertools.count()
        self.verify = CachedVerify(fast_verify if fast_crypto else verify_signature)

    # ------------------------------------------------------------------ topology control
    def add_node(
        self,
        *,
        address: str | None = None,
        signer: Signer | None = None,
        config: GossipConfig | None = None,
        join: Iterable[str] = (),
        incarnation: int = 0,
        passive: bool = False,
    ) -> SimNode:
        """Create a node at the current virtual time; optionally join ``join`` addresses.

        ``passive=True``: the node answers every request but never ticks (no probes, no
        gossip, no push-pull of its own) — the cheapest identity an attacker can run that
        still passes probes; large Sybil simulations use it to spend CPU on the honest side.
        """
        i = next(self._counter)
        address = address or f"10.0.{i // 250}.{i % 250 + 1}:7000"
        if address in self.nodes:
            raise ValueError(f"address {address} is already taken in the simulation")
        seed = self.seed.to_bytes(8, "little") + i.to_bytes(4, "little")
        if signer is None:
            signer = (
                FastSigner.from_seed(seed)
                if self.fast_crypto
                else deterministic_identity(seed, self.difficulty)
            )
        core = Membership(
            signer,
            address,
            config or self.config,
            self.network_id,
            self.difficulty,
            random.Random(self.rng.getrandbits(64)),
            now=self.now,
            incarnation=incarnation,
            verify=self.verify,
        )
        node = SimNode(address, core, passive=passive)
        self.nodes[address] = node
        self.by_id[core.node_id] = node
        joins = list(join)
        if joins:
            self._apply(node, core.join(self.now, joins))
        self._schedule(node)
        return node

    def join(self, node: SimNode, addresses: Iterable[str]) -> None:
        """Make ``node`` join through ``addresses`` now."""
        self._apply(node, node.core.join(self.now, list(addresses)))
        self._schedule(node)

    def kill(self, address: str) -> None:
        """Crash a node: it stops ticking and answering (its messages in flight still land)."""
        self.nodes[address].up = False

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the network: messages between different groups are dropped.

        Addresses not listed in any group form one extra group together.
        """
        mapping: dict[str, int] = {}
        for gi, g in enumerate(groups):
            for a in g:
                mapping[a] = gi
        self._groups = mapping

    def heal(self) -> None:
        """Remove the partition."""
        self._groups = None

    # ------------------------------------------------------------------ running
    def run_until(self, t: float) -> None:
        """Process events up to virtual time ``t``."""
        events = self._events
        while events and events[0][0] <= t:
            ev = heapq.heappop(events)
            self.now = ev[0]
            self._dispatch(ev[2], ev[3])
        self.now = max(self.now, t)

    def run_until_true(
        self, pred: Callable[[], bool], *, step: float, limit: float
    ) -> float | None:
        """Advance in ``step``s until ``pred()``; returns the time or None after ``limit``."""
        end = self.now + limit
        while self.now < end:
            if pred():
                return self.now
            self.run_until(min(end, self.now + step))
        return self.now if pred() else None

    # ------------------------------------------------------------------ views
    def live_nodes(self) -> list[SimNode]:
        """Nodes that are up and have not left."""
        return [n for n in self.nodes.values() if n.up and not n.core.left]

    def view(self, address: str) -> dict[bytes, MemberState]:
        """``node_id -> state`` as seen by the node at ``address``."""
        return {k: s for k, (s, _) in self.nodes[address].core.state_digest().items()}

    def full_view(self, nodes: Iterable[SimNode] | None = None) -> bool:
        """True when every live node sees every other live node as alive."""
        live = list(self.live_nodes() if nodes is None else nodes)
        ids = {n.node_id for n in live}
        for n in live:
            digest = n.core.state_digest()
            for other in ids:
                if other != n.node_id and digest.get(other, (None, 0))[0] is not MemberState.ALIVE:
                    return False
        return True

    def all_see(self, targets: Iterable[bytes], states: Iterable[MemberState]) -> bool:
        """True when every live node sees each of ``targets`` in one of ``states``."""
        targets = list(targets)
        ok = frozenset(states)
        for n in self.live_nodes():
            digest = n.core.state_digest()
            for t in targets:
                st = digest.get(t)
                if st is None or st[0] not in ok:
                    return False
        return True

    def count_states(self, state: MemberState) -> int:
        """Number of (observer, member) pairs in ``state`` among live observers."""
        return sum(
            1 for n in self.live_nodes() for s, _ in n.core.state_digest().values() if s is state
        )

    # ------------------------------------------------------------------ internals
    def _push(self, t: float, kind: str, *args: object) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, args))

    def _schedule(self, node: SimNode, *, after_tick: bool = False) -> None:
        if not node.up or node.passive:
            return
        d = node.core.next_deadline()
        if after_tick and d <= self.now:
            d = self.now + 1e-4
        d = max(d, self.now)
        if d < node.next_tick:
            node.version += 1
            node.next_tick = d
            self._push(d, "tick", node.address, node.version)

    def _delay(self) -> float:
        lo, hi = self.latency
        return lo + (hi - lo) * self.rng.random()

    def _reachable(self, a: str, b: str) -> bool:
        if self._groups is None:
            return True
        return self._groups.get(a, -1) == self._groups.get(b, -1)

    def _dispatch(self, kind: str, args: tuple[object, ...]) -> None:
        if kind == "tick":
            address, version = args
            node = self.nodes[str(address)]
            if not node.up or version != node.version:
                return
            node.next_tick = math.inf
            self._apply(node, node.core.tick(self.now))
            self._schedule(node, after_tick=True)
        elif kind == "deliver":
            (token,) = args
            self._deliver(int(str(token)))
        elif kind == "reply":
            origin, rid, body = args
            node = self.nodes[str(origin)]
            if node.up:
                assert isinstance(body, bytes) and isinstance(rid, int)
                self._apply(node, node.core.on_reply(self.now, rid, body))
                self._schedule(node)
        elif kind == "fail":
            origin, rid = args
            node = self.nodes[str(origin)]
            if node.up:
                assert isinstance(rid, int)
                self._apply(node, node.core.on_failure(self.now, rid))
                self._schedule(node)

    def _apply(self, node: SimNode, actions: list[Send | Reply]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self._send(node, a)
            else:
                self._reply(node, a)
        if self.record_history:
            for m in node.core.drain_changes():
                self._log(node, m)
        else:
            node.core.drain_changes()

    def _log(self, node: SimNode, m: Member) -> None:
        self.history.append((self.now, node.node_id, m.node_id, m.state.value, m.incarnation))

    def _send(self, node: SimNode, s: Send) -> None:
        self.messages += 1
        token = next(self._tokens)
        self._inflight[token] = _InFlight(
            node.address, s.request_id, self.now, s.timeout, s.address, s.body
        )
        dest = self.nodes.get(s.address)
        if (
            dest is None
            or not self._reachable(node.address, s.address)
            or self.rng.random() < self.loss
        ):
            self.dropped += 1
            self._fail_at_timeout(token)
            return
        self._push(self.now + self._delay(), "deliver", token)

    def _fail_at_timeout(self, token: int) -> None:
        f = self._inflight.pop(token)
        self._push(f.sent + f.timeout, "fail", f.origin, f.request_id)

    def _deliver(self, token: int) -> None:
        f = self._inflight[token]
        dest = self.nodes[f.dest]
        if not dest.up:
            self._fail_at_timeout(token)
            return
        origin = self.nodes[f.origin]
        try:
            body, f.body = f.body, b""
            actions = dest.core.receive(self.now, origin.node_id, body, token)
        except GossipRejected:
            # A refusal travels back like an RPC error status.
            self._inflight.pop(token)
            self._push(self.now + self._delay(), "fail", f.origin, f.request_id)
            return
        self._apply(dest, actions)
        self._schedule(dest)

    def _reply(self, node: SimNode, r: Reply) -> None:
        f = self._inflight.pop(r.token, None)
        if f is None:
            return
        self.messages += 1
        arrival = self.now + self._delay()
        if (
            not self._reachable(node.address, f.origin)
            or self.rng.random() < self.loss
            or arrival > f.sent + f.timeout
        ):
            self.dropped += 1
            self._push(f.sent + f.timeout, "fail", f.origin, f.request_id)
            return
        self._push(arrival, "reply", f.origin, f.request_id, r.body)
