"""Per-peer token buckets and address parsing."""

from __future__ import annotations

import pytest

from node.base.address import format_host_port, parse_host_port
from node.base.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_burst_then_rate() -> None:
    clock = Clock()
    rl = RateLimiter(rate=2.0, burst=5, clock=clock)
    assert [rl.allow("a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert rl.allow("b")  # other peers are unaffected
    clock.t = 1.0  # two tokens refilled
    assert [rl.allow("a") for _ in range(3)] == [True, True, False]


def test_bucket_memory_is_bounded() -> None:
    rl = RateLimiter(rate=1.0, burst=1, max_keys=10, clock=Clock())
    for i in range(1000):
        rl.allow(i)
    assert len(rl._buckets) == 10


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:7420", ("127.0.0.1", 7420)), ("[::1]:80", ("::1", 80)), ("host:0", ("host", 0))],
)
def test_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected
    assert parse_host_port(format_host_port(*expected)) == expected


@pytest.mark.parametrize("text", ["nohost", ":80", "h:x", "h:70000", "[::1]80"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(ValueError, match="bad address"):
        parse_host_port(text)
