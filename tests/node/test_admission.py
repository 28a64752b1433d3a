"""The admission policy (node/admission.py): one decision, a stable reason for each refusal."""

from __future__ import annotations

import pytest

from node.admission import (
    ADMISSION_REASONS,
    AdmissionPolicy,
    Admit,
    Refuse,
    SenderFacts,
    decide,
)

MEMBER = SenderFacts(member=True, standing_s=30.0, banned=False, quarantined=False)


@pytest.mark.parametrize("kind", ["update", "request", "spsa", "history"])
def test_a_live_member_is_admitted_for_every_kind(kind: str) -> None:
    assert decide(kind, MEMBER) == Admit()


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (SenderFacts(member=False, standing_s=None, banned=False, quarantined=False), "not_member"),
        (SenderFacts(member=True, standing_s=5.0, banned=True, quarantined=False), "banned"),
        (SenderFacts(member=True, standing_s=5.0, banned=False, quarantined=True), "quarantined"),
        # Order: a banned non-member is reported banned (the operator's decision first).
        (SenderFacts(member=False, standing_s=None, banned=True, quarantined=True), "banned"),
        (SenderFacts(member=False, standing_s=None, banned=False, quarantined=True), "quarantined"),
    ],
)
def test_refusals_name_their_reason(facts: SenderFacts, reason: str) -> None:
    decision = decide("update", facts)
    assert isinstance(decision, Refuse) and decision.reason == reason
    assert decision.reason in ADMISSION_REASONS


def test_standing_is_required_only_for_the_kinds_that_ask_for_it() -> None:
    policy = AdmissionPolicy(min_standing_s={"request": 10.0})
    young = SenderFacts(member=True, standing_s=3.0, banned=False, quarantined=False)
    refused = decide("request", young, policy)
    assert isinstance(refused, Refuse) and refused.reason == "no_standing"
    assert "3.0s" in refused.message
    assert decide("update", young, policy) == Admit()
    assert decide("request", MEMBER, policy) == Admit()
