"""Trainable-parameter vectors: stable layout, safetensors codec, model hash.

Only trainable parameters (``requires_grad``) ever leave a node: for the
LoRA model that is B and the head, never the frozen encoder or A.
The layout is the model's ``named_parameters`` order, which is fixed by the
model code and therefore identical on every node running the same genesis.
Network bytes are decoded with ``safetensors`` only — never pickle/torch.load.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

__all__ = [
    "CHECKPOINT_KEY",
    "ParamError",
    "ParamLayout",
    "checkpoint_tensors",
    "decode_checkpoint",
    "decode_state",
    "decode_vector",
    "encode_state",
    "encode_vector",
    "flatten",
    "layout_of",
    "load_vector",
    "model_hash",
    "vector_hash",
]


class ParamError(ValueError):
    """A parameter payload does not match the expected layout or is not finite."""


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of the trainable parameters, in vector order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Element count per parameter."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def numel(self) -> int:
        """Length of the flat vector."""
        return sum(self.sizes)

    def split(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """View a flat vector as a ``name -> tensor`` dict (shapes from the layout)."""
        self.check_vector(vector)
        parts = torch.split(vector, list(self.sizes))
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}

    def check_vector(self, vector: torch.Tensor) -> None:
        """Raise :class:`ParamError` unless ``vector`` is float32 of shape ``(numel,)``."""
        if vector.dtype != torch.float32:
            raise ParamError(f"vector dtype {vector.dtype}, expected float32")
        if tuple(vector.shape) != (self.numel,):
            raise ParamError(f"vector shape {tuple(vector.shape)}, expected ({self.numel},)")

    def digest(self) -> bytes:
        """sha256 of the layout (names and shapes), so hashes bind the layout too."""
        h = hashlib.sha256()
        for n, s in zip(self.names, self.shapes, strict=True):
            h.update(f"{n}:{','.join(map(str, s))};".encode())
        return h.digest()


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def layout_of(model: nn.Module) -> ParamLayout:
    """Layout of ``model``'s trainable parameters."""
    named = _trainable(model)
    if not named:
        raise ParamError("model has no trainable parameters")
    return ParamLayout(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))


def flatten(model: nn.Module) -> torch.Tensor:
    """Copy of the trainable parameters as one float32 vector (layout order)."""
    return torch.cat([p.detach().reshape(-1).to(torch.float32) for _, p in _trainable(model)])


def load_vector(model: nn.Module, vector: torch.Tensor, *, check: bool = True) -> None:
    """Write a flat vector into ``model``'s trainable parameters, in place.

    ``check=False`` skips the finiteness scan (for local hot loops on vectors
    the node computed itself; never for received data).

    Raises
    ------
    ParamError
        Wrong dtype/length or non-finite values; the model is left untouched.
    """
    named = _trainable(model)
    numel = sum(p.numel() for _, p in named)
    if vector.dtype != torch.float32 or tuple(vector.shape) != (numel,):
        got = f"{vector.dtype} {tuple(vector.shape)}"
        raise ParamError(f"vector {got}, expected float32 ({numel},)")
    if check and not bool(torch.isfinite(vector).all()):
        raise ParamError("vector contains NaN or Inf")
    with torch.no_grad():
        offset = 0
        for _, p in named:
            n = p.numel()
            p.copy_(vector[offset : offset + n].view_as(p))
            offset += n


def encode_state(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """safetensors bytes of a ``name -> tensor`` dict (contiguous float32 copies)."""
    return st_save({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()})


def decode_state(
    data: bytes, layout: ParamLayout, *, max_bytes: int | None = None
) -> dict[str, torch.Tensor]:
    """Decode and validate safetensors bytes against ``layout``.

    Parameters
    ----------
    data
        safetensors bytes (from a peer: untrusted).
    layout
        Expected names and shapes; every tensor must be float32 and finite.
    max_bytes
        Reject larger payloads before parsing (default: the exact float32
        tensor bytes plus 64 KiB for the safetensors header).

    Raises
    ------
    ParamError
        Oversized, unparsable, missing/extra names, wrong shape/dtype, NaN/Inf.
    """
    limit = max_bytes if max_bytes is not None else layout.numel * 4 + 65_536
    if len(data) > limit:
        raise ParamError(f"payload of {len(data)} bytes exceeds the limit of {limit}")
    try:
        tensors = st_load(bytes(data))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ParamError(f"not a valid safetensors payload: {exc}") from exc
    expected = set(layout.names)
    got = set(tensors)
    if got != expected:
        missing = sorted(expected - got)[:3]
        extra = sorted(got - expected)[:3]
        raise ParamError(f"tensor names differ from layout (missing {missing}, unexpected {extra})")
    for name, shape in zip(layout.names, layout.shapes, strict=True):
        t = tensors[name]
        if t.dtype != torch.float32:
            raise ParamError(f"tensor {name!r} has dtype {t.dtype}, expected float32")
        if tuple(t.shape) != shape:
            raise ParamError(f"tensor {name!r} has shape {tuple(t.shape)}, expected {shape}")
        if not bool(torch.isfinite(t).all()):
            raise ParamError(f"tensor {name!r} contains NaN or Inf")
    return {n: tensors[n] for n in layout.names}


def encode_vector(vector: torch.Tensor, layout: ParamLayout) -> bytes:
    """safetensors bytes of a flat vector split by ``layout``."""
    return encode_state(layout.split(vector))


def decode_vector(
    data: bytes, layout: ParamLayout, *, max_bytes: int | None = None
) -> torch.Tensor:
    """Inverse of :func:`encode_vector`, with :func:`decode_state`'s validation."""
    tensors = decode_state(data, layout, max_bytes=max_bytes)
    return torch.cat([tensors[n].reshape(-1) for n in layout.names])


CHECKPOINT_KEY = "vector"


def checkpoint_tensors(vector: torch.Tensor, layout: ParamLayout) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: the flat trainable vector under one name."""
    layout.check_vector(vector)
    return {CHECKPOINT_KEY: vector}


def decode_checkpoint(data: bytes, layout: ParamLayout) -> torch.Tensor:
    """Flat vector of safetensors checkpoint bytes (possibly from a peer: untrusted).

    Exactly one float32 tensor ``vector`` of shape ``(layout.numel,)``, finite; the size
    is bounded before parsing. Same checks as :func:`decode_state`, which it uses.

    Raises
    ------
    ParamError
    """
    flat = ParamLayout((CHECKPOINT_KEY,), ((layout.numel,),))
    return decode_state(data, flat)[CHECKPOINT_KEY]


def vector_hash(vector: torch.Tensor, layout: ParamLayout) -> str:
    """Hex sha256 over the layout digest and the little-endian float32 bytes of ``vector``."""
    layout.check_vector(vector)
    h = hashlib.sha256(layout.digest())
    # numpy view gives the raw buffer; torch float32 on every supported CPU is little-endian.
    h.update(vector.detach().contiguous().numpy().astype("<f4", copy=False).tobytes())
    return h.hexdigest()


def model_hash(model: nn.Module) -> str:
    """Hex sha256 of ``model``'s trainable state (see :func:`vector_hash`)."""
    return vector_hash(flatten(model), layout_of(model))
