"""Who may make this node do work: one admission decision for every inbound path.

Pure policy, no I/O. The service layer (``node/wire/service.py``) asks :func:`decide` once per
authenticated request (after the envelope's signature, network and replay checks, before
any body is read or any learner sees it) and refuses with the returned reason code.

A sender is admitted when it is

- not banned by the operator (``banned``),
- not quarantined for misbehaving (``quarantined``, see ``node/daemon/reputation.py``),
- a live member of this node's view (``not_member`` otherwise). Entering the view already
  required a valid proof of work at the network's difficulty and a signed record
  (``node/gossip/``), so a freshly generated key that never joined is refused here;
- for a few kinds, a member for at least ``min_standing_s`` seconds (``no_standing``).
  Zero by default for every kind: testnets start nodes within a second of each other.

Membership gossip (kind ``gossip``) is not decided here: it is how identities become
members, and ``node/gossip/`` checks proof of work and records itself.

Near-simultaneous start-up: an honest node's first update can reach a peer that has not yet
learned of it through gossip. Such a push is refused with ``not_member`` (it is not a
fault and never lowers a reputation); the sender retries it a few times within the round
(``node/daemon/training_runtime.py``) and otherwise joins the next round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ADMISSION_REASONS",
    "AdmissionPolicy",
    "Admit",
    "Decision",
    "MembershipView",
    "Refuse",
    "SenderFacts",
    "decide",
]

#: Every reason code :func:`decide` can return (stable, used in metrics and replies).
ADMISSION_REASONS = frozenset({"banned", "quarantined", "not_member", "no_standing"})


class MembershipView(Protocol):
    """The narrow part of membership that admission needs (``DaemonMembership`` has it)."""

    def is_member(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is a live (alive or suspect) member of this node's view."""
        ...

    def standing_s(self, node_id: bytes) -> float | None:
        """Seconds since ``node_id`` entered the view; None if it is not a live member."""
        ...


@dataclass(frozen=True)
class SenderFacts:
    """What is known about an authenticated sender when its request arrives.

    Parameters
    ----------
    member : bool
        Live member of this node's view.
    standing_s : float or None
        Seconds since it entered the view (None when not a member).
    banned : bool
        Banned by the operator.
    quarantined : bool
        Quarantined by the reputation book.
    """

    member: bool
    standing_s: float | None
    banned: bool
    quarantined: bool


@dataclass(frozen=True)
class Admit:
    """The request may be processed."""


@dataclass(frozen=True)
class Refuse:
    """The request is refused; ``reason`` is one of :data:`ADMISSION_REASONS`."""

    reason: str
    message: str


Decision = Admit | Refuse


@dataclass(frozen=True)
class AdmissionPolicy:
    """Parameters of admission.

    Parameters
    ----------
    min_standing_s : mapping of str to float, default empty
        Per message kind (``update``, ``request``, ``spsa``, ``history``, ``evidence``),
        the seconds a sender must have been a member before its messages of that kind are
        processed. Kinds not listed need none.
    """

    min_standing_s: Mapping[str, float] = field(default_factory=dict)


def decide(kind: str, facts: SenderFacts, policy: AdmissionPolicy | None = None) -> Decision:
    """Admit or refuse one authenticated request of ``kind`` from a sender.

    Parameters
    ----------
    kind : str
        The envelope kind (``update``, ``request``, ``spsa``, ``history``, ``evidence``).
    facts : SenderFacts
        The sender's state, gathered by the caller.
    policy : AdmissionPolicy, optional
        Defaults to :class:`AdmissionPolicy()` (no standing needed).

    Returns
    -------
    Admit or Refuse
        The first failing check in the order banned, quarantined, not_member,
        no_standing.
    """
    policy = policy or AdmissionPolicy()
    if facts.banned:
        return Refuse("banned", "sender is banned here")
    if facts.quarantined:
        return Refuse("quarantined", "sender is quarantined for misbehaving")
    if not facts.member:
        return Refuse("not_member", "sender is not a member of this node's view")
    need = policy.min_standing_s.get(kind, 0.0)
    if need > 0 and (facts.standing_s is None or facts.standing_s < need):
        have = 0.0 if facts.standing_s is None else facts.standing_s
        return Refuse(
            "no_standing", f"sender has been a member {have:.1f}s, {kind} needs {need:g}s"
        )
    return Admit()
