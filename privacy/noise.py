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
By default noise comes from :func:`secure_normal`: every uniform is 53 bits read from the
operating system's CSPRNG (``os.urandom``), turned into Gaussians by Box-Muller in float64,
and each output is the sum of four such samples divided by two (std unchanged): the
mitigation of floating-point attacks on Gaussian samplers of Holohan and Braghin (2021,
section 5.1) that Opacus's ``secure_mode`` uses. Nothing an observer sees can be used to
predict the next noise value. What remains is floating point: the output is not the
discrete Gaussian of Canonne, Kamath and Steinke (2020), and adding float64 noise to the
clipped value then rounding to float32 (or int8 for SPSA) leaves a residual,
hard-to-exploit dependence of the low-order bits on the un-noised value (docs/privacy.md).
Pass a seeded ``torch.Generator`` only in tests (Mersenne Twister: not secret).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple, overload

import numpy as np
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
    "secure_normal",
    "secure_uniform",
]

_TWO_PI = 2.0 * math.pi


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
    """A CPU ``torch.Generator`` seeded with 64 bits from ``os.urandom``.

    A Mersenne Twister: its outputs are predictable from enough earlier outputs. Use it
    where only statistical quality matters; noise and secret sampling use
    :func:`secure_normal` / :func:`secure_uniform`.
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int.from_bytes(os.urandom(8), "little"))
    return generator


def secure_uniform(n: int) -> torch.Tensor:
    """``n`` float64 uniforms in (0, 1) from the OS CSPRNG, 53 random bits each.

    Values are ``(k + 0.5) / 2**53`` for a uniform 53-bit integer ``k``: never 0 or 1, so
    ``log`` is always finite. For secret subsampling (Poisson draws of DP-SGD / DP-ZO).
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    raw = np.frombuffer(os.urandom(8 * n), dtype="<u8") >> np.uint64(11)
    return torch.from_numpy((raw.astype(np.float64) + 0.5) * (1.0 / 2.0**53))


def _box_muller(n: int) -> torch.Tensor:
    half = (n + 1) // 2
    u1, u2 = secure_uniform(half), secure_uniform(half)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = _TWO_PI * u2
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:n]


def secure_normal(shape: Sequence[int] | torch.Size, std: float = 1.0) -> torch.Tensor:
    """Float64 N(0, std^2) samples of ``shape`` from the OS CSPRNG.

    Each value is ``(g1 + g2 + g3 + g4) / 2`` for four independent Box-Muller normals
    (Holohan and Braghin 2021, section 5.1; Opacus ``secure_mode`` does the same), which
    removes the structure floating-point attacks exploit in a single sample.

    Parameters
    ----------
    shape : sequence of int
    std : float, default 1.0
        Standard deviation >= 0 (finite).
    """
    s = float(std)
    if not math.isfinite(s) or s < 0.0:
        raise ValueError(f"std must be finite and >= 0, got {std!r}")
    size = torch.Size(shape)
    n = size.numel()
    total = _box_muller(n)
    for _ in range(3):
        total += _box_muller(n)
    return (total * (0.5 * s)).reshape(size)


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
        ``None`` (the default, and the only choice outside tests) draws the noise from
        :func:`secure_normal`; a seeded generator makes it reproducible.
    """
    if not tensor.is_floating_point():
        raise TypeError(f"tensor must have a floating dtype, got {tensor.dtype}")
    s = float(std)
    if not math.isfinite(s) or s < 0.0:
        raise ValueError(f"std must be finite and >= 0, got {std!r}")
    if s == 0.0:
        return tensor.clone()
    if generator is None:
        noise = secure_normal(tensor.shape, s)
    else:
        noise = s * torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
    return (tensor.to(torch.float64) + noise).to(tensor.dtype)


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
        ``None`` draws the noise from the OS CSPRNG (:func:`secure_normal`); pass a
        seeded one only in tests.

    Returns
    -------
    PrivatizedUpdate or PrivatizedTensors
        The noisy update, the pre-clip norm and the noise std.
    """
    std = noise_std(clip_norm, noise_multiplier)
    gen = generator
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
        ``None`` draws the noise from the OS CSPRNG (:func:`secure_normal`).

    Returns
    -------
    torch.Tensor
        Noisy clipped scalars, same shape (float64 if a sequence was given).
    """
    std = noise_std(clip_bound, noise_multiplier)
    clipped = clip_scalars(scalars, clip_bound)
    return add_gaussian_noise(clipped, std, generator=generator)
