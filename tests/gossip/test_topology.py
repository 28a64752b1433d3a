"""Sampling overlays: symmetric, of the requested degree, seed-dependent."""

from __future__ import annotations

import hashlib

import pytest

from node.gossip import RandomRegular, Ring

IDS = [hashlib.sha256(b"%d" % i).digest() for i in range(40)]


@pytest.mark.parametrize(
    "topo", [Ring(2), Ring(4), RandomRegular(4, seed=1), RandomRegular(6, seed=2)]
)
def test_neighbourhoods_are_symmetric_and_bounded(topo: Ring | RandomRegular) -> None:
    nb = {i: topo.neighbors(i, IDS) for i in IDS}
    for i, ns in nb.items():
        assert i not in ns
        assert 1 <= len(ns) <= topo.degree
        for j in ns:
            assert i in nb[j]  # every node computes the same graph
    assert sum(len(ns) for ns in nb.values()) >= 0.9 * topo.degree * len(IDS)


def test_random_regular_rewires_with_the_seed() -> None:
    a = RandomRegular(4, seed=1).neighbors(IDS[0], IDS)
    b = RandomRegular(4, seed=2).neighbors(IDS[0], IDS)
    assert a != b
    assert RandomRegular(4, seed=1).neighbors(IDS[0], list(reversed(IDS))) == a


def test_bad_degree_is_refused() -> None:
    with pytest.raises(ValueError, match="degree"):
        Ring(1)
    with pytest.raises(ValueError, match="degree"):
        RandomRegular(0)
