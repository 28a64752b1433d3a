"""The broadcast queue: membership updates waiting to ride on outgoing messages.

Every change (an alive record, a suspect/dead/left statement) is queued under the id of
the member it is about; a newer change about the same member replaces the older one. Each
message piggybacks the updates sent least often so far, newest first among equals, within
a count and a byte budget, and an update is dropped once it has been sent ``limit`` times
(``retransmit_mult * ceil(log10(n + 1))``: enough for an epidemic to reach everyone with
high probability). As memberlist's ``queue.go`` (``TransmitLimitedQueue``), over
pre-encoded bytes so the queue knows nothing of protobuf.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["Broadcast", "BroadcastQueue"]


@dataclass(slots=True)
class Broadcast:
    """One queued update.

    Attributes
    ----------
    wire : bytes
        The update as sent (pre-encoded).
    size : int
        ``len(wire)``.
    transmits : int
        Times it was piggybacked so far.
    order : int
        Queue order (higher is newer).
    source : bytes or None
        Member this node learned it from (None: this node's own).
    about : bytes or None
        For an alive record, the member it describes (its owner has it already).
    """

    wire: bytes
    size: int
    transmits: int
    order: int
    source: bytes | None
    about: bytes | None


class BroadcastQueue(Mapping[bytes, Broadcast]):
    """Transmit-limited updates keyed by the member they are about.

    A read-only mapping ``key -> Broadcast`` for inspection; change it with
    :meth:`enqueue`, :meth:`discard` and :meth:`take`.
    """

    __slots__ = ("_items", "_order")

    def __init__(self) -> None:
        self._items: dict[bytes, Broadcast] = {}
        self._order = 0

    def __getitem__(self, key: bytes) -> Broadcast:
        return self._items[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def enqueue(
        self, key: bytes, wire: bytes, *, source: bytes | None, about: bytes | None
    ) -> None:
        """Queue ``wire`` about ``key``, replacing any update queued about it before."""
        self._order += 1
        self._items[key] = Broadcast(wire, len(wire), 0, self._order, source, about)

    def discard(self, key: bytes) -> None:
        """Drop the update about ``key``, if any."""
        self._items.pop(key, None)

    def take(
        self, *, max_count: int, budget: int, limit: int, to: bytes | None = None
    ) -> list[bytes]:
        """Updates for one message, counting each as transmitted once more.

        Parameters
        ----------
        max_count : int
            At most this many updates.
        budget : int
            Their sizes sum to at most this many bytes; an update that does not fit is
            skipped and a smaller one after it may still go.
        limit : int
            An update sent this many times is dropped from the queue.
        to : bytes, optional
            The receiver: updates it told us, and its own alive record, are not sent back
            to it (they would spend one of their few transmissions on a member that has
            them already).

        Returns
        -------
        list of bytes
            The chosen updates, least transmitted first, newest first among equals.
        """
        out: list[bytes] = []
        chosen = sorted(self._items.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        for key, b in chosen:
            if len(out) >= max_count:
                break
            if b.size > budget:
                continue
            if to is not None and (b.source == to or b.about == to):
                continue
            out.append(b.wire)
            budget -= b.size
            b.transmits += 1
            if b.transmits >= limit:
                del self._items[key]
        return out
