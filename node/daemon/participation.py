"""Whether a member takes part in training rounds, as announced in its member record.

A node that will not release any more updates (its privacy budget is spent, its ledger is
unusable) still runs: it keeps its membership, serves checkpoints and merges what reaches
it. But a peer that samples it, pushes to it and waits for its answer would wait a whole
``round_timeout`` every round. So the node says so: it re-signs its member record with the
:data:`NO_RELEASE` capability (at a higher incarnation, so every member takes the new
record), and peers leave it out of their samples and of the origins they wait for.

The marker is negative on purpose: a record without it (every record of a node that
releases, and of nodes built before the marker existed) means "takes part".

A push that reaches such a node before the new record does is answered with a receipt
whose reason starts with :data:`NO_REPLY`, so the pusher stops waiting for it at once.

Pure policy, no I/O: the daemon's membership and runtimes call these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "NO_RELEASE",
    "NO_REPLY",
    "capabilities_for",
    "is_no_reply",
    "releases",
]

#: Capability of a member that releases no updates (it neither pushes nor answers pushes).
NO_RELEASE = "no-release"
#: Reason prefix of an accepted push's receipt when the receiver will not answer it.
NO_REPLY = "no_reply"


def releases(capabilities: Iterable[str]) -> bool:
    """Whether a member with these ``capabilities`` takes part in rounds (sends updates).

    Parameters
    ----------
    capabilities : iterable of str
        The capabilities of the member's signed record.

    Returns
    -------
    bool
        False only when the record carries :data:`NO_RELEASE`.
    """
    return NO_RELEASE not in set(capabilities)


def capabilities_for(base: Sequence[str], *, releasing: bool) -> tuple[str, ...]:
    """This node's capabilities: ``base`` (e.g. the learner kind) plus the release state.

    Parameters
    ----------
    base : sequence of str
        Capabilities that do not depend on the release state; :data:`NO_RELEASE` in it
        is ignored.
    releasing : bool
        Whether this node still releases updates.

    Returns
    -------
    tuple of str
        ``base`` in its order, followed by :data:`NO_RELEASE` when not releasing.
    """
    kept = tuple(c for c in base if c != NO_RELEASE)
    return kept if releasing else (*kept, NO_RELEASE)


def is_no_reply(reason: str) -> bool:
    """Whether a receipt ``reason`` says the receiver will not answer the push."""
    return reason.startswith(NO_REPLY)
