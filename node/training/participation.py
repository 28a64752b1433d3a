"""Sampled participation (MoDeST-style): who trains and who aggregates in a round.

With ``[rounds] sample_trainers = s`` only a sample of the members works in each round:
``s`` trainers train on their data and release an update, ``a`` aggregators
(``sample_aggregators``, default 2) merge the trainers' updates and send the merged model
to everyone else. The sample is a pure function of the genesis seed, the round and the
sorted member ids, so every node that holds the same member list computes the same sample
without any message. Nodes whose views differ for a while (a join, a death not yet
detected) may disagree for that while; the round timeouts cover it.

Pure, no I/O: :class:`~node.training.sampled.SampledRoundEngine` and the simulations call
these functions.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from node.training.seeding import derive_seed

__all__ = ["RoundSample", "recipients", "sample_round"]


@dataclass(frozen=True)
class RoundSample:
    """The workers of one round (each tuple sorted; disjoint unless only one member)."""

    round: int
    trainers: tuple[str, ...]
    aggregators: tuple[str, ...]

    def trains(self, node_id: str) -> bool:
        """Whether ``node_id`` trains (and releases) in this round."""
        return node_id in self.trainers

    def aggregates(self, node_id: str) -> bool:
        """Whether ``node_id`` merges the trainers' updates in this round."""
        return node_id in self.aggregators


def sample_round(
    seed: int,
    round_idx: int,
    members: Iterable[str],
    trainers: int,
    aggregators: int = 2,
) -> RoundSample:
    """The trainers and aggregators of ``round_idx``.

    Each member gets the rank ``derive_seed("participation", seed, round_idx, member)``;
    the ``trainers`` lowest ranks train and the next ``aggregators`` aggregate. Hashing
    each id (rather than shuffling with a PRNG) makes the draw independent of the order
    and of the Python version, and every member is equally likely to be drawn each round.

    Parameters
    ----------
    seed
        Genesis seed.
    round_idx
        Round (>= 0).
    members
        Member ids (any order; duplicates ignored), the caller included.
    trainers, aggregators
        Wanted sample sizes (>= 1; ``aggregators`` default 2). With fewer members the
        trainers come first: at most ``len(members) - 1`` train so that at least one
        member aggregates; aggregators take what remains. A single member does both.

    Raises
    ------
    ValueError
        No members, an empty id, a negative round or a size below 1.
    """
    # A frozenset, not a sorted tuple: a simulation asks once per node and round, and
    # sorting N ids N times per round made its rounds grow as N^2 log N.
    ids = frozenset(members)
    if not ids:
        raise ValueError("sample_round needs at least one member")
    if "" in ids:
        raise ValueError("member ids must be non-empty strings")
    if round_idx < 0:
        raise ValueError(f"round must be >= 0, got {round_idx}")
    if trainers < 1 or aggregators < 1:
        raise ValueError(f"sample sizes must be >= 1, got {trainers} trainers, {aggregators}")
    return _sample(seed, round_idx, ids, trainers, aggregators)


@functools.lru_cache(maxsize=256)
def _sample(seed: int, round_idx: int, ids: frozenset[str], s: int, a: int) -> RoundSample:
    # Cached: in a simulation every node asks for the same round with the same members.
    if len(ids) == 1:
        only = tuple(ids)
        return RoundSample(round_idx, only, only)
    order = sorted(ids, key=lambda m: (derive_seed("participation", seed, round_idx, m), m))
    s = min(s, len(ids) - 1)
    a = min(a, len(ids) - s)
    return RoundSample(round_idx, tuple(sorted(order[:s])), tuple(sorted(order[s : s + a])))


def recipients(sample: RoundSample, members: Iterable[str], aggregator: str) -> tuple[str, ...]:
    """The members ``aggregator`` sends the round's merged model to.

    The members outside the aggregators, sorted, are dealt round-robin to the sorted
    aggregators, so each member receives the model once per round (total traffic one
    model per member, not one per member and aggregator). A member whose aggregator does
    not answer keeps its model when the round times out.

    Raises
    ------
    ValueError
        ``aggregator`` is not an aggregator of ``sample``.
    """
    if aggregator not in sample.aggregators:
        raise ValueError(f"{aggregator!r} does not aggregate round {sample.round}")
    return _recipients(sample, frozenset(members), aggregator)


@functools.lru_cache(maxsize=256)
def _recipients(sample: RoundSample, members: frozenset[str], aggregator: str) -> tuple[str, ...]:
    # Cached: every node that receives a merged model checks it came from its aggregator.
    slot = sample.aggregators.index(aggregator)
    rest = sorted(members - set(sample.aggregators))
    k = len(sample.aggregators)
    return tuple(rest[slot::k])
