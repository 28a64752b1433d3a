"""Deterministic seed derivation shared by every node.

Every random choice that must agree across nodes (data partition, model
initialisation, SPSA perturbations) is seeded from the genesis seed plus a
tuple of context values through :func:`derive_seed`. Hashing (rather than
adding or xor-ing integers) keeps nearby contexts, e.g. rounds 3 and 4,
statistically independent.
"""

from __future__ import annotations

import hashlib
import struct

__all__ = ["SEED_BITS", "derive_seed"]

#: Derived seeds are non-negative and below ``2**SEED_BITS``; 63 bits fit both
#: ``torch.Generator.manual_seed`` and numpy's ``default_rng`` without sign issues.
SEED_BITS = 63


def _encode_part(part: int | str | bytes) -> bytes:
    # Type-tagged, length-prefixed encoding so ("ab", "c") and ("a", "bc")
    # never collide and the int 1 differs from the string "1".
    if isinstance(part, bool):
        raise TypeError("derive_seed: bool is not a valid seed component")
    if isinstance(part, int):
        raw = part.to_bytes(16, "little", signed=True)
        tag = b"i"
    elif isinstance(part, str):
        raw = part.encode("utf-8")
        tag = b"s"
    elif isinstance(part, bytes):
        raw = part
        tag = b"b"
    else:
        raise TypeError(f"derive_seed: unsupported component type {type(part).__name__}")
    return tag + struct.pack("<I", len(raw)) + raw


def derive_seed(*parts: int | str | bytes) -> int:
    """Derive a 63-bit seed from a sequence of context values.

    Parameters
    ----------
    *parts
        Integers (any sign, below 2**127 in magnitude), strings or bytes.
        The first part is conventionally a domain label such as ``"spsa"``.

    Returns
    -------
    int
        ``sha256`` of the tagged encoding, first 8 bytes little-endian,
        masked to :data:`SEED_BITS` bits.
    """
    h = hashlib.sha256(b"fednode-seed-v1")
    for part in parts:
        h.update(_encode_part(part))
    return int.from_bytes(h.digest()[:8], "little") & ((1 << SEED_BITS) - 1)
