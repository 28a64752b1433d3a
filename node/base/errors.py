"""Reason-coded errors: one base for every refusal of peer input.

A refused message is counted under a stable reason code (the ``reason`` label of
``fednode_messages_rejected_total``), and some codes say that the authenticated sender
misbehaved (a *fault*: its reputation goes down) while others can happen to an honest peer
that is slow, early, busy or repeating itself under gossip. Each error class declares its
codes, and which of them are faults, where it is defined::

    class UpdateError(ReasonError, ValueError, faults={"bad_shape", "nonfinite"}):
        ...

A subclass inherits its parent's codes and may add more, never change a code from fault to
not fault or back. Constructing an error with a code its class did not declare is a
programming error (:class:`UndeclaredReason`), so a code cannot drift away from the list
that decides reputation, which is what a hand-kept set of fault codes allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

__all__ = ["ReasonError", "UndeclaredReason", "fault_reasons"]

# A reason is a Prometheus label value and a log field: keep it one plain token.
_CODE = re.compile(r"[a-z][a-z0-9_]*")


class UndeclaredReason(TypeError):
    """A :class:`ReasonError` was built or declared with an invalid code (a bug, not input)."""


class ReasonError(Exception):
    """A refusal with a stable ``reason`` code; ``str()`` is a sentence for people.

    Subclasses declare their codes as class keywords: ``faults`` (the authenticated sender
    is to blame) and ``others`` (refused, but no fault of the sender's).

    Parameters
    ----------
    reason
        One of the codes the class declared.
    message
        What was wrong, for logs and the refused peer.

    Attributes
    ----------
    FAULTS : frozenset of str
        Codes of this class that are the sender's fault.
    REASONS : frozenset of str
        Every code of this class (``FAULTS`` included).

    Raises
    ------
    UndeclaredReason
        If ``reason`` is not one of the class's codes.
    """

    FAULTS: ClassVar[frozenset[str]] = frozenset()
    REASONS: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(
        cls, *, faults: Iterable[str] = (), others: Iterable[str] = (), **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        new_faults, new_others = frozenset(faults), frozenset(others)
        bad = sorted(c for c in new_faults | new_others if not _CODE.fullmatch(c))
        if bad:
            raise UndeclaredReason(f"{cls.__name__}: reason codes must be [a-z0-9_]: {bad}")
        inherited_faults: frozenset[str] = frozenset()
        inherited: frozenset[str] = frozenset()
        for base in cls.__mro__[1:]:
            if isinstance(base, type) and issubclass(base, ReasonError):
                inherited_faults |= base.FAULTS
                inherited |= base.REASONS
        inherited_others = inherited - inherited_faults
        both = (new_faults & new_others) | (new_faults & inherited_others)
        both |= new_others & inherited_faults
        if both:
            raise UndeclaredReason(
                f"{cls.__name__}: codes declared both fault and not fault: {sorted(both)}"
            )
        cls.FAULTS = inherited_faults | new_faults
        cls.REASONS = inherited | new_faults | new_others

    def __init__(self, reason: str, message: str) -> None:
        if reason not in type(self).REASONS:
            raise UndeclaredReason(
                f"{type(self).__name__} has no reason code {reason!r} (declared: "
                f"{', '.join(sorted(type(self).REASONS)) or 'none'})"
            )
        super().__init__(message)
        self.reason = reason

    @property
    def fault(self) -> bool:
        """Whether the (authenticated) sender is to blame for this refusal."""
        return self.reason in type(self).FAULTS


def fault_reasons(*classes: type[ReasonError], prefix: str = "") -> frozenset[str]:
    """The fault codes of ``classes``, each with ``prefix`` in front.

    Parameters
    ----------
    *classes
        Error classes whose declared faults to collect.
    prefix
        Put before every code, for a layer that re-labels another's refusals (the service
        counts membership refusals as ``gossip_<reason>``).

    Returns
    -------
    frozenset of str
    """
    out: set[str] = set()
    for cls in classes:
        out.update(prefix + code for code in cls.FAULTS)
    return frozenset(out)
