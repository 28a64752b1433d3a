"""Text data files for the Hugging Face tasks: read with ``datasets``, tokenised once, cached.

A data file (JSONL, CSV or Parquet) is read through the ``datasets`` library (in memory,
nothing fetched), the text column is tokenised with the model folder's own tokenizer
(truncated and right-padded to ``max_length``), and the arrays are cached as
``hf-<key>.npz`` under the cache directory. The key covers the model folder's hash, the
data file's bytes and every setting that changes the arrays, so a changed file or
tokenizer is never served stale.

Layouts (what :class:`~node.training.datasets.TaskData` holds):

* ``text-classification``: ``x`` int64 ``(n, 2, max_length)`` (token ids stacked with the
  attention mask), ``y`` int64 class indices. Classes are ``spec.labels`` in order (rows
  with other labels are dropped) or, without it, the sorted distinct label values.
* ``causal-lm``: ``x`` as above, ``y`` int64 ``(n, max_length - 1)``: the next token at
  each position, ``-100`` (ignored by ``cross_entropy``) where there is no next token.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from node.training.hf.folder import HFFolderError, check_model_folder, resolve_location
from node.training.npz_cache import atomic_savez, load_npz
from node.training.spec import TaskSpec

__all__ = ["IGNORE_INDEX", "load_text_arrays", "load_tokenizer", "read_table"]

IGNORE_INDEX = -100
_FORMAT = "fednode-hf-data-v1"
_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_tokenizer(spec: TaskSpec) -> Any:
    """The model folder's tokenizer, offline; a pad token is set if the folder has none."""
    _offline()
    from transformers import AutoTokenizer

    assert spec.model_path is not None
    folder = check_model_folder(spec.model_path)
    try:
        tok = AutoTokenizer.from_pretrained(folder.path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise HFFolderError(
            f"model folder {folder.path}: cannot load its tokenizer: {exc}"
        ) from None
    if tok.pad_token is None:
        # GPT-style tokenizers have no pad token; padded positions are masked anyway.
        if tok.eos_token is None:
            raise HFFolderError(f"model folder {folder.path}: tokenizer has no pad or eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_table(location: str, columns: list[str]) -> dict[str, list[Any]]:
    """Read ``columns`` of a JSONL/CSV/Parquet file with ``datasets`` (offline, in memory).

    Raises
    ------
    HFFolderError
        Missing file, unknown format, unreadable file or a missing column (the message
        lists the columns the file has).
    """
    path = resolve_location(location)
    if not path.is_file():
        raise HFFolderError(f"data file {path} does not exist")
    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise HFFolderError(f"data file {path}: expected .jsonl, .json, .csv or .parquet")
    _offline()
    import datasets

    datasets.disable_progress_bars()
    extra: dict[str, Any] = {"encoding_errors": "replace"} if builder == "csv" else {}
    try:
        ds = datasets.load_dataset(
            builder, data_files=str(path), split="train", keep_in_memory=True, **extra
        )
    except Exception as exc:  # datasets raises many types for a malformed file
        raise HFFolderError(f"data file {path}: cannot read it as {builder}: {exc}") from None
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise HFFolderError(
            f"data file {path}: no column {missing[0]!r} (columns: {', '.join(ds.column_names)})"
        )
    return {c: ds[c] for c in columns}


def _cache_key(spec: TaskSpec, data_sha: str) -> str:
    parts = [
        _FORMAT,
        spec.name,
        spec.model_sha256 or "",
        data_sha,
        spec.text_column,
        spec.label_column if spec.name == "text-classification" else "",
        repr(spec.labels),
        str(spec.max_length),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:20]


def load_text_arrays(spec: TaskSpec, cache: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Tokenised arrays ``{"x", "y"}`` of a Hugging Face task, and the class names.

    Tokenisation runs once per (model, data file, settings); later calls read the cache.
    """
    assert spec.data_path is not None
    path = resolve_location(spec.data_path)
    if not path.is_file():
        raise HFFolderError(f"data file {path} does not exist")
    cpath = cache / f"hf-{_cache_key(spec, _file_sha256(path))}.npz"
    arrays = load_npz(cpath, ("x", "y", "classes")) if cpath.exists() else None
    if arrays is not None:
        return {"x": arrays["x"], "y": arrays["y"]}, tuple(str(c) for c in arrays["classes"])
    # Nodes of a local testnet start together and share the cache: one tokenises, the
    # others wait for its file instead of doing the same work.
    with _cache_lock(cpath):
        arrays = load_npz(cpath, ("x", "y", "classes")) if cpath.exists() else None
        if arrays is not None:
            classes = tuple(str(c) for c in arrays["classes"])
            return {"x": arrays["x"], "y": arrays["y"]}, classes
        return _tokenise(spec, path, cpath)


@contextlib.contextmanager
def _cache_lock(cpath: Path) -> Iterator[None]:
    try:
        cpath.parent.mkdir(parents=True, exist_ok=True)
        handle = open(cpath.with_suffix(".lock"), "a+b")  # noqa: SIM115
    except OSError:
        yield  # a read-only cache: no lock, every caller tokenises
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tokenise(
    spec: TaskSpec, path: Path, cpath: Path
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    assert spec.data_path is not None
    classify = spec.name == "text-classification"
    cols = [spec.text_column] + ([spec.label_column] if classify else [])
    table = read_table(spec.data_path, cols)
    texts = ["" if t is None else str(t) for t in table[spec.text_column]]
    classes: tuple[str, ...] = ()
    y: np.ndarray
    if classify:
        raw = table[spec.label_column]
        keep = np.array([v is not None for v in raw])
        values = np.array(["" if v is None else str(v) for v in raw], dtype=object)
        if spec.labels is not None:
            classes = tuple(spec.labels)
            keep &= np.isin(values, np.array(classes, dtype=object))
        else:
            classes = tuple(sorted({str(v) for v, k in zip(values, keep, strict=True) if k}))
        if len(classes) < 2:
            raise HFFolderError(f"data file {path}: need at least two distinct labels")
        index = {c: i for i, c in enumerate(classes)}
        texts = [t for t, k in zip(texts, keep, strict=True) if k]
        y = np.array([index[v] for v, k in zip(values, keep, strict=True) if k], dtype=np.int64)
        present = set(np.unique(y).tolist())
        if len(present) < 2:
            raise HFFolderError(
                f"data file {path}: fewer than two of the classes {list(classes)} occur "
                f"in column {spec.label_column!r}"
            )
    if not texts:
        raise HFFolderError(f"data file {path}: no rows")
    tok = load_tokenizer(spec)
    enc = tok(
        texts,
        max_length=spec.max_length,
        truncation=True,
        padding="max_length",
        return_tensors="np",
    )
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    mask = np.asarray(enc["attention_mask"], dtype=np.int64)
    x = np.stack([ids, mask], axis=1)
    if not classify:
        # Next-token targets; -100 where the next position is padding.
        y = np.where(mask[:, 1:] == 1, ids[:, 1:], IGNORE_INDEX).astype(np.int64)
        usable = (y != IGNORE_INDEX).any(axis=1)
        if not usable.any():
            raise HFFolderError(f"data file {path}: every text is shorter than two tokens")
        x, y = x[usable], y[usable]
    out = {"x": x, "y": y}
    with contextlib.suppress(OSError):
        atomic_savez(cpath, **out, classes=np.array(classes, dtype=np.str_))
    return out, classes
