"""``node.wire.certs``: the CA, node certificates, and the checks the daemon runs at start-up."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.wire.certs import CertError, TlsError, init_ca, issue_cert, load_tls, parse_host


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    init_ca(tmp_path / "ca")
    return tmp_path / "ca"


def test_ca_is_a_self_signed_p256_ca_with_a_private_key(ca: Path) -> None:
    cert = _cert(ca / "ca.crt")
    assert (ca / "ca.key").stat().st_mode & 0o777 == 0o600
    assert ca.stat().st_mode & 0o077 == 0, "the CA directory is private"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_node_certificate_has_the_hosts_and_both_usages(ca: Path, tmp_path: Path) -> None:
    made = issue_cert(ca, "node1", ["127.0.0.1", "Node1.example", "::1"], tmp_path / "n1")
    cert = _cert(made.cert)
    cert.verify_directly_issued_by(_cert(ca / "ca.crt"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert san.get_values_for_type(x509.DNSName) == ["node1.example"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node1"
    assert made.key.stat().st_mode & 0o777 == 0o600
    assert made.ca_cert.read_bytes() == (ca / "ca.crt").read_bytes()
    assert made.hosts == ("127.0.0.1", "node1.example", "::1")
    material = load_tls(made.cert, made.key, made.ca_cert)
    assert material is not None and material.mutual
    assert material.channel_options() == []


def test_validity_is_capped_by_the_ca(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", days=10)
    made = issue_cert(tmp_path / "ca", "n", ["n"], tmp_path / "n", days=825)
    assert made.not_after == _cert(tmp_path / "ca" / "ca.crt").not_valid_after_utc
    assert _cert(made.cert).not_valid_before_utc < dt.datetime.now(dt.UTC), "backdated for skew"


def test_existing_files_are_kept_unless_forced(ca: Path, tmp_path: Path) -> None:
    first = issue_cert(ca, "n", ["n"], tmp_path / "n")
    with pytest.raises(CertError, match="exists; pass --force"):
        issue_cert(ca, "n", ["n"], tmp_path / "n")
    with pytest.raises(CertError, match="exists; pass --force"):
        init_ca(ca)
    second = issue_cert(ca, "n", ["n"], tmp_path / "n", force=True)
    assert first.fingerprint_sha256 != second.fingerprint_sha256


@pytest.mark.parametrize(
    ("name", "hosts", "message"),
    [
        ("bad name", ["n"], "--name"),
        ("-x", ["n"], "--name"),
        ("n", [], "at least one --host"),
        ("n", ["under_score.example"], "neither an IP address nor a valid DNS name"),
        ("n", ["-lead.example"], "neither an IP"),
        ("n", ["a" * 64], "neither an IP"),
    ],
)
def test_bad_names_and_hosts_are_refused(
    ca: Path, tmp_path: Path, name: str, hosts: list[str], message: str
) -> None:
    with pytest.raises(CertError, match=message):
        issue_cert(ca, name, hosts, tmp_path / "out")
    assert not (tmp_path / "out" / "node.key").exists()


def test_parse_host_accepts_bracketed_ipv6() -> None:
    assert str(parse_host("[::1]").value) == "::1"


def test_unusable_ca_directories_are_refused(ca: Path, tmp_path: Path) -> None:
    with pytest.raises(CertError, match="no such directory"):
        issue_cert(tmp_path / "nope", "n", ["n"], tmp_path / "out")
    other = init_ca(tmp_path / "other")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ca.crt").write_bytes((ca / "ca.crt").read_bytes())
    (mixed / "ca.key").write_bytes(other.key.read_bytes())
    with pytest.raises(CertError, match="does not belong to"):
        issue_cert(mixed, "n", ["n"], tmp_path / "out")
    leaf = issue_cert(ca, "n", ["n"], tmp_path / "leaf")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "ca.crt").write_bytes(leaf.cert.read_bytes())
    (fake / "ca.key").write_bytes(leaf.key.read_bytes())
    with pytest.raises(CertError, match="is not a CA certificate"):
        issue_cert(fake, "m", ["m"], tmp_path / "out")


def _expired(ca: Path, tmp_path: Path) -> tuple[Path, Path]:
    ca_cert = _cert(ca / "ca.crt")
    ca_key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=10))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (tmp_path / "old.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "old.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp_path / "old.crt", tmp_path / "old.key"


def test_load_tls_names_the_file_and_the_problem(ca: Path, tmp_path: Path) -> None:
    good = issue_cert(ca, "n", ["n"], tmp_path / "n")
    init_ca(tmp_path / "ca2")
    foreign = issue_cert(tmp_path / "ca2", "f", ["f"], tmp_path / "f")
    assert load_tls(None, None, None) is None
    cases: list[tuple[tuple[object, ...], dict[str, str], str]] = [
        ((good.cert, None, None), {}, "needs both tls_cert and tls_key"),
        ((None, None, good.ca_cert), {}, "needs both"),
        ((None, None, None), {"server_name": "x"}, "no TLS files"),
        ((tmp_path / "missing.crt", good.key, None), {}, "missing.crt: no such file"),
        ((good.key, good.key, None), {}, "not a PEM certificate"),
        ((good.cert, good.cert, None), {}, "not a PEM private key"),
        ((good.cert, foreign.key, None), {}, "does not belong to"),
        ((foreign.cert, foreign.key, good.ca_cert), {}, "is not signed by tls_ca"),
        ((*_expired(ca, tmp_path), good.ca_cert), {}, "expired on"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(TlsError, match=message):
            load_tls(*args, **kwargs)  # type: ignore[arg-type]
    server_only = load_tls(good.cert, good.key)
    assert server_only is not None and not server_only.mutual
    named = load_tls(good.cert, good.key, good.ca_cert, server_name="fednode-peer")
    assert named is not None
    assert named.channel_options() == [("grpc.ssl_target_name_override", "fednode-peer")]


def test_encrypted_key_is_refused_with_a_reason(ca: Path, tmp_path: Path) -> None:
    good = issue_cert(ca, "n", ["n"], tmp_path / "n")
    key = serialization.load_pem_private_key(good.key.read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(TlsError, match="encrypted keys are not supported"):
        load_tls(good.cert, locked, good.ca_cert)


def _fednode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_makes_a_ca_and_a_node_certificate(tmp_path: Path) -> None:
    helped = _fednode("certs", "issue", "--help")
    assert helped.returncode == 0 and "Example: fednode certs issue" in helped.stdout
    made = _fednode("certs", "init", "--out", str(tmp_path / "ca"))
    assert made.returncode == 0, made.stderr
    issued = _fednode(
        "certs", "issue", "--ca", str(tmp_path / "ca"), "--name", "node1",
        "--host", "127.0.0.1", "--host", "node1", "--out", str(tmp_path / "node1"),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    assert "--tls-cert" in issued.stdout, "tells the operator how to start the node"
    assert (tmp_path / "node1" / "node.key").stat().st_mode & 0o777 == 0o600
    assert load_tls(
        tmp_path / "node1" / "node.crt", tmp_path / "node1" / "node.key", tmp_path / "ca" / "ca.crt"
    )
    bad = _fednode("certs", "issue", "--ca", str(tmp_path / "nope"), "--name", "x", "--host", "x",
                   "--out", str(tmp_path / "x"))  # fmt: skip
    assert bad.returncode == 1
    assert "no such directory" in bad.stderr and "Traceback" not in bad.stderr


def test_a_tls_daemon_dials_peers_with_its_certificate(ca: Path, tmp_path: Path) -> None:
    from node.base.datadir import DataDir
    from node.base.settings import NodeSettings
    from node.daemon.core import Daemon
    from node.training.genesis import Genesis

    made = issue_cert(ca, "n", ["fednode-peer"], tmp_path / "n")
    settings = NodeSettings(
        tls_cert=str(made.cert),
        tls_key=str(made.key),
        tls_ca=str(made.ca_cert),
        tls_server_name="fednode-peer",
    )
    daemon = Daemon(DataDir(tmp_path / "d"), Genesis(), settings)
    before = daemon.channels
    assert before.credentials is not None, "never plaintext, not even before start-up"
    daemon._load_tls()
    assert daemon.tls is not None and daemon.tls.mutual
    assert daemon.channels is not before and daemon.channels.credentials is not None
    assert ("grpc.ssl_target_name_override", "fednode-peer") in daemon.channels.options
    assert daemon._server_credentials() is not None
    plain = Daemon(DataDir(tmp_path / "p"), Genesis(), NodeSettings())
    plain._load_tls()
    assert plain.tls is None and plain.channels.credentials is None
