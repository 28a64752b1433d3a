"""The signed SPSA scalar batch on the wire: encode, sign, decode and check.

A batch is signed by its *origin* (the node that computed it), so relays cannot alter it;
the exact signed bytes are :func:`origin_signing_bytes` (documented in docs/spsa.md).
:func:`check_batch` turns a received ``training_pb2.ScalarBatch`` into the pure
:class:`~node.training.spsa.CheckedBatch` the :class:`~node.training.spsa.SpsaEngine`
takes, or raises :class:`~node.wire.service.Rejected` with a reason.
"""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
from google.protobuf.message import DecodeError

from fednode_proto.v1 import training_pb2 as pb
from node.base.identity import Identity, node_id_for, verify_signature
from node.training.learners.spsa import ScalarBatch, ScalarDType, Schedule, seed_id
from node.training.spsa import MAX_ABS_SCALAR, CheckedBatch
from node.wire.service import Rejected
from node.wire.spsa_signing import ORIGIN_DOMAIN, origin_signing_bytes

__all__ = [
    "LEARNER_DTYPES",
    "MAX_ABS_SCALAR",
    "ORIGIN_DOMAIN",
    "WIRE_DTYPES",
    "batch_to_wire",
    "check_batch",
    "have_key",
    "origin_signing_bytes",
    "parse_batch",
    "release_digest",
]

#: Wire dtype name -> the learner's dtype name.
WIRE_DTYPES: dict[str, ScalarDType] = {"int8": "int8", "float16": "fp16", "float32": "fp32"}
#: The learner's dtype name -> wire dtype name.
LEARNER_DTYPES = {v: k for k, v in WIRE_DTYPES.items()}


def release_digest(network_id: bytes, batch: pb.ScalarBatch) -> str:
    """sha256 hex the privacy ledger records for a scalar batch: of its origin-signed bytes.

    Anyone holding the batch recomputes it, so a ledger row binds the debit to the exact
    values that left the node.
    """
    return hashlib.sha256(origin_signing_bytes(network_id, batch)).hexdigest()


def have_key(round_idx: int, origin_hex: str) -> bytes:
    """Key of the batch of ``(round, origin)`` in a pull's have-list (``PullRequest.have``)."""
    return struct.pack("<Q", round_idx) + bytes.fromhex(origin_hex)[:8]


def batch_to_wire(batch: ScalarBatch, identity: Identity, network_id: bytes) -> pb.ScalarBatch:
    """The learner's batch as a signed wire :class:`ScalarBatch` with ``identity`` as origin."""
    out = pb.ScalarBatch(
        origin_id=identity.node_id,
        dtype=LEARNER_DTYPES[batch.dtype],
        scale=float(batch.scale),
        origin_public_key=identity.public_key,
    )
    for st, sid, code in zip(batch.steps, batch.seed_ids, batch.codes.tolist(), strict=True):
        if batch.dtype == "int8":
            out.entries.append(pb.ScalarEntry(seed_id=sid, round=batch.round, step=st, q=int(code)))
        else:
            out.entries.append(
                pb.ScalarEntry(seed_id=sid, round=batch.round, step=st, value=float(code))
            )
    out.origin_signature = identity.sign(origin_signing_bytes(network_id, out))
    return out


def check_batch(
    wire: pb.ScalarBatch,
    *,
    network_id: bytes,
    genesis_seed: int,
    schedule: Schedule,
    dtype: ScalarDType,
    steps_per_round: int,
    max_abs_scalar: float = MAX_ABS_SCALAR,
    verify: bool = True,
) -> CheckedBatch:
    """Check a received scalar batch completely; raise :class:`~node.wire.service.Rejected`.

    Checks, cheapest first: origin key and id (``origin_id = sha256(origin key)``),
    dtype (must be the network's), entry count (``1..steps_per_round``), one round per
    batch, steps in range and unique, int8 codes in ``[-127, 127]``, scale and values
    finite, ``|scalar| <= max_abs_scalar``, the origin's signature, and that every seed
    id is the one derived from ``(genesis seed, round, origin, step)``.

    Parameters
    ----------
    wire : training_pb2.ScalarBatch
    network_id : bytes
        The network the origin signature must be bound to.
    genesis_seed, schedule, dtype, steps_per_round
        The network's SPSA settings.
    max_abs_scalar : float, default MAX_ABS_SCALAR (1e4)
    verify : bool, default True
        Verify the origin signature (False only for batches read back from our own store).
    """
    if len(wire.origin_public_key) != 32 or len(wire.origin_signature) != 64:
        raise Rejected("malformed", "origin public key or signature has the wrong length")
    if node_id_for(wire.origin_public_key) != wire.origin_id:
        raise Rejected("bad_origin_id", "origin id is not the sha256 of the origin public key")
    if wire.dtype not in WIRE_DTYPES:
        raise Rejected("bad_dtype", f"unknown scalar dtype {wire.dtype!r}")
    if WIRE_DTYPES[wire.dtype] != dtype:
        raise Rejected(
            "bad_dtype", f"scalars are {wire.dtype}, network uses {LEARNER_DTYPES[dtype]}"
        )
    n = len(wire.entries)
    if n == 0:
        raise Rejected("bad_shape", "empty scalar batch")
    if n > steps_per_round:
        raise Rejected("oversized", f"{n} entries, at most {steps_per_round} per round")
    rounds = {int(e.round) for e in wire.entries}
    if len(rounds) != 1:
        raise Rejected("bad_shape", "a batch must hold one round")
    steps = [int(e.step) for e in wire.entries]
    if len(set(steps)) != n:
        raise Rejected("duplicate_seed", "batch repeats a step (duplicate seed id)")
    if any(not 0 <= s < steps_per_round for s in steps):
        raise Rejected("unknown_seed", f"step outside [0, {steps_per_round})")
    scale = float(wire.scale)
    if not math.isfinite(scale):
        raise Rejected("nonfinite", "batch scale is NaN or Inf")
    if dtype == "int8":
        if scale <= 0:
            raise Rejected("bad_scalar", "int8 scale must be > 0")
        qs = [int(e.q) for e in wire.entries]
        if any(not -127 <= q <= 127 for q in qs) or any(e.value != 0 for e in wire.entries):
            raise Rejected("bad_dtype", "int8 codes must lie in [-127, 127] with value unset")
        codes = np.asarray(qs, dtype=np.int8)
    else:
        values = np.asarray([e.value for e in wire.entries], dtype=np.float32)
        if not np.isfinite(values).all():
            raise Rejected("nonfinite", "scalar is NaN or Inf")
        if scale != 1.0 or any(e.q != 0 for e in wire.entries):
            raise Rejected("bad_dtype", "float scalars carry scale 1 and no int8 code")
        codes = values.astype(np.float16 if dtype == "fp16" else np.float32)
        if not np.isfinite(codes).all():
            raise Rejected("nonfinite", "scalar overflows float16")
    origin = wire.origin_id.hex()
    learner_batch = ScalarBatch(
        round=rounds.pop(),
        node=origin,
        schedule=schedule,
        dtype=dtype,
        steps=tuple(steps),
        seed_ids=tuple(int(e.seed_id) for e in wire.entries),
        codes=codes,
        scale=scale,
    )
    entries = tuple(learner_batch.entries())
    if any(not math.isfinite(e.scalar) or abs(e.scalar) > max_abs_scalar for e in entries):
        raise Rejected("out_of_bounds", f"|scalar| above {max_abs_scalar:g} or not finite")
    if verify and not verify_signature(
        wire.origin_public_key, wire.origin_signature, origin_signing_bytes(network_id, wire)
    ):
        raise Rejected("bad_origin_signature", "origin signature does not verify")
    for e in entries:
        if e.seed_id != seed_id(genesis_seed, e.round, origin, e.step, schedule):
            raise Rejected(
                "unknown_seed",
                f"seed id {e.seed_id} is not the one of round {e.round} step {e.step} "
                f"for origin {origin[:16]}",
            )
    return CheckedBatch(
        round=learner_batch.round,
        origin=origin,
        batch=learner_batch,
        entries=entries,
        wire=wire.SerializeToString(deterministic=True),
    )


def parse_batch(raw: bytes) -> pb.ScalarBatch:
    """Decode a serialized wire batch (no checks); raises ``Rejected("malformed")``."""
    wire = pb.ScalarBatch()
    try:
        wire.ParseFromString(raw)
    except DecodeError as exc:
        raise Rejected("malformed", "scalar batch does not decode") from exc
    return wire
