"""The exact bytes an origin signs over an SPSA scalar batch (documented in docs/spsa.md).

Kept apart from :mod:`node.wire.spsa_batch` (which checks a batch against the learner's
schedule and needs the learner, hence torch) so that equivocation evidence
(:mod:`node.wire.equivocation`) can verify a batch in a daemon that never loads torch.
"""

from __future__ import annotations

from fednode_proto.v1 import training_pb2 as pb
from node.base.signing import SigningEncoder

__all__ = ["ORIGIN_DOMAIN", "origin_signing_bytes"]

#: Domain separation of the origin signature over a scalar batch.
ORIGIN_DOMAIN = b"fednode/v1/spsa-batch\x00"


def origin_signing_bytes(network_id: bytes, batch: pb.ScalarBatch) -> bytes:
    """Exact bytes the origin signs (documented in docs/spsa.md).

    ``ORIGIN_DOMAIN || lp(network_id) || lp(origin_id) || lp(dtype) || f32 scale ||
    u32 n || n * (u64 seed_id, u64 round, u32 step, i32 q, f32 value)``, little-endian,
    ``lp`` = u32 length prefix. The network id binds a batch to one network.
    """
    enc = (
        SigningEncoder(ORIGIN_DOMAIN)
        .field(network_id)
        .field(batch.origin_id)
        .text(batch.dtype)
        .pack("fI", batch.scale, len(batch.entries))
    )
    for e in batch.entries:
        enc.pack("QQIif", e.seed_id, e.round, e.step, e.q, e.value)
    return enc.finish()
