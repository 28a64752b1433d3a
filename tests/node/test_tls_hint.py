"""The TLS-mismatch explanation (issue 15, item 4); the real daemons are in
tests/deploy/test_tls.py, whose plaintext node must log it."""

from __future__ import annotations

from node.wire.tls_hint import TlsHints, tls_mismatch_hint

# What grpc 1.85 reports, measured with a plaintext client against a TLS server and back.
PLAIN_TO_TLS = (
    "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:1.2.3.4:7: Socket closed"
)
TLS_TO_PLAIN = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:1.2.3.4:7: Tls handshake "
    "failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:"
    "OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification context: OK"
)
REFUSED = (
    "failed to connect to all addresses; last error: "
    + "UNAVAILABLE: ipv4:1.2.3.4:7: Connection refused"
)


def test_plaintext_node_at_a_tls_peer_is_told_the_flags() -> None:
    hint = tls_mismatch_hint("1.2.3.4:7", PLAIN_TO_TLS, tls=False)
    assert hint is not None and "--tls-cert" in hint and "1.2.3.4:7" in hint


def test_tls_node_at_a_plaintext_peer_is_told_it_speaks_plaintext() -> None:
    hint = tls_mismatch_hint("1.2.3.4:7", TLS_TO_PLAIN, tls=True)
    assert hint is not None and "plaintext" in hint


def test_other_failures_get_no_tls_hint() -> None:
    assert tls_mismatch_hint("1.2.3.4:7", REFUSED, tls=False) is None
    assert tls_mismatch_hint("1.2.3.4:7", REFUSED, tls=True) is None
    assert tls_mismatch_hint("1.2.3.4:7", TLS_TO_PLAIN, tls=False) is None


def test_hint_is_rate_limited_per_address() -> None:
    hints = TlsHints(repeat_s=10.0)
    assert hints.due("a", 0.0) and not hints.due("a", 5.0) and hints.due("b", 5.0)
    assert hints.due("a", 10.0)
