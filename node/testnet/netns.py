"""Network namespaces for a fault testnet: one namespace per node, one private bridge.

Layout (``tag`` is a short random hex string, so two testnets never collide)::

    fnt-<tag>-br        namespace holding only the bridge ``br0``
    fnt-<tag>-n<i>      node i: ``eth0`` (10.213.0.<i+1>/24) veth-paired with ``v<i>`` on br0

Nothing of this is attached to the root namespace: the bridge lives in a namespace of its
own and has no uplink, so testnet traffic cannot leave the machine, and the host's
firewall never sees it. Every veth is created directly inside its namespaces
(``ip link add ... netns``), so deleting the namespaces removes everything.

Faults are nftables rules in each node's namespace (table ``inet fednode_fault``):

* partition: a set ``blocked`` of peer addresses; input drops ``ip saddr @blocked``,
  output drops ``ip daddr @blocked``. Healing flushes the set.
* loss: ``numgen random mod 10000 < p*100`` drops in the output chain, for testnet
  addresses only (loopback inside the namespace is never touched), so each packet
  between two nodes is dropped with probability p once.
* delay and jitter: our kernels lack ``tc netem``, so a userspace TCP proxy
  (:func:`run_delay_proxy`) in each node's namespace listens on the node's advertised
  address and forwards to the daemon on loopback, holding every chunk for
  ``delay +- jitter`` seconds in each direction. Its settings are a JSON file the
  orchestrator rewrites; the proxy polls it.

Everything needs root (``CAP_NET_ADMIN``), ``ip`` (iproute2) and ``nft`` (nftables).
:func:`cleanup` removes whatever a crashed run left behind; it is idempotent.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.testnet.local import Testnet, TestnetNode
    from node.training.genesis import Genesis

__all__ = [
    "NS_PREFIX",
    "PEER_PORT",
    "SUBNET",
    "NetnsError",
    "NetnsFabric",
    "NetnsTestnet",
    "cleanup",
    "list_namespaces",
    "missing_requirements",
    "require_netns",
    "run_delay_proxy",
    "write_delay",
]

NS_PREFIX = "fnt-"
"""Every namespace this module creates starts with this; :func:`cleanup` removes them."""
SUBNET = "10.213.0"
"""First three octets of the testnet /24; used only inside namespaces created here."""
PEER_PORT = 7420
"""Port nodes (or their delay proxies) listen on; each namespace has its own port space."""
DAEMON_PORT = 7421
"""Port the daemon listens on, on loopback, when a delay proxy sits in front of it."""
TABLE = "fednode_fault"
MAX_NODES = 250


class NetnsError(RuntimeError):
    """A namespace, link or rule could not be made; ``str()`` names the command."""


def missing_requirements() -> list[str]:
    """What keeps this machine from running a namespace testnet (empty when nothing)."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append("root (CAP_NET_ADMIN) is needed to create network namespaces")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` not found (apt-get install {package})")
    return missing


def require_netns() -> None:
    """Raise :class:`NetnsError` naming everything that is missing."""
    missing = missing_requirements()
    if missing:
        raise NetnsError("cannot build a namespace testnet: " + "; ".join(missing))


def _run(args: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and proc.returncode != 0:
        raise NetnsError(f"`{' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def list_namespaces(prefix: str = NS_PREFIX) -> list[str]:
    """Names of existing network namespaces that start with ``prefix``."""
    if shutil.which("ip") is None:
        return []
    out = _run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def _kill_namespace_processes(ns: str) -> None:
    # A namespace whose name is gone but whose processes live on keeps its links; the
    # processes in our namespaces are testnet nodes and proxies we started.
    out = _run(["ip", "netns", "pids", ns], check=False)
    for token in out.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(token), signal.SIGKILL)


def cleanup(prefix: str = NS_PREFIX) -> list[str]:
    """Delete every namespace named ``prefix*`` (killing what runs inside); idempotent.

    Returns
    -------
    list of str
        The namespaces removed.
    """
    if not prefix.startswith(NS_PREFIX):
        raise ValueError(f"refusing to clean namespaces outside the {NS_PREFIX!r} prefix")
    removed = []
    for ns in list_namespaces(prefix):
        _kill_namespace_processes(ns)
        _run(["ip", "netns", "delete", ns], check=False)
        removed.append(ns)
    return removed


class NetnsFabric:
    """Namespaces, a bridge and fault rules for one testnet.

    Parameters
    ----------
    tag : str, optional
        Names the namespaces ``fnt-<tag>-...`` [default: 4 random hex digits].

    Examples
    --------
    >>> fabric = NetnsFabric()              # doctest: +SKIP
    >>> fabric.create(3); fabric.partition([[0], [1, 2]]); fabric.heal()
    >>> fabric.teardown()
    """

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(2)
        if not self.tag.isalnum() or len(self.tag) > 12:
            raise ValueError(f"netns tag must be up to 12 letters/digits, got {self.tag!r}")
        self.bridge_ns = f"{NS_PREFIX}{self.tag}-br"
        self.nodes: list[int] = []
        self._blocked: dict[int, set[int]] = {}
        self._loss: dict[int, float] = {}

    # --- naming --------------------------------------------------------------------------

    def namespace(self, index: int) -> str:
        """Name of node ``index``'s namespace."""
        return f"{NS_PREFIX}{self.tag}-n{index}"

    @staticmethod
    def address(index: int) -> str:
        """Node ``index``'s IPv4 address (10.213.0.<index+1>)."""
        if not 0 <= index < MAX_NODES:
            raise ValueError(f"node index must be in 0..{MAX_NODES - 1}, got {index}")
        return f"{SUBNET}.{index + 1}"

    def exec_prefix(self, index: int) -> list[str]:
        """Command prefix that runs a program inside node ``index``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(index)]

    def namespaces(self) -> list[str]:
        return [self.bridge_ns, *(self.namespace(i) for i in self.nodes)]

    # --- building ------------------------------------------------------------------------

    def create(self, count: int) -> None:
        """Create the bridge namespace and ``count`` node namespaces (0..count-1)."""
        require_netns()
        if count < 1:
            raise ValueError("a namespace testnet needs at least one node")
        _run(["ip", "netns", "add", self.bridge_ns])
        br = ["ip", "-n", self.bridge_ns]
        _run([*br, "link", "add", "br0", "type", "bridge"])
        _run([*br, "link", "set", "br0", "up"])
        _run([*br, "link", "set", "lo", "up"])
        for i in range(count):
            self.add_node(i)

    def add_node(self, index: int) -> str:
        """Create node ``index``'s namespace, wire it to the bridge; return its address."""
        if index in self.nodes:
            raise ValueError(f"node {index} already has a namespace")
        address = self.address(index)
        ns = self.namespace(index)
        _run(["ip", "netns", "add", ns])
        self.nodes.append(index)
        port = f"v{index}"
        _run(
            [
                "ip", "-n", self.bridge_ns, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", ns,
            ]
        )  # fmt: skip
        _run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0"])
        _run(["ip", "-n", self.bridge_ns, "link", "set", port, "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self._nft(index, self._base_rules())
        self._blocked[index] = set()
        self._loss[index] = 0.0
        return address

    @staticmethod
    def _base_rules() -> str:
        return f"""
table inet {TABLE} {{
  set blocked {{ type ipv4_addr; }}
  chain loss {{ }}
  chain input {{ type filter hook input priority 0; policy accept; ip saddr @blocked drop; }}
  chain output {{
    type filter hook output priority 0; policy accept;
    ip daddr @blocked drop
    ip daddr {SUBNET}.0/24 jump loss
  }}
}}
"""

    def _nft(self, index: int, script: str) -> None:
        _run([*self.exec_prefix(index), "nft", "-f", "-"], stdin=script)

    def teardown(self) -> None:
        """Delete this testnet's namespaces (and so its links and rules); idempotent."""
        for ns in reversed(self.namespaces()):
            if shutil.which("ip") is None:
                return
            _kill_namespace_processes(ns)
            _run(["ip", "netns", "delete", ns], check=False)
        self.nodes = []

    # --- faults --------------------------------------------------------------------------

    def _set_blocked(self, index: int, blocked: Iterable[int]) -> None:
        wanted = set(blocked) - {index}
        script = f"flush set inet {TABLE} blocked\n"
        if wanted:
            elements = ", ".join(self.address(j) for j in sorted(wanted))
            script += f"add element inet {TABLE} blocked {{ {elements} }}\n"
        self._nft(index, script)
        self._blocked[index] = wanted

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Cut the network into ``groups``; nodes outside every group form one more group.

        Raises
        ------
        ValueError
            When a node is in two groups or is unknown.
        """
        seen: dict[int, int] = {}
        for g, group in enumerate(groups):
            for i in group:
                if i not in self.nodes:
                    raise ValueError(f"partition names node {i}, which has no namespace")
                if i in seen:
                    raise ValueError(f"node {i} is in two partition groups")
                seen[i] = g
        rest = len(groups)
        for i in self.nodes:
            seen.setdefault(i, rest)
        for i in self.nodes:
            self._set_blocked(i, [j for j in self.nodes if seen[j] != seen[i]])

    def isolate(self, index: int) -> None:
        """Cut node ``index`` off from every other node."""
        self.partition([[index]])

    def heal(self) -> None:
        """Remove every partition rule."""
        for i in self.nodes:
            if self._blocked.get(i):
                self._set_blocked(i, [])

    def blocked(self, index: int) -> set[int]:
        """Nodes that ``index`` cannot reach now."""
        return set(self._blocked.get(index, set()))

    def set_loss(self, percent: float, nodes: Iterable[int] | None = None) -> None:
        """Drop ``percent`` % of the packets each of ``nodes`` sends [default: all nodes]."""
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"loss must be a percentage in 0..100, got {percent}")
        threshold = round(percent * 100)
        for i in self.nodes if nodes is None else nodes:
            script = f"flush chain inet {TABLE} loss\n"
            if threshold >= 10000:
                script += f"add rule inet {TABLE} loss drop\n"
            elif threshold > 0:
                script += f"add rule inet {TABLE} loss numgen random mod 10000 < {threshold} drop\n"
            self._nft(i, script)
            self._loss[i] = percent

    def loss(self, index: int) -> float:
        return self._loss.get(index, 0.0)

    def counters(self, index: int) -> str:
        """The namespace's fault ruleset as ``nft list`` prints it (for reports and tests)."""
        return _run([*self.exec_prefix(index), "nft", "list", "table", "inet", TABLE])


# --- a testnet in namespaces ----------------------------------------------------------------


class NetnsTestnet:
    """A :class:`~node.testnet.local.Testnet` whose nodes each run in their own namespace.

    Node ``i`` listens on ``10.213.0.<i+1>:7420`` and advertises it; with
    ``delay_proxy`` a :func:`run_delay_proxy` holds that address instead and the daemon
    listens on ``127.0.0.1:7421`` inside the namespace. The admin API stays a Unix socket
    in the data dir (the filesystem is shared), so statuses are read as on loopback.

    Use it as a context manager, or call :meth:`start` and always :meth:`stop`: both
    tear the namespaces down. While running, SIGTERM and SIGHUP raise
    ``KeyboardInterrupt`` in the main thread and an ``atexit`` hook tears down as a last
    resort; ``fednode testnet cleanup`` removes what a SIGKILLed orchestrator left.

    Parameters
    ----------
    root : Path
        Work directory (node ``i`` in ``root/node-i``).
    genesis : Genesis
        The network.
    nodes : int
        Number of nodes at start (more can be added with :meth:`add_node`).
    node_args : dict, optional
        Extra ``fednode start`` arguments per node index.
    delay_proxy : bool, default False
        Put a delaying proxy in front of every node (needed for :meth:`set_delay`).
    tag : str, optional
        Namespace name tag [default: random].
    log_level : str, default "INFO"
    """

    def __init__(
        self,
        root: Path,
        genesis: Genesis,
        nodes: int,
        *,
        node_args: dict[int, list[str]] | None = None,
        delay_proxy: bool = False,
        tag: str | None = None,
        log_level: str = "INFO",
    ) -> None:
        from node.testnet.local import Testnet

        if nodes > MAX_NODES:
            raise ValueError(f"a namespace testnet holds at most {MAX_NODES} nodes")
        self.root = root
        self.fabric = NetnsFabric(tag)
        self.delay_proxy = delay_proxy
        self.net: Testnet = Testnet(
            root, genesis, nodes, node_args=node_args, log_level=log_level, placement=self
        )
        self.proxies: dict[int, subprocess.Popen[bytes]] = {}
        self.before_nodes: Callable[[], None] | None = None
        """Called once the namespaces (and proxies) exist, before any node starts."""
        self._torn_down = False
        self._previous: dict[int, object] = {}

    # --- NodePlacement -------------------------------------------------------------------

    def command_prefix(self, index: int) -> list[str]:
        return self.fabric.exec_prefix(index)

    def listen(self, index: int) -> str:
        if self.delay_proxy:
            return f"127.0.0.1:{DAEMON_PORT}"
        return f"{self.fabric.address(index)}:{PEER_PORT}"

    def advertise(self, index: int) -> str | None:
        return f"{self.fabric.address(index)}:{PEER_PORT}"

    # --- lifecycle -----------------------------------------------------------------------

    def address(self, index: int) -> str:
        """Node ``index``'s peer address ``10.213.0.<index+1>:7420``."""
        return f"{self.fabric.address(index)}:{PEER_PORT}"

    def _delay_file(self, index: int) -> Path:
        return self.root / f"delay-{index}.json"

    def _prepare_node(self, node: TestnetNode) -> None:
        node.data_dir.ensure()
        if self.delay_proxy:
            # Behind the proxy every peer connects from 127.0.0.1: the per-address rate
            # limit must then cover all peers together.
            (node.data_dir.root / "node.toml").write_text("peer_rate = 2000.0\npeer_burst = 4000\n")
            write_delay(self._delay_file(node.index), 0.0, 0.0)
            self._start_proxy(node.index)

    def _start_proxy(self, index: int) -> None:
        log = open(self.root / f"proxy-{index}.log", "ab")  # noqa: SIM115 - the child owns it
        self.proxies[index] = subprocess.Popen(
            [
                *self.fabric.exec_prefix(index),
                sys.executable, "-m", "node.testnet.netns", "proxy",
                "--listen", self.address(index),
                "--target", f"127.0.0.1:{DAEMON_PORT}",
                "--control", str(self._delay_file(index)),
                "--seed", str(index),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()

    def start(self, timeout: float = 120.0) -> None:
        """Create the namespaces, start node 0, then the others bootstrapping from it."""
        self._install_handlers()
        self.net.prepare()
        self.fabric.create(len(self.net.nodes))
        for node in self.net.nodes:
            self._prepare_node(node)
        if self.before_nodes is not None:
            self.before_nodes()
        # Addresses are known before any node runs, so all start at once; the others
        # retry joining node 0 until it answers (join_retry_interval).
        for node in self.net.nodes:
            self.net.spawn_node(node, None if node.index == 0 else self.address(0))
        self.net.wait_started(self.net.nodes, timeout)

    def add_node(self, extra_args: list[str] | None = None, timeout: float = 120.0) -> TestnetNode:
        """Create one more namespace and node (bootstrapping from node 0); return it."""
        from node.base.datadir import DataDir
        from node.base.identity import Identity
        from node.testnet.local import TestnetNode

        index = len(self.net.nodes)
        node = TestnetNode(index, DataDir(self.root / f"node-{index}"), extra_args=extra_args or [])
        self.net.nodes.append(node)
        node.data_dir.ensure()
        if not node.data_dir.identity.exists():
            Identity.generate(self.net.genesis.network.pow_difficulty).save(node.data_dir.identity)
        node.data_dir.admin_token(create=True)
        self.fabric.add_node(index)
        self._prepare_node(node)
        self.net.spawn_node(node, self.address(0))
        return node

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` and wait for it to be gone."""
        node = self.net.nodes[index]
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()

    def restart(self, index: int) -> None:
        """Start node ``index`` again from its data dir (bootstrap: node 0's address)."""
        node = self.net.nodes[index]
        if node.alive():
            raise ValueError(f"node {index} is still running")
        # A SIGKILLed daemon leaves its daemon.json behind; spawn_node removes it.
        self.net.spawn_node(node, self.address(0))

    def set_delay(
        self, delay_s: float, jitter_s: float = 0.0, nodes: Iterable[int] | None = None
    ) -> None:
        """Add ``delay_s +- jitter_s`` in each direction of every connection to ``nodes``."""
        if not self.delay_proxy:
            raise ValueError("latency needs the delay proxies: create with delay_proxy=True")
        for i in self.fabric.nodes if nodes is None else nodes:
            write_delay(self._delay_file(i), delay_s, jitter_s)

    def stop(self) -> None:
        """Stop every node and proxy and delete the namespaces; idempotent."""
        if self._torn_down:
            return
        try:
            self.net.stop()
        finally:
            for proc in self.proxies.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in self.proxies.values():
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.fabric.teardown()
            self._torn_down = True
            self._restore_handlers()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def _install_handlers(self) -> None:
        atexit.register(self.stop)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore_handlers(self) -> None:
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> NetnsTestnet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[NetnsTestnet]:
        """Context manager: start everything, always tear everything down."""
        with self:
            yield self


# --- delay proxy ---------------------------------------------------------------------------


def write_delay(path: Path, delay_s: float, jitter_s: float = 0.0) -> None:
    """Set what a :func:`run_delay_proxy` reading ``path`` adds (atomically)."""
    if delay_s < 0 or jitter_s < 0 or jitter_s > delay_s:
        raise ValueError("delay must be >= 0 and jitter within 0..delay")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"delay_s": delay_s, "jitter_s": jitter_s}))
    os.replace(tmp, path)


class _DelaySettings:
    def __init__(self, control: Path | None) -> None:
        self.control = control
        self.delay = 0.0
        self.jitter = 0.0
        self._mtime = 0.0
        self._checked = 0.0

    def current(self) -> tuple[float, float]:
        now = time.monotonic()
        if self.control is not None and now - self._checked > 0.25:
            self._checked = now
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                mtime = self.control.stat().st_mtime
                if mtime != self._mtime:
                    data = json.loads(self.control.read_text())
                    self.delay = max(0.0, float(data["delay_s"]))
                    self.jitter = max(0.0, min(self.delay, float(data.get("jitter_s", 0.0))))
                    self._mtime = mtime
        return self.delay, self.jitter


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    settings: _DelaySettings,
    rng: random.Random,
) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()

    task = asyncio.create_task(deliver())
    last_due = 0.0
    try:
        while True:
            data = await reader.read(65536)
            delay, jitter = settings.current()
            due = time.monotonic() + delay + (rng.uniform(-jitter, jitter) if jitter else 0.0)
            # TCP is a byte stream: jitter may not reorder chunks, only spread them.
            due = max(due, last_due)
            last_due = due
            await queue.put((due, data))
            if not data:
                break
        await task
    finally:
        task.cancel()


async def _serve_proxy(listen: str, target: str, control: Path | None, seed: int) -> None:
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    settings = _DelaySettings(control)
    rng = random.Random(seed)

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cw.close()
            return
        try:
            await asyncio.gather(_pump(cr, uw, settings, rng), _pump(ur, cw, settings, rng))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (uw, cw):
                with contextlib.suppress(Exception):
                    w.close()

    server = await asyncio.start_server(handle, lhost, int(lport), reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def run_delay_proxy(listen: str, target: str, control: Path | None = None, seed: int = 0) -> None:
    """Forward TCP from ``listen`` to ``target``, delaying each direction (blocks).

    Parameters
    ----------
    listen, target : str
        ``HOST:PORT`` to accept on and to forward to.
    control : Path, optional
        JSON file ``{"delay_s": D, "jitter_s": J}`` polled every 0.25 s [default: no delay].
    seed : int, default 0
        Seed of the jitter.
    """
    asyncio.run(_serve_proxy(listen, target, control, seed))


def main(argv: list[str] | None = None) -> int:
    """``python -m node.testnet.netns proxy ...`` (started by the testnet) or ``cleanup``."""
    parser = argparse.ArgumentParser(prog="python -m node.testnet.netns")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("proxy", help="run a delaying TCP proxy")
    p.add_argument("--listen", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--control", type=Path)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("cleanup", help="remove every fnt-* namespace")
    args = parser.parse_args(argv)
    if args.cmd == "proxy":
        run_delay_proxy(args.listen, args.target, args.control, args.seed)
    else:
        for ns in cleanup():
            print(f"removed {ns}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
