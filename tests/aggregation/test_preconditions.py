"""f-vs-n preconditions and malformed inputs raise PreconditionError naming the problem."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aggregation import RULES, PreconditionError, get_rule

REF = {"reference": torch.zeros(3)}
BRISTLE = {"reference": torch.zeros(3), "score_fn": lambda v: 0.0}

# (rule, n, f, extra params): the smallest violation of each documented precondition.
VIOLATIONS: list[tuple[str, int, int, dict[str, Any]]] = [
    ("median", 4, 2, {}),
    ("trimmed_mean", 6, 3, {}),
    ("krum", 6, 2, {}),  # needs n >= 2f + 3 = 7
    ("multi_krum", 6, 2, {}),
    ("geometric_median", 4, 2, {}),
    ("centered_clipping", 4, 2, {}),
    ("bulyan", 10, 2, {}),  # needs n >= 4f + 3 = 11
    ("self_centered_clipping", 3, 2, REF),  # needs 2f < n + 1
    ("bristle", 3, 3, BRISTLE),
    ("nnm", 4, 2, {}),
    ("nnm+krum", 8, 3, {}),  # nnm is fine (2*3 < 8) but krum needs n >= 9
]


@pytest.mark.parametrize(("name", "n", "f", "params"), VIOLATIONS)
def test_violated_precondition_is_a_clear_error(
    name: str, n: int, f: int, params: dict[str, Any]
) -> None:
    x = torch.randn(n, 3)
    with pytest.raises(PreconditionError, match=r"requires .* got n=\d+, f=\d+"):
        RULES[name](x, f=f, **params)


@pytest.mark.parametrize(("name", "n", "f", "params"), VIOLATIONS)
def test_boundary_case_just_inside_the_precondition_works(
    name: str, n: int, f: int, params: dict[str, Any]
) -> None:
    # One more input than the violation (or one fewer Byzantine) satisfies the precondition.
    grow = {"bulyan": 1, "krum": 1, "multi_krum": 1, "nnm+krum": 1}.get(name, 0)
    m, g = (n + grow, f) if grow else (n, f - 1)
    out = RULES[name](torch.randn(m, 3), f=g, **params)
    assert out.shape == (3,)


@pytest.mark.parametrize("name", sorted(RULES))
def test_bad_f_and_bad_stack(name: str) -> None:
    params: dict[str, Any] = dict(BRISTLE) if "bristle" in name else dict(REF)
    with pytest.raises(PreconditionError, match="f must be a non-negative int"):
        RULES[name](torch.randn(12, 3), f=-1, **params)
    with pytest.raises(PreconditionError, match=r"shape \(n, d\)"):
        RULES[name](torch.randn(12), f=0, **params)
    with pytest.raises(PreconditionError, match="floating point"):
        RULES[name](torch.ones(12, 3, dtype=torch.int64), f=0, **params)


def test_reference_and_score_fn_required() -> None:
    x = torch.randn(5, 3)
    with pytest.raises(PreconditionError, match="reference="):
        RULES["self_centered_clipping"](x, f=1)
    with pytest.raises(PreconditionError, match=r"reference must have shape \(3,\)"):
        RULES["self_centered_clipping"](x, f=1, reference=torch.zeros(4))
    with pytest.raises(PreconditionError, match="score_fn"):
        RULES["bristle"](x, f=1, reference=torch.zeros(3))
    with pytest.raises(PreconditionError, match="non-finite"):
        RULES["bristle"](x, f=1, reference=torch.zeros(3), score_fn=lambda v: float("nan"))


def test_parameter_errors() -> None:
    x = torch.randn(9, 3)
    with pytest.raises(PreconditionError, match="m must be an int"):
        RULES["multi_krum"](x, f=1, m=0)
    with pytest.raises(PreconditionError, match="tau must be"):
        RULES["centered_clipping"](x, f=1, tau=-1.0)
    with pytest.raises(PreconditionError, match="f <= trim"):
        RULES["trimmed_mean"](x, f=2, trim=1)
    with pytest.raises(PreconditionError, match="weights must"):
        RULES["geometric_median"](x, f=1, weights=torch.ones(3))
    with pytest.raises(PreconditionError, match="weights must"):
        RULES["self_centered_clipping"](x, f=1, reference=torch.zeros(3), weights=torch.ones(9))
    with pytest.raises(PreconditionError, match="unknown then"):
        RULES["nnm"](x, f=1, then="nope")
    with pytest.raises(PreconditionError, match="unknown aggregation rule 'nope'"):
        get_rule("nope")
