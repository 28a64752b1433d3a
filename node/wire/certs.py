"""TLS material for the peer port: a small certificate authority and per-node certificates.

A fednode network that wants transport security runs its own CA: ``fednode certs init``
makes a CA key and certificate, ``fednode certs issue`` signs one key and certificate per
node with the node's host names and IP addresses as subject alternative names. Every node
then serves *and dials* with its certificate and trusts only that CA (mutual TLS), so a
process without a certificate from the CA can neither reach a node nor be reached by it.

Keys are ECDSA P-256: gRPC's TLS stacks (BoringSSL in grpcio) accept it for server and
client authentication on every platform, which is not true of Ed25519 certificates.
Certificates carry both the serverAuth and clientAuth extended key usages because a node
is a server to its peers and a client of them.

:func:`load_tls` is what the daemon calls at start-up: it reads and cross-checks the PEM
files (certificate matches key, not expired, signed by the configured CA) and turns every
problem into one :class:`TlsError` line, so a node with broken TLS settings refuses to
start instead of serving plaintext or failing at the first handshake.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.base.secret_file import write_secret

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "NODE_CERT",
    "NODE_KEY",
    "CertError",
    "IssuedCert",
    "TlsError",
    "TlsMaterial",
    "init_ca",
    "issue_cert",
    "load_tls",
    "parse_host",
]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
NODE_CERT = "node.crt"
NODE_KEY = "node.key"

# Clocks of freshly started containers and VMs disagree by seconds to minutes; a
# certificate valid only from "now" would be refused by a peer whose clock is behind.
_BACKDATE = dt.timedelta(minutes=5)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_DNS_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class CertError(ValueError):
    """A certificate operation that cannot be done; ``str()`` is one line."""


class TlsError(CertError):
    """TLS settings of a node that cannot be used; ``str()`` is one line."""


@dataclass(frozen=True)
class IssuedCert:
    """Files written by :func:`issue_cert` (or :func:`init_ca`: ``cert`` is the CA's)."""

    cert: Path
    key: Path
    ca_cert: Path
    hosts: tuple[str, ...]
    not_after: dt.datetime
    fingerprint_sha256: str


def parse_host(text: str) -> x509.GeneralName:
    """One ``--host`` value as a subject alternative name: an IP address or a DNS name.

    Raises
    ------
    CertError
        If ``text`` is neither an IP address nor a valid DNS name.
    """
    text = text.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if not text or len(text) > 253 or not all(_DNS_LABEL_RE.match(label) for label in labels):
        raise CertError(f"--host {text!r} is neither an IP address nor a valid DNS name")
    return x509.DNSName(text.rstrip(".").lower())


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write a secret atomically with mode 0600 (never readable by others, not even briefly)."""
    if path.exists() and not force:
        raise CertError(f"{path} exists; pass --force to overwrite")
    write_secret(path, data)


def _write_public(path: Path, data: bytes, *, force: bool) -> None:
    if path.exists() and not force:
        raise CertError(f"{path} exists; pass --force to overwrite")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(public: Any) -> bytes:
    return bytes(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _prepare_dir(out: Path, names: Sequence[str], *, force: bool, mode: int) -> None:
    if out.exists() and not out.is_dir():
        raise CertError(f"{out} exists and is not a directory")
    if not force:
        for name in names:
            if (out / name).exists():
                raise CertError(f"{out / name} exists; pass --force to overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise CertError(f"cannot create {out}: {exc.strerror}") from None


def init_ca(
    out: Path, *, common_name: str = "fednode network CA", days: int = 3650, force: bool = False
) -> IssuedCert:
    """Create a certificate authority: ``out/ca.key`` (0600) and ``out/ca.crt``.

    Parameters
    ----------
    out : Path
        Directory to write into (created with mode 0700).
    common_name : str, default "fednode network CA"
        Subject CN of the CA certificate.
    days : int, default 3650
        Validity of the CA certificate.
    force : bool, default False
        Overwrite existing files instead of refusing.

    Raises
    ------
    CertError
        If the files exist (without ``force``), ``days`` is not positive or ``out``
        cannot be written.
    """
    if days <= 0:
        raise CertError(f"--days must be positive, got {days}")
    if not common_name.strip():
        raise CertError("the CA common name must not be empty")
    _prepare_dir(out, [CA_KEY, CA_CERT], force=force, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        # path_length=0: this CA signs node certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(out / CA_KEY, _key_pem(key), force=force)
    _write_public(out / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), force=force)
    return IssuedCert(
        cert=out / CA_CERT,
        key=out / CA_KEY,
        ca_cert=out / CA_CERT,
        hosts=(),
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=_fingerprint(cert),
    )


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not ca_dir.is_dir():
        raise CertError(f"--ca {ca_dir}: no such directory (create one with `fednode certs init`)")
    cert = _read_cert(ca_dir / CA_CERT, what="CA certificate")
    key_path = ca_dir / CA_KEY
    key = _read_key(key_path, what="CA key")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path}: the CA key is not an ECDSA key")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise CertError(f"{key_path} does not belong to {ca_dir / CA_CERT}")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CertError(f"{ca_dir / CA_CERT} is not a CA certificate")
    return cert, key


def issue_cert(
    ca_dir: Path,
    name: str,
    hosts: Sequence[str],
    out: Path,
    *,
    days: int = 825,
    force: bool = False,
) -> IssuedCert:
    """Sign a node key and certificate with the CA in ``ca_dir``.

    Writes ``out/node.key`` (0600), ``out/node.crt`` and a copy of the CA certificate as
    ``out/ca.crt``, so that ``out`` alone is everything one node needs.

    Parameters
    ----------
    ca_dir : Path
        Directory made by :func:`init_ca` (``ca.crt`` and ``ca.key``).
    name : str
        Node name, the certificate's CN (letters, digits, ``.``, ``_``, ``-``).
    hosts : sequence of str
        Host names and IP addresses peers use to dial this node (at least one); they
        become the subject alternative names that TLS checks.
    out : Path
        Directory to write into (created if needed).
    days : int, default 825
        Validity of the certificate; never beyond the CA's own expiry.
    force : bool, default False
        Overwrite existing files instead of refusing.

    Raises
    ------
    CertError
        On a bad name or host, an unusable CA, existing files (without ``force``) or an
        unwritable ``out``.
    """
    if not _NAME_RE.match(name):
        raise CertError(
            f"--name {name!r}: use 1-63 letters, digits, '.', '_' or '-' (starting alphanumeric)"
        )
    if not hosts:
        raise CertError("give at least one --host (a name or IP address peers dial)")
    if days <= 0:
        raise CertError(f"--days must be positive, got {days}")
    sans = list(dict.fromkeys(parse_host(h) for h in hosts))
    ca_cert, ca_key = _load_ca(ca_dir)
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise CertError(f"the CA certificate in {ca_dir} has expired")
    _prepare_dir(out, [NODE_KEY, NODE_CERT, CA_CERT], force=force, mode=0o755)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(out / NODE_KEY, _key_pem(key), force=force)
    _write_public(out / NODE_CERT, cert.public_bytes(serialization.Encoding.PEM), force=force)
    _write_public(out / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM), force=force)
    return IssuedCert(
        cert=out / NODE_CERT,
        key=out / NODE_KEY,
        ca_cert=out / CA_CERT,
        hosts=tuple(str(s.value) for s in sans),
        not_after=not_after,
        fingerprint_sha256=_fingerprint(cert),
    )


# --- loading, for the daemon and the health probe ----------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise TlsError(f"{what} {path}: cannot read: {exc.strerror}") from None


def _read_cert(path: Path, *, what: str) -> x509.Certificate:
    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError(f"{what} {path}: not a PEM certificate") from None


def _read_certs(path: Path, *, what: str) -> list[x509.Certificate]:
    data = _read(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsError(f"{what} {path}: not a PEM certificate bundle") from None
    return certs


def _read_key(path: Path, *, what: str) -> Any:
    data = _read(path, what)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsError(f"{what} {path}: encrypted keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"{what} {path}: not a PEM private key") from None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class TlsMaterial:
    """Validated PEM bytes for one node's TLS, and the gRPC credentials built from them.

    ``ca_pem`` None means server-only TLS: peers are not asked for certificates and,
    when dialing, peers' certificates are checked against the system trust store.
    """

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None
    server_name: str | None = None

    @property
    def mutual(self) -> bool:
        """Whether peers must present a certificate from the CA (mutual TLS)."""
        return self.ca_pem is not None

    def server_credentials(self) -> Any:
        """``grpc.ServerCredentials``: TLS only; client certificates required when mutual."""
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=self.ca_pem is not None,
        )

    def channel_credentials(self) -> Any:
        """``grpc.ChannelCredentials`` for dialing peers, presenting this node's certificate."""
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Extra channel options: the name checked in peers' certificates, if overridden."""
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


def load_tls(
    cert: str | Path | None,
    key: str | Path | None,
    ca: str | Path | None = None,
    *,
    server_name: str | None = None,
) -> TlsMaterial | None:
    """Read and cross-check a node's TLS files; None when none is configured.

    Parameters
    ----------
    cert, key : path or None
        PEM certificate (chain) and its private key; both or neither.
    ca : path or None, default None
        PEM CA bundle; with it, TLS is mutual (peers must present a certificate it signed).
    server_name : str or None, default None
        Name to check in peers' certificates instead of the dialed host.

    Raises
    ------
    TlsError
        Naming the file and the problem: only some of the files configured, unreadable,
        not PEM, key not matching the certificate, certificate expired or not yet valid,
        or (with ``ca``) certificate not signed by the CA.
    """
    if cert is None and key is None and ca is None:
        if server_name:
            raise TlsError("tls_server_name is set but no TLS files are (tls_cert, tls_key)")
        return None
    if cert is None or key is None:
        raise TlsError("TLS needs both tls_cert and tls_key")
    cert_path, key_path = Path(cert), Path(key)
    chain = _read_certs(cert_path, what="tls_cert")
    leaf = chain[0]
    private = _read_key(key_path, what="tls_key")
    if _spki(private.public_key()) != _spki(leaf.public_key()):
        raise TlsError(f"tls_key {key_path} does not belong to tls_cert {cert_path}")
    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc <= now:
        raise TlsError(f"tls_cert {cert_path} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    if leaf.not_valid_before_utc > now:
        raise TlsError(
            f"tls_cert {cert_path} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M}"
            " UTC (check the clock)"
        )
    ca_pem: bytes | None = None
    if ca is not None:
        ca_path = Path(ca)
        roots = _read_certs(ca_path, what="tls_ca")
        # A node whose own certificate is not from the CA it demands of peers could never
        # be accepted by them: refuse at start-up rather than fail every handshake later.
        issuer = chain[-1] if len(chain) > 1 else leaf
        if not any(_signed_by(issuer, root) or issuer == root for root in roots):
            raise TlsError(f"tls_cert {cert_path} is not signed by tls_ca {ca_path}")
        ca_pem = _read(ca_path, "tls_ca")
    return TlsMaterial(
        cert_pem=_read(cert_path, "tls_cert"),
        key_pem=_read(key_path, "tls_key"),
        ca_pem=ca_pem,
        server_name=server_name or None,
    )
