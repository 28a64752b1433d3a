"""Order-independent digest of a set of SPSA seed ids.

Every node applies the same SPSA steps in whatever order they arrive; two nodes agree when
they applied the same *set* of seed ids. The digest is an additive multiset hash (AdHash):

    acc    = sum over ids of int(sha256(b"fednode/spsa-seed/v1\\x00" + id.utf8)) mod 2**256
    digest = sha256(b"fednode/spsa-digest/v1\\x00" + count.to_bytes(8, "big")
                    + acc.to_bytes(32, "big")).hexdigest()

It is incremental (adding one id is O(1), so the sans-I/O training core can keep it up to
date in memory), independent of database collation, and binds the count. It is meant for
agreement checks between honest nodes, not as a commitment against an adversary who picks
seed ids freely (AdHash admits generalized-birthday collisions); seed ids in fednode are
derived from the genesis seed, round, node id and step, which limits that freedom.

It lives in ``base`` because two layers that may not import each other use it: the SPSA
ledger (``node.training.spsa``) keeps it in memory, the store (``node.storage``) computes it
from SQL rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["EMPTY_SEED_SET_DIGEST", "SeedSetDigest", "seed_set_digest"]

_ITEM_DOMAIN = b"fednode/spsa-seed/v1\x00"
_FINAL_DOMAIN = b"fednode/spsa-digest/v1\x00"
_MOD = 2**256


class SeedSetDigest:
    """Running digest of a set of seed ids; ``add`` each id exactly once."""

    __slots__ = ("_acc", "_count")

    def __init__(self, seed_ids: Iterable[str] = ()) -> None:
        self._acc = 0
        self._count = 0
        self.update(seed_ids)

    @property
    def count(self) -> int:
        """Number of ids added."""
        return self._count

    def add(self, seed_id: str) -> None:
        """Add one seed id (the caller guarantees it was not added before)."""
        if not isinstance(seed_id, str) or not seed_id:
            raise ValueError(f"seed id must be a non-empty str, got {seed_id!r}")
        item = hashlib.sha256(_ITEM_DOMAIN + seed_id.encode("utf-8")).digest()
        self._acc = (self._acc + int.from_bytes(item, "big")) % _MOD
        self._count += 1

    def update(self, seed_ids: Iterable[str]) -> None:
        """Add every id of ``seed_ids``."""
        for seed_id in seed_ids:
            self.add(seed_id)

    def hexdigest(self) -> str:
        """64-hex digest of the set so far."""
        body = _FINAL_DOMAIN + self._count.to_bytes(8, "big") + self._acc.to_bytes(32, "big")
        return hashlib.sha256(body).hexdigest()


def seed_set_digest(seed_ids: Iterable[str]) -> str:
    """Digest of the set ``seed_ids`` (see the module docstring for the definition)."""
    return SeedSetDigest(seed_ids).hexdigest()


EMPTY_SEED_SET_DIGEST = seed_set_digest(())
