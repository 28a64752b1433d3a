"""Which undecodable request bytes the service calls compressed (node/wire/service.py)."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from fednode_proto.v1.envelope_pb2 import Envelope
from node.wire.service import Undecodable, _tolerant, compression_of


@pytest.mark.parametrize("size", [0, 1, 100, 70_000])
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_every_grpc_compression_is_recognized(size: int, level: int) -> None:
    data = os.urandom(size // 2) + b"\x00" * (size - size // 2)
    assert compression_of(gzip.compress(data, compresslevel=level)) == "gzip"
    assert compression_of(zlib.compress(data, level)) == "deflate"
    for wbits in range(9, 16):  # every zlib window size
        c = zlib.compressobj(level, zlib.DEFLATED, wbits)
        assert compression_of(c.compress(data) + c.flush()) == "deflate"


@pytest.mark.parametrize("data", [b"", b"\x1f", b"\xff" * 64, b"\x78\x00\x01", b"\x08\x01"])
def test_other_bytes_are_not_compressed(data: bytes) -> None:
    assert compression_of(data) is None


def test_only_bytes_that_do_not_parse_are_classified() -> None:
    parse = _tolerant(Envelope.FromString)
    # Valid protobuf that happens to start like a zlib header (field 1 varint 0x08, then a
    # byte making the header checksum divisible by 31) is a message, not compressed data.
    raw = Envelope(version=0x1D).SerializeToString()
    assert compression_of(raw) == "deflate"
    assert isinstance(parse(raw), Envelope)
    gz = parse(gzip.compress(b"\x00" * 512))
    assert isinstance(gz, Undecodable) and gz.compression == "gzip"
    junk = parse(b"\xff" * 8)
    assert isinstance(junk, Undecodable) and junk.compression is None
