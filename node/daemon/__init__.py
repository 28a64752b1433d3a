"""The daemon: the only owner of asyncio tasks and sockets.

:class:`Daemon` (``core``) builds and owns every component: membership, the learner
runtime (``training_runtime`` or ``spsa_runtime``, which drive the sans-I/O engines of
``node.training``), the operator replies (``runtime``), history and evidence gossip,
catch-up, and the dashboard. :class:`ReleaseGuard` (``privacy_guard``) debits the
privacy ledger durably before anything leaves the node; ``fednode simulate`` releases
through the same guard.

The face is lazy (:func:`node.base.lazy_face.lazy_face`): the release guard loads torch,
and importing the daemon's modules in one go from here would run into its remaining
import circle (tests/test_layers.py lists it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.base.lazy_face import lazy_face

if TYPE_CHECKING:
    from node.daemon.core import Daemon, DaemonError
    from node.daemon.privacy_guard import ReleaseGuard, ReleaseRefused

__all__ = ["Daemon", "DaemonError", "ReleaseGuard", "ReleaseRefused"]

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "node.daemon.core": ("Daemon", "DaemonError"),
        "node.daemon.privacy_guard": ("ReleaseGuard", "ReleaseRefused"),
    },
)
