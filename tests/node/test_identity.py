"""Identity: keys, node ids, proof of work, key-file integrity."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from node.base.identity import (
    Identity,
    IdentityError,
    node_id_for,
    pow_check,
    pow_leading_zero_bits,
    pow_solve,
    verify_signature,
)


def test_node_id_is_hash_of_public_key() -> None:
    ident = Identity.generate(0)
    assert ident.node_id == node_id_for(ident.public_key)
    assert len(ident.node_id_hex) == 64
    with pytest.raises(ValueError, match="32 bytes"):
        node_id_for(b"short")


def test_signatures_verify_and_forgeries_fail() -> None:
    a, b = Identity.generate(0), Identity.generate(0)
    sig = a.sign(b"hello")
    assert verify_signature(a.public_key, sig, b"hello")
    assert not verify_signature(a.public_key, sig, b"hellO")
    assert not verify_signature(b.public_key, sig, b"hello")
    assert not verify_signature(a.public_key, sig[:-1] + bytes([sig[-1] ^ 1]), b"hello")
    assert not verify_signature(b"\x00" * 5, sig, b"hello")  # malformed key: False, no raise


@pytest.mark.parametrize("difficulty", [0, 1, 8, 12])
def test_pow_solve_meets_difficulty(difficulty: int) -> None:
    pk = Identity.generate(0).public_key
    nonce = pow_solve(pk, difficulty)
    assert pow_check(pk, nonce, difficulty)
    assert pow_leading_zero_bits(pk, nonce) >= difficulty


def test_pow_check_rejects_wrong_key_and_nonce() -> None:
    ident = Identity.generate(12)
    other = Identity.generate(0)
    assert pow_check(ident.public_key, ident.pow_nonce, 12)
    # A stamp is bound to its key: the odds that it also works for another key are 2^-12.
    assert (
        not pow_check(other.public_key, ident.pow_nonce, 12)
        or pow_leading_zero_bits(other.public_key, ident.pow_nonce) >= 12
    )
    assert not pow_check(ident.public_key, -1, 1)
    assert not pow_check(ident.public_key, 2**64, 1)


def test_pow_solve_reports_progress() -> None:
    calls: list[int] = []
    pow_solve(Identity.generate(0).public_key, 14, progress=calls.append, progress_every=256)
    # Expected 16384 hashes; it may be lucky, but the callback sees increasing counts.
    assert calls == sorted(calls)


def test_save_load_roundtrip_mode_0600(tmp_path: Path) -> None:
    ident = Identity.generate(6)
    path = tmp_path / "identity.json"
    ident.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Identity.load(path)
    assert loaded.node_id == ident.node_id
    assert loaded.sign(b"x") == ident.sign(b"x")  # Ed25519 is deterministic
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        ident.save(path)


def test_private_key_never_in_repr() -> None:
    ident = Identity.generate(0)
    text = repr(ident)
    raw = ident._fields()["private_key"]
    assert isinstance(raw, str) and raw not in text


def _tamper(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)


def test_tampered_key_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "identity.json"
    Identity.generate(4).save(path)
    _tamper(path, pow_nonce=12345)
    with pytest.raises(IdentityError, match="corrupt or was edited"):
        Identity.load(path)


def test_swapped_public_key_detected_even_with_fixed_checksum(tmp_path: Path) -> None:
    from node.base.identity import _checksum

    path = tmp_path / "identity.json"
    Identity.generate(0).save(path)
    other = Identity.generate(0)._fields()
    data = json.loads(path.read_text())
    data.pop("checksum")
    data["public_key"] = other["public_key"]
    data["checksum"] = _checksum(data)
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="does not match"):
        Identity.load(path)


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"version": 1}'])
def test_unreadable_key_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "identity.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError) as info:
        Identity.load(path)
    assert "\n" not in str(info.value)


def test_missing_and_world_readable(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="fednode init"):
        Identity.load(tmp_path / "nope.json")
    path = tmp_path / "identity.json"
    Identity.generate(0).save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="readable by others"):
        Identity.load(path)
