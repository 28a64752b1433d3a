"""Variance-corrected model averaging.

Tian, Al-Ars, Kitsak, Hofstee, "Vanishing Variance Problem in Fully Decentralized
Neural-Network Systems" (arXiv 2404.04616, 2024). Averaging k *uncorrelated* models (e.g.
independent initialisations in gossip learning) shrinks every layer's weight variance by about
``1/k``, destroying the variance the initialisation (Xavier/Kaiming) set up and slowing
convergence. The fix: after averaging, rescale each layer's deviation from its mean so that the
layer's standard deviation equals the mean of the input models' standard deviations for that
layer. Averaging correlated models (one shared init, small updates) barely changes the variance,
so the correction is then close to the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

__all__ = ["variance_corrected_layer", "variance_corrected_mean"]


def _normalised_weights(weights: torch.Tensor | Sequence[float] | None, k: int) -> torch.Tensor:
    if weights is None:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (k,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(
            f"weights must be {k} finite non-negative values, got shape {tuple(w.shape)}"
        )
    total = float(w.sum())
    if total <= 0.0:
        raise ValueError("weights must not all be zero")
    return w / total


def variance_corrected_layer(
    stack: torch.Tensor,
    *,
    weights: torch.Tensor | Sequence[float] | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Average one layer over k models, then restore its standard deviation.

    Parameters
    ----------
    stack:
        ``(k, *shape)`` floating tensor: the same layer from ``k`` models.
    weights:
        Optional ``(k,)`` non-negative averaging weights (default uniform); the target standard
        deviation is averaged with the same weights.
    eps:
        Layers whose averaged standard deviation is below ``eps`` (default 1e-12) are returned
        as the plain average: a constant layer has no deviation to rescale.

    Returns
    -------
    torch.Tensor
        ``shape``-shaped layer ``mu + (avg - mu) * target_std / std(avg)`` with ``mu`` the
        average layer's mean; layers with fewer than 2 entries are the plain average.

    Raises
    ------
    ValueError
        If ``stack`` is not floating point with a leading model axis, or ``weights`` is invalid.
    """
    if not isinstance(stack, torch.Tensor) or stack.dim() < 1 or not stack.is_floating_point():
        raise ValueError("stack must be a floating tensor of shape (k, *shape)")
    k = stack.shape[0]
    if k < 1:
        raise ValueError("stack must hold at least one model")
    w = _normalised_weights(weights, k)
    flat = stack.reshape(k, -1).to(torch.float64)
    avg = w @ flat
    if flat.shape[1] < 2:
        return avg.reshape(stack.shape[1:]).to(stack.dtype)
    # Population std (unbiased=False): a layer's spread, not an estimate from a sample.
    target = float(w @ flat.std(dim=1, unbiased=False))
    current = float(avg.std(unbiased=False))
    if current < eps:
        return avg.reshape(stack.shape[1:]).to(stack.dtype)
    mu = avg.mean()
    corrected = mu + (avg - mu) * (target / current)
    return corrected.reshape(stack.shape[1:]).to(stack.dtype)


def variance_corrected_mean(
    models: Sequence[Mapping[str, torch.Tensor]],
    *,
    weights: torch.Tensor | Sequence[float] | None = None,
    include: Callable[[str, torch.Tensor], bool] | None = None,
    eps: float = 1e-12,
) -> dict[str, torch.Tensor]:
    """Variance-corrected averaging of k state dicts (Tian et al., 2024).

    Parameters
    ----------
    models:
        ``k >= 1`` mappings with identical keys and per-key shapes.
    weights:
        Optional ``(k,)`` averaging weights (default uniform).
    include:
        Predicate ``(name, tensor) -> bool`` choosing which layers get the correction (default:
        every floating layer with at least 2 entries). Excluded floating layers are plainly
        averaged; non-floating entries (e.g. BatchNorm counters) are copied from the first model.
    eps:
        See :func:`variance_corrected_layer` (default 1e-12).

    Returns
    -------
    dict[str, torch.Tensor]
        The corrected average, same keys, shapes and dtypes as the inputs.

    Raises
    ------
    ValueError
        If ``models`` is empty, keys or shapes differ, or ``weights`` is invalid.
    """
    if len(models) == 0:
        raise ValueError("variance_corrected_mean needs at least one model")
    keys = list(models[0].keys())
    for i, model in enumerate(models[1:], start=1):
        if list(model.keys()) != keys:
            raise ValueError(f"model {i} has different keys from model 0")
    w = _normalised_weights(weights, len(models))
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [m[key] for m in models]
        shape = tensors[0].shape
        for i, t in enumerate(tensors):
            if t.shape != shape:
                raise ValueError(
                    f"layer {key!r}: model {i} has shape {tuple(t.shape)} != {tuple(shape)}"
                )
        first = tensors[0]
        if not first.is_floating_point():
            out[key] = first.clone()
            continue
        stack = torch.stack(tensors)
        if include is None or include(key, first):
            out[key] = variance_corrected_layer(stack, weights=w, eps=eps)
        else:
            out[key] = torch.tensordot(w.to(stack.dtype), stack, dims=1)
    return out
