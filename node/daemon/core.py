"""The fednode daemon: one asyncio loop serving peers and the operator.

Start-up order: take the data-dir lock, load the identity and check its proof of work
against the network's difficulty, pin the genesis to the data dir, open the database
(running migrations), start the peer gRPC server (Node + health), the admin server
(loopback or Unix socket, token required) and ``/metrics``, write ``daemon.json`` for the
CLI, then join the network. SIGINT/SIGTERM (or the admin ``Stop`` call) stop it: health
flips to NOT_SERVING, the node leaves the membership, servers drain for at most two
seconds, the database is closed, ``daemon.json`` removed and the lock released, all
within five seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import start_http_server

from fednode_proto.v1 import admin_pb2, admin_pb2_grpc
from node import __version__
from node.base.address import parse_host_port
from node.base.datadir import DataDir
from node.base.identity import Identity, IdentityError, pow_check
from node.base.logs import log
from node.base.metrics import Metrics
from node.base.ratelimit import RateLimiter
from node.base.settings import NodeSettings
from node.daemon import runtime
from node.daemon.reputation import ReputationBook
from node.storage import Store, open_store, sqlite_url_for
from node.training.genesis import Genesis, GenesisError, load_genesis, render_genesis
from node.wire.admin_server import AdminService, TokenInterceptor
from node.wire.certs import TlsError, TlsMaterial, load_tls
from node.wire.peer_channels import PeerChannels
from node.wire.service import NodeService, add_node_service

__all__ = ["Daemon", "DaemonError", "grpc_server_options"]

STOP_GRACE_S = 2.0


class DaemonError(Exception):
    """The daemon cannot start; ``str()`` is one line for the operator."""


def grpc_server_options(settings: NodeSettings) -> list[tuple[str, Any]]:
    """Channel options for both ends: explicit limits, never the library defaults."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_concurrent_streams", 64),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
        # Only the identity "compression": a peer's gzip/deflate message is refused by gRPC
        # instead of being inflated (a 127 KiB stream once grew a daemon by 275 MB).
        ("grpc.compression_enabled_algorithms_bitset", 1),
    ]


def pin_genesis(data_dir: DataDir, genesis: Genesis) -> None:
    """Store the genesis in the data dir, or refuse one for another network."""
    if data_dir.genesis.exists():
        try:
            pinned = load_genesis(data_dir.genesis)
        except GenesisError as exc:
            raise DaemonError(f"the data dir's pinned genesis is unusable: {exc}") from None
        if pinned.network_id != genesis.network_id:
            raise DaemonError(
                f"{data_dir.root} belongs to network {pinned.network_id_hex[:16]} "
                f"({pinned.network.name}); this genesis is {genesis.network_id_hex[:16]}. "
                "Use another --data-dir."
            )
        return
    data_dir.genesis.write_text(render_genesis(genesis), encoding="utf-8")


class Daemon:
    """One running node.

    Parameters
    ----------
    data_dir : DataDir
        State directory (identity, token, database, checkpoints).
    genesis : Genesis
        The network definition.
    settings : NodeSettings
        Local settings (addresses, limits, logging).
    bootstrap : list of str
        Extra first-contact addresses on top of the genesis file's.
    lock_fd : int, optional
        The data dir's lock, when the caller took it already (``fednode start`` takes it
        first thing, so that ``fednode status`` can say "starting" early).
    shard : int or None, default 0
        This node's shard of a built-in task's partition; None derives it from the node
        id (:func:`node.daemon.runtime.default_shard`).
    """

    def __init__(
        self,
        data_dir: DataDir,
        genesis: Genesis,
        settings: NodeSettings,
        bootstrap: list[str] | None = None,
        *,
        shard: int | None = 0,
        attack: str | None = None,
        collusion: Any = None,
        train: bool = True,
        lock_fd: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.genesis = genesis
        self.settings = settings
        self.bootstrap = list(dict.fromkeys([*genesis.network.bootstrap, *(bootstrap or [])]))
        self.metrics = Metrics()
        self.stop_event = asyncio.Event()
        self.started_at = time.time()
        self.identity: Identity | None = None
        self.store: Store | None = None
        self.address = ""
        self.admin_address = ""
        self.metrics_address = ""
        self.dashboard_address = ""
        self.dashboard: Any = None
        self._lock_fd: int | None = lock_fd
        self._tasks: list[asyncio.Task[Any]] = []
        self.membership: Any = None
        self.training: Any = None
        self.guard: Any = None  # node.privacy_guard.ReleaseGuard, set when components start
        self.training_factory: Any = None
        self.shard = shard
        self.attack = attack
        # A testnet attacker's side channel (node.testnet.collusion.ColludingAttacker).
        self.collusion = collusion
        self.train = train
        self.tls: TlsMaterial | None = None
        # A node with any tls_* setting dials peers over TLS only: until run() has
        # validated its files and rebuilt the channels with its certificate, they use
        # TLS with the system roots, never plaintext.
        tls_wanted = bool(settings.tls_cert or settings.tls_key or settings.tls_ca)
        self.channels = PeerChannels(
            grpc_server_options(settings),
            credentials=grpc.ssl_channel_credentials() if tls_wanted else None,
        )
        self.banned: set[str] = set()
        self.reputation: ReputationBook | None = None
        self.service: NodeService | None = None
        self._state = "starting"

    # --- start-up ------------------------------------------------------------------------

    def _load_identity(self) -> Identity:
        try:
            identity = Identity.load(self.data_dir.identity)
        except IdentityError as exc:
            raise DaemonError(str(exc)) from None
        need = self.genesis.network.pow_difficulty
        if not pow_check(identity.public_key, identity.pow_nonce, need):
            raise DaemonError(
                f"identity's proof of work has {identity.pow_difficulty} bits, network "
                f"{self.genesis.network.name} needs {need}: run "
                f"`fednode init --data-dir {self.data_dir.root} --difficulty {need}`"
            )
        return identity

    def _admin_target(self) -> str:
        spec = self.settings.admin
        if spec == "unix":
            return f"unix:{(self.data_dir.root / 'admin.sock').resolve()}"
        if spec.startswith("unix:"):
            return f"unix:{Path(spec[5:]).resolve()}"
        return spec

    def _load_tls(self) -> None:
        """Validate the TLS files and make every peer channel present this node's cert."""
        s = self.settings
        try:
            self.tls = load_tls(s.tls_cert, s.tls_key, s.tls_ca, server_name=s.tls_server_name)
        except TlsError as exc:
            raise DaemonError(f"cannot start with TLS: {exc}") from None
        if self.tls is not None:
            self.channels = PeerChannels(
                grpc_server_options(s) + self.tls.channel_options(),
                credentials=self.tls.channel_credentials(),
            )

    def _server_credentials(self) -> grpc.ServerCredentials | None:
        return None if self.tls is None else self.tls.server_credentials()

    async def _start_servers(self) -> tuple[grpc.aio.Server, grpc.aio.Server]:
        assert self.identity is not None
        opts = grpc_server_options(self.settings)
        server = grpc.aio.server(options=opts)
        self.service = NodeService(
            self.identity,
            self.genesis.network_id,
            metrics=self.metrics,
            limiter=RateLimiter(self.settings.peer_rate, self.settings.peer_burst),
            max_update_bytes=self.settings.max_update_bytes,
            is_banned=self._is_operator_banned,
            on_fault=self._on_fault,
            is_quarantined=self._is_quarantined,
        )
        add_node_service(self.service, server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        creds = self._server_credentials()
        try:
            if creds is None:
                port = server.add_insecure_port(self.settings.listen)
            else:
                port = server.add_secure_port(self.settings.listen, creds)
        except RuntimeError as exc:
            raise DaemonError(f"cannot listen on {self.settings.listen}: {exc}") from None
        if port == 0:
            raise DaemonError(f"cannot listen on {self.settings.listen} (address in use?)")
        self.address = self.settings.advertised_address(port)
        await server.start()

        token = self.data_dir.admin_token(create=True)
        admin = grpc.aio.server(
            options=opts,
            interceptors=[
                TokenInterceptor(
                    token,
                    on_reject=lambda: self.metrics.messages_rejected.labels(
                        reason="admin_token"
                    ).inc(),
                )
            ],
        )
        admin_pb2_grpc.add_AdminServicer_to_server(AdminService(self), admin)
        target = self._admin_target()
        if target.startswith("unix:"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target[5:])
        try:
            admin_port = admin.add_insecure_port(target)
        except RuntimeError as exc:
            raise DaemonError(f"cannot open the admin API on {target}: {exc}") from None
        if not target.startswith("unix:"):
            host, _ = parse_host_port(target)
            target = f"{host}:{admin_port}"
        self.admin_address = target
        await admin.start()
        if target.startswith("unix:") and os.path.exists(target[5:]):
            os.chmod(target[5:], 0o600)

        if self.settings.metrics != "off":
            host, mport = parse_host_port(self.settings.metrics)
            try:
                httpd, _thread = start_http_server(mport, addr=host, registry=self.metrics.registry)
            except OSError as exc:
                raise DaemonError(
                    f"cannot serve /metrics on {self.settings.metrics}: {exc}"
                ) from None
            self._httpd = httpd
            self.metrics_address = f"{host}:{httpd.server_port}"
        if self.settings.dashboard != "off":
            await self._start_dashboard(token)
        return server, admin

    async def _start_dashboard(self, token: str) -> None:
        from node.dashboard import (
            DashboardError,
            DashboardServer,
            TrafficHistory,
            build_state,
            sample_traffic,
        )

        history = TrafficHistory()
        self.dashboard = DashboardServer(
            self.settings.dashboard,
            token,
            lambda: build_state(self, history),
            asyncio.get_running_loop(),
            # prometheus_client counters are thread-safe: the request thread may count.
            on_reject=lambda: self.metrics.messages_rejected.labels(reason="dashboard_token").inc(),
        )
        try:
            self.dashboard.start()
        except DashboardError as exc:
            self.dashboard = None
            raise DaemonError(str(exc)) from None
        self.dashboard_address = self.dashboard.url
        # Cancelled with the daemon's other tasks at shutdown.
        self._tasks.append(asyncio.create_task(sample_traffic(self, history), name="traffic"))

    def _write_runtime(self) -> None:
        assert self.identity is not None
        info = {
            "pid": os.getpid(),
            "node_id": self.identity.node_id_hex,
            "network_id": self.genesis.network_id_hex,
            "network": self.genesis.network.name,
            "listen": self.address,
            "admin": self.admin_address,
            "metrics": self.metrics_address,
            "dashboard": self.dashboard_address,
            "started_at": self.started_at,
            "ready_at": time.time(),
            "version": __version__,
            # For `fednode health`, which must dial this node the way its peers do.
            "tls": None
            if self.tls is None
            else {
                "cert": str(Path(self.settings.tls_cert or "").resolve()),
                "key": str(Path(self.settings.tls_key or "").resolve()),
                "ca": str(Path(self.settings.tls_ca).resolve()) if self.settings.tls_ca else None,
                "server_name": self.settings.tls_server_name,
            },
        }
        self.data_dir.write_secret(self.data_dir.runtime, json.dumps(info, indent=2).encode())

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        self.data_dir.ensure()
        if self._lock_fd is None:
            self._lock_fd = self.data_dir.acquire_lock()
        servers: tuple[grpc.aio.Server, grpc.aio.Server] | None = None
        try:
            self._load_tls()
            self.identity = self._load_identity()
            pin_genesis(self.data_dir, self.genesis)
            url = self.settings.database_url or sqlite_url_for(self.data_dir.root)

            try:
                self.store = open_store(url, data_dir=self.data_dir.root)
            except Exception as exc:  # any driver/migration error → one line for the operator
                raise DaemonError(f"cannot open the database: {exc}") from None
            self.banned = set(self.store.get_state("banned", []) or [])
            self.reputation = ReputationBook(self.store)
            self.metrics.info.info(
                {
                    "node_id": self.identity.node_id_hex,
                    "network_id": self.genesis.network_id_hex,
                    "version": __version__,
                }
            )
            servers = await self._start_servers()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
            await self._start_components()
            await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
            await self.health.set("fednode.v1.Node", health_pb2.HealthCheckResponse.SERVING)
            self._state = "running"
            self._write_runtime()
            log.info(
                "node started",
                extra={
                    "fields": {
                        "node_id": self.identity.node_id_hex[:16],
                        "network": self.genesis.network.name,
                        "listen": self.address,
                        "admin": self.admin_address,
                        "metrics": self.metrics_address or "off",
                        "dashboard": self.dashboard_address or "off",
                        "startup_s": round(time.time() - self.started_at, 3),
                    }
                },
            )
            await self.stop_event.wait()
            return 0
        finally:
            await self._shutdown(servers)

    async def _start_components(self) -> None:
        """Start membership (and training, when configured) on top of the servers."""
        await runtime.start_components(self)

    async def _shutdown(self, servers: tuple[grpc.aio.Server, grpc.aio.Server] | None) -> None:
        self._state = "stopping"
        t0 = time.monotonic()
        log.info("node stopping")
        with contextlib.suppress(Exception):
            if servers is not None:
                await self.health.enter_graceful_shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runtime.stop_components(self), timeout=2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if servers is not None:
            await asyncio.gather(*(s.stop(STOP_GRACE_S) for s in servers))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.channels.close(), 1.0)
        httpd = getattr(self, "_httpd", None)
        if httpd is not None:
            httpd.shutdown()
        if self.dashboard is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.dashboard.stop(), 1.0)
        if self.store is not None:
            self.store.close()
        with contextlib.suppress(FileNotFoundError):
            self.data_dir.runtime.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("node stopped", extra={"fields": {"shutdown_s": round(time.monotonic() - t0, 3)}})

    # --- admin backend -------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stop_event.set()

    def _on_fault(self, sender: bytes, reason: str) -> None:
        # Only members are charged: a throwaway key's faults would only grow the table
        # (admission refuses it anyway, whatever its reputation).
        if self.reputation is None or self.membership is None:
            return
        if self.membership.is_member(sender):
            self.reputation.fault(sender.hex(), reason)

    def _is_banned(self, node_id: bytes) -> bool:
        return runtime.is_banned(self, node_id)

    def _is_operator_banned(self, node_id: bytes) -> bool:
        return node_id.hex() in self.banned

    def _is_quarantined(self, node_id: bytes) -> bool:
        return self.reputation is not None and self.reputation.is_quarantined(node_id.hex())

    def status(self) -> admin_pb2.StatusReply:
        return runtime.status_reply(self)

    def peers(self) -> admin_pb2.PeersReply:
        return runtime.peers_reply(self)

    def ban(self, node_id_prefix: str, unban: bool) -> admin_pb2.BanReply:
        return runtime.ban(self, node_id_prefix, unban)

    def export(self) -> admin_pb2.ExportReply:
        return runtime.export_model(self)

    def privacy(self) -> admin_pb2.PrivacyReply:
        return runtime.privacy_reply(self)
