"""Explain a failed call that looks like a TLS mismatch between this node and a peer.

A plaintext node dialing a TLS-only peer sees only "Socket closed" (the peer drops the
connection after its TLS handshake fails), and a TLS node dialing a plaintext peer sees
"WRONG_VERSION_NUMBER"; either way the node stayed at 0 peers and logged nothing. This
module turns the error into one sentence with the fix; the transport logs it, at most once
per address per :data:`REPEAT_S` seconds.
"""

from __future__ import annotations

__all__ = ["REPEAT_S", "TlsHints", "tls_mismatch_hint"]

#: Seconds before the hint for one address is logged again.
REPEAT_S = 300.0


def tls_mismatch_hint(address: str, details: str, *, tls: bool) -> str | None:
    """A sentence naming the likely TLS mismatch with ``address``, or None.

    Parameters
    ----------
    address : str
        The peer dialed.
    details : str
        The gRPC error's details.
    tls : bool
        Whether this node dials peers over TLS.
    """
    text = details.lower()
    if tls and "wrong_version_number" in text:
        return (
            f"TLS handshake with {address} failed: it speaks plaintext. Every node of a "
            "network must use TLS or none: give that node --tls-cert/--tls-key/--tls-ca "
            "(docs/deploy.md), or drop them here"
        )
    if tls and ("handshake" in text or "certificate" in text):
        return (
            f"TLS handshake with {address} failed ({details.strip()[-160:]}): check that "
            "--tls-ca is the CA that signed its certificate and --tls-server-name "
            "(docs/deploy.md)"
        )
    if not tls and "socket closed" in text:
        return (
            f"{address} closed the connection before answering; if the network uses TLS, "
            "this plaintext node cannot join it: start it with --tls-cert, --tls-key and "
            "--tls-ca (docs/deploy.md)"
        )
    return None


class TlsHints:
    """Rate limit of the hint per address (one line per :data:`REPEAT_S` seconds)."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        self.repeat_s = repeat_s
        self._last: dict[str, float] = {}

    def due(self, address: str, now: float) -> bool:
        """True (and remembered) when the hint for ``address`` may be logged at ``now``."""
        last = self._last.get(address)
        if last is not None and now - last < self.repeat_s:
            return False
        if len(self._last) > 1024:  # bounded: addresses come from the network
            self._last.clear()
        self._last[address] = now
        return True
