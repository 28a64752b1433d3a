"""Everything that knows gRPC or protobuf; never imports the daemon.

- :mod:`~node.wire.envelope`: signed envelopes, sequence numbers, replay checks.
- :mod:`~node.wire.exchange`, :mod:`~node.wire.update_header`: the update stream
  format (raw little-endian tensors in chunks, headers checked before any work).
- :mod:`~node.wire.service`: the peer-facing gRPC service; the daemon plugs its
  handlers in through the Protocols declared there.
- :mod:`~node.wire.admission`: request admission, one decision with a reason per
  refusal (member, banned, quarantined, standing).
- :mod:`~node.wire.peer_channels`: channels to peers (and the gossip transport over them).
- :mod:`~node.wire.admin_server`, :mod:`~node.wire.admin_client`: the operator API.
- :mod:`~node.wire.certs`, :mod:`~node.wire.tls_hint`: TLS material and hints.
- :mod:`~node.wire.equivocation`: evidence that a peer signed two different things
  (update headers or SPSA scalar batches, whose signed bytes are in
  :mod:`~node.wire.spsa_signing`).

The face is lazy (:func:`node.base.lazy_face.lazy_face`): the update format loads
torch, which a membership-only daemon and ``fednode status`` never need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.base.lazy_face import lazy_face

if TYPE_CHECKING:
    from node.wire.admin_client import AdminClient, AdminUnavailable
    from node.wire.admin_server import AdminBackend, AdminService, TokenInterceptor
    from node.wire.admission import AdmissionPolicy, Admit, Refuse, SenderFacts, decide
    from node.wire.certs import CertError, TlsError, TlsMaterial, init_ca, issue_cert, load_tls
    from node.wire.envelope import EnvelopeError, SeqCounter, Verified, check_envelope, seal
    from node.wire.equivocation import EquivocationBook, EquivocationError, Proof, Sighting
    from node.wire.exchange import chunks_for, decode_update, encode_update
    from node.wire.peer_channels import GrpcGossipTransport, PeerCallError, PeerChannels
    from node.wire.service import NodeService, Rejected, add_node_service
    from node.wire.update_header import UpdateError

__all__ = [
    "AdminBackend",
    "AdminClient",
    "AdminService",
    "AdminUnavailable",
    "AdmissionPolicy",
    "Admit",
    "CertError",
    "EnvelopeError",
    "EquivocationBook",
    "EquivocationError",
    "GrpcGossipTransport",
    "NodeService",
    "PeerCallError",
    "PeerChannels",
    "Proof",
    "Refuse",
    "Rejected",
    "SenderFacts",
    "SeqCounter",
    "Sighting",
    "TlsError",
    "TlsMaterial",
    "TokenInterceptor",
    "UpdateError",
    "Verified",
    "add_node_service",
    "check_envelope",
    "chunks_for",
    "decide",
    "decode_update",
    "encode_update",
    "init_ca",
    "issue_cert",
    "load_tls",
    "seal",
]

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "node.wire.admin_client": ("AdminClient", "AdminUnavailable"),
        "node.wire.admin_server": ("AdminBackend", "AdminService", "TokenInterceptor"),
        "node.wire.admission": ("AdmissionPolicy", "Admit", "Refuse", "SenderFacts", "decide"),
        "node.wire.certs": (
            "CertError",
            "TlsError",
            "TlsMaterial",
            "init_ca",
            "issue_cert",
            "load_tls",
        ),
        "node.wire.envelope": (
            "EnvelopeError",
            "SeqCounter",
            "Verified",
            "check_envelope",
            "seal",
        ),
        "node.wire.equivocation": ("EquivocationBook", "EquivocationError", "Proof", "Sighting"),
        "node.wire.exchange": ("chunks_for", "decode_update", "encode_update"),
        "node.wire.peer_channels": ("GrpcGossipTransport", "PeerCallError", "PeerChannels"),
        "node.wire.service": ("NodeService", "Rejected", "add_node_service"),
        "node.wire.update_header": ("UpdateError",),
    },
)
