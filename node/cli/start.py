"""``fednode start``: run the node daemon in the foreground."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from node.base.address import parse_host_port
from node.base.datadir import DataDirLocked
from node.base.logs import configure_logging
from node.base.settings import ConfigError, load_settings
from node.cli.options import DataDirOpt, open_data_dir
from node.cli.output import fail
from node.training.genesis import GenesisError, load_genesis
from node.training.hf.folder import HFFolderError, verify_model_folder

__all__ = ["start"]


def start(
    data_dir: DataDirOpt = None,
    genesis: Annotated[
        Path | None,
        typer.Option(
            "--genesis",
            "-g",
            help="Genesis file \\[default: the copy pinned in the data dir].",
            show_default=False,
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            help="Peer gRPC address HOST:PORT \\[default: 127.0.0.1:7420].", show_default=False
        ),
    ] = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", "-b", help="First-contact address (repeatable)."),
    ] = None,
    advertise: Annotated[
        str | None, typer.Option(help="Address peers should dial, if not --listen.")
    ] = None,
    admin: Annotated[
        str | None,
        typer.Option(
            help="Operator API: unix, unix:PATH or a loopback HOST:PORT \\[default: unix]."
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="Prometheus /metrics HOST:PORT or off \\[default: 127.0.0.1:0]."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL \\[default: SQLite fednode.db in the data dir]."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="Log format: text or json \\[default: text].")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = None,
    shard: Annotated[
        int | None,
        typer.Option(
            help="Which shard of a built-in task's partition is this node's data "
            "(0..task.num_nodes-1; a local-data task ignores it) \\[default: derived from "
            "the node id, so nodes of one network rarely share a shard].",
            show_default=False,
        ),
    ] = None,
    no_train: Annotated[
        bool,
        typer.Option(
            "--no-train",
            help="Serve membership only (a bootstrap or relay node that holds no data).",
        ),
    ] = False,
    attack: Annotated[
        str | None,
        typer.Option(
            help="Testnets only: behave as a Byzantine node with this attack.", hidden=True
        ),
    ] = None,
    collude: Annotated[
        Path | None,
        typer.Option(
            help="Testnets only, with --attack: the colluders' rendezvous directory "
            "(node/testnet/collusion.py).",
            hidden=True,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(help="PEM certificate: serve and dial peers over TLS only (fednode certs)."),
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_ca: Annotated[
        str | None,
        typer.Option(help="PEM CA: peers must present a certificate it signed (mutual TLS)."),
    ] = None,
    tls_server_name: Annotated[
        str | None,
        typer.Option(help="Name to check in peers' certificates instead of the dialed host."),
    ] = None,
) -> None:
    """Run the node daemon in the foreground until SIGINT/SIGTERM or `fednode stop`.

    Settings come from node.toml in the data dir, overridden by these flags.

    Example: fednode start -d ./node2 -g net.toml --listen 127.0.0.1:7002 -b 127.0.0.1:7001

    Mutual TLS (see fednode certs --help): add --tls-cert n2/node.crt --tls-key n2/node.key
    --tls-ca n2/ca.crt
    """
    dd = open_data_dir(data_dir)
    try:
        # First thing: while the daemon loads, `fednode status` sees the lock and says
        # "starting" rather than "no daemon is running".
        lock_fd = dd.acquire_lock()
    except DataDirLocked as exc:
        raise fail(str(exc)) from None
    # Imported here, not at the top: the daemon (gRPC aio, storage, the runtimes) more
    # than doubles the import time of every other fednode command (python -X importtime).
    from node.daemon.core import Daemon, DaemonError

    try:
        settings = load_settings(
            dd.root / "node.toml",
            {
                "listen": listen,
                "advertise": advertise,
                "admin": admin,
                "metrics": metrics,
                "database_url": database_url,
                "log_format": log_format,
                "log_level": log_level.upper() if log_level else None,
                "tls_cert": tls_cert,
                "tls_key": tls_key,
                "tls_ca": tls_ca,
                "tls_server_name": tls_server_name,
            },
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    gen_path = genesis or dd.genesis
    if genesis is None and not dd.genesis.exists():
        raise fail(f"no genesis pinned in {dd.root}; pass --genesis FILE")
    try:
        gen = load_genesis(gen_path)
    except GenesisError as exc:
        raise fail(str(exc)) from None
    for address in bootstrap or []:
        try:
            parse_host_port(address)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if gen.task.is_hf and gen.task.model_path is not None and not no_train:
        try:
            verify_model_folder(gen.task.model_path, gen.task.model_sha256)
        except HFFolderError as exc:
            raise fail(str(exc)) from None
    configure_logging(settings.log_format, settings.log_level)
    if shard is not None and not 0 <= shard < gen.task.num_nodes:
        raise fail(f"--shard must be in 0..{gen.task.num_nodes - 1} for this genesis")
    if collude is not None and attack is None:
        raise fail("--collude needs --attack")
    collusion = None
    if collude is not None:
        # Imported here, as node.sim.byzantine below: both load torch.
        from node.testnet.collusion import ColludingAttacker, CollusionError

        try:
            collusion = ColludingAttacker(collude, attack, gen)  # type: ignore[arg-type]
        except CollusionError as exc:
            raise fail(str(exc)) from None
    elif attack is not None:
        # Imported here: node.sim.byzantine loads torch, which --no-train nodes never load.
        from node.sim.byzantine import ByzantineSimError, parse_attack

        try:
            parse_attack(attack)  # name or name:key=value,... (e.g. ipm:eps=100)
        except ByzantineSimError as exc:
            raise fail(str(exc)) from None
    daemon = Daemon(
        dd,
        gen,
        settings,
        bootstrap=list(bootstrap or []),
        shard=shard,
        attack=attack,
        collusion=collusion,
        train=not no_train,
        lock_fd=lock_fd,
    )
    try:
        code = asyncio.run(daemon.run())
    except (DaemonError, DataDirLocked) as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)
