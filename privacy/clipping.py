"""L2 clipping of updates and per-scalar clipping of SPSA projected gradients.

Clipping is what gives a release a bounded sensitivity; the Gaussian mechanism in
:mod:`privacy.noise` is calibrated to the bound ``max_norm`` enforced here. Norms are
computed in float64 so that a float32 update with many coordinates is not under-measured
by accumulated rounding, which would let a clipped update exceed the bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple, overload

import torch

__all__ = [
    "ClippedTensors",
    "ClippedUpdate",
    "clip_scalars",
    "clip_tensors",
    "clip_update",
    "clip_vector",
    "l2_norm",
]


class ClippedUpdate(NamedTuple):
    """A flat update after L2 clipping.

    Attributes
    ----------
    update : torch.Tensor
        The clipped update (same shape and dtype as the input).
    norm : float
        The L2 norm of the update *before* clipping.
    """

    update: torch.Tensor
    norm: float


class ClippedTensors(NamedTuple):
    """A dict of tensors after joint L2 clipping.

    Attributes
    ----------
    update : dict[str, torch.Tensor]
        The clipped tensors, same keys, shapes and dtypes as the input.
    norm : float
        The joint L2 norm (over all tensors together) *before* clipping.
    """

    update: dict[str, torch.Tensor]
    norm: float


def _check_bound(max_norm: float, name: str = "max_norm") -> float:
    value = float(max_norm)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite positive number, got {max_norm!r}")
    return value


def _check_float_tensor(tensor: torch.Tensor, what: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{what} must have a floating dtype, got {tensor.dtype}")


def l2_norm(update: torch.Tensor | Mapping[str, torch.Tensor]) -> float:
    """Joint L2 norm of a tensor or of all tensors of a mapping, computed in float64.

    Parameters
    ----------
    update : torch.Tensor or Mapping[str, torch.Tensor]
        A floating tensor of any shape, or a mapping of such tensors (the norm is taken
        over the concatenation of all of them). An empty mapping has norm 0.

    Returns
    -------
    float
        The L2 norm; ``inf`` or ``nan`` if the input holds non-finite values.
    """
    if isinstance(update, Mapping):
        total = 0.0
        for key, tensor in update.items():
            _check_float_tensor(tensor, f"tensor {key!r}")
            total += float(torch.linalg.vector_norm(tensor, dtype=torch.float64)) ** 2
        return math.sqrt(total)
    _check_float_tensor(update, "update")
    return float(torch.linalg.vector_norm(update, dtype=torch.float64))


def _scale_factor(norm: float, max_norm: float, what: str) -> float:
    if not math.isfinite(norm):
        # A non-finite update cannot be clipped to a meaningful direction; refusing it is
        # the only way to keep the sensitivity bound honest.
        raise ValueError(f"{what} has a non-finite L2 norm ({norm}); refusing to clip it")
    return 1.0 if norm <= max_norm else max_norm / norm


def clip_vector(update: torch.Tensor, max_norm: float) -> ClippedUpdate:
    """Scale ``update`` so that its L2 norm is at most ``max_norm``.

    Parameters
    ----------
    update : torch.Tensor
        A floating tensor of any shape (treated as one flat vector).
    max_norm : float
        The clipping bound C > 0.

    Returns
    -------
    ClippedUpdate
        ``update * min(1, C / ||update||)`` (a new tensor) and the original norm.

    Raises
    ------
    ValueError
        If ``max_norm`` is not a finite positive number or ``update`` holds non-finite values.
    TypeError
        If ``update`` is not a floating tensor.
    """
    bound = _check_bound(max_norm)
    norm = l2_norm(update)
    factor = _scale_factor(norm, bound, "update")
    return ClippedUpdate(update * factor, norm)


def clip_tensors(tensors: Mapping[str, torch.Tensor], max_norm: float) -> ClippedTensors:
    """Jointly clip a mapping of tensors to L2 norm at most ``max_norm``.

    All tensors are scaled by the same factor, so the direction of the whole update (the
    concatenation of all tensors) is kept; this is the "flat clipping" of DP-FedAvg.

    Parameters
    ----------
    tensors : Mapping[str, torch.Tensor]
        Floating tensors, e.g. the trainable parameters' deltas keyed by name.
    max_norm : float
        The clipping bound C > 0.

    Returns
    -------
    ClippedTensors
        A new dict of clipped tensors and the original joint norm.

    Raises
    ------
    ValueError
        If ``max_norm`` is not a finite positive number or any tensor is non-finite.
    TypeError
        If a value is not a floating tensor.
    """
    bound = _check_bound(max_norm)
    norm = l2_norm(tensors)
    factor = _scale_factor(norm, bound, "update")
    return ClippedTensors({key: tensor * factor for key, tensor in tensors.items()}, norm)


@overload
def clip_update(update: torch.Tensor, max_norm: float) -> ClippedUpdate: ...
@overload
def clip_update(update: Mapping[str, torch.Tensor], max_norm: float) -> ClippedTensors: ...


def clip_update(
    update: torch.Tensor | Mapping[str, torch.Tensor], max_norm: float
) -> ClippedUpdate | ClippedTensors:
    """Clip a flat tensor or a mapping of tensors to L2 norm ``max_norm``.

    Dispatches to :func:`clip_vector` or :func:`clip_tensors`; see those for details.
    """
    if isinstance(update, Mapping):
        return clip_tensors(update, max_norm)
    return clip_vector(update, max_norm)


def clip_scalars(scalars: torch.Tensor | Sequence[float], bound: float) -> torch.Tensor:
    """Clip each scalar to ``[-bound, bound]`` (per-scalar clipping for SPSA).

    Parameters
    ----------
    scalars : torch.Tensor or Sequence[float]
        Projected-gradient scalars, any shape. A sequence becomes a float64 tensor.
    bound : float
        The per-scalar bound C > 0.

    Returns
    -------
    torch.Tensor
        A new tensor of the same shape with every entry in ``[-C, C]``.

    Raises
    ------
    ValueError
        If ``bound`` is not a finite positive number or any scalar is NaN. (Infinite
        scalars are clipped to the bound, which is well defined.)
    """
    c = _check_bound(bound, "bound")
    values = (
        scalars if isinstance(scalars, torch.Tensor) else torch.tensor(scalars, dtype=torch.float64)
    )
    _check_float_tensor(values, "scalars")
    if bool(torch.isnan(values).any()):
        raise ValueError("scalars contain NaN; refusing to clip them")
    return values.clamp(-c, c)
