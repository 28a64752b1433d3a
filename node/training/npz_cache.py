"""Prepared arrays cached as ``.npz`` files: written atomically, read without pickle.

Shared by the built-in datasets and the Hugging Face data files (tokenized once per
model and data file), so neither imports the other.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_savez", "load_npz"]


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` (``.npz``) so that readers never see a partial file.

    Parameters
    ----------
    path : Path
        The cache file; its folder is created if missing.
    **arrays : np.ndarray
        The arrays, by name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays ``keys`` of the cache file ``path``, or None if it is unreadable.

    Parameters
    ----------
    path : Path
        A file written by :func:`atomic_savez`.
    keys : tuple of str
        The array names to read; a missing one makes the file unreadable.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in keys}
    except (OSError, KeyError, ValueError):
        # A corrupt or partial cache is regenerated rather than trusted.
        return None
