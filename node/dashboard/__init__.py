"""The per-node web dashboard: peers, accuracy and loss curves, privacy budget, traffic.

Each daemon serves one page on loopback (``dashboard`` setting, default
``127.0.0.1:0``), protected by the operator token. Open the URL that
``fednode testnet up`` prints, or build it from ``daemon.json`` and ``admin.token``::

    http://127.0.0.1:PORT/?token=<contents of admin.token>

The page polls ``/api/state`` every two seconds (schema: :mod:`node.dashboard.state`).
"""

from __future__ import annotations

from .server import DashboardError, DashboardServer
from .state import SCHEMA_VERSION, StatusSource, TrafficHistory, build_state, sample_traffic

__all__ = [
    "SCHEMA_VERSION",
    "DashboardError",
    "DashboardServer",
    "StatusSource",
    "TrafficHistory",
    "build_state",
    "dashboard_url",
    "sample_traffic",
]


def dashboard_url(base_url: str, token: str) -> str:
    """The URL to open: ``base_url`` (``daemon.json``'s ``dashboard``) with the token.

    Parameters
    ----------
    base_url : str
        ``http://HOST:PORT/`` as recorded by the daemon.
    token : str
        The node's operator token (``admin.token``).
    """
    from urllib.parse import quote

    return f"{base_url}?token={quote(token, safe='')}"
