"""The one encoder for every signed payload.

A fednode signature never covers a protobuf serialization (its bytes are not canonical);
it covers an explicit layout that any implementation can rebuild from the protocol
documents: a NUL-terminated domain tag, then the fields in a fixed order, little-endian.
Variable-length byte strings are prefixed with their length as a u32 (:func:`lp`),
numbers are packed at fixed width, and a large body enters through its SHA-256 so it is
hashed once. Every signer (envelopes, member records, statements, history reports, SPSA
batches) builds its bytes with :class:`SigningEncoder`, so the layout rules are written
once.

Example
-------
>>> SigningEncoder(b"ex\\x00").field(b"ab").pack("B", 7).finish()
b'ex\\x00\\x02\\x00\\x00\\x00ab\\x07'
"""

from __future__ import annotations

import hashlib
import struct

__all__ = ["SigningEncoder", "lp"]

_LEN = struct.Struct("<I")
_MAX_FIELD = 2**32 - 1


def lp(data: bytes) -> bytes:
    """``data`` prefixed with its length as a little-endian u32.

    Parameters
    ----------
    data
        The byte string to frame.

    Returns
    -------
    bytes
        ``u32 len(data) || data``.

    Raises
    ------
    ValueError
        If ``data`` is longer than a u32 can count (the prefix would be ambiguous).
    """
    if len(data) > _MAX_FIELD:
        raise ValueError(f"signed field of {len(data)} bytes does not fit a u32 length prefix")
    return _LEN.pack(len(data)) + data


class SigningEncoder:
    """Builds the exact bytes a signature covers, field by field.

    Each method appends one field and returns the encoder, so a layout reads as one
    chain in the order of its documentation.

    Parameters
    ----------
    domain
        Domain-separation tag, e.g. ``b"fednode/v1/envelope\\x00"``. It must end in NUL:
        then no tag is a prefix of another and a signature made for one kind of payload
        can never verify as another.

    Raises
    ------
    ValueError
        If ``domain`` is empty or does not end in NUL.
    """

    __slots__ = ("_parts",)

    def __init__(self, domain: bytes) -> None:
        if len(domain) < 2 or not domain.endswith(b"\x00") or b"\x00" in domain[:-1]:
            raise ValueError(f"signing domain {domain!r} must be a tag ending in one NUL")
        self._parts: list[bytes] = [domain]

    def field(self, data: bytes) -> SigningEncoder:
        """Append a variable-length byte string, length-prefixed (see :func:`lp`)."""
        self._parts.append(lp(data))
        return self

    def text(self, value: str) -> SigningEncoder:
        """Append a string as length-prefixed UTF-8."""
        return self.field(value.encode("utf-8"))

    def pack(self, fmt: str, *values: int | float) -> SigningEncoder:
        """Append fixed-width numbers, little-endian (``fmt`` is a :mod:`struct` format
        without byte-order character, e.g. ``"QQq"``).

        Raises
        ------
        ValueError
            If ``fmt`` carries its own byte-order character (the layout is always
            little-endian, standard sizes) or a value does not fit its field.
        """
        if fmt[:1] in ("@", "=", "<", ">", "!"):
            raise ValueError(f"struct format {fmt!r}: byte order is fixed, give none")
        try:
            self._parts.append(struct.pack("<" + fmt, *values))
        except struct.error as exc:
            raise ValueError(f"signed fields {fmt!r} {values!r}: {exc}") from None
        return self

    def digest(self, data: bytes) -> SigningEncoder:
        """Append the 32-byte SHA-256 of ``data`` (for bodies too large to sign inline)."""
        self._parts.append(hashlib.sha256(data).digest())
        return self

    def finish(self) -> bytes:
        """The encoded bytes so far (the encoder stays usable)."""
        return b"".join(self._parts)
