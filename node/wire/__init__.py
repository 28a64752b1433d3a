"""Everything that knows gRPC or protobuf.

Signed envelopes (``envelope``), the update stream format (``exchange``,
``update_header``), the peer-facing service (``service``) and its request admission
(``admission``), peer channels (``peer_channels``), the operator API server and client
(``admin_server``, ``admin_client``), TLS material (``certs``, ``tls_hint``) and
equivocation evidence (``equivocation``). Never imports the daemon.
"""

from node.wire.admin_client import AdminClient, AdminUnavailable
from node.wire.admin_server import AdminBackend, AdminService
from node.wire.peer_channels import PeerCallError, PeerChannels

__all__ = [
    "AdminBackend",
    "AdminClient",
    "AdminService",
    "AdminUnavailable",
    "PeerCallError",
    "PeerChannels",
]
