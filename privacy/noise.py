"""The Gaussian mechanism for node-level DP on what a node releases.

Sensitivity argument (see ``docs/privacy.md`` for the long form)
----------------------------------------------------------------
Unit of privacy: one node's whole contribution (its local data set). Two executions are
*neighbouring* when they differ in that one node's contribution, in the add/remove (or
"replace with the zero update") sense: with it, the node releases ``clip(u) + N``; without
it, the same position holds ``0 + N``.

* **Flat update.** After :func:`privacy.clipping.clip_update` to L2 norm ``C``, the release
  ``clip(u) + N(0, (z C)^2 I)`` differs between neighbours by a mean shift of L2 norm at
  most ``C``. That is one Gaussian mechanism query with L2 sensitivity ``C`` and noise
  multiplier ``z``; ``k`` such releases (rounds) compose as ``k`` steps with
  ``sample_rate=1`` in :func:`privacy.accounting.epsilon`.
* **SPSA scalars.** Each scalar is clipped to ``[-C, C]`` and released as
  ``clip(g) + N(0, (z C)^2)``: sensitivity ``C`` per scalar. A batch of ``m`` scalars is a
  vector whose L2 sensitivity is ``C sqrt(m)`` when a neighbour changes the whole batch
  (each coordinate moves by at most ``C``). With per-coordinate noise ``z C`` this is one
  Gaussian mechanism with noise multiplier ``z / sqrt(m)``, which for Gaussian noise is
  *exactly* the same guarantee as ``m`` composed steps of noise multiplier ``z`` (the
  privacy loss of both is ``N(m/(2 z^2), m/z^2)``). Account it as ``steps = m``.
* **Replace-one adjacency** (the node's data set swapped for any other) doubles the
  sensitivity to ``2 C`` (``2 C`` per SPSA scalar); account with ``z / 2``.

Subsampling amplification (``sample_rate < 1``) is only valid if the sampling is secret;
for a node's own releases it is not (peers see every message), so use ``sample_rate=1``.

Randomness
----------
By default each call draws a fresh ``torch.Generator`` seeded with 64 bits from
``os.urandom``. Torch's CPU generator is a Mersenne Twister: fine statistically, not a
cryptographic generator, and floating-point Gaussian sampling is not the discrete Gaussian
of Canonne, Kamath and Steinke (2020); both are known gaps shared with Opacus's default
mode. Pass a seeded generator only in tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple, overload

import torch

from privacy.clipping import clip_scalars, clip_tensors, clip_vector

__all__ = [
    "PrivatizedTensors",
    "PrivatizedUpdate",
    "add_gaussian_noise",
    "fresh_generator",
    "noise_std",
    "privatize_scalars",
    "privatize_update",
]


class PrivatizedUpdate(NamedTuple):
    """A flat update after clipping and Gaussian noise.

    Attributes
    ----------
    update : torch.Tensor
        ``clip(u) + N(0, (z C)^2 I)``, same shape and dtype as the input.
    norm : float
        L2 norm of the update before clipping (for logs; it is *not* private, keep it local).
    std : float
        The noise standard deviation ``z * C`` actually used.
    """

    update: torch.Tensor
    norm: float
    std: float


class PrivatizedTensors(NamedTuple):
    """A dict of tensors after joint clipping and Gaussian noise (see PrivatizedUpdate)."""

    update: dict[str, torch.Tensor]
    norm: float
    std: float


def fresh_generator() -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with 64 bits from ``os.urandom``."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int.from_bytes(os.urandom(8), "little"))
    return generator


def noise_std(clip_norm: float, noise_multiplier: float) -> float:
    """Noise standard deviation ``z * C`` of the Gaussian mechanism.

    Parameters
    ----------
    clip_norm : float
        Sensitivity bound C > 0.
    noise_multiplier : float
        z >= 0 (0 means no noise and no privacy).

    Raises
    ------
    ValueError
        If C is not finite positive or z is negative or not finite.
    """
    c = float(clip_norm)
    z = float(noise_multiplier)
    if not math.isfinite(c) or c <= 0.0:
        raise ValueError(f"clip_norm must be a finite positive number, got {clip_norm!r}")
    if not math.isfinite(z) or z < 0.0:
        raise ValueError(f"noise_multiplier must be finite and >= 0, got {noise_multiplier!r}")
    return z * c


def add_gaussian_noise(
    tensor: torch.Tensor, std: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return ``tensor + N(0, std^2)`` element-wise (a new tensor).

    The noise is drawn in float64 and added before casting back, so that a float16/bfloat16
    update does not get a visibly quantised noise distribution.

    Parameters
    ----------
    tensor : torch.Tensor
        A floating CPU tensor.
    std : float
        Standard deviation >= 0.
    generator : torch.Generator or None, default None
        Source of randomness; ``None`` uses :func:`fresh_generator`.
    """
    if not tensor.is_floating_point():
        raise TypeError(f"tensor must have a floating dtype, got {tensor.dtype}")
    s = float(std)
    if not math.isfinite(s) or s < 0.0:
        raise ValueError(f"std must be finite and >= 0, got {std!r}")
    if s == 0.0:
        return tensor.clone()
    gen = generator if generator is not None else fresh_generator()
    noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
    return (tensor.to(torch.float64) + s * noise).to(tensor.dtype)


@overload
def privatize_update(
    update: torch.Tensor,
    *,
    clip_norm: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> PrivatizedUpdate: ...
@overload
def privatize_update(
    update: Mapping[str, torch.Tensor],
    *,
    clip_norm: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> PrivatizedTensors: ...


def privatize_update(
    update: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    clip_norm: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> PrivatizedUpdate | PrivatizedTensors:
    """Clip an update to L2 norm C and add ``N(0, (z C)^2)`` noise to every coordinate.

    One call is one Gaussian-mechanism query with L2 sensitivity C under node-level
    add/remove adjacency (module docstring): debit it as one step of
    ``Release(noise_multiplier=z, sample_rate=1.0, steps=1)``.

    Parameters
    ----------
    update : torch.Tensor or Mapping[str, torch.Tensor]
        A flat (or any-shape) floating tensor, or a mapping of tensors clipped jointly.
    clip_norm : float
        C > 0.
    noise_multiplier : float
        z >= 0.
    generator : torch.Generator or None, default None
        ``None`` draws fresh OS-seeded randomness; pass a seeded one only in tests.

    Returns
    -------
    PrivatizedUpdate or PrivatizedTensors
        The noisy update, the pre-clip norm and the noise std.
    """
    std = noise_std(clip_norm, noise_multiplier)
    gen = generator if generator is not None else fresh_generator()
    if isinstance(update, Mapping):
        clipped_map, norm = clip_tensors(update, clip_norm)
        # Keys are visited in sorted order so a seeded generator gives the same noise
        # whatever order the caller built the dict in.
        noisy = {
            key: add_gaussian_noise(clipped_map[key], std, generator=gen)
            for key in sorted(clipped_map)
        }
        return PrivatizedTensors({key: noisy[key] for key in clipped_map}, norm, std)
    clipped, norm = clip_vector(update, clip_norm)
    return PrivatizedUpdate(add_gaussian_noise(clipped, std, generator=gen), norm, std)


def privatize_scalars(
    scalars: torch.Tensor | Sequence[float],
    *,
    clip_bound: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Clip each SPSA scalar to ``[-C, C]`` and add independent ``N(0, (z C)^2)`` noise.

    Each scalar is one Gaussian query with sensitivity C; a batch of ``m`` scalars is
    accounted as ``m`` steps at noise multiplier z (equivalently one query with L2
    sensitivity ``C sqrt(m)`` and multiplier ``z / sqrt(m)``; identical for Gaussians).

    Parameters
    ----------
    scalars : torch.Tensor or Sequence[float]
        Projected-gradient scalars (any shape).
    clip_bound : float
        C > 0.
    noise_multiplier : float
        z >= 0.
    generator : torch.Generator or None, default None
        ``None`` draws fresh OS-seeded randomness.

    Returns
    -------
    torch.Tensor
        Noisy clipped scalars, same shape (float64 if a sequence was given).
    """
    std = noise_std(clip_bound, noise_multiplier)
    clipped = clip_scalars(scalars, clip_bound)
    return add_gaussian_noise(clipped, std, generator=generator)
