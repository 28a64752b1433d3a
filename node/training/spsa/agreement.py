"""Which final checkpoint a joining node may trust: the one enough members serve bit for bit.

Final SPSA state is a deterministic function of the signed scalar log, so honest members
at the same final round serve identical checkpoints (same round, same vector bits, same
seed-set digest). ``f`` lying members cannot make ``f + 1`` servers agree on a forgery;
a joiner therefore groups what it was served and takes a group of at least ``f + 1``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Agreement", "ServedCheckpoint", "agreed_checkpoint"]


@dataclass(frozen=True)
class ServedCheckpoint:
    """One member's final checkpoint, already checked (hash, shape, finite).

    Attributes
    ----------
    round : int
        The first round not folded into it.
    vector : torch.Tensor
        The model vector.
    digest : str
        The seed-set digest of the entries folded into it (its metadata says so; ""
        when it carries none).
    """

    round: int
    vector: torch.Tensor
    digest: str


@dataclass(frozen=True)
class Agreement:
    """The group a joiner may take.

    Attributes
    ----------
    index : int
        Position, in the served list, of the group's first checkpoint (any member of the
        group serves the same bits).
    members : int
        How many servers are in the group.
    round : int
        The group's round.
    """

    index: int
    members: int
    round: int


def agreed_checkpoint(served: Sequence[ServedCheckpoint | None], need: int) -> Agreement | None:
    """The latest checkpoint that at least ``need`` servers serve identically, or None.

    Parameters
    ----------
    served : sequence of ServedCheckpoint or None
        What each asked member served; None for one that served nothing usable.
    need : int
        Servers that must agree (``f + 1`` for ``f`` lying members); at least 1.

    Returns
    -------
    Agreement or None
        Of the groups (same round, same vector bits, same digest) of at least ``need``
        servers, the one with the highest ``(round, vector hash, digest)``; None when no
        group is large enough.

    Raises
    ------
    ValueError
        If ``need`` is below 1.
    """
    if need < 1:
        raise ValueError(f"need must be >= 1, got {need}")
    groups: dict[tuple[int, str, str], list[int]] = {}
    for i, ckpt in enumerate(served):
        if ckpt is None:
            continue
        bits = hashlib.sha256(ckpt.vector.detach().cpu().contiguous().numpy().tobytes())
        groups.setdefault((ckpt.round, bits.hexdigest(), ckpt.digest), []).append(i)
    agreed = [key for key, members in groups.items() if len(members) >= need]
    if not agreed:
        return None
    best = max(agreed)
    return Agreement(index=groups[best][0], members=len(groups[best]), round=best[0])
