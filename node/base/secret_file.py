"""Writing secrets (keys, tokens) to disk: atomically, and never readable by others."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_secret"]


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically.

    The temporary file is created 0600 (not chmod-ed afterwards), fsynced and renamed over
    ``path``, so a reader sees the old or the new content, and nobody else can read it,
    not even briefly.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # an existing .tmp file keeps its old mode through O_CREAT
    os.replace(tmp, path)
