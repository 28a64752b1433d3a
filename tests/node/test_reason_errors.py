"""Reason-coded errors: declaration rules, the derived fault set, and every raise site.

The service charges a refusal to the sender when its code is in ``FAULT_REASONS``. That
set used to be written by hand and drifted (it listed ``bad_origin`` and ``forged_origin``,
which nothing raises). It is now derived from the error classes, and the source scan below
fails when code raises or charges a reason that its class did not declare.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from node.base.errors import ReasonError, UndeclaredReason, fault_reasons
from node.gossip.core import GossipRejected
from node.gossip.records import RecordError
from node.wire.envelope import EnvelopeError
from node.wire.equivocation import EquivocationError
from node.wire.service import FAULT_REASONS, Rejected
from node.wire.update_header import UpdateError

NODE = Path(__file__).resolve().parents[2] / "node"


class _Base(ReasonError, faults={"bad_thing"}, others={"busy"}):
    pass


class _Child(_Base, faults={"worse_thing"}):
    pass


def test_fault_is_read_from_the_declaration() -> None:
    assert _Base("bad_thing", "x").fault
    assert not _Base("busy", "x").fault
    err = _Child("worse_thing", "it broke")
    assert (err.reason, str(err), err.fault) == ("worse_thing", "it broke", True)
    assert {"bad_thing", "busy", "worse_thing"} == _Child.REASONS
    assert {"bad_thing", "worse_thing"} == _Child.FAULTS
    assert {"bad_thing", "busy"} == _Base.REASONS  # the child added nothing to its parent


def test_undeclared_code_is_a_bug_not_a_refusal() -> None:
    with pytest.raises(UndeclaredReason, match="'bad_thnig'"):
        _Base("bad_thnig", "typo")


def test_a_code_cannot_be_both() -> None:
    with pytest.raises(UndeclaredReason, match="both"):

        class _Twice(ReasonError, faults={"a"}, others={"a"}):
            pass

    with pytest.raises(UndeclaredReason, match="both"):

        class _Flip(_Base, faults={"busy"}):
            pass

    with pytest.raises(UndeclaredReason, match="both"):

        class _Excuse(_Base, others={"bad_thing"}):
            pass


@pytest.mark.parametrize("code", ["", "Bad", "has space", "1st", "dash-ed"])
def test_codes_are_label_tokens(code: str) -> None:
    with pytest.raises(UndeclaredReason, match="codes must be"):

        class _Odd(ReasonError, faults={code}):
            pass


def test_fault_reasons_prefixes() -> None:
    assert fault_reasons(_Base, prefix="p_") == {"p_bad_thing"}
    assert fault_reasons(_Base, _Child) == {"bad_thing", "worse_thing"}


def test_fault_set_is_the_old_hand_kept_one() -> None:
    """Reason strings and what is charged are unchanged (tests and metrics use them)."""
    old = {
        "malformed",
        "bad_hash",
        "size_mismatch",
        "bad_shape",
        "bad_dtype",
        "bad_format",
        "nonfinite",
        "bad_round",
        "unknown_seed",
        "too_many_chunks",
        "gossip_malformed",
        "gossip_sender_mismatch",
        "gossip_bad_pow",
        "gossip_wrong_target",
        "gossip_bad_signature",
        "gossip_wrong_network",
        "gossip_bad_address",
        "history_malformed",
        "history_bad_reporter",
        "history_bad_shape",
        "history_bad_signature",
        "evidence_malformed",
        "evidence_bad_envelope",
        "evidence_bad_batch",
        "evidence_not_a_pair",
        "evidence_same_update",
    }
    # The old set also held "bad_origin" and "forged_origin": no code raises them.
    assert old == FAULT_REASONS


def test_pass_through_sites_declare_what_they_pass() -> None:
    """``raise Rejected(exc.reason, ...)`` from these errors must always construct."""
    assert UpdateError.REASONS <= Rejected.REASONS  # node/daemon/training_runtime.py
    assert EquivocationError.REASONS <= Rejected.REASONS  # node/daemon/evidence_gossip.py
    assert RecordError.REASONS <= GossipRejected.REASONS  # node/gossip/core.py
    for src in (UpdateError, EquivocationError):
        assert src.FAULTS <= Rejected.FAULTS
    assert RecordError.FAULTS <= GossipRejected.FAULTS


# Callables whose first positional argument is a reason code of the given class.
_CONSTRUCTORS: dict[str, type[ReasonError]] = {
    "Rejected": Rejected,
    "EnvelopeError": EnvelopeError,
    "UpdateError": UpdateError,
    "EquivocationError": EquivocationError,
    "RecordError": RecordError,
    "GossipRejected": GossipRejected,
    "_reject": RecordError,  # RecordVerifier._reject
    "_rejected": GossipRejected,  # Membership._rejected
}


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _reason_sites() -> list[tuple[str, str, str]]:
    """(where, callable, code) for every reason code written as a literal in node/."""
    sites: list[tuple[str, str, str]] = []
    for path in sorted(NODE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            args = call.args
            code: str | None = None
            if name in _CONSTRUCTORS and args:
                code = _literal(args[0])
            elif name == "_refuse_fault" and len(args) >= 3:
                code = _literal(args[2])
            elif name == "_receipt_refused" and args:
                code = _literal(args[0])
            elif name == "_refuse" and "training" in path.parts and len(args) >= 3:
                # SpsaEngine._refuse(round, origin, reason, detail): the SPSA runtime
                # raises the engine's refusals as Rejected(reason).
                code = _literal(args[2])
            if name is not None and code is not None:
                sites.append((f"{path.relative_to(NODE.parent)}:{call.lineno}", name, code))
    return sites


def test_every_literal_reason_is_declared() -> None:
    sites = _reason_sites()
    assert len(sites) > 60  # the scan sees the raise sites (there are about 90)
    bad = []
    for where, name, code in sites:
        if name == "_refuse_fault":
            # Charged on purpose: the code has to be a fault or the charge is dropped.
            ok = code in FAULT_REASONS
        elif name in {"_receipt_refused", "_refuse"}:
            ok = code in Rejected.REASONS
        else:
            ok = code in _CONSTRUCTORS[name].REASONS
        if not ok:
            bad.append(f"{where} {name}({code!r})")
    assert not bad, "undeclared reason codes:\n" + "\n".join(bad)


def test_engine_refusals_are_declared() -> None:
    """The training runtime re-raises the round engine's admission codes as ``Rejected``.

    It renames ``shape`` to ``bad_shape``; every other code passes through unchanged.
    """
    codes: set[str] = set()
    for path in sorted((NODE / "training").rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef) and fn.name in {"_admit", "admit"}:
                for ret in ast.walk(fn):
                    if isinstance(ret, ast.Return) and (value := _literal(ret.value)):
                        codes.add(value)
    assert codes, "no admission function found in node/training (renamed?)"
    renamed = {"bad_shape" if c == "shape" else c for c in codes}
    assert renamed <= Rejected.REASONS, sorted(renamed - Rejected.REASONS)
