"""Gossip membership: SWIM failure detection with Lifeguard, signed records, push-pull.

The protocol core (:class:`Membership`) is sans-I/O; :class:`MembershipDriver` runs it
on asyncio over a :class:`GossipTransport` (gRPC in the daemon, in memory in tests) and
:class:`~node.sim.gossip.SimNetwork` runs hundreds of cores on a virtual clock.
Lifeguard's local health (:class:`Awareness`), the suspicion timer (:class:`Suspicion`)
and the transmit-limited :class:`BroadcastQueue` are one mechanism per module, as in
memberlist. See docs/gossip.md.
"""

from .awareness import Awareness
from .broadcast import Broadcast, BroadcastQueue
from .config import PROFILES, GossipConfig
from .core import Action, GossipRejected, Member, Membership, MemberState, Reply, Send
from .driver import MembershipDriver
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
from .topology import RandomRegular, Ring, Topology
from .transport import (
    AsyncMemoryNetwork,
    GossipTransport,
    GossipTransportError,
    MemoryTransport,
    reply_sender_id,
)

__all__ = [
    "MAX_INCARNATION",
    "PROFILES",
    "Action",
    "AsyncMemoryNetwork",
    "Awareness",
    "Broadcast",
    "BroadcastQueue",
    "GossipConfig",
    "GossipRejected",
    "GossipTransport",
    "GossipTransportError",
    "Member",
    "MemberRecord",
    "MemberState",
    "Membership",
    "MembershipDriver",
    "MemoryTransport",
    "RandomRegular",
    "RecordError",
    "RecordVerifier",
    "Reply",
    "Ring",
    "Send",
    "Signer",
    "Statement",
    "StatementKind",
    "Suspicion",
    "Topology",
    "Verify",
    "reply_sender_id",
    "sign_record",
    "sign_statement",
]
