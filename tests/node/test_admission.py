"""The admission policy (node/wire/admission.py): one decision, a stable reason for each refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.wire.admission import (
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


def test_the_peer_service_does_not_load_torch() -> None:
    # Membership-only daemons never need torch; importing it adds seconds to start and
    # exit (its static destructors), which once made --no-train daemons miss their stop
    # deadline on a loaded machine.
    import subprocess
    import sys

    code = (
        "import sys, node.daemon.core, node.wire.service, node.daemon.operator;"
        " print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_ban_takes_only_plausible_node_ids() -> None:
    from node.wire.admin_server import check_node_id_prefix

    assert check_node_id_prefix(" ABcd12 ") == "abcd12"
    assert check_node_id_prefix("ab" * 32) == "ab" * 32
    with pytest.raises(ValueError, match="hexadecimal"):
        check_node_id_prefix("zz" * 32)  # 64 characters, not a node id
    with pytest.raises(ValueError, match="64 hex characters; this one has 66"):
        check_node_id_prefix("ab" * 33)
    with pytest.raises(ValueError, match="at least 4"):
        check_node_id_prefix("ab")


class _Ctx:
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer


def test_rate_limit_key_is_the_host_except_on_loopback() -> None:
    # Nodes of a local testnet all dial from 127.0.0.1: keyed by host they would throttle
    # each other (and did: an attacker daemon refused its peers as rate_limited).
    from node.wire.service import _peer_host

    assert _peer_host(_Ctx("ipv4:10.1.2.3:5555")) == "10.1.2.3"
    assert _peer_host(_Ctx("ipv4:10.1.2.3:6666")) == "10.1.2.3"
    assert _peer_host(_Ctx("ipv4:127.0.0.1:5555")) != _peer_host(_Ctx("ipv4:127.0.0.1:6666"))
    assert _peer_host(_Ctx("ipv6:[::1]:5555")) == "[::1]:5555"
    assert _peer_host(_Ctx("ipv6:[2001:db8::1]:5555")) == "[2001:db8::1]"


def test_min_standing_setting_names_a_bad_kind_or_value(tmp_path: Path) -> None:
    from node.base.settings import ConfigError, load_settings

    toml = tmp_path / "node.toml"
    toml.write_text("min_standing_s = {update = 30, request = 5.5}\n", encoding="utf-8")
    assert load_settings(toml, {}).min_standing_s == {"update": 30.0, "request": 5.5}
    for bad, words in [
        ("{gossip = 30}", "unknown message kind 'gossip'"),
        ("{update = -1}", "must be finite and >= 0"),
        ("{update = inf}", "must be finite and >= 0"),
    ]:
        toml.write_text(f"min_standing_s = {bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=words) as info:
            load_settings(toml, {})
        assert "\n" not in str(info.value)
