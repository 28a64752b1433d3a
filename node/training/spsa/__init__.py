"""SPSA over scalar gossip, without I/O: the ledger, the seed-set digest and the engine.

- :mod:`~node.training.spsa.digest`: entry keys and the order-independent seed-set digest;
- :mod:`~node.training.spsa.ledger`: :class:`RoundLedger`, the accepted entries and the model
  they determine, bit for bit independent of arrival order;
- :mod:`~node.training.spsa.engine`: :class:`SpsaEngine`, one node's rounds as a state
  machine (messages and clock ticks in, actions out). The daemon drives it
  (:mod:`node.daemon.spsa_runtime`); the signed wire format is :mod:`node.wire.spsa_batch`;
- :mod:`~node.training.spsa.agreement`: :func:`agreed_checkpoint`, which served final
  checkpoint a joining node may trust (enough members serve it bit for bit).
"""

from node.training.spsa.agreement import Agreement, ServedCheckpoint, agreed_checkpoint
from node.training.spsa.digest import SeedSetDigest, digest_of, entry_key, parse_entry_key
from node.training.spsa.engine import (
    DIRECT_PUSH_MAX_MEMBERS,
    MAX_ABS_SCALAR,
    Action,
    CheckedBatch,
    Checkpoint,
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
    SendBatch,
    SpsaEngine,
    SpsaSettings,
)
from node.training.spsa.ledger import RoundLedger

__all__ = [
    "DIRECT_PUSH_MAX_MEMBERS",
    "MAX_ABS_SCALAR",
    "Action",
    "Agreement",
    "CheckedBatch",
    "Checkpoint",
    "CloseRound",
    "ComputeBatch",
    "Finished",
    "JoinRound",
    "LedgerSpec",
    "PeerView",
    "Phase",
    "RefuseBatch",
    "ReplayLog",
    "RequestBatches",
    "RoundLedger",
    "SeedSetDigest",
    "SendBatch",
    "ServedCheckpoint",
    "SpsaEngine",
    "SpsaSettings",
    "agreed_checkpoint",
    "digest_of",
    "entry_key",
    "parse_entry_key",
]
