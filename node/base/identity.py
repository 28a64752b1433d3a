"""Node identity: an Ed25519 key pair, its node id and its proof-of-work stamp.

The node id is ``sha256(raw public key)``. An identity also carries a proof of work in the
style of S/Kademlia's static puzzle: a nonce such that

    sha256(b"fednode-pow-v1" || public_key || nonce as 8 little-endian bytes)

starts with ``difficulty`` zero bits. Checking a stamp costs one hash; minting one costs
``2**difficulty`` hashes on average, so a network that sets difficulty 20 makes every
identity cost about a million hashes (about a second of one core) and a Sybil attacker
with a thousand identities pays a thousand times that.

The key file is JSON, written atomically with mode 0600, and carries a checksum over its
fields so that an edited or truncated file is reported as such rather than silently used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from node.base.secret_file import write_secret

__all__ = [
    "KEY_FILE_NAME",
    "POW_DOMAIN",
    "Identity",
    "IdentityError",
    "estimate_hash_rate",
    "node_id_for",
    "pow_check",
    "pow_leading_zero_bits",
    "pow_solve",
    "verify_signature",
]

KEY_FILE_NAME = "identity.json"
POW_DOMAIN = b"fednode-pow-v1"
_KEY_FILE_VERSION = 1


class IdentityError(Exception):
    """The identity file is missing, unreadable, tampered with or does not match."""


def node_id_for(public_key: bytes) -> bytes:
    """Return the 32-byte node id of a raw Ed25519 public key (its SHA-256)."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).digest()


def pow_leading_zero_bits(public_key: bytes, nonce: int) -> int:
    """Number of leading zero bits of the PoW hash for ``(public_key, nonce)``."""
    digest = hashlib.sha256(POW_DOMAIN + public_key + struct.pack("<Q", nonce)).digest()
    value = int.from_bytes(digest, "big")
    return 256 - value.bit_length()


def pow_check(public_key: bytes, nonce: int, difficulty: int) -> bool:
    """True when ``nonce`` is a valid stamp of at least ``difficulty`` bits for the key."""
    if difficulty <= 0:
        return True
    if not 0 <= nonce < 2**64:
        return False
    return pow_leading_zero_bits(public_key, nonce) >= difficulty


def pow_solve(
    public_key: bytes,
    difficulty: int,
    *,
    start: int = 0,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 1 << 16,
) -> int:
    """Find the smallest nonce >= ``start`` whose stamp has ``difficulty`` zero bits.

    Parameters
    ----------
    public_key : bytes
        Raw 32-byte Ed25519 public key.
    difficulty : int
        Required leading zero bits; 0 accepts any nonce.
    start : int, default 0
        First nonce tried.
    progress : callable, optional
        Called with the number of hashes tried so far every ``progress_every`` hashes.
    progress_every : int, default 65536
        Interval of progress callbacks.
    """
    if difficulty < 0 or difficulty > 64:
        raise ValueError(f"PoW difficulty must be in 0..64, got {difficulty}")
    if difficulty == 0:
        return start
    base = hashlib.sha256(POW_DOMAIN + public_key)
    threshold = 1 << (256 - difficulty)
    pack = struct.Struct("<Q").pack
    nonce = start
    tried = 0
    while True:
        h = base.copy()
        h.update(pack(nonce))
        if int.from_bytes(h.digest(), "big") < threshold:
            return nonce
        nonce += 1
        tried += 1
        if progress is not None and tried % progress_every == 0:
            progress(tried)


def estimate_hash_rate(seconds: float = 0.1) -> float:
    """Measure PoW hashes per second on this machine for about ``seconds``."""
    base = hashlib.sha256(POW_DOMAIN + bytes(32))
    pack = struct.Struct("<Q").pack
    count = 0
    t0 = time.perf_counter()
    while True:
        for i in range(4096):
            h = base.copy()
            h.update(pack(count + i))
            h.digest()
        count += 4096
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return count / elapsed


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Verify an Ed25519 signature; any malformed input gives False, never an exception."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """An Ed25519 key pair with its proof-of-work stamp.

    Attributes
    ----------
    private_key : Ed25519PrivateKey
        Never logged, never sent; written only to the 0600 key file.
    public_key : bytes
        Raw 32-byte public key.
    pow_nonce : int
        Proof-of-work nonce for ``public_key``.
    pow_difficulty : int
        Difficulty the stamp was minted at (it may satisfy a higher one by luck).
    """

    private_key: Ed25519PrivateKey
    public_key: bytes
    pow_nonce: int
    pow_difficulty: int

    def __repr__(self) -> str:  # keeps the private key out of logs and tracebacks
        return f"Identity(node_id={self.node_id_hex[:16]}…, pow_difficulty={self.pow_difficulty})"

    @property
    def node_id(self) -> bytes:
        """32-byte node id, the SHA-256 of the public key."""
        return node_id_for(self.public_key)

    @property
    def node_id_hex(self) -> str:
        """Node id as 64 hex characters."""
        return self.node_id.hex()

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) of ``message``."""
        return self.private_key.sign(message)

    @classmethod
    def generate(
        cls,
        difficulty: int,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Identity:
        """Create a fresh key pair and mint a PoW stamp at ``difficulty``."""
        private_key = Ed25519PrivateKey.generate()
        public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        nonce = pow_solve(public_key, difficulty, start=secrets.randbits(32), progress=progress)
        return cls(private_key, public_key, nonce, difficulty)

    # --- persistence -------------------------------------------------------------------

    def _fields(self) -> dict[str, object]:
        raw = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {
            "version": _KEY_FILE_VERSION,
            "private_key": base64.b64encode(raw).decode(),
            "public_key": base64.b64encode(self.public_key).decode(),
            "node_id": self.node_id_hex,
            "pow_nonce": self.pow_nonce,
            "pow_difficulty": self.pow_difficulty,
        }

    def save(self, path: Path) -> None:
        """Write the key file atomically with mode 0600 (refuses to overwrite)."""
        if path.exists():
            raise IdentityError(f"{path} already exists; refusing to overwrite an identity")
        fields = self._fields()
        fields["checksum"] = _checksum(fields)
        data = (json.dumps(fields, indent=2) + "\n").encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_secret(path, data)

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read and check a key file; raise :class:`IdentityError` with one clear line."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise IdentityError(f"no identity at {path}; run `fednode init` first") from None
        except OSError as exc:
            raise IdentityError(f"cannot read identity file {path}: {exc.strerror}") from None
        try:
            fields = json.loads(text)
            if not isinstance(fields, dict):
                raise ValueError("not an object")
            checksum = fields.pop("checksum")
            if fields.get("version") != _KEY_FILE_VERSION:
                raise IdentityError(
                    f"identity file {path} has unsupported version {fields.get('version')!r}"
                )
            if checksum != _checksum(fields):
                raise IdentityError(f"identity file {path} is corrupt or was edited (checksum)")
            raw = base64.b64decode(fields["private_key"], validate=True)
            public_key = base64.b64decode(fields["public_key"], validate=True)
            private_key = Ed25519PrivateKey.from_private_bytes(raw)
            nonce = int(fields["pow_nonce"])
            difficulty = int(fields["pow_difficulty"])
        except IdentityError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise IdentityError(f"identity file {path} is not valid: {exc}") from None
        derived = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if derived != public_key or fields.get("node_id") != node_id_for(public_key).hex():
            raise IdentityError(f"identity file {path} does not match its own public key")
        if not pow_check(public_key, nonce, difficulty):
            raise IdentityError(f"identity file {path} has an invalid proof-of-work stamp")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise IdentityError(
                f"identity file {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        return cls(private_key, public_key, nonce, difficulty)


def _checksum(fields: dict[str, object]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(b"fednode-keyfile-v1" + canonical).hexdigest()
