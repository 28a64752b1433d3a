"""A local testnet: N real daemon processes on loopback from one genesis file.

Each node is a fresh interpreter (``python -m node start``), never a fork of a process
that already initialised gRPC, with one torch thread. The first node listens on a free
port; the others bootstrap from its address and find each other through gossip. The
orchestrator only reads what any operator can read: ``daemon.json`` and the admin API.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from node.base.datadir import DataDir
from node.base.identity import Identity
from node.testnet.cpulimit import CpuLimiter, CpuLimitError
from node.training.genesis import Genesis, render_genesis
from node.wire.admin_client import AdminClient, AdminUnavailable

__all__ = ["FixedLoopbackPorts", "NodePlacement", "Testnet", "TestnetError", "TestnetNode"]


class NodePlacement(Protocol):
    """Where a node process runs and which address it uses (default: loopback).

    ``node.testnet.netns.NetnsTestnet`` implements it to put each node in a network namespace.
    """

    def command_prefix(self, index: int) -> list[str]:
        """Prepended to the node's command line (e.g. ``ip netns exec NAME``)."""
        ...

    def listen(self, index: int) -> str:
        """The node's ``--listen`` address."""
        ...

    def advertise(self, index: int) -> str | None:
        """The node's ``--advertise`` address, or None for its listen address."""
        ...


class TestnetError(Exception):
    """A testnet node failed to start or to answer."""

    __test__ = False


class FixedLoopbackPorts:
    """Loopback placement with ports chosen up front, so every node can start at once.

    Parameters
    ----------
    n : int
        Number of nodes; each gets a port that was free when the placement was made.
    """

    def __init__(self, n: int) -> None:
        self.ports: list[int] = []
        for _ in range(n):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.ports.append(s.getsockname()[1])

    def command_prefix(self, index: int) -> list[str]:
        return []

    def listen(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"

    def advertise(self, index: int) -> str | None:
        return None


@dataclass
class TestnetNode:
    """One node process of a testnet."""

    __test__ = False

    index: int
    data_dir: DataDir
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.data_dir.root / "daemon.log"

    def runtime(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.data_dir.runtime.read_text())
        except (OSError, ValueError):
            return None
        return data

    @property
    def address(self) -> str:
        info = self.runtime()
        if info is None:
            raise TestnetError(f"node {self.index} is not running")
        return str(info["listen"])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, timeout: float = 5.0) -> AdminClient:
        return AdminClient(self.data_dir, timeout=timeout)


class Testnet:
    """Start, watch and stop a set of local node processes.

    Parameters
    ----------
    root : Path
        Work directory; node ``i`` keeps its state in ``root/node-i``.
    genesis : Genesis
        The network; written to ``root/genesis.toml``.
    nodes : int
        Number of nodes.
    log_level : str, default "INFO"
    env : dict, optional
        Extra environment for the node processes.
    node_args : dict, optional
        Extra command-line arguments per node index.
    placement : NodePlacement, optional
        Run the nodes elsewhere than on loopback [default: loopback, free ports].
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        root: Path,
        genesis: Genesis,
        nodes: int,
        *,
        log_level: str = "INFO",
        env: dict[str, str] | None = None,
        node_args: dict[int, list[str]] | None = None,
        placement: NodePlacement | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a testnet needs at least one node")
        self.root = root
        self.genesis = genesis
        self.genesis_path = root / "genesis.toml"
        self.log_level = log_level
        self.env = dict(env or {})
        self.placement = placement
        self.nodes = [
            TestnetNode(i, DataDir(root / f"node-{i}"), extra_args=(node_args or {}).get(i, []))
            for i in range(nodes)
        ]
        self._limiter: CpuLimiter | None = None
        self.cpu_limits: dict[int, float] = {}
        self.throttled_s: dict[int, float] = {}
        """Seconds each CPU-limited node was held back by its quota (set by :meth:`stop`)."""

    def limit_cpus(self, limits: dict[int, float]) -> None:
        """Hold each node ``i`` in ``limits`` to ``limits[i]`` CPUs from now on.

        A cgroup per node (:mod:`node.testnet.cpulimit`): the node is throttled by the
        kernel, as on a slower machine. Call it once the nodes run (their start-up, torch's
        import included, is not limited). :meth:`stop` removes the cgroups.

        Raises
        ------
        TestnetError
            The limits cannot be set here (no cgroup CPU controller, not root), or a node
            is not running.
        """
        try:
            if self._limiter is None:
                self._limiter = CpuLimiter(f"{os.getpid()}-{id(self):x}")
            for index, cpus in sorted(limits.items()):
                node = self.nodes[index]
                if node.process is None or node.process.poll() is not None:
                    raise TestnetError(f"node {index} is not running: cannot limit its CPU")
                self._limiter.limit(index, node.process.pid, cpus)
                self.cpu_limits[index] = cpus
        except CpuLimitError as exc:
            raise TestnetError(str(exc)) from None

    def _release_cpu_limits(self) -> None:
        if self._limiter is None:
            return
        for index in self.cpu_limits:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.throttled_s[index] = self._limiter.throttled_us(index) / 1e6
        self._limiter.close()
        self._limiter = None

    def prepare(self) -> None:
        """Write the genesis and mint every node's identity (in this process)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.genesis_path.write_text(render_genesis(self.genesis), encoding="utf-8")
        for node in self.nodes:
            node.data_dir.ensure()
            if not node.data_dir.identity.exists():
                Identity.generate(self.genesis.network.pow_difficulty).save(node.data_dir.identity)
            node.data_dir.admin_token(create=True)

    def _command(self, node: TestnetNode, bootstrap: str | None) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "node",
            "start",
            "--data-dir",
            str(node.data_dir.root),
            "--genesis",
            str(self.genesis_path),
            "--listen",
            "127.0.0.1:0" if self.placement is None else self.placement.listen(node.index),
            "--log-level",
            self.log_level,
            "--shard",
            str(node.index % self.genesis.task.num_nodes),
        ]
        if bootstrap:
            cmd += ["--bootstrap", bootstrap]
        if self.placement is None:
            return cmd + node.extra_args
        advertise = self.placement.advertise(node.index)
        if advertise:
            cmd += ["--advertise", advertise]
        return self.placement.command_prefix(node.index) + cmd + node.extra_args

    def start_node(self, node: TestnetNode, bootstrap: str | None, timeout: float = 60.0) -> None:
        """Start one node process and wait until its admin API answers."""
        self.spawn_node(node, bootstrap)
        self.wait_started([node], timeout)

    def spawn_node(self, node: TestnetNode, bootstrap: str | None) -> None:
        """Start one node process without waiting for it."""
        env = {**os.environ, **self.env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.setdefault("PYTHONUNBUFFERED", "1")
        with contextlib.suppress(FileNotFoundError):
            node.data_dir.runtime.unlink()
        log = open(node.log_path, "ab")  # noqa: SIM115 - the child owns it
        node.process = subprocess.Popen(
            self._command(node, bootstrap),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    def wait_started(self, nodes: list[TestnetNode], timeout: float = 60.0) -> None:
        """Wait until every node in ``nodes`` wrote ``daemon.json`` (its servers are up)."""
        deadline = time.monotonic() + timeout
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                assert node.process is not None
                if node.process.poll() is not None:
                    raise TestnetError(
                        f"node {node.index} exited with code {node.process.returncode}; "
                        f"last log lines:\n{self.tail(node)}"
                    )
                if node.runtime() is not None:
                    waiting.remove(node)
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(str(n.index) for n in waiting)
                raise TestnetError(f"node(s) {names} did not start within {timeout:.0f} s")
            time.sleep(0.05)

    def start(self, timeout: float = 90.0) -> None:
        """Start every node at once, each other node bootstrapping from node 0's address.

        Node 0's address must be known before it runs, so a loopback testnet chooses its
        ports up front (:class:`FixedLoopbackPorts`). Starting node 0 first and the others
        only once it answered let node 0 begin round 0 while they were still importing torch.
        """
        self.prepare()
        if self.placement is None:
            self.placement = FixedLoopbackPorts(len(self.nodes))
        bootstrap = self.placement.advertise(0) or self.placement.listen(0)
        for node in self.nodes:
            self.spawn_node(node, None if node.index == 0 else bootstrap)
        self.wait_started(self.nodes, timeout)

    def tail(self, node: TestnetNode, lines: int = 15) -> str:
        try:
            return "\n".join(node.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def statuses(self) -> dict[int, dict[str, Any]]:
        """Status of every running node as a dict (missing when it does not answer)."""
        from google.protobuf.json_format import MessageToDict

        out: dict[int, dict[str, Any]] = {}
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                with node.client(timeout=3.0) as client:
                    reply = client.status()
            except AdminUnavailable:
                continue
            out[node.index] = MessageToDict(
                reply,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        return out

    def wait_full_view(self, timeout: float = 60.0) -> float:
        """Wait until every live node sees every other live node alive; return seconds."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            live = [n for n in self.nodes if n.alive()]
            st = self.statuses()
            if len(st) == len(live) and all(
                s.get("peers_alive", 0) >= len(live) - 1 for s in st.values()
            ):
                return time.monotonic() - t0
            time.sleep(0.2)
        raise TestnetError(f"nodes did not reach a full view within {timeout:.0f} s")

    def signal_node(self, node: TestnetNode, sig: int = signal.SIGTERM) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(sig)

    def stop_node(self, node: TestnetNode, timeout: float = 10.0) -> int | None:
        """SIGTERM one node and wait; SIGKILL after ``timeout``. Returns its exit code."""
        if node.process is None:
            return None
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(timeout)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        return node.process.returncode

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node: SIGTERM to all at once, then wait (SIGKILL stragglers)."""
        for node in self.nodes:
            self.signal_node(node)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        self._release_cpu_limits()

    @contextlib.contextmanager
    def running(self, timeout: float = 90.0) -> Iterator[Testnet]:
        """Context manager: start everything, always stop everything."""
        try:
            self.start(timeout)
            yield self
        finally:
            self.stop()
