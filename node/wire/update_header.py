"""Checks of an update stream's signed header, before any of its body is read.

Kept free of torch and numpy: the service (``node/wire/service.py``) runs these on every
daemon, also on membership-only ones that never load torch (importing it costs seconds
at start and at exit).
"""

from __future__ import annotations

from fednode_proto.v1.training_pb2 import TensorHeader
from node.base.errors import ReasonError

__all__ = ["MIN_CHUNK_BYTES", "UpdateError", "check_header"]

#: A receiver reads at most ``2 + ceil(total_bytes / MIN_CHUNK_BYTES)`` chunks of a stream.
MIN_CHUNK_BYTES = 1 << 16


class UpdateError(
    ReasonError,
    ValueError,
    # The signed header or payload contradicts itself or the network's model: an honest
    # sender never produces one.
    faults={"bad_format", "bad_dtype", "bad_shape", "size_mismatch", "nonfinite"},
):
    """A received update is unusable; ``reason`` is a stable code."""


def check_header(header: TensorHeader, expected_numel: int | None) -> None:
    """Check a signed header against our layout before any body byte is read.

    Raises
    ------
    UpdateError
        ``bad_format``, ``bad_dtype``, ``bad_shape`` or ``size_mismatch`` (declared size is
        not 4 bytes per declared value).
    """
    if header.format != TensorHeader.RAW_LE:
        raise UpdateError("bad_format", f"unsupported tensor format {header.format}")
    if header.dtype != "float32":
        raise UpdateError("bad_dtype", f"updates are float32, got {header.dtype!r}")
    if len(header.shape) != 1:
        raise UpdateError("bad_shape", f"updates are flat vectors, got shape {list(header.shape)}")
    numel = int(header.shape[0])
    if expected_numel is not None and numel != expected_numel:
        raise UpdateError(
            "bad_shape", f"update has {numel} parameters, this model has {expected_numel}"
        )
    if header.total_bytes != numel * 4:
        raise UpdateError(
            "size_mismatch", f"header declares {header.total_bytes} bytes for {numel} values"
        )
