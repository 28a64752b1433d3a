"""Checkpoints: safetensors files with sha256 in SQL, verified loads, catch-up bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch

from node.storage import (
    CheckpointCorrupted,
    SpsaEntry,
    StorageError,
    Store,
    open_store,
)

A = "a" * 64


def model(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "lora.B": torch.randn(4, 3, generator=g),
        "head.weight": torch.randn(2, 4, generator=g).to(torch.float16),
        "head.bias": torch.zeros(2),
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k])


def test_save_then_load_latest(store: Store, data_dir: Path) -> None:
    assert store.latest_checkpoint() is None
    c1 = store.save_checkpoint(1, model(1))
    c2 = store.save_checkpoint(5, model(5), applied_seed_digest="d" * 64, spsa_seq=42)
    store.save_checkpoint(3, model(3))
    latest = store.latest_checkpoint()
    assert latest == c2
    assert latest.spsa_seq == 42 and latest.applied_seed_digest == "d" * 64
    assert latest.path.parent == data_dir / "checkpoints"
    assert latest.file_sha256 == hashlib.sha256(latest.path.read_bytes()).hexdigest()
    assert latest.model_sha256 == latest.file_sha256  # default
    info, tensors = store.load_checkpoint()
    assert info == c2
    assert_same(tensors, model(5))
    _, old = store.load_checkpoint(c1)
    assert_same(old, model(1))
    assert [c.round for c in store.list_checkpoints()] == [1, 3, 5]
    assert not list((data_dir / "checkpoints").glob("*.tmp-*"))


def test_altered_or_missing_file_is_refused(store: Store) -> None:
    info = store.save_checkpoint(2, model(2))
    raw = bytearray(info.path.read_bytes())
    raw[-1] ^= 0xFF
    info.path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorrupted, match="does not match the sha256"):
        store.load_checkpoint()
    info.path.unlink()
    with pytest.raises(CheckpointCorrupted, match="unreadable"):
        store.load_checkpoint(info)


def test_received_checkpoint_bytes_are_verified_before_storing(store: Store) -> None:
    data = safetensors.torch.save(model(7))
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(CheckpointCorrupted, match="expected"):
        store.save_checkpoint_bytes(7, data, expected_sha256="0" * 64)
    junk = b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json"
    with pytest.raises(CheckpointCorrupted, match="not valid safetensors"):
        store.save_checkpoint_bytes(7, junk)
    assert store.list_checkpoints() == []
    info = store.save_checkpoint_bytes(7, data, expected_sha256=sha, model_sha256="e" * 64)
    assert info.model_sha256 == "e" * 64 and info.file_sha256 == sha
    assert store.checkpoint_bytes(info) == data
    assert_same(store.load_checkpoint()[1], model(7))


def test_prune_keeps_the_newest(store: Store, data_dir: Path) -> None:
    for rnd in range(5):
        store.save_checkpoint(rnd, model(rnd))
    assert store.prune_checkpoints(keep=2) == 3
    assert [c.round for c in store.list_checkpoints()] == [3, 4]
    assert len(list((data_dir / "checkpoints").glob("*.safetensors"))) == 2
    with pytest.raises(ValueError, match="keep"):
        store.prune_checkpoints(keep=0)


def test_no_checkpoint_and_no_data_dir_errors(backend: str, db_url: str) -> None:
    # In-memory SQLite (or a server URL): no data dir can be implied.
    url = "sqlite://" if backend == "sqlite" else db_url
    with open_store(url) as s:
        assert s.data_dir is None
        with pytest.raises(StorageError, match="no checkpoint"):
            s.load_checkpoint()
        with pytest.raises(StorageError, match="needs a data directory"):
            s.save_checkpoint(1, model(1))
        assert s.list_checkpoints() == []


def test_catch_up_from_checkpoint_plus_log(
    store: Store, new_db_url: Callable[[], str], tmp_path: Path
) -> None:
    # A peer's view: a checkpoint at some log position, then more SPSA steps.
    store.append_spsa([SpsaEntry(f"s{i}", 0, A, i, 0.1 * i) for i in range(10)])
    seq = store.spsa_last_seq()
    ck = store.save_checkpoint(0, model(0), applied_seed_digest=store.spsa_digest(), spsa_seq=seq)
    store.append_spsa([SpsaEntry(f"s{i}", 1, A, i, 0.1 * i) for i in range(10, 15)])
    # A newcomer fetches the checkpoint bytes and the log since it.
    with open_store(new_db_url(), data_dir=tmp_path / "new") as new:
        got = new.save_checkpoint_bytes(
            ck.round,
            store.checkpoint_bytes(ck),
            expected_sha256=ck.file_sha256,
            applied_seed_digest=ck.applied_seed_digest,
        )
        tail = store.spsa_since(after_seq=ck.spsa_seq)
        assert [e.seed_id for e in tail] == [f"s{i}" for i in range(10, 15)]
        # The checkpoint's digest is the digest of the log prefix it folded in.
        assert store.spsa_digest(up_to_seq=ck.spsa_seq) == ck.applied_seed_digest
        # The newcomer logs the peer's ids (to reject them as duplicates later) and then
        # agrees with the peer.
        new.append_spsa(store.spsa_since())
        assert new.spsa_digest() == store.spsa_digest()
        assert_same(new.load_checkpoint(got)[1], model(0))
