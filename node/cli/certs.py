"""``fednode certs`` (a network's CA and node certificates) and ``fednode health``.

``certs_app`` is a typer sub-app registered as ``fednode certs``; :func:`health` is a
plain command registered as ``fednode health`` (the container HEALTHCHECK).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from node.cli.options import DataDirOpt, FormatOpt, OutputFormat, open_data_dir
from node.cli.output import console, err_console, fail
from node.wire.certs import CertError, init_ca, issue_cert, load_tls

__all__ = ["certs_app", "health"]

certs_app = typer.Typer(
    help=(
        "Make TLS certificates for a network: one CA, then one key and certificate per node "
        "(ECDSA P-256, mutual TLS).\n\n"
        "Example: fednode certs init --out ca; "
        "fednode certs issue --ca ca --name node1 --host 10.0.0.5 --host node1 --out node1; "
        "fednode start ... --tls-cert node1/node.crt --tls-key node1/node.key "
        "--tls-ca node1/ca.crt"
    ),
    no_args_is_help=True,
)


@certs_app.command("init")
def certs_init(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for ca.key (0600) and ca.crt.")
    ],
    name: Annotated[str, typer.Option(help="Common name of the CA.")] = "fednode network CA",
    days: Annotated[int, typer.Option(help="Validity in days.")] = 3650,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Create the network's certificate authority (a P-256 key and a self-signed cert).

    Keep ca.key off the nodes (it can mint certificates every node will trust); hand out
    ca.crt, which `certs issue` also copies next to each node's certificate.

    Example: fednode certs init --out ./ca --name "lab network CA"
    """
    try:
        made = init_ca(out, common_name=name, days=days, force=force)
    except CertError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"wrote CA {made.cert} and key {made.key} (mode 600), valid until "
        f"{made.not_after:%Y-%m-%d}; sha256 {made.fingerprint_sha256[:32]}…",
        highlight=False,
    )


@certs_app.command("issue")
def certs_issue(
    ca: Annotated[Path, typer.Option("--ca", help="CA directory made by `certs init`.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Node name (certificate CN).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for node.key, node.crt, ca.crt.")
    ],
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="Host name or IP address peers dial this node by (repeatable, at least one).",
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Validity in days (capped at the CA's).")] = 825,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Sign a key and certificate for one node with the CA.

    Every --host becomes a subject alternative name: peers check the host part of the
    address they dial (the node's --advertise) against them, so list every name and IP
    the node is reached by. The certificate serves both ends of a connection (server and
    client authentication), as a node both accepts and dials peers.

    Example: fednode certs issue --ca ./ca --name node1 --host 10.0.0.5 --host node1 --out ./node1
    """
    try:
        made = issue_cert(ca, name, list(host or []), out, days=days, force=force)
    except CertError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"wrote {made.cert}, {made.key} (mode 600) and {made.ca_cert} for "
        f"{', '.join(made.hosts)}; valid until {made.not_after:%Y-%m-%d}",
        highlight=False,
    )
    console.print(
        f"start the node with: --tls-cert {made.cert} --tls-key {made.key} --tls-ca {made.ca_cert}",
        highlight=False,
    )


@certs_app.command("show")
def certs_show(
    path: Annotated[Path, typer.Argument(help="PEM certificate file.")],
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Print a certificate's subject, issuer, names, validity and fingerprint.

    Example: fednode certs show ./node1/node.crt
    """
    try:
        data = path.read_bytes()
        cert = x509.load_pem_x509_certificate(data)
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise fail(f"{path}: not a PEM certificate") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        names = []
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    info: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "ca": is_ca,
        "hosts": names,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }
    if fmt == "json":
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    for key, value in info.items():
        console.print(
            f"{key:>10}  {', '.join(value) if isinstance(value, list) else value}",
            highlight=False,
        )


def health(
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            "-a",
            help="Peer address HOST:PORT to probe \\[default: the running node's, from its "
            "data dir].",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    tls_cert: Annotated[str | None, typer.Option(help="Client certificate (mutual TLS).")] = None,
    tls_key: Annotated[str | None, typer.Option(help="Key of --tls-cert.")] = None,
    tls_ca: Annotated[str | None, typer.Option(help="CA that signed the node's cert.")] = None,
    tls_server_name: Annotated[
        str | None, typer.Option(help="Name to check in the node's certificate.")
    ] = None,
    service: Annotated[
        str, typer.Option(help="gRPC health service name ('' is the whole server).")
    ] = "",
    timeout: Annotated[float, typer.Option(help="Seconds before giving up.")] = 3.0,
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Probe a node's peer port with the standard gRPC health check; exit 0 iff SERVING.

    Without --address it probes the node running on --data-dir, dialing the address and
    TLS files recorded in its daemon.json: the way its peers reach it.

    Exit code 1: not serving, not running, unreachable or refused (the container HEALTHCHECK).

    Example: fednode health -d /data

    Example: fednode health -a 10.0.0.5:7420 --tls-ca ca.crt --tls-cert c.crt --tls-key c.key
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    tls: dict[str, Any] = {}
    if address is None:
        dd = open_data_dir(data_dir)
        try:
            runtime = json.loads(dd.runtime.read_text())
        except FileNotFoundError:
            raise fail(f"no running node on {dd.root} (no daemon.json); pass --address") from None
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read {dd.runtime}: {exc}") from None
        address = str(runtime.get("listen", ""))
        tls = dict(runtime.get("tls") or {})
    given = {"cert": tls_cert, "key": tls_key, "ca": tls_ca, "server_name": tls_server_name}
    tls.update({k: v for k, v in given.items() if v is not None})
    try:
        if tls.get("cert") or tls.get("key"):
            material = load_tls(
                tls.get("cert"), tls.get("key"), tls.get("ca"), server_name=tls.get("server_name")
            )
        else:
            material = None
    except CertError as exc:
        raise fail(str(exc)) from None
    if material is not None:
        channel = grpc.secure_channel(
            address, material.channel_credentials(), options=material.channel_options()
        )
    elif tls.get("ca"):
        # Server-only TLS: verify the node with the CA, present no certificate.
        try:
            ca_pem = Path(tls["ca"]).read_bytes()
        except OSError as exc:
            raise fail(f"tls_ca {tls['ca']}: cannot read: {exc.strerror}") from None
        options = (
            [("grpc.ssl_target_name_override", tls["server_name"])]
            if tls.get("server_name")
            else []
        )
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_pem), options)
    else:
        channel = grpc.insecure_channel(address)
    status = "UNKNOWN"
    error = ""
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            status = "UNREACHABLE"
            error = f"{exc.code().name}: {exc.details()}"
    ok = status == "SERVING"
    if fmt == "json":
        sys.stdout.write(
            json.dumps(
                {"address": address, "status": status, "tls": material is not None, "error": error}
            )
            + "\n"
        )
    elif ok:
        console.print(f"{address}: SERVING", highlight=False)
    else:
        err_console.print(
            f"{address}: {status}{' (' + error + ')' if error else ''}", highlight=False
        )
    raise typer.Exit(0 if ok else 1)
