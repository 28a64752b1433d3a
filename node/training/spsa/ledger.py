"""The SPSA scalar ledger: accepted entries and the model they determine.

The model is ``genesis init - lr/N * sum(scalar * z(seed))`` over every accepted entry.
Mathematically that is order independent; float addition is not. So the model is kept a
pure function of the *set* of entries: rounds are applied in increasing order and, inside
a round, in sorted ``(seed id, origin)`` order (:func:`~node.training.learners.spsa.apply_scalars`).
:class:`RoundLedger` keeps one snapshot per open round (``W_r`` = everything of rounds
``< r`` applied); an entry that arrives after its round closed marks that round dirty and
the snapshots from there on are recomputed, so arrival order never shows in the bits.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch

from node.training.learners.spsa import (
    Distribution,
    ScalarEntry,
    Schedule,
    apply_scalars,
    combine_shared,
)
from node.training.spsa.digest import SeedSetDigest, entry_key

__all__ = ["RoundLedger"]


class RoundLedger:
    """Accepted SPSA entries and the model they determine, independent of arrival order.

    ``vector()`` is ``base`` with every entry of the rounds ``base_round <= r < frontier``
    applied, round by round, each round in sorted ``(seed id, origin)`` order. Entries of
    rounds ``< base_round`` are *folded* into ``base`` (only their keys are kept, for the
    digest and duplicate detection); entries of rounds ``>= frontier`` wait for their round
    to close.

    Parameters
    ----------
    base : torch.Tensor
        Model of round ``base_round`` (the genesis initialisation for round 0).
    lr : float
        Learning rate.
    weight : float
        Factor on every per-node scalar (``1/num_nodes``: the rounds' steps are averaged).
    distribution : str
        Perturbation distribution.
    schedule : str, default "per_node"
        ``shared`` combines each seed's scalars with ``shared_rule`` (weight not applied).
    shared_rule : str, default "mean"
    shared_trim : int, default 0
    base_round : int, default 0
    """

    def __init__(
        self,
        base: torch.Tensor,
        *,
        lr: float,
        weight: float,
        distribution: Distribution,
        schedule: Schedule = "per_node",
        shared_rule: str = "mean",
        shared_trim: int = 0,
        base_round: int = 0,
    ) -> None:
        self.lr = lr
        self.weight = weight
        self.distribution: Distribution = distribution
        self.schedule: Schedule = schedule
        self.shared_rule = shared_rule
        self.shared_trim = shared_trim
        self.base_round = base_round
        self.frontier = base_round
        self._snapshots: dict[int, torch.Tensor] = {
            base_round: base.detach().clone().to(torch.float32)
        }
        self._rounds: dict[int, dict[tuple[int, str], ScalarEntry]] = {}
        # Origins per round, kept as entries come: the engine asks on every clock tick,
        # and a round of 1,024 nodes holds 16,384 entries.
        self._origins: dict[int, set[str]] = {}
        self._keys: set[tuple[int, str]] = set()
        self._all = SeedSetDigest()
        self._folded = SeedSetDigest()
        self._dirty: int | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def has(self, key: tuple[int, str]) -> bool:
        """True when the entry ``(seed id, origin)`` was accepted before."""
        return key in self._keys

    def add(self, entries: Iterable[ScalarEntry], *, folded: bool = False) -> int:
        """Record entries (known keys are skipped); returns how many were new.

        ``folded=True`` records entries of rounds ``< base_round`` whose effect is already
        in the base (catch-up from a checkpoint, restart): only their keys are kept.
        Anything else must belong to a round ``>= base_round``.
        """
        added = 0
        for e in entries:
            if e.key in self._keys:
                continue
            if folded:
                if e.round >= self.base_round:
                    raise ValueError(f"round {e.round} is not folded into base {self.base_round}")
                self._folded.add(entry_key(*e.key))
            else:
                if e.round < self.base_round:
                    raise ValueError(f"round {e.round} is final (base {self.base_round})")
                self._rounds.setdefault(e.round, {})[e.key] = e
                self._origins.setdefault(e.round, set()).add(e.node)
                if e.round < self.frontier:
                    self._dirty = e.round if self._dirty is None else min(self._dirty, e.round)
            self._keys.add(e.key)
            self._all.add(entry_key(*e.key))
            added += 1
        return added

    def newest_round(self) -> int:
        """Highest round holding an entry (``frontier - 1`` when none is open)."""
        return max(self._rounds, default=self.frontier - 1)

    def rounds(self) -> list[int]:
        """Rounds holding at least one entry that is not folded into the base."""
        return list(self._rounds)

    def origins(self, round_idx: int) -> set[str]:
        """Origins with at least one entry in ``round_idx``."""
        return set(self._origins.get(round_idx, ()))

    def close_through(self, round_idx: int) -> None:
        """Close every round ``<= round_idx``: they become part of :meth:`vector`."""
        if round_idx + 1 > self.frontier:
            self._dirty = self.frontier if self._dirty is None else min(self._dirty, self.frontier)
            self.frontier = round_idx + 1

    def _apply_round(self, vector: torch.Tensor, round_idx: int) -> torch.Tensor:
        entries = sorted(self._rounds.get(round_idx, {}).values(), key=lambda e: e.key)
        if not entries:
            return vector.clone()
        if self.schedule == "shared":
            pairs = combine_shared(entries, self.shared_rule, self.shared_trim)
            return apply_scalars(vector, pairs, self.lr, distribution=self.distribution)
        return apply_scalars(
            vector, entries, self.lr, distribution=self.distribution, weight=self.weight
        )

    def vector(self) -> torch.Tensor:
        """The model after every closed round (a view: do not modify it)."""
        if self._dirty is not None:
            for r in range(max(self._dirty, self.base_round), self.frontier):
                self._snapshots[r + 1] = self._apply_round(self._snapshots[r], r)
            self._dirty = None
        return self._snapshots[self.frontier]

    def finalize_before(self, round_idx: int) -> bool:
        """Make rounds ``< round_idx`` final (``round_idx <= frontier``); True if base moved."""
        round_idx = min(round_idx, self.frontier)
        if round_idx <= self.base_round:
            return False
        self.vector()
        for r in range(self.base_round, round_idx):
            self._origins.pop(r, None)
            for key in self._rounds.pop(r, {}):
                self._folded.add(entry_key(*key))
            self._snapshots.pop(r, None)
        self.base_round = round_idx
        return True

    @property
    def base(self) -> torch.Tensor:
        """The model of ``base_round`` (every final round applied)."""
        self.vector()
        return self._snapshots[self.base_round]

    def digest(self) -> str:
        """Seed-set digest of every accepted entry (:mod:`node.base.seed_digest` definition)."""
        return self._all.hexdigest()

    def folded_digest(self) -> str:
        """Digest of the entries folded into :attr:`base` (rounds ``< base_round``)."""
        return self._folded.hexdigest()

    def digest_through(self, round_idx: int) -> str:
        """Digest of every accepted entry of rounds ``<= round_idx`` (``>= base_round - 1``).

        Nodes that closed round ``round_idx`` with the same entry set report the same value
        whatever they hold of later rounds, so it compares nodes that are at different
        rounds (the full :meth:`digest` differs while a round is open).
        """
        if round_idx < self.base_round - 1:
            raise ValueError(f"round {round_idx} is folded into base {self.base_round}")
        acc = copy.copy(self._folded)
        for r in range(self.base_round, round_idx + 1):
            acc.update(entry_key(*key) for key in self._rounds.get(r, {}))
        return acc.hexdigest()

    def entries_since(self, round_idx: int) -> list[ScalarEntry]:
        """Held (not folded) entries of rounds ``>= round_idx``, by (round, key)."""
        out = [e for r, d in self._rounds.items() if r >= round_idx for e in d.values()]
        return sorted(out, key=lambda e: (e.round, e.key))
