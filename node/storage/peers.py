"""Peer table operations of the store (membership view persisted across restarts)."""

from __future__ import annotations

import time

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from node.storage.core import StoreCore, check_hex
from node.storage.models import PeerRow
from node.storage.records import PeerRecord

__all__ = ["PEER_STATES", "PeerStore"]

PEER_STATES = frozenset({"alive", "suspect", "dead", "left"})


class PeerStore(StoreCore):
    """Peers: upsert from gossip, list, ban."""

    @staticmethod
    def _peer_record(row: PeerRow) -> PeerRecord:
        return PeerRecord(
            node_id=row.node_id,
            address=row.address,
            public_key=bytes(row.public_key),
            pow_nonce=row.pow_nonce,
            incarnation=row.incarnation,
            state=row.state,
            last_seen=row.last_seen,
            rtt_ms=row.rtt_ms,
            first_seen=row.first_seen,
            banned=row.banned,
            capabilities=dict(row.capabilities or {}),
        )

    def upsert_peer(self, peer: PeerRecord) -> PeerRecord:
        """Insert a peer or update it in place.

        An update changes address, key, nonce, incarnation, state, last_seen, rtt and
        capabilities; it never touches ``first_seen`` or ``banned`` (use :meth:`set_banned`).

        Returns
        -------
        PeerRecord
            The peer as stored.

        Raises
        ------
        ValueError
            On a malformed node id, an unknown state or a nonce outside ``[0, 2**64)``.
        """
        check_hex("peer node_id", peer.node_id)
        if peer.state not in PEER_STATES:
            raise ValueError(f"peer state must be one of {sorted(PEER_STATES)}, got {peer.state!r}")
        if not 0 <= peer.pow_nonce < 2**64:
            raise ValueError(f"peer pow_nonce {peer.pow_nonce} is outside [0, 2**64)")
        now = time.time()

        def work(s: Session) -> PeerRecord:
            row = s.get(PeerRow, peer.node_id)
            last_seen = now if peer.last_seen is None else float(peer.last_seen)
            if row is None:
                row = PeerRow(
                    node_id=peer.node_id,
                    first_seen=peer.first_seen if peer.first_seen is not None else last_seen,
                    banned=peer.banned,
                )
                s.add(row)
            row.address = peer.address
            row.public_key = bytes(peer.public_key)
            row.pow_nonce = peer.pow_nonce
            row.incarnation = peer.incarnation
            row.state = peer.state
            row.last_seen = last_seen
            row.rtt_ms = peer.rtt_ms
            row.capabilities = dict(peer.capabilities)
            s.flush()
            return self._peer_record(row)

        return self._write(work)

    def get_peer(self, node_id: str) -> PeerRecord | None:
        """The peer with ``node_id``, or None."""
        with self._read() as s:
            row = s.get(PeerRow, node_id)
            return None if row is None else self._peer_record(row)

    def list_peers(
        self, *, state: str | None = None, include_banned: bool = True
    ) -> list[PeerRecord]:
        """Every known peer ordered by node id, optionally filtered.

        Parameters
        ----------
        state : str or None, default None
            Only peers in this membership state.
        include_banned : bool, default True
            False drops banned peers.
        """
        stmt = select(PeerRow).order_by(PeerRow.node_id)
        if state is not None:
            stmt = stmt.where(PeerRow.state == state)
        if not include_banned:
            stmt = stmt.where(PeerRow.banned.is_(False))
        with self._read() as s:
            return [self._peer_record(r) for r in s.scalars(stmt)]

    def set_banned(self, node_id: str, banned: bool = True) -> bool:
        """Ban or unban a known peer; returns False when the peer is unknown."""

        def work(s: Session) -> bool:
            result = s.execute(
                update(PeerRow).where(PeerRow.node_id == node_id).values(banned=banned)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

        return self._write(work)

    def delete_peer(self, node_id: str) -> bool:
        """Forget a peer (e.g. evicted from a bounded member table); False if unknown."""

        def work(s: Session) -> bool:
            result = s.execute(delete(PeerRow).where(PeerRow.node_id == node_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]

        return self._write(work)
