"""The peer policy without processes: operator bans by prefix, quarantine, persistence."""

from __future__ import annotations

import pytest

from node.daemon.peer_policy import PeerPolicy
from node.daemon.reputation import ReputationBook
from node.storage import Store

A = "ab12" + "0" * 60
B = "ab34" + "1" * 60
C = "cd56" + "2" * 60


def test_ban_by_prefix_persists_and_unban_lifts_it(store: Store) -> None:
    policy = PeerPolicy(store)
    assert policy.ban("AB12", unban=False, known=[A, B]) == A
    assert policy.banned == {A}
    assert policy.is_banned(bytes.fromhex(A)) and policy.is_operator_banned(bytes.fromhex(A))
    assert not policy.is_banned(bytes.fromhex(B))
    # A restarted node keeps the ban (state key) and the operator event log says who did what.
    again = PeerPolicy(store)
    assert again.banned == {A}
    assert [e.kind for e in store.events()] == ["ban"]
    # The banned id is resolvable from the ban list alone, e.g. after it left the view.
    assert again.ban("ab12", unban=True) == A
    assert again.banned == frozenset() and PeerPolicy(store).banned == frozenset()


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("ab", "at least 4 hex characters"),
        ("ab1", "at least 4 hex characters"),
        ("ffff", "no known node id starts with ffff"),
        ("f" * 63, "no known node id starts with"),
    ],
)
def test_short_or_unknown_prefixes_change_nothing(store: Store, prefix: str, message: str) -> None:
    policy = PeerPolicy(store)
    with pytest.raises(LookupError, match=message):
        policy.ban(prefix, unban=False, known=[A, B, C])
    assert policy.banned == frozenset()
    assert store.get_state("banned") is None
    assert store.events() == []


def test_an_ambiguous_prefix_names_the_count_and_bans_nobody(store: Store) -> None:
    policy = PeerPolicy(store)
    twin = A[:4] + "f" * 60
    with pytest.raises(LookupError, match=r"ab12 is ambiguous \(2 node ids match\)"):
        policy.ban("ab12", unban=False, known=[A, B, twin])
    assert policy.banned == frozenset()
    assert store.events() == []
    # One more character names one node.
    assert policy.ban("ab120", unban=False, known=[A, B, twin]) == A


def test_a_full_unknown_id_may_be_banned_before_it_shows_up(store: Store) -> None:
    policy = PeerPolicy(store)
    assert policy.ban(C, unban=False) == C
    assert policy.is_banned(bytes.fromhex(C))


def test_quarantine_refuses_like_a_ban_but_is_not_an_operator_ban(store: Store) -> None:
    policy = PeerPolicy(store, ReputationBook(store, threshold=2, window_s=60, quarantine_s=600))
    peer = bytes.fromhex(B)
    policy.fault(B, "nonfinite")
    assert not policy.is_banned(peer)
    policy.fault(B, "nonfinite")
    assert policy.is_quarantined(peer) and policy.is_banned(peer)
    assert not policy.is_operator_banned(peer)
    assert policy.banned == frozenset()
    policy.convict(C, "equivocation")
    assert policy.is_banned(bytes.fromhex(C))
