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

from fednode_proto.v1 import admin_pb2_grpc
from node import __version__
from node.base.address import parse_host_port
from node.base.datadir import DataDir
from node.base.identity import Identity, IdentityError, pow_check
from node.base.logs import log
from node.base.metrics import Metrics
from node.base.ratelimit import RateLimiter
from node.base.settings import NodeSettings
from node.daemon.context import LearnerRuntime, NodeContext, NodeInfo, ReleaseState
from node.daemon.evidence_gossip import EvidenceExchange
from node.daemon.membership import DaemonMembership
from node.daemon.operator import Operator
from node.daemon.peer_policy import PeerPolicy
from node.dashboard import (
    DashboardError,
    DashboardServer,
    TrafficHistory,
    build_state,
    sample_traffic,
)
from node.storage import Store, open_store, sqlite_url_for
from node.training.genesis import (
    Genesis,
    GenesisError,
    load_genesis,
    record_mechanism,
    render_genesis,
)
from node.training.usercode import TaskSetupError
from node.wire.admin_server import AdminService, TokenInterceptor
from node.wire.admission import AdmissionPolicy
from node.wire.certs import TlsError, TlsMaterial, load_tls
from node.wire.peer_channels import PeerChannels
from node.wire.service import NodeService, add_node_service

__all__ = ["Daemon", "DaemonError", "default_shard", "grpc_server_options"]

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
        # Never inflate a peer's message (a 127 KiB gzip stream once grew a daemon by 275 MB):
        # a compressed message reaches the service as sent, which refuses it `compressed` with
        # a metric (node/wire/service.py). Refusing it through the algorithms bitset instead
        # would happen inside gRPC, before fednode sees the call (no reason code, no metric).
        ("grpc.per_message_decompression", 0),
    ]


def default_shard(node_id_hex: str, shards: int) -> int:
    """The shard a node takes when the operator names none: its node id modulo ``shards``.

    Node ids are uniform hashes, so two nodes share a shard with probability ``1/shards``;
    operators who must rule that out pass ``--shard``.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return int(node_id_hex, 16) % shards


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
    """One running node: it builds, owns and stops every component.

    Components (membership, the exchanges, the learner runtime, the operator replies)
    receive the :class:`~node.daemon.context.NodeContext` and narrow Protocols, never the
    daemon. The attributes that are None before :meth:`run` built them (``identity``,
    ``store``, ``context``, ``membership``, ...) are the daemon's own bookkeeping.

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
        id (:func:`default_shard`).
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
        self.info = NodeInfo(started_at=time.time(), learner_state="loading" if train else "none")
        self.identity: Identity | None = None
        self.store: Store | None = None
        self.context: NodeContext | None = None
        self.admin_address = ""
        self.dashboard: DashboardServer | None = None
        self._lock_fd: int | None = lock_fd
        self._tasks: list[asyncio.Task[Any]] = []
        self.policy: PeerPolicy | None = None
        self.operator: Operator | None = None
        self.membership: DaemonMembership | None = None
        self.evidence: EvidenceExchange | None = None
        self.guard: ReleaseState | None = None
        self.training: LearnerRuntime | None = None
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
        self.service: NodeService | None = None

    @property
    def started_at(self) -> float:
        return self.info.started_at

    @property
    def address(self) -> str:
        """The advertised peer address ("" until the peer server listens)."""
        return self.info.address

    @property
    def metrics_address(self) -> str:
        return self.info.metrics_address

    @property
    def dashboard_address(self) -> str:
        return self.info.dashboard_address

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

    async def _start_servers(
        self, identity: Identity, store: Store, policy: PeerPolicy
    ) -> tuple[grpc.aio.Server, grpc.aio.Server]:
        opts = grpc_server_options(self.settings)
        server = grpc.aio.server(options=opts)
        self.service = NodeService(
            identity,
            self.genesis.network_id,
            metrics=self.metrics,
            limiter=RateLimiter(self.settings.peer_rate, self.settings.peer_burst),
            max_update_bytes=self.settings.max_update_bytes,
            is_banned=policy.is_operator_banned,
            on_fault=self._on_fault,
            is_quarantined=policy.is_quarantined,
            admission=AdmissionPolicy(min_standing_s=dict(self.settings.min_standing_s)),
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
        self.info.address = self.settings.advertised_address(port)
        await server.start()
        self.context = NodeContext(
            identity=identity,
            genesis=self.genesis,
            settings=self.settings,
            store=store,
            metrics=self.metrics,
            channels=self.channels,
            address=self.info.address,
            tasks=self._tasks,
        )
        self.operator = Operator(self.context, policy, self.info, self.request_stop)

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
        admin_pb2_grpc.add_AdminServicer_to_server(AdminService(self.operator), admin)
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
            self.info.metrics_address = f"{host}:{httpd.server_port}"
        if self.settings.dashboard != "off":
            self._start_dashboard(self.context, self.operator, token)
        return server, admin

    def _start_dashboard(self, ctx: NodeContext, operator: Operator, token: str) -> None:
        history = TrafficHistory()
        dashboard = DashboardServer(
            self.settings.dashboard,
            token,
            lambda: build_state(operator, history),
            asyncio.get_running_loop(),
            # prometheus_client counters are thread-safe: the request thread may count.
            on_reject=lambda: self.metrics.messages_rejected.labels(reason="dashboard_token").inc(),
        )
        try:
            dashboard.start()
        except DashboardError as exc:
            raise DaemonError(str(exc)) from None
        self.dashboard = dashboard
        self.info.dashboard_address = dashboard.url
        # Cancelled with the daemon's other tasks at shutdown.
        ctx.spawn(sample_traffic(self.metrics.registry, history), "traffic")

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
            "started_at": self.info.started_at,
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
            self.policy = PeerPolicy(self.store)
            self.metrics.info.info(
                {
                    "node_id": self.identity.node_id_hex,
                    "network_id": self.genesis.network_id_hex,
                    "version": __version__,
                }
            )
            servers = await self._start_servers(self.identity, self.store, self.policy)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
            await self._start_components()
            await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
            await self.health.set("fednode.v1.Node", health_pb2.HealthCheckResponse.SERVING)
            self.info.state = "running"
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
        ctx, policy, service, operator = self.context, self.policy, self.service, self.operator
        assert ctx is not None and policy is not None and service is not None
        assert operator is not None
        # One guard per node: every release path of every learner goes through it.
        guard = self._release_guard(ctx)
        self.guard = guard
        membership = await DaemonMembership.start(
            ctx,
            policy,
            self.bootstrap,
            # A restarted node whose budget is already spent says so from its first record.
            releasing=guard.releasing or not guard.private,
        )
        self.membership = membership
        # No await since the join: the service answers gossip before the loop runs again.
        service.gossip = membership.driver
        # Admission (node/wire/admission.py) of every non-gossip request asks this view.
        service.membership = membership
        ctx.spawn(membership.run_gauges(), "gauges")
        self.evidence = EvidenceExchange(ctx, membership, policy)
        service.evidence = self.evidence
        operator.attach(membership, guard)
        if not self.train:
            return
        shard = self.shard
        if shard is None:
            shard = default_shard(ctx.identity.node_id_hex, self.genesis.task.num_nodes)
            log.info(
                "data shard derived from the node id (fednode start --shard N chooses it)",
                extra={"fields": {"shard": shard, "shards": self.genesis.task.num_nodes}},
            )
        try:
            self.training = await self._start_learner(
                ctx, service, membership, policy, guard, shard
            )
        except TaskSetupError as exc:
            # The operator's to fix (user code, model folder, data file): one line, and the
            # node keeps serving membership.
            log.error("training not started: %s", exc)
            self.info.learner_state = "failed"
            return
        if self.training is None:
            self.info.learner_state = "none"
        else:
            operator.attach(membership, guard, self.training)

    def _release_guard(self, ctx: NodeContext) -> ReleaseState:
        # Function-local: the guard module imports torch. Measured with /usr/bin/time on
        # the shared 2-core machine (load ~30): `import node.daemon.privacy_guard` takes
        # 3.5-4.4 s CPU and 337 MB RSS, `import node.daemon.core` 1.0 s and 90 MB. The CLI
        # imports core for `fednode start` before it can say "starting", and a daemon
        # exits slower with torch loaded (tests/node/test_admission.py keeps core
        # torch-free).
        from node.daemon.privacy_guard import ReleaseGuard

        record = record_mechanism(self.genesis.learner)
        return ReleaseGuard(
            self.genesis.privacy,
            ctx.store,
            self.metrics,
            record_kind=None if record is None or record[1] == 0 else record[0],
        )

    async def _start_learner(
        self,
        ctx: NodeContext,
        service: NodeService,
        membership: DaemonMembership,
        policy: PeerPolicy,
        guard: ReleaseState,
        shard: int,
    ) -> LearnerRuntime | None:
        """Build and start the genesis' learner and put it behind the peer service."""
        # Function-local for the same reason as _release_guard: the runtimes import torch.
        from node.daemon.privacy_guard import ReleaseGuard
        from node.daemon.spsa_runtime import SpsaRuntime
        from node.daemon.training_runtime import TrainingRuntime

        # Built by _release_guard; typed as the Protocol there because core must not import torch.
        assert isinstance(guard, ReleaseGuard)
        kind = self.genesis.learner.kind
        if kind in {"sgd", "flower"}:
            training = await TrainingRuntime.create(
                ctx, membership, policy, guard, shard, self.attack, self.collusion
            )
            # Set with no await since the runtime built it: no push finds it missing.
            service.history = training.history_exchange
            service.training = training
            return training
        if kind == "spsa":
            spsa = await SpsaRuntime.create(
                ctx, membership, policy, guard, shard, witness=self.evidence
            )
            service.training = spsa
            return spsa
        return None

    async def _stop_components(self) -> None:
        """Stop training, then leave the membership gracefully."""
        if self.training is not None:
            try:
                await self.training.stop()
            except Exception:  # a failing learner must not block the shutdown
                log.exception("training did not stop cleanly")
        if self.membership is not None:
            await self.membership.stop()

    async def _shutdown(self, servers: tuple[grpc.aio.Server, grpc.aio.Server] | None) -> None:
        self.info.state = "stopping"
        t0 = time.monotonic()
        log.info("node stopping")
        with contextlib.suppress(Exception):
            if servers is not None:
                await self.health.enter_graceful_shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stop_components(), timeout=2.0)
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

    # --- callbacks ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stop_event.set()

    def _on_fault(self, sender: bytes, reason: str) -> None:
        # Only members are charged: a throwaway key's faults would only grow the table
        # (admission refuses it anyway, whatever its reputation).
        if self.policy is None or self.membership is None:
            return
        if self.membership.is_member(sender):
            self.policy.fault(sender.hex(), reason)
