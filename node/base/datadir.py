"""Where a node keeps its state, and the lock that stops two daemons sharing it.

Layout of a data dir::

    identity.json     Ed25519 key + PoW stamp (0600)
    admin.token       operator API token (0600)
    genesis.toml      copy of the network's genesis file, written by `fednode start`
    fednode.db        SQLite database (WAL) unless a database URL is configured
    checkpoints/      safetensors model checkpoints (hashes in SQL)
    daemon.json       runtime facts of the running daemon (pid, addresses) for the CLI
    daemon.lock       flock()ed while a daemon runs
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from node.base.secret_file import write_secret

__all__ = ["DataDir", "DataDirLocked", "default_data_dir"]

ENV_HOME = "FEDNODE_HOME"


def default_data_dir() -> Path:
    """``$FEDNODE_HOME``, else ``$XDG_DATA_HOME/fednode`` (``~/.local/share/fednode``)."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "fednode"


class DataDirLocked(Exception):
    """Another daemon holds the data dir's lock."""


@dataclass(frozen=True)
class DataDir:
    """Paths inside one node's data directory."""

    root: Path

    @property
    def identity(self) -> Path:
        return self.root / "identity.json"

    @property
    def token(self) -> Path:
        return self.root / "admin.token"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.toml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def runtime(self) -> Path:
        return self.root / "daemon.json"

    @property
    def lock_path(self) -> Path:
        return self.root / "daemon.lock"

    @property
    def log_file(self) -> Path:
        return self.root / "daemon.log"

    def ensure(self) -> None:
        """Create the directory (0700) if needed."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def write_secret(self, path: Path, data: bytes) -> None:
        """Write ``data`` atomically with mode 0600."""
        write_secret(path, data)

    def admin_token(self, *, create: bool) -> str:
        """Read the operator token, creating a random one (0600) when ``create``."""
        if self.token.exists():
            return self.token.read_text().strip()
        if not create:
            raise FileNotFoundError(f"no admin token at {self.token}; is the node initialised?")
        value = secrets.token_urlsafe(32)
        self.write_secret(self.token, (value + "\n").encode())
        return value

    def acquire_lock(self) -> int:
        """Take the exclusive daemon lock; return the fd to keep open while running."""
        self.ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = ""
            with contextlib.suppress(OSError):
                holder = f" (pid {self.lock_path.read_text().strip()})"
            raise DataDirLocked(
                f"another fednode daemon is running on {self.root}{holder}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd
