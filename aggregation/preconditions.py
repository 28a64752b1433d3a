"""Input checks shared by every rule: stack shape, dtype and the f-vs-n precondition.

Rules call these before doing any work so that a misconfigured network (too many assumed
Byzantine peers for the number of received updates) fails loudly instead of silently
returning an aggregate without the promised robustness.
"""

from __future__ import annotations

import torch

__all__ = [
    "PreconditionError",
    "check_f",
    "check_reference",
    "check_updates",
]


class PreconditionError(ValueError):
    """An aggregation input violates a rule's documented precondition."""


def check_updates(updates: torch.Tensor, *, rule: str) -> tuple[int, int]:
    """Validate an update stack and return its shape.

    Parameters
    ----------
    updates:
        Tensor of shape ``(n, d)`` with a floating dtype and ``n >= 1``.
    rule:
        Name of the calling rule, used in error messages.

    Returns
    -------
    tuple[int, int]
        ``(n, d)``.

    Raises
    ------
    PreconditionError
        If ``updates`` is not a 2-D floating tensor with at least one row, or holds a NaN
        or an infinity (one such row would silently poison mean-like rules and distances;
        callers drop or refuse such updates first, see ``aggregation.hygiene``).
    """
    if not isinstance(updates, torch.Tensor):
        raise PreconditionError(
            f"{rule}: updates must be a torch.Tensor of shape (n, d), got {type(updates).__name__}"
        )
    if updates.dim() != 2:
        raise PreconditionError(
            f"{rule}: updates must have shape (n, d), got shape {tuple(updates.shape)}"
        )
    if not updates.is_floating_point():
        raise PreconditionError(f"{rule}: updates must be floating point, got {updates.dtype}")
    n, d = updates.shape
    if n < 1:
        raise PreconditionError(f"{rule}: need at least one update, got n=0")
    finite = torch.isfinite(updates).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten().tolist()
        raise PreconditionError(
            f"{rule}: updates must be finite; row(s) {rows[:8]} hold NaN or Inf "
            "(drop them before aggregating)"
        )
    return int(n), int(d)


def check_f(f: int, n: int, *, rule: str, need: str, ok: bool) -> None:
    """Raise if the rule's f-vs-n precondition does not hold.

    Parameters
    ----------
    f:
        Assumed number of Byzantine updates; must be a non-negative ``int``.
    n:
        Number of received updates.
    rule:
        Name of the calling rule.
    need:
        Human-readable precondition, e.g. ``"n >= 2f + 3"``.
    ok:
        Whether the precondition holds (computed by the caller).

    Raises
    ------
    PreconditionError
        If ``f`` is not a non-negative integer or ``ok`` is false.
    """
    if isinstance(f, bool) or not isinstance(f, int) or f < 0:
        raise PreconditionError(f"{rule}: f must be a non-negative int, got {f!r}")
    if not ok:
        raise PreconditionError(f"{rule}: requires {need}, got n={n}, f={f}")


def check_reference(reference: torch.Tensor | None, d: int, *, rule: str) -> torch.Tensor:
    """Validate the node's own vector passed as ``reference=``.

    Raises
    ------
    PreconditionError
        If ``reference`` is missing, not a 1-D tensor of length ``d``, or not finite.
    """
    if reference is None:
        raise PreconditionError(f"{rule}: needs the node's own vector as reference=")
    if not isinstance(reference, torch.Tensor) or reference.shape != (d,):
        shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else None
        raise PreconditionError(f"{rule}: reference must have shape ({d},), got {shape}")
    if not bool(torch.isfinite(reference).all()):
        raise PreconditionError(f"{rule}: reference must be finite, got NaN or Inf")
    return reference
