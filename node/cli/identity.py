"""``fednode init``: this node's identity (an Ed25519 key and a proof-of-work stamp)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from node.base.datadir import DataDir
from node.base.identity import Identity, IdentityError, estimate_hash_rate, pow_check, pow_solve
from node.cli.options import DataDirOpt, FormatOpt, OutputFormat, open_data_dir
from node.cli.output import console, emit_json, fail
from node.training.genesis import GenesisError, load_genesis

__all__ = ["init"]


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
    dd = open_data_dir(data_dir)
    need = 16
    if genesis is not None:
        try:
            need = load_genesis(genesis).network.pow_difficulty
        except GenesisError as exc:
            raise fail(str(exc)) from None
    if difficulty is not None:
        need = difficulty
    if not 0 <= need <= 32:
        raise fail(f"--difficulty must be within 0..32, got {need}")
    dd.ensure()
    existing: Identity | None = None
    if dd.identity.exists():
        try:
            existing = Identity.load(dd.identity)
        except IdentityError as exc:
            raise fail(str(exc)) from None
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
        emit_json(data)
        return
    verb = "created" if created else "using existing"
    console.print(f"{verb} identity [bold]{identity.node_id_hex}[/] in {dd.root}")
    console.print(f"  key file {dd.identity} (mode 600), PoW {identity.pow_difficulty} bits")
