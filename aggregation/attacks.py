"""Byzantine attacks, for testnets and benchmarks only.

Every attack is ``attack(honest, *, f, **params) -> (f, d)``: given the honest vectors of a round
(omniscient attacker, the standard threat model of the papers below) it returns the ``f``
vectors the Byzantine nodes send. ``mu`` and ``sd`` below are the coordinate-wise mean and
standard deviation of the honest vectors. :data:`ATTACKS` maps names to attacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import torch

from aggregation.preconditions import PreconditionError, check_updates

__all__ = [
    "ATTACKS",
    "Attack",
    "alie",
    "alie_default_z",
    "gaussian",
    "inf",
    "ipm",
    "label_flip",
    "line_search",
    "mimic",
    "nan",
    "optimal_alie",
    "optimal_ipm",
    "sign_flip",
    "with_byzantine",
]

Attack = Callable[..., torch.Tensor]


def _prepare(honest: torch.Tensor, f: int, name: str) -> tuple[int, int]:
    h, d = check_updates(honest, rule=name)
    if isinstance(f, bool) or not isinstance(f, int) or f < 0:
        raise PreconditionError(f"{name}: f must be a non-negative int, got {f!r}")
    return h, d


def _repeat(vector: torch.Tensor, f: int) -> torch.Tensor:
    return vector.unsqueeze(0).expand(f, -1).clone()


def sign_flip(honest: torch.Tensor, *, f: int, **_: Any) -> torch.Tensor:
    """Sign flip: every Byzantine node sends ``-mu`` (ByzFL ``SignFlipping``)."""
    _prepare(honest, f, "sign_flip")
    return _repeat(-honest.mean(dim=0), f)


def ipm(honest: torch.Tensor, *, f: int, eps: float = 0.1, **_: Any) -> torch.Tensor:
    """Inner-product manipulation (Xie, Koyejo, Gupta, "Fall of Empires", UAI 2020): ``-eps * mu``.

    Parameters
    ----------
    eps:
        Scale (default 0.1, the paper's small-eps setting that keeps the Byzantine vectors
        inconspicuous to median/Krum while the inner product with ``mu`` turns negative for the
        mean). ``eps = 100`` is the large setting that wrecks plain averaging.
    """
    _prepare(honest, f, "ipm")
    return _repeat(-float(eps) * honest.mean(dim=0), f)


def alie_default_z(n: int, f: int) -> float:
    """``z_max`` of Baruch, Baruch, Goldberg, "A Little Is Enough" (NeurIPS 2019).

    ``s = floor(n / 2 + 1) - f`` and ``z = Phi^{-1}((n - s) / n)`` with ``n`` the total number
    of nodes (honest plus Byzantine).
    """
    s = math.floor(n / 2 + 1) - f
    p = min(max((n - s) / n, 1e-9), 1 - 1e-9)
    return NormalDist().inv_cdf(p)


def alie(honest: torch.Tensor, *, f: int, z: float | None = None, **_: Any) -> torch.Tensor:
    """A Little Is Enough (Baruch et al., NeurIPS 2019): ``mu - z * sd``.

    Parameters
    ----------
    z:
        Deviation in honest standard deviations; default :func:`alie_default_z` for
        ``n = h + f`` (e.g. 0.21 for 10 honest + 2 Byzantine). ByzFL's default is 1.5.
    """
    h, _d = _prepare(honest, f, "alie")
    zz = alie_default_z(h + f, f) if z is None else float(z)
    sd = honest.std(dim=0, unbiased=True) if h > 1 else torch.zeros_like(honest[0])
    return _repeat(honest.mean(dim=0) - zz * sd, f)


def gaussian(
    honest: torch.Tensor,
    *,
    f: int,
    mu: float = 0.0,
    sigma: float = 100.0,
    generator: torch.Generator | None = None,
    **_: Any,
) -> torch.Tensor:
    """Gaussian noise: each Byzantine vector drawn i.i.d. from ``N(mu, sigma^2)`` per coordinate.

    Defaults ``mu = 0``, ``sigma = 100`` (the setting of our ByzFL anchor table); pass a
    seeded ``generator`` for reproducible runs.
    """
    _h, d = _prepare(honest, f, "gaussian")
    noise = torch.randn(f, d, generator=generator, dtype=honest.dtype)
    return noise * float(sigma) + float(mu)


def mimic(honest: torch.Tensor, *, f: int, target: int = 0, **_: Any) -> torch.Tensor:
    """Mimic (Karimireddy, He, Jaggi, ICLR 2022): every Byzantine node copies honest vector
    ``target`` (default 0), over-weighting one node's (non-i.i.d.) data."""
    h, _d = _prepare(honest, f, "mimic")
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < h:
        raise PreconditionError(f"mimic: target must be an int in [0, {h}), got {target!r}")
    return _repeat(honest[target], f)


def inf(honest: torch.Tensor, *, f: int, **_: Any) -> torch.Tensor:
    """Non-finite attack: vectors of ``+inf`` (hygiene must reject them)."""
    _h, d = _prepare(honest, f, "inf")
    return torch.full((f, d), float("inf"), dtype=honest.dtype)


def nan(honest: torch.Tensor, *, f: int, **_: Any) -> torch.Tensor:
    """Non-finite attack: vectors of NaN (hygiene must reject them)."""
    _h, d = _prepare(honest, f, "nan")
    return torch.full((f, d), float("nan"), dtype=honest.dtype)


def label_flip(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label flipping data attack: ``y -> num_classes - 1 - y`` (ByzFL ``LabelFlipping``).

    Raises
    ------
    ValueError
        If labels are not integers in ``[0, num_classes)``.
    """
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"label_flip: labels must be an integer tensor, got {labels.dtype}")
    if num_classes < 1 or (labels.numel() and (labels.min() < 0 or labels.max() >= num_classes)):
        raise ValueError(f"label_flip: labels must lie in [0, {num_classes})")
    return num_classes - 1 - labels


def line_search(
    objective: Callable[[float], float],
    *,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
) -> float:
    """Maximise a scalar objective by ByzFL's expansion/contraction line search.

    Expansion: step by ``delta`` and double it while the objective improves; then contraction:
    try ``best + delta`` and, if that is no better, ``best - delta``, then ``delta *= ratio``,
    until ``evals`` evaluations are spent. (ByzFL only tries ``best + delta`` when contracting.)

    Parameters
    ----------
    objective:
        Function of the attack factor to maximise.
    evals:
        Total evaluations (default 20).
    start:
        First factor tried (default 0.0).
    delta:
        Initial step (default 10.0; non-zero).
    ratio:
        Contraction ratio in (0.5, 1) (default 0.8).
    """
    if evals < 1 or delta == 0 or not 0.5 < ratio < 1:
        raise ValueError("line_search: need evals >= 1, delta != 0 and 0.5 < ratio < 1")
    best_x, best_y = start, objective(start)
    remaining = evals - 1
    while remaining > 0:
        x = best_x + delta
        y = objective(x)
        remaining -= 1
        if y > best_y:
            best_x, best_y = x, y
            delta *= 2
        else:
            delta *= ratio
            break
    while remaining > 0:
        # Two-sided, unlike ByzFL's forward-only contraction, so an overshoot can be walked back.
        for x in (best_x + delta, best_x - delta):
            if remaining == 0:
                break
            y = objective(x)
            remaining -= 1
            if y > best_y:
                best_x, best_y = x, y
                break
        delta *= ratio
    return best_x


def _resolve_rule(rule: str | Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    if callable(rule):
        return rule
    from aggregation.registry import RULES  # late import: registry imports this module

    if rule not in RULES:
        raise PreconditionError(f"unknown rule {rule!r}; known: {sorted(RULES)}")
    return RULES[rule]


def _damage(
    honest: torch.Tensor,
    byzantine: torch.Tensor,
    rule: Callable[..., torch.Tensor],
    f: int,
    rule_params: dict[str, Any],
) -> float:
    out = rule(torch.cat([honest, byzantine]), f=f, **rule_params)
    value = float(torch.linalg.vector_norm((out - honest.mean(dim=0)).to(torch.float64)))
    # A non-finite aggregate is the worst case for the defender; rank it above any finite one.
    return value if math.isfinite(value) else float("inf")


def _search_strength(
    attack: Callable[[float], torch.Tensor],
    honest: torch.Tensor,
    f: int,
    rule: str | Callable[..., torch.Tensor],
    rule_params: dict[str, Any] | None,
    evals: int,
    start: float,
    delta: float,
    ratio: float,
) -> float:
    """The attack strength the line search finds most damaging against ``rule``."""
    agg = _resolve_rule(rule)
    params = dict(rule_params or {})
    return line_search(
        lambda x: _damage(honest, attack(x), agg, f, params),
        evals=evals,
        start=start,
        delta=delta,
        ratio=ratio,
    )


def optimal_ipm(
    honest: torch.Tensor,
    *,
    f: int,
    rule: str | Callable[..., torch.Tensor] = "mean",
    rule_params: dict[str, Any] | None = None,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
    **_: Any,
) -> torch.Tensor:
    """IPM with the factor ``eps`` chosen by line search to maximise
    ``||rule(honest + byzantine) - mu||`` (ByzFL ``Optimal_InnerProductManipulation``;
    Allouah et al., AISTATS 2023).

    Parameters
    ----------
    rule:
        Rule under attack, a name in ``aggregation.RULES`` or a callable (default ``"mean"``).
    rule_params:
        Extra keyword parameters for the rule (default none).
    evals, start, delta, ratio:
        Line-search settings, see :func:`line_search` (defaults 20, 0.0, 10.0, 0.8).
    """
    _prepare(honest, f, "optimal_ipm")
    best = _search_strength(
        lambda e: ipm(honest, f=f, eps=e), honest, f, rule, rule_params, evals, start, delta, ratio
    )
    return ipm(honest, f=f, eps=best)


def optimal_alie(
    honest: torch.Tensor,
    *,
    f: int,
    rule: str | Callable[..., torch.Tensor] = "mean",
    rule_params: dict[str, Any] | None = None,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
    **_: Any,
) -> torch.Tensor:
    """ALIE with ``z`` chosen by line search to maximise ``||rule(honest + byzantine) - mu||``
    (ByzFL ``Optimal_ALittleIsEnough``; Allouah et al., AISTATS 2023). Parameters as
    :func:`optimal_ipm`."""
    _prepare(honest, f, "optimal_alie")
    best = _search_strength(
        lambda z: alie(honest, f=f, z=z), honest, f, rule, rule_params, evals, start, delta, ratio
    )
    return alie(honest, f=f, z=best)


def with_byzantine(
    honest: torch.Tensor,
    *,
    f: int,
    attack: str,
    rule: str | Callable[..., torch.Tensor] | None = None,
    **params: Any,
) -> torch.Tensor:
    """Stack the honest vectors with ``f`` vectors from ``ATTACKS[attack]`` appended.

    The helper a robustness benchmark or a Byzantine testnet node needs for one round.

    Parameters
    ----------
    honest:
        ``(h, d)`` honest vectors.
    f:
        Number of Byzantine vectors to append.
    attack:
        Name in :data:`ATTACKS`.
    rule:
        The defender's rule, passed to the ``optimal_*`` attacks (required for them, ignored by
        the others).
    **params:
        Attack parameters.

    Returns
    -------
    torch.Tensor
        ``(h + f, d)``.

    Raises
    ------
    PreconditionError
        On an unknown attack, or an ``optimal_*`` attack without ``rule``.
    """
    if attack not in ATTACKS:
        raise PreconditionError(f"unknown attack {attack!r}; known: {sorted(ATTACKS)}")
    if attack.startswith("optimal_"):
        if rule is None:
            raise PreconditionError(f"{attack}: needs the defender's rule= to optimise against")
        params["rule"] = rule
    byzantine = ATTACKS[attack](honest, f=f, **params)
    return torch.cat([honest, byzantine.to(honest.dtype)])


ATTACKS: dict[str, Attack] = {
    "sign_flip": sign_flip,
    "ipm": ipm,
    "alie": alie,
    "gaussian": gaussian,
    "mimic": mimic,
    "inf": inf,
    "nan": nan,
    "optimal_ipm": optimal_ipm,
    "optimal_alie": optimal_alie,
}
