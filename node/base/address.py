"""Parsing of ``host:port`` addresses given on the command line and in genesis files."""

from __future__ import annotations

__all__ = ["format_host_port", "parse_host_port"]


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:port``) and check the port.

    Raises
    ------
    ValueError
        With a message naming the bad address.
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected [ipv6]:port")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {text!r}: expected host:port")
    if not host:
        raise ValueError(f"bad address {text!r}: empty host")
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"bad address {text!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"bad address {text!r}: port {port} is out of range")
    return host, port


def format_host_port(host: str, port: int) -> str:
    """Inverse of :func:`parse_host_port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
