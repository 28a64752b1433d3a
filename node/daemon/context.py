"""What a daemon component receives: a :class:`NodeContext` and narrow Protocols.

The :class:`~node.daemon.core.Daemon` builds and owns every component (membership, the
evidence and history exchanges, the learner runtime, the operator replies). None of them
receives the ``Daemon``: each gets the :class:`NodeContext` (what every component needs and
that never changes once the peer server listens) and the few Protocols below that name
exactly what it uses of its siblings. The Protocols are declared here, below the
components, so that a component imports only this module, never the module of the thing
that implements the Protocol, and the package has no import circle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fednode_proto.v1 import admin_pb2, training_pb2
from node.base.identity import Identity
from node.base.metrics import Metrics
from node.base.settings import NodeSettings
from node.gossip import Member
from node.storage import Store
from node.storage.records import LedgerRow
from node.training.genesis import Genesis
from node.wire.peer_channels import PeerChannels

__all__ = [
    "BanList",
    "BatchWitness",
    "Convictor",
    "LearnerRuntime",
    "MembershipView",
    "NodeContext",
    "NodeInfo",
    "PrivacyAccount",
    "ReleaseState",
]

T = TypeVar("T")


@dataclass(frozen=True)
class NodeContext:
    """What every component of one daemon shares (built once the peer server listens).

    Parameters
    ----------
    identity : Identity
        This node's key pair (its proof of work already checked against the genesis).
    genesis : Genesis
        The network definition (its hash is the network id every message carries).
    settings : NodeSettings
        Local settings (limits, torch threads, ...).
    store : Store
        The node's database (open; closed by the daemon after every component stopped).
    metrics : Metrics
        The node's Prometheus metrics.
    channels : PeerChannels
        Outgoing gRPC channels to peers (TLS when the node is configured for it).
    address : str
        The peer address this node advertises.
    tasks : list of asyncio.Task
        The daemon's task list: what :meth:`spawn` starts is cancelled at shutdown.
    """

    identity: Identity
    genesis: Genesis
    settings: NodeSettings
    store: Store
    metrics: Metrics
    channels: PeerChannels
    address: str
    tasks: list[asyncio.Task[Any]] = field(default_factory=list, repr=False)

    @property
    def network_id(self) -> bytes:
        """The genesis hash, carried by every message of this network."""
        return self.genesis.network_id

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Start ``coro`` as a task the daemon cancels (and awaits) when it stops."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    def run_blocking(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run blocking work (SQL, torch) in the loop's default executor."""
        return asyncio.get_running_loop().run_in_executor(None, fn, *args)


@dataclass
class NodeInfo:
    """The daemon's lifecycle facts the operator reads (updated by the daemon only).

    Parameters
    ----------
    started_at : float
        Unix time the daemon object was created.
    state : str
        ``starting``, ``running`` or ``stopping``.
    address, metrics_address, dashboard_address : str
        Where the peer server, ``/metrics`` and the dashboard listen ("" until known or
        when off).
    """

    started_at: float
    state: str = "starting"
    address: str = ""
    metrics_address: str = ""
    dashboard_address: str = ""


class BanList(Protocol):
    """Who this node refuses: operator bans and automatic quarantines."""

    @property
    def banned(self) -> Set[str]:
        """Hex node ids the operator banned."""
        ...

    def is_banned(self, node_id: bytes) -> bool:
        """True when ``node_id`` is banned by the operator or quarantined."""
        ...

    def is_quarantined(self, node_id: bytes) -> bool:
        """True while ``node_id`` is quarantined for misbehaving."""
        ...


class BatchWitness(Protocol):
    """Where SPSA batches received outside the peer service are shown (equivocation).

    The evidence exchange (node/daemon/evidence_gossip.py) implements it; the SPSA runtime
    shows it every batch it pulls, as the service does for every pushed batch.
    """

    def seen_batch(self, batch: training_pb2.ScalarBatch) -> None:
        """Compare ``batch`` with the origin's other batches of its round."""
        ...


class Convictor(Protocol):
    """Where proven misbehaviour is reported (the reputation book quarantines it)."""

    def convict(self, node_id_hex: str, reason: str) -> None:
        """Quarantine ``node_id_hex`` at once for ``reason``."""
        ...


class MembershipView(Protocol):
    """What the learner runtimes, the exchanges and the operator use of membership."""

    def members(self) -> list[Member]:
        """Every member of this node's view, whatever its state."""
        ...

    def get(self, node_id: bytes) -> Member | None:
        """The member ``node_id``, or None when it is not in the view."""
        ...

    def is_member(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is a live (alive or suspect) member."""
        ...

    def standing_s(self, node_id: bytes) -> float | None:
        """Seconds since ``node_id`` entered the view; None if it is not a live member."""
        ...

    def sample(self, k: int) -> list[Member]:
        """Up to ``k`` live, releasing, unbanned members, established ones first."""
        ...

    def takes_part(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is a live member that still releases updates."""
        ...

    def withdrawn(self) -> int:
        """Live members that announced they release no updates."""
        ...

    def set_releasing(self, releasing: bool) -> None:
        """Announce to every member whether this node still releases updates."""
        ...


class PrivacyAccount(Protocol):
    """One scope (node or record) of the privacy ledger, as the operator reads it."""

    @property
    def rows(self) -> Sequence[LedgerRow]:
        """Committed rows of this scope, oldest first."""
        ...

    @property
    def active(self) -> bool:
        """False once this scope stopped releases."""
        ...

    @property
    def reason(self) -> str:
        """Why it stopped ("" while active)."""
        ...

    def spent(self) -> float:
        """Epsilon spent in this scope."""
        ...

    @property
    def steps(self) -> int:
        """Accounted steps in this scope."""
        ...


class ReleaseState(Protocol):
    """What the operator and membership read of the node's release guard.

    :class:`node.daemon.privacy_guard.ReleaseGuard` implements it; that module imports
    torch, which a daemon's operator replies and membership never need.
    """

    @property
    def record_kind(self) -> str | None:
        """The learner's record-level mechanism (``dp_sgd``, ``dp_zo``) or None."""
        ...

    @property
    def rows(self) -> Sequence[LedgerRow]:
        """Every committed ledger row, oldest first."""
        ...

    @property
    def node(self) -> PrivacyAccount:
        """Node-level account."""
        ...

    @property
    def record(self) -> PrivacyAccount:
        """Record-level account."""
        ...

    @property
    def enabled(self) -> bool:
        """Node-level privacy is on."""
        ...

    @property
    def private(self) -> bool:
        """Some differential-privacy guarantee is claimed."""
        ...

    @property
    def releasing(self) -> bool:
        """False once a budget stopped this node's releases."""
        ...

    @property
    def reason(self) -> str:
        """Why releases stopped ("" while releasing)."""
        ...

    def spent(self) -> float:
        """Node-level epsilon spent."""
        ...


class LearnerRuntime(Protocol):
    """A running learner (``TrainingRuntime`` for sgd/flower, ``SpsaRuntime`` for spsa).

    The daemon builds one with the runtime's async factory (fully started), reads it
    through this Protocol, and stops it before leaving the membership.
    """

    @property
    def last_loss(self) -> float:
        """Loss of the last local evaluation (NaN before the first)."""
        ...

    @property
    def guard(self) -> ReleaseState:
        """The node's release guard, as this learner debits it (privacy)."""
        ...

    def fill_status(self, reply: admin_pb2.StatusReply) -> None:
        """Write round, accuracy, model hash and evaluations into ``reply``."""
        ...

    def export(self) -> admin_pb2.ExportReply:
        """The current model (raise LookupError while it is not ready)."""
        ...

    async def stop(self) -> None:
        """Stop training and cancel in-flight work."""
        ...
