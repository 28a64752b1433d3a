"""Client side of the operator API, used by the CLI and by tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc

from fednode_proto.v1 import admin_pb2, admin_pb2_grpc
from node.base.datadir import DataDir

__all__ = ["AdminClient", "AdminUnavailable", "runtime_info"]


class AdminUnavailable(Exception):
    """No daemon answers on this data dir; ``str()`` is one line."""


def runtime_info(data_dir: DataDir) -> dict[str, Any]:
    """Contents of ``daemon.json`` of a running daemon."""
    try:
        info: dict[str, Any] = json.loads(data_dir.runtime.read_text())
    except FileNotFoundError:
        raise AdminUnavailable(f"no daemon is running on {data_dir.root}") from None
    except (OSError, ValueError) as exc:
        raise AdminUnavailable(f"cannot read {data_dir.runtime}: {exc}") from None
    return info


@dataclass
class AdminClient:
    """Token-authenticated calls to one daemon's Admin service.

    Parameters
    ----------
    data_dir : DataDir
        Where ``daemon.json`` (address) and ``admin.token`` live.
    timeout : float, default 5.0
        Per-call deadline in seconds.
    """

    data_dir: DataDir
    timeout: float = 5.0

    def __post_init__(self) -> None:
        info = runtime_info(self.data_dir)
        self.address: str = info["admin"]
        try:
            token = self.data_dir.token.read_text().strip()
        except OSError as exc:
            raise AdminUnavailable(f"cannot read the admin token: {exc}") from None
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = grpc.insecure_channel(self.address)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, request: Any) -> Any:
        method = getattr(self._stub, name)
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise AdminUnavailable(
                    f"the daemon on {self.data_dir.root} does not answer at {self.address}"
                ) from None
            raise AdminUnavailable(f"{name} failed: {exc.details()}") from None

    def status(self) -> admin_pb2.StatusReply:
        return self._call("Status", admin_pb2.StatusRequest())

    def peers(self) -> admin_pb2.PeersReply:
        return self._call("Peers", admin_pb2.PeersRequest())

    def ban(self, node_id: str, *, unban: bool = False) -> admin_pb2.BanReply:
        return self._call("Ban", admin_pb2.BanRequest(node_id=node_id, unban=unban))

    def export(self) -> admin_pb2.ExportReply:
        return self._call("Export", admin_pb2.ExportRequest())

    def privacy(self) -> admin_pb2.PrivacyReply:
        return self._call("Privacy", admin_pb2.PrivacyRequest())

    def stop(self) -> admin_pb2.StopReply:
        return self._call("Stop", admin_pb2.StopRequest())
