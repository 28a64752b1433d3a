"""The ``fednode`` command line (same program as ``python -m node``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from node import __version__
from node.base.datadir import DataDir, DataDirLocked, default_data_dir
from node.base.identity import Identity, IdentityError, estimate_hash_rate, pow_check, pow_solve
from node.cli.wide import print_wide
from node.training.genesis import Genesis, GenesisError, load_genesis, render_genesis
from node.wire.admin_client import AdminClient, AdminUnavailable

__all__ = ["app", "main"]

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="fednode",
    help=(
        "fednode: a decentralized federated-learning node. Every participant runs the same "
        "daemon; nodes find each other by gossip, train on private data and merge updates "
        "peer to peer. There is no central server.\n\n"
        "Quick start: fednode init; fednode genesis new net.toml; "
        "fednode start --genesis net.toml; fednode status"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
genesis_app = typer.Typer(
    help="Create and inspect genesis files (the definition of a network).",
    no_args_is_help=True,
)
app.add_typer(genesis_app, name="genesis")


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Node state directory \\[default: $FEDNODE_HOME, else ~/.local/share/fednode].",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format: text or json.")
]


def _data_dir(path: Path | None) -> DataDir:
    return DataDir((path or default_data_dir()).expanduser())


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"fednode {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    pass


# --- init ------------------------------------------------------------------------------


@app.command()
def init(
    data_dir: DataDirOpt = None,
    difficulty: Annotated[
        int | None,
        typer.Option(
            help="Proof-of-work bits to mint \\[default: the genesis file's, else 16].",
            show_default=False,
        ),
    ] = None,
    genesis: Annotated[
        Path | None,
        typer.Option("--genesis", "-g", help="Take the difficulty from this genesis file."),
    ] = None,
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Create this node's identity: an Ed25519 key (0600) and a proof-of-work stamp.

    The node id is the SHA-256 of the public key. Running it again keeps the key; if the
    network now needs a higher difficulty, the stamp is re-minted for the same key.

    Example: fednode init --data-dir ./node1 --genesis net.toml
    """
    dd = _data_dir(data_dir)
    need = 16
    if genesis is not None:
        try:
            need = load_genesis(genesis).network.pow_difficulty
        except GenesisError as exc:
            raise _fail(str(exc)) from None
    if difficulty is not None:
        need = difficulty
    if not 0 <= need <= 32:
        raise _fail(f"--difficulty must be within 0..32, got {need}")
    dd.ensure()
    existing: Identity | None = None
    if dd.identity.exists():
        try:
            existing = Identity.load(dd.identity)
        except IdentityError as exc:
            raise _fail(str(exc)) from None
        if pow_check(existing.public_key, existing.pow_nonce, need):
            dd.admin_token(create=True)
            _report_identity(dd, existing, fmt, created=False, seconds=0.0)
            return
    rate = estimate_hash_rate(0.05)
    expected = 2.0**need / rate
    if fmt is OutputFormat.text:
        console.print(
            f"minting a proof-of-work stamp at {need} bits: expected ~{2**need:,} hashes, "
            f"~{expected:.1f} s at {rate / 1e6:.2f} M hashes/s on one core"
        )
    t0 = time.perf_counter()
    with console.status("working…", spinner="dots") as status:

        def progress(tried: int) -> None:
            status.update(
                f"working… {tried:,} hashes, {time.perf_counter() - t0:.1f} s "
                f"(expected ~{expected:.1f} s)"
            )

        if existing is not None:
            nonce = pow_solve(existing.public_key, need, progress=progress)
            identity = Identity(existing.private_key, existing.public_key, nonce, need)
            dd.identity.unlink()
        else:
            identity = Identity.generate(need, progress=progress)
    identity.save(dd.identity)
    dd.admin_token(create=True)
    _report_identity(dd, identity, fmt, created=existing is None, seconds=time.perf_counter() - t0)


def _report_identity(
    dd: DataDir, identity: Identity, fmt: OutputFormat, *, created: bool, seconds: float
) -> None:
    data = {
        "node_id": identity.node_id_hex,
        "pow_difficulty": identity.pow_difficulty,
        "data_dir": str(dd.root),
        "key_file": str(dd.identity),
        "created": created,
        "pow_seconds": round(seconds, 3),
    }
    if fmt is OutputFormat.json:
        _emit_json(data)
        return
    verb = "created" if created else "using existing"
    console.print(f"{verb} identity [bold]{identity.node_id_hex}[/] in {dd.root}")
    console.print(f"  key file {dd.identity} (mode 600), PoW {identity.pow_difficulty} bits")


# --- genesis ---------------------------------------------------------------------------


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@genesis_app.command("new")
def genesis_new(
    path: Annotated[Path, typer.Argument(help="Where to write the genesis TOML file.")],
    name: Annotated[str, typer.Option(help="Network name.")] = "fednode-demo",
    seed: Annotated[
        int | None, typer.Option(help="Genesis seed \\[default: random].", show_default=False)
    ] = None,
    difficulty: Annotated[int, typer.Option(help="Identity proof-of-work bits.")] = 16,
    task: Annotated[
        str,
        typer.Option(
            help="Task: mnist1d, digits, local (numeric CSV/Parquet), text-classification or "
            "causal-lm (a Hugging Face folder + a JSONL/CSV/Parquet file), python (a task "
            "factory), or sentiment (MiniLM tweet sentiment, a text-classification preset)."
        ),
    ] = "mnist1d",
    model: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face tasks: the model folder (config, weights, tokenizer; read "
            "offline, its hash enters the genesis). Built-in tasks: mlp or cnn.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Data file (local, text-classification, causal-lm).", show_default=False),
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column \\[default: text].")] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Label column \\[default: label].")
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="text-classification: comma-separated label values to keep, in class "
            "order \\[default: every value, sorted].",
            show_default=False,
        ),
    ] = None,
    lora_rank: Annotated[int | None, typer.Option(help="LoRA rank \\[default: 8].")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha \\[default: 16].")] = None,
    lora_targets: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated module names to adapt \\[default: peft's for the architecture].",
            show_default=False,
        ),
    ] = None,
    factory: Annotated[
        str | None,
        typer.Option(help="python task: the factory as module:attribute (on PYTHONPATH)."),
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(help="Shards the data is split into \\[default: 8].")
    ] = None,
    partition: Annotated[
        str | None, typer.Option(help="iid or dirichlet \\[default: dirichlet].")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Dirichlet concentration \\[default: 0.5].")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Minibatch size.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Token length of text inputs.")] = None,
    max_samples: Annotated[
        int | None, typer.Option(help="Subsample the labelled pool to this many rows.")
    ] = None,
    learner: Annotated[str, typer.Option(help="Learner: sgd, spsa, flower.")] = "sgd",
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    local_steps: Annotated[int | None, typer.Option(help="sgd: local steps per round.")] = None,
    spsa_steps: Annotated[int | None, typer.Option(help="spsa: steps per round.")] = None,
    spsa_eps: Annotated[float | None, typer.Option(help="spsa: perturbation size.")] = None,
    flower_client: Annotated[
        str | None,
        typer.Option(
            help="flower: a NumPyClient, client_fn or ClientApp as module:attribute "
            "(its folder on PYTHONPATH)."
        ),
    ] = None,
    flower_initial: Annotated[
        str | None,
        typer.Option(help="flower: initial model of a Message-API ClientApp (module:attribute)."),
    ] = None,
    rule: Annotated[str, typer.Option(help="Aggregation rule (see docs/aggregation.md).")] = "mean",
    rounds: Annotated[
        int | None,
        typer.Option(
            help="Rounds each node trains, then stops training (rounds.max_rounds) "
            "\\[default: no limit: nodes train until stopped].",
            show_default=False,
            min=1,
        ),
    ] = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", "-b", help="First-contact address host:port (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a genesis file with every setting and its default documented inline.

    Flags not given keep the defaults recommended for the task and learner (small batches
    and sequences for Hugging Face models on CPU). Examples:

    fednode genesis new net.toml --name lab --nodes 2 --rounds 20

    fednode genesis new net.toml --name lab --bootstrap 10.0.0.5:7420

    fednode genesis new net.toml --task text-classification --model ./my-bert --data
    reviews.jsonl --label-column stars --learner spsa

    fednode genesis new net.toml --task python --factory my_task:make_task
    """
    if path.exists() and not force:
        raise _fail(f"{path} exists; pass --force to overwrite")
    from node.training.genesis import task_and_learner

    try:
        task_table, learner_table = task_and_learner(
            task,
            learner,
            model=model,
            data=data,
            task_options={
                "text_column": text_column,
                "label_column": label_column,
                "labels": _csv(labels),
                "lora_rank": lora_rank,
                "lora_alpha": lora_alpha,
                "lora_targets": _csv(lora_targets),
                "factory": factory,
                "num_nodes": nodes,
                "partition": partition,
                "alpha": alpha,
                "batch_size": batch_size,
                "max_length": max_length,
                "max_samples": max_samples,
            },
            learner_options={
                "lr": lr,
                "local_steps": local_steps,
                "spsa_steps": spsa_steps,
                "spsa_eps": spsa_eps,
                "flower_client": flower_client,
                "flower_initial": flower_initial,
            },
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    sections: dict[str, dict[str, Any]] = {
        "network": {
            "name": name,
            "pow_difficulty": difficulty,
            "bootstrap": list(bootstrap or []),
        },
        "task": task_table,
        "learner": learner_table,
        "aggregation": {"rule": rule},
    }
    if rounds is not None:
        sections["rounds"] = {"max_rounds": rounds}
    if seed is not None:
        sections["network"]["seed"] = seed
    try:
        gen = Genesis.fresh(**sections)
    except Exception as exc:  # pydantic's ValidationError → one line
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            raise _fail(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        raise
    path.write_text(render_genesis(gen), encoding="utf-8")
    console.print(f"wrote {path}: network [bold]{gen.network.name}[/] id {gen.network_id_hex}")
    spec = gen.round_spec()
    console.print(
        f"its data is split into {gen.task.num_nodes} shards (one per node: fednode start "
        f"--shard 0..{gen.task.num_nodes - 1}); "
        + (
            f"nodes train {spec.max_rounds} rounds"
            if spec.max_rounds is not None
            else "nodes train until stopped (fednode stop; --rounds N sets a limit)"
        ),
        highlight=False,
    )


@genesis_app.command("show")
def genesis_show(
    path: Annotated[Path, typer.Argument(help="Genesis TOML file.")],
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Validate a genesis file and print its settings and network id (its hash).

    Example: fednode genesis show net.toml --format json
    """
    try:
        gen = load_genesis(path)
    except GenesisError as exc:
        raise _fail(str(exc)) from None
    data = {"network_id": gen.network_id_hex, **gen.model_dump(mode="json")}
    if fmt is OutputFormat.json:
        _emit_json(data)
        return
    table = Table(title=f"genesis {path}", show_header=True)
    table.add_column("setting")
    table.add_column("value")
    table.add_row("network id", gen.network_id_hex)
    for section, values in gen.model_dump(mode="json").items():
        for key, value in values.items():
            table.add_row(f"{section}.{key}", json.dumps(value))
    print_wide(console, table)


# --- start / stop ----------------------------------------------------------------------


@app.command()
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
    dd = _data_dir(data_dir)
    try:
        # First thing: while the daemon loads, `fednode status` sees the lock and says
        # "starting" rather than "no daemon is running".
        lock_fd = dd.acquire_lock()
    except DataDirLocked as exc:
        raise _fail(str(exc)) from None
    from node.base.logs import configure_logging
    from node.base.settings import ConfigError, load_settings
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
        raise _fail(str(exc)) from None
    gen_path = genesis or dd.genesis
    if genesis is None and not dd.genesis.exists():
        raise _fail(f"no genesis pinned in {dd.root}; pass --genesis FILE")
    try:
        gen = load_genesis(gen_path)
    except GenesisError as exc:
        raise _fail(str(exc)) from None
    for address in bootstrap or []:
        from node.base.address import parse_host_port

        try:
            parse_host_port(address)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    if gen.task.is_hf and gen.task.model_path is not None and not no_train:
        from node.training.hf.folder import HFFolderError, verify_model_folder

        try:
            verify_model_folder(gen.task.model_path, gen.task.model_sha256)
        except HFFolderError as exc:
            raise _fail(str(exc)) from None
    configure_logging(settings.log_format, settings.log_level)
    if shard is not None and not 0 <= shard < gen.task.num_nodes:
        raise _fail(f"--shard must be in 0..{gen.task.num_nodes - 1} for this genesis")
    if collude is not None and attack is None:
        raise _fail("--collude needs --attack")
    collusion = None
    if collude is not None:
        from node.testnet.collusion import ColludingAttacker, CollusionError

        try:
            collusion = ColludingAttacker(collude, attack, gen)  # type: ignore[arg-type]
        except CollusionError as exc:
            raise _fail(str(exc)) from None
    elif attack is not None:
        from node.sim.byzantine import ByzantineSimError, parse_attack

        try:
            parse_attack(attack)  # name or name:key=value,... (e.g. ipm:eps=100)
        except ByzantineSimError as exc:
            raise _fail(str(exc)) from None
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
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def stop(
    data_dir: DataDirOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the daemon to exit.")] = 10.0,
) -> None:
    """Ask the daemon on this data dir to stop gracefully, and wait until it has.

    Example: fednode stop -d ./node1
    """
    dd = _data_dir(data_dir)
    try:
        with AdminClient(dd) as client:
            client.stop()
    except AdminUnavailable as exc:
        raise _fail(str(exc)) from None
    deadline = time.monotonic() + wait
    while dd.runtime.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if dd.runtime.exists():
        raise _fail(f"daemon on {dd.root} did not stop within {wait:.0f} s")
    console.print(f"stopped the node on {dd.root}")


# --- read commands ---------------------------------------------------------------------


def _client(data_dir: Path | None) -> AdminClient:
    try:
        return AdminClient(_data_dir(data_dir))
    except AdminUnavailable as exc:
        raise _fail(str(exc)) from None


def _call(fn: Any) -> Any:
    try:
        return fn()
    except AdminUnavailable as exc:
        raise _fail(str(exc)) from None


@app.command()
def status(data_dir: DataDirOpt = None, fmt: FormatOpt = OutputFormat.text) -> None:
    """Show the running node: identity, network, round, peers, privacy budget.

    Example: fednode status -d ./node1 --format json
    """
    from node.cli.status_json import status_document

    dd = _data_dir(data_dir)
    starting = _starting_pid(dd)
    if starting is not None:
        # The daemon holds the data dir but has not written daemon.json yet.
        if fmt is OutputFormat.json:
            _emit_json({"state": "starting", "pid": starting})
        else:
            console.print(f"starting: the daemon on {dd.root} (pid {starting}) is starting up")
        return
    with _client(data_dir) as client:
        reply = _call(client.status)
    data = status_document(reply)
    if fmt is OutputFormat.json:
        _emit_json(data)
        return
    table = Table(show_header=False, title="fednode status")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    history = data.pop("history", [])
    for key in ("node_privacy", "record_privacy"):
        data.pop(key, None)
    for key, value in data.items():
        table.add_row(key, "-" if value is None else str(value))
    table.add_row("node privacy", _privacy_line(reply.node_privacy))
    table.add_row("record privacy", _privacy_line(reply.record_privacy))
    table.add_row("evaluations", str(len(history)))
    print_wide(console, table)


def _starting_pid(dd: DataDir) -> int | None:
    """The pid of a daemon that holds ``dd`` but has not finished starting, else None."""
    if dd.runtime.exists() or not dd.lock_path.exists():
        return None
    import fcntl
    import os

    try:
        fd = os.open(dd.lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = dd.lock_path.read_text().strip()
        return int(text) if text.isdigit() else 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@app.command()
def peers(data_dir: DataDirOpt = None, fmt: FormatOpt = OutputFormat.text) -> None:
    """List the members this node knows: state, incarnation, last seen, round-trip time.

    Example: fednode peers -d ./node1
    """
    dd = _data_dir(data_dir)
    starting = _starting_pid(dd)
    if starting is not None:
        err_console.print(f"starting: the daemon on {dd.root} (pid {starting}) is starting up")
        if fmt is OutputFormat.json:
            _emit_json([])
        return
    with _client(data_dir) as client:
        reply = _call(client.peers)
    from node.cli.status_json import message_to_json

    rows = [message_to_json(p) for p in reply.peers]
    if fmt is OutputFormat.json:
        _emit_json(rows)
        return
    table = Table(title=f"{len(rows)} peers")
    for col in ("node id", "address", "state", "incarnation", "last seen", "rtt", "banned"):
        table.add_column(col, overflow="fold")
    style = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim"}
    for p in reply.peers:
        table.add_row(
            p.node_id,
            p.address,
            f"[{style.get(p.state, 'white')}]{p.state}[/]"
            + (" [dim](no release)[/]" if p.no_release else ""),
            str(p.incarnation),
            "never" if p.last_seen_s < 0 else f"{p.last_seen_s:.1f} s ago",
            "-" if p.rtt_ms < 0 else f"{p.rtt_ms:.1f} ms",
            "yes" if p.banned else "",
        )
    print_wide(console, table)


@app.command()
def ban(
    node_id: Annotated[str, typer.Argument(help="Node id (a unique hex prefix is enough).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Ban a peer: its messages are refused and it is never sampled.

    Example: fednode ban 3fa2c1
    """
    with _client(data_dir) as client:
        reply = _call(lambda: client.ban(node_id))
    console.print(f"banned {reply.node_id}")


@app.command()
def unban(
    node_id: Annotated[str, typer.Argument(help="Node id (a unique hex prefix is enough).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Lift a ban.

    Example: fednode unban 3fa2c1
    """
    with _client(data_dir) as client:
        reply = _call(lambda: client.ban(node_id, unban=True))
    console.print(f"unbanned {reply.node_id}")


@app.command()
def privacy(data_dir: DataDirOpt = None, fmt: FormatOpt = OutputFormat.text) -> None:
    """Show the differential-privacy budget: spent, left and the release history.

    Example: fednode privacy -d ./node1
    """
    with _client(data_dir) as client:
        reply = _call(client.privacy)
    from node.cli.status_json import message_to_json

    data = message_to_json(reply)
    if fmt is OutputFormat.json:
        _emit_json(data)
        return
    console.print(f"node-level:   {_privacy_line(reply.node)}")
    console.print(f"record-level: {_privacy_line(reply.record)}")
    table = Table(title=f"{len(reply.releases)} ledger rows")
    for col in ("seq", "time", "level", "kind", "noise", "sample rate", "steps", "epsilon after"):
        table.add_column(col)
    for r in reply.releases:
        table.add_row(
            str(r.seq),
            time.strftime("%H:%M:%S", time.gmtime(r.created_at)),
            r.scope or "node",
            r.kind,
            f"{r.noise_multiplier:g}",
            f"{r.sample_rate:g}",
            str(r.steps),
            f"{r.epsilon_after:.3f}",
        )
    print_wide(console, table)


def _privacy_line(level: Any) -> str:
    """One line for a PrivacyLevel: spent, budget, left, delta and whether it still runs."""
    if not level.enabled:
        return "off" + (f" ({level.reason})" if level.reason else "")
    budget = (
        f"of {level.epsilon_budget:.3f} (left {level.epsilon_remaining:.3f})"
        if level.has_budget
        else "(no budget set)"
    )
    what = "releasing" if level.level == "node" else "training"
    state = what if level.active else f"[red]not {what}[/]: {level.reason}"
    return (
        f"{level.mechanism}: epsilon {level.epsilon_spent:.3f} {budget}, delta "
        f"{level.delta:g}, {level.steps} steps; {state}"
    )


@app.command()
def export(
    out_arg: Annotated[
        Path | None,
        typer.Argument(metavar="[OUT]", help="Same as --out.", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write: a folder for Hugging Face tasks, else a .safetensors file.",
            show_default=False,
        ),
    ] = None,
    merged: Annotated[
        bool,
        typer.Option(
            help="Hugging Face tasks: write the merged model (save_pretrained format, with "
            "the tokenizer) instead of the peft adapter."
        ),
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Export the node's current model.

    Hugging Face tasks get a folder that peft loads:
    PeftModel.from_pretrained(base, OUT), with base the task's Auto class on the model
    folder (num_labels = the task's classes); --merged writes a plain transformers
    folder. Other tasks get one safetensors file of the trainable tensors.

    Example: fednode export -d ./node1 --out ./adapter
    """
    target = out or out_arg
    if target is None:
        raise _fail("give the output path: --out OUT")
    dd = _data_dir(data_dir)
    with _client(data_dir) as client:
        reply = _call(client.export)
    gen = None
    if dd.genesis.exists():
        try:
            gen = load_genesis(dd.genesis)
        except GenesisError as exc:
            raise _fail(str(exc)) from None
    if gen is None or not gen.task.is_hf:
        if merged:
            raise _fail("--merged is only for Hugging Face tasks (text-classification, causal-lm)")
        target.write_bytes(reply.model_safetensors)
        console.print(f"wrote {target}: round {reply.round}, model hash {reply.model_hash[:16]}")
        return
    from safetensors.torch import load as load_safetensors

    from node.training.datasets import DatasetError, load_task
    from node.training.hf.export import export_hf_model
    from node.training.hf.folder import HFFolderError

    try:
        tensors = load_safetensors(reply.model_safetensors)
        classes = (
            load_task(gen.task, gen.network.seed).class_names
            if gen.task.name == "text-classification"
            else ()
        )
        export_hf_model(
            gen.task,
            gen.network.seed,
            tensors,
            target,
            class_names=classes,
            merged=merged,
            info={"round": reply.round, "model_hash": reply.model_hash},
        )
    except (HFFolderError, DatasetError) as exc:
        raise _fail(str(exc)) from None
    kind = "merged model" if merged else "peft adapter"
    console.print(
        f"wrote {kind} to {target}: round {reply.round}, model hash {reply.model_hash[:16]}"
    )


def _register_testnet() -> None:
    from node.cli.testnet import testnet_app

    app.add_typer(testnet_app, name="testnet")


def _register_deploy() -> None:
    from node.cli.certs import certs_app, health

    app.add_typer(certs_app, name="certs")
    app.command("health")(health)


def _register_simulate() -> None:
    from node.cli.simulate import simulate

    app.command("simulate")(simulate)


def main() -> None:
    """Console-script entry point."""
    _register_testnet()
    _register_deploy()
    _register_simulate()
    app()
