"""Overlay topologies that restrict peer sampling (``Membership.sample(topology=...)``).

Every node computes the same graph from the same inputs (the sorted ids of the members it
considers live, plus itself, and a seed), so with converged views the neighbourhoods are
symmetric without any coordination.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RandomRegular", "Ring", "Topology"]


class Topology(Protocol):
    """Maps a node and the set of live ids to the ids it may sample."""

    def neighbors(self, self_id: bytes, ids: Sequence[bytes]) -> frozenset[bytes]:
        """Neighbours of ``self_id`` among ``ids`` (which include ``self_id``)."""
        ...


@dataclass(frozen=True)
class Ring:
    """Each node sees the ``degree // 2`` nodes on either side in sorted-id order.

    Parameters
    ----------
    degree : int, default 2
        Neighbours per node (rounded down to even; at least 2).
    """

    degree: int = 2

    def __post_init__(self) -> None:
        if self.degree < 2:
            raise ValueError(f"ring degree must be >= 2, got {self.degree}")

    def neighbors(self, self_id: bytes, ids: Sequence[bytes]) -> frozenset[bytes]:
        order = sorted(set(ids) | {self_id})
        n = len(order)
        i = order.index(self_id)
        half = self.degree // 2
        out = {order[(i + d) % n] for d in range(-half, half + 1) if d}
        out.discard(self_id)
        return frozenset(out)


@dataclass(frozen=True)
class RandomRegular:
    """Union of ``degree // 2`` random Hamiltonian cycles drawn from ``seed``.

    Every node has ``degree`` neighbours (fewer when cycles share an edge, which is rare
    once there are many more nodes than ``degree``). The cycles depend only on ``seed`` and
    the id set, so a new seed (e.g. per training round) rewires the graph everywhere alike.

    Parameters
    ----------
    degree : int, default 4
    seed : int, default 0
    """

    degree: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.degree < 2:
            raise ValueError(f"random-regular degree must be >= 2, got {self.degree}")

    def neighbors(self, self_id: bytes, ids: Sequence[bytes]) -> frozenset[bytes]:
        order = sorted(set(ids) | {self_id})
        n = len(order)
        digest = hashlib.sha256(self.seed.to_bytes(8, "little", signed=True) + b"".join(order))
        rng = random.Random(digest.digest())
        out: set[bytes] = set()
        for _ in range(max(1, self.degree // 2)):
            perm = order[:]
            rng.shuffle(perm)
            i = perm.index(self_id)
            out.add(perm[(i - 1) % n])
            out.add(perm[(i + 1) % n])
        out.discard(self_id)
        return frozenset(out)
