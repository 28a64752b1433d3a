"""Who this node refuses: the operator's bans and the reputation book's quarantines.

One :class:`PeerPolicy` per daemon. The peer service asks it about every authenticated
sender (:meth:`PeerPolicy.is_operator_banned`, :meth:`PeerPolicy.is_quarantined`),
membership and the learners never sample a peer it refuses (:meth:`PeerPolicy.is_banned`),
and the operator's ``fednode ban`` goes through :meth:`PeerPolicy.ban`. Bans are kept in
the store (the ``banned`` state key and the peer table's flag), so a restart keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.base.logs import log
from node.daemon.reputation import ReputationBook
from node.storage import Store

__all__ = ["PeerPolicy"]

#: Store state key of the operator's ban list (sorted hex node ids).
STATE_BANNED = "banned"


class PeerPolicy:
    """Operator bans plus automatic quarantine, for one node.

    Parameters
    ----------
    store : Store
        Holds the ban list, the peer table and the reputation rows.
    reputation : ReputationBook, optional
        Fault counting and quarantine; default one on ``store`` with its defaults.
    """

    def __init__(self, store: Store, reputation: ReputationBook | None = None) -> None:
        self.store = store
        self.reputation = reputation if reputation is not None else ReputationBook(store)
        self._banned: set[str] = set(store.get_state(STATE_BANNED, []) or [])

    @property
    def banned(self) -> frozenset[str]:
        """Hex node ids the operator banned."""
        return frozenset(self._banned)

    def is_operator_banned(self, node_id: bytes) -> bool:
        """True when the operator banned ``node_id``."""
        return node_id.hex() in self._banned

    def is_quarantined(self, node_id: bytes) -> bool:
        """True while ``node_id`` is quarantined for misbehaving."""
        return self.reputation.is_quarantined(node_id.hex())

    def is_banned(self, node_id: bytes) -> bool:
        """True when the operator banned ``node_id`` or it is quarantined for misbehaving."""
        key = node_id.hex()
        return key in self._banned or self.reputation.is_quarantined(key)

    def fault(self, node_id_hex: str, reason: str) -> None:
        """Charge one authenticated fault to a member (the caller checks membership)."""
        self.reputation.fault(node_id_hex, reason)

    def convict(self, node_id_hex: str, reason: str) -> None:
        """Quarantine ``node_id_hex`` at once (proven misbehaviour, e.g. equivocation)."""
        self.reputation.convict(node_id_hex, reason)

    def resolve(self, prefix: str, known: Iterable[str]) -> str:
        """The one node id starting with ``prefix`` (among ``known``, bans and the peer table).

        A full 64-character id is accepted even when no one knows it (an operator may ban a
        node before it shows up).

        Raises
        ------
        LookupError
            Fewer than 4 characters, no match, or several matches; the message says which.
        """
        prefix = prefix.lower().strip()
        if len(prefix) < 4:
            raise LookupError("give at least 4 hex characters of the node id")
        ids = set(self._banned) | set(known) | {p.node_id for p in self.store.list_peers()}
        matches = sorted(k for k in ids if k.startswith(prefix))
        if not matches and len(prefix) == 64:
            matches = [prefix]
        if len(matches) != 1:
            raise LookupError(
                f"no known node id starts with {prefix}"
                if not matches
                else f"{prefix} is ambiguous ({len(matches)} node ids match)"
            )
        return matches[0]

    def ban(self, prefix: str, unban: bool, known: Iterable[str] = ()) -> str:
        """Ban (or unban) the node named by ``prefix``; return its full hex id.

        Parameters
        ----------
        prefix : str
            At least 4 hex characters of the node id.
        unban : bool
            Lift the ban instead.
        known : iterable of str
            Hex ids of the current members (besides the ban list and the peer table).

        Raises
        ------
        LookupError
            ``prefix`` names no known node or several (see :meth:`resolve`); nothing changes.
        """
        node_id = self.resolve(prefix, known)
        if unban:
            self._banned.discard(node_id)
        else:
            self._banned.add(node_id)
        self.store.set_state(STATE_BANNED, sorted(self._banned))
        self.store.set_banned(node_id, not unban)
        self.store.log_event("unban" if unban else "ban", {"node_id": node_id})
        log.info(
            "operator %s a peer",
            "unbanned" if unban else "banned",
            extra={"fields": {"node_id": node_id[:16]}},
        )
        return node_id
