"""Settings of one daemon (not of the network: those are in the genesis file).

They come from, in increasing priority: defaults, ``node.toml`` in the data dir, and the
command line. Validation is pydantic; a bad value is one :class:`ConfigError` line.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from node.base.address import parse_host_port

__all__ = ["STANDING_KINDS", "ConfigError", "NodeSettings", "load_settings"]


class ConfigError(Exception):
    """A node setting that cannot be used; ``str()`` is one line."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Message kinds whose admission may require standing (``NodeSettings.min_standing_s``):
#: every authenticated kind but membership gossip, which is how a sender becomes a member.
STANDING_KINDS = frozenset({"update", "request", "spsa", "history", "evidence"})


class NodeSettings(BaseModel):
    """Local settings of one daemon.

    Attributes
    ----------
    listen : str, default "127.0.0.1:7420"
        Address of the peer-to-peer gRPC server. Use ``0.0.0.0:PORT`` to serve other
        hosts, together with ``advertise``.
    advertise : str or None, default None
        Address peers should dial; defaults to ``listen`` (must then not be 0.0.0.0).
    admin : str, default "unix"
        Operator API: ``unix`` (a socket ``admin.sock`` in the data dir), ``unix:PATH``, or
        a loopback ``HOST:PORT`` (port 0 picks a free one). Never reachable from peers.
    metrics : str, default "127.0.0.1:0"
        Prometheus ``/metrics`` address (port 0 picks a free one, shown by ``status``);
        ``off`` disables it.
    dashboard : str, default "127.0.0.1:0"
        Web dashboard (``http://HOST:PORT/?token=<admin.token>``) on a loopback
        ``HOST:PORT`` (port 0 picks a free one, recorded in ``daemon.json``); ``off``
        disables it. Never reachable from peers.
    database_url : str or None, default None
        SQLAlchemy URL; default is SQLite ``fednode.db`` in the data dir (WAL mode).
    max_message_bytes : int, default 4 MiB
        Largest single gRPC message accepted or sent (tensors are streamed in chunks).
    max_update_bytes : int, default 256 MiB
        Largest whole update/checkpoint stream accepted.
    peer_rate : float, default 50
        Sustained requests per second accepted from one peer address.
    peer_burst : int, default 200
        Burst size of that rate limit.
    log_format : {"text", "json"}, default "text"
    log_level : str, default "INFO"
    tls_cert, tls_key, tls_ca : str or None
        PEM files. With cert and key the peer server is TLS only; with a CA as well,
        peers must present a certificate signed by it (mutual TLS). No insecure fallback:
        such a node also dials its peers over TLS only, presenting its certificate.
        Make them with ``fednode certs init`` and ``fednode certs issue``.
    tls_server_name : str or None, default None
        Name checked in peers' certificates instead of the host part of the address
        dialed (for networks whose certificates all carry one shared name).
    torch_threads : int, default 1
        Torch intra-op threads (many nodes share few cores in a testnet).
    min_standing_s : dict of str to float, default empty
        Admission (node/wire/admission.py): per message kind (``update``, ``request``,
        ``spsa``, ``history``, ``evidence``), the seconds a peer must have been a member of
        this node's view before its messages of that kind are processed; until then they
        are refused ``no_standing``. Kinds not listed need none. In ``node.toml``:
        ``min_standing_s = {update = 30, request = 30}``. The trade-off is in
        docs/security.md ("Standing").
    """

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:7420"
    advertise: str | None = None
    admin: str = "unix"
    metrics: str = "127.0.0.1:0"
    dashboard: str = "127.0.0.1:0"
    database_url: str | None = None
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    max_update_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    peer_rate: float = Field(50.0, gt=0)
    peer_burst: int = Field(200, ge=1)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_server_name: str | None = Field(None, min_length=1, max_length=253)
    torch_threads: int = Field(1, ge=1, le=256)
    min_standing_s: dict[str, float] = Field(default_factory=dict)

    @field_validator("min_standing_s")
    @classmethod
    def _min_standing(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, seconds in value.items():
            if kind not in STANDING_KINDS:
                raise ValueError(
                    f"unknown message kind {kind!r}; one of {', '.join(sorted(STANDING_KINDS))}"
                )
            if not 0.0 <= seconds < float("inf"):
                raise ValueError(f"{kind}: seconds must be finite and >= 0, got {seconds}")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_host_port(value)
        return value

    @field_validator("advertise")
    @classmethod
    def _advertise(cls, value: str | None) -> str | None:
        if value is not None:
            host, port = parse_host_port(value)
            if host in {"0.0.0.0", "::"} or port == 0:
                raise ValueError("advertise must be a concrete host:port peers can dial")
        return value

    @field_validator("admin")
    @classmethod
    def _admin(cls, value: str) -> str:
        if value == "unix" or value.startswith("unix:"):
            return value
        host, _ = parse_host_port(value)
        if not _is_loopback(host):
            raise ValueError("the operator API listens on loopback or a unix socket only")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: str) -> str:
        if value != "off":
            parse_host_port(value)
        return value

    @field_validator("dashboard")
    @classmethod
    def _dashboard(cls, value: str) -> str:
        if value == "off":
            return value
        host, _ = parse_host_port(value)
        if not _is_loopback(host):
            raise ValueError("the dashboard listens on loopback only (or is off)")
        return value

    def advertised_address(self, bound_port: int) -> str:
        """What peers should dial, given the port the server actually bound."""
        if self.advertise:
            return self.advertise
        host, _ = parse_host_port(self.listen)
        if host in {"0.0.0.0", "::"}:
            raise ConfigError("listening on all interfaces needs --advertise HOST:PORT")
        return f"{host}:{bound_port}"


def load_settings(path: Path | None, overrides: dict[str, Any]) -> NodeSettings:
    """Merge ``node.toml`` (if it exists) with command-line ``overrides`` and validate."""
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None and path.exists():
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return NodeSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{source}: {loc}: {msg}") from None
