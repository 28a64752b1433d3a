"""Model-vector exchange on the wire: encoding, streaming and decoding of updates.

An update is one flat little-endian float32 tensor (``RAW_LE``); its header (dtype, shape,
size, SHA-256, round) is the body of the signed envelope in the first chunk. Decoding
checks everything against the receiver's own model layout before any number is used:
wrong dtype, wrong shape, wrong size, NaN or Inf are refused with a reason code and never
reach the round engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import torch

from fednode_proto.v1.envelope_pb2 import Envelope
from fednode_proto.v1.training_pb2 import TensorChunk, TensorHeader
from node.wire.update_header import MIN_CHUNK_BYTES, UpdateError, check_header

__all__ = [
    "CHUNK_BYTES",
    "MIN_CHUNK_BYTES",
    "UpdateError",
    "check_header",
    "chunks_for",
    "decode_update",
    "encode_update",
]

CHUNK_BYTES = 1 << 20


def encode_update(
    vector: torch.Tensor,
    *,
    round: int,
    num_samples: int,
    model_hash: str = "",
    base_round: int | None = None,
) -> tuple[TensorHeader, bytes]:
    """Header and payload of a flat float32 vector.

    ``base_round`` is the round of the model the update was computed from [default:
    ``round``]; the asynchronous mode sends its logical clock there beside its version.
    """
    flat = vector.detach().to(torch.float32).reshape(-1).contiguous().numpy()
    payload = flat.astype("<f4", copy=False).tobytes()
    header = TensorHeader(
        format=TensorHeader.RAW_LE,
        dtype="float32",
        shape=[flat.size],
        total_bytes=len(payload),
        payload_sha256=hashlib.sha256(payload).digest(),
        round=round,
        base_round=round if base_round is None else base_round,
        num_samples=num_samples,
        model_hash=model_hash,
    )
    return header, payload


def chunks_for(
    envelope: Envelope, payload: bytes, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[TensorChunk]:
    """The stream: the signed header first, then the payload in ``chunk_bytes`` pieces."""
    yield TensorChunk(header=envelope, data=payload[:chunk_bytes])
    for start in range(chunk_bytes, len(payload), chunk_bytes):
        yield TensorChunk(data=payload[start : start + chunk_bytes])


def decode_update(header: TensorHeader, payload: bytes, expected_numel: int | None) -> torch.Tensor:
    """Check a received update against the header and our layout; return the vector."""
    check_header(header, expected_numel)
    numel = int(header.shape[0])
    if len(payload) != numel * 4:
        raise UpdateError("size_mismatch", f"{len(payload)} bytes for {numel} float32 values")
    array = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    vector = torch.from_numpy(array.copy())
    if not bool(torch.isfinite(vector).all()):
        raise UpdateError("nonfinite", "update contains NaN or Inf")
    return vector
