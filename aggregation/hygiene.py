"""Update hygiene: validate and filter received updates before any rule sees them.

Robust rules bound what ``f`` *finite, well-shaped* Byzantine vectors can do; a single NaN or
Inf can still poison a sort or a Gram product, and a wrong-shaped tensor is a protocol error.
:func:`sanitize` rejects such rows (and rows with a norm above a configured bound) and says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["Rejection", "SanitizeResult", "sanitize"]


@dataclass(frozen=True)
class Rejection:
    """One rejected input: its position in the input and a human-readable reason."""

    index: int
    reason: str


@dataclass(frozen=True)
class SanitizeResult:
    """Outcome of :func:`sanitize`.

    Attributes
    ----------
    updates:
        ``(k, d)`` stack of the kept rows, in input order (``k`` may be 0).
    kept:
        Input indices of the kept rows.
    rejected:
        One :class:`Rejection` per dropped input.
    norms:
        ``(k,)`` float64 L2 norms of the kept rows.
    """

    updates: torch.Tensor
    kept: list[int]
    rejected: list[Rejection] = field(default_factory=list)
    norms: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))

    @property
    def reasons(self) -> dict[int, str]:
        """Mapping input index -> rejection reason."""
        return {r.index: r.reason for r in self.rejected}


def sanitize(
    updates: torch.Tensor | Sequence[torch.Tensor],
    *,
    dim: int | None = None,
    max_norm: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> SanitizeResult:
    """Drop non-finite, wrongly shaped and over-norm updates; report why.

    Parameters
    ----------
    updates:
        An ``(n, d)`` tensor or a sequence of tensors (one per sender). Sequence items may have
        any shape; each must be 1-D of length ``dim`` to be kept.
    dim:
        Expected vector length (the node knows its model). Default: ``d`` of a 2-D tensor
        input; for a sequence the most common 1-D length among floating items (ties: the
        smallest), so a single malformed sender cannot set the shape.
    max_norm:
        Reject rows whose L2 norm exceeds this bound (default ``None``: no bound). Must be
        finite and > 0 when given.
    dtype:
        Floating dtype of the returned stack (default float32).

    Returns
    -------
    SanitizeResult
        Kept stack, kept indices, rejections with reasons, and kept rows' norms.

    Raises
    ------
    ValueError
        If ``updates`` is neither a 2-D tensor nor a sequence of tensors, or ``max_norm``/``dim``
        is invalid.
    """
    if max_norm is not None and not (0.0 < float(max_norm) < float("inf")):
        raise ValueError(f"sanitize: max_norm must be finite and > 0, got {max_norm!r}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"sanitize: dim must be a positive int, got {dim!r}")
    items = _as_items(updates)
    expected = dim if dim is not None else _infer_dim(updates, items)

    rejected: list[Rejection] = []
    kept: list[int] = []
    rows: list[torch.Tensor] = []
    norms: list[float] = []
    for i, item in enumerate(items):
        reason = _shape_problem(item, expected)
        if reason is None:
            row = item.to(dtype)
            if not bool(torch.isfinite(item).all()) or not bool(torch.isfinite(row).all()):
                bad = int((~torch.isfinite(row)).sum())
                reason = (
                    f"non-finite values ({bad} of {row.numel()} entries are NaN/Inf in {dtype})"
                )
            else:
                norm = float(torch.linalg.vector_norm(row.to(torch.float64)))
                if max_norm is not None and norm > max_norm:
                    reason = f"norm {norm:.6g} exceeds max_norm {float(max_norm):.6g}"
                else:
                    kept.append(i)
                    rows.append(row)
                    norms.append(norm)
        if reason is not None:
            rejected.append(Rejection(i, reason))
    width = expected if expected is not None else 0
    stack = torch.stack(rows) if rows else torch.zeros(0, width, dtype=dtype)
    return SanitizeResult(stack, kept, rejected, torch.tensor(norms, dtype=torch.float64))


def _as_items(updates: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(updates, torch.Tensor):
        if updates.dim() != 2:
            raise ValueError(
                f"sanitize: a tensor input must have shape (n, d), got {tuple(updates.shape)}"
            )
        return list(updates.unbind(0))
    if isinstance(updates, str | bytes) or not isinstance(updates, Sequence):
        raise ValueError(
            f"sanitize: updates must be an (n, d) tensor or a sequence of tensors, "
            f"got {type(updates).__name__}"
        )
    return list(updates)


def _infer_dim(
    updates: torch.Tensor | Sequence[torch.Tensor], items: list[torch.Tensor]
) -> int | None:
    if isinstance(updates, torch.Tensor):
        return int(updates.shape[1])
    lengths = Counter(
        int(t.shape[0])
        for t in items
        if isinstance(t, torch.Tensor) and t.dim() == 1 and t.is_floating_point()
    )
    if not lengths:
        return None
    top = max(lengths.values())
    return min(length for length, count in lengths.items() if count == top)


def _shape_problem(item: object, expected: int | None) -> str | None:
    if not isinstance(item, torch.Tensor):
        return f"not a tensor ({type(item).__name__})"
    if not item.is_floating_point():
        return f"dtype {item.dtype} is not floating point"
    if item.dim() != 1 or expected is None or item.shape[0] != expected:
        return f"shape {tuple(item.shape)} != expected ({expected},)"
    return None
