"""Entry keys of the SPSA log and the seed-set digest over them.

An entry is one ``(seed id, origin)`` pair; its log key is the string the seed-set digest
(:mod:`node.base.seed_digest`, an order-independent AdHash) hashes, so two nodes that hold
the same set of entries report the same digest whatever order the entries came in.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.base.seed_digest import SeedSetDigest

__all__ = ["SeedSetDigest", "digest_of", "entry_key", "parse_entry_key"]


def entry_key(seed: int, origin: str) -> str:
    """Log key of one entry: ``"<seed id as 16 hex>:<origin hex>"``.

    The origin is part of the key so the ``shared`` seed schedule (one seed, many nodes)
    stores one row per node; this string is also what the seed-set digest hashes.
    """
    return f"{seed:016x}:{origin}"


def parse_entry_key(key: str) -> tuple[int, str]:
    """Inverse of :func:`entry_key`; raises ValueError on a malformed key."""
    seed_hex, sep, origin = key.partition(":")
    if not sep or len(seed_hex) != 16 or not origin:
        raise ValueError(f"malformed SPSA log key {key!r}")
    return int(seed_hex, 16), origin


def digest_of(keys: Iterable[tuple[int, str]]) -> str:
    """Seed-set digest of ``(seed id, origin)`` keys."""
    return SeedSetDigest(entry_key(s, o) for s, o in keys).hexdigest()
