"""Membership configuration: one object, four profiles, the formulas next to the knobs.

The profiles follow hashicorp/memberlist (``DefaultLANConfig``, ``DefaultWANConfig``,
``DefaultLocalConfig``); ``test`` is the LAN profile shrunk ten-fold so real-time tests
finish in seconds. All durations are seconds.

Derived quantities (n = number of known non-dead members including this node):

* retransmit limit of a piggybacked update:
  ``retransmit_mult * ceil(log10(n + 1))``
* suspicion timeout (Lifeguard, "LHS"):
  ``min = suspicion_mult * max(1, log10(max(1, n))) * probe_interval``,
  ``max = suspicion_max_timeout_mult * min``,
  ``K = suspicion_mult - 2`` independent confirmations expected (0 when ``n - 2 < K``),
  ``timeout(C) = max(min, max - (max - min) * log(C + 1) / log(K + 1))`` after C
  confirmations (so one reporter waits ``max``; K confirmations bring it down to ``min``)
* local health (Lifeguard, "LHA"): a score ``0 <= a < awareness_max_multiplier``; the probe
  interval and the probe timeout are multiplied by ``a + 1``. A probe answered directly
  lowers the score by 1; a failed probe raises it by the number of missed nacks (or by 1
  when no intermediary was asked); having to refute a suspicion about oneself raises it by 1.
* incarnation step: a statement about a member may claim at most
  ``max_incarnation_step`` above the incarnation the receiver holds for it (itself: its
  own); a refutation answers at ``min(claim + 1, MAX_INCARNATION)``. An attacker thus needs
  ``MAX_INCARNATION / max_incarnation_step`` (2**43 by default) accepted claims, each
  answered by a refutation, to drive a member to the ceiling.
* admission delay of an honest join (n members, one bootstrap, joins spread over W s):
  each node admits at most ``introductions_burst_global + introductions_rate_global * t``
  new identities by time t, so a full view needs at least
  ``max(0, (n - 1 - introductions_burst_global) / introductions_rate_global - W)`` s
  after the last join on top of the gossip convergence (``2*log2(n)+4`` gossip intervals).
  The state transfer answering a node's own join is exempt (it chose its bootstrap).
* promotion: a member is *established* once it answered one of our requests and
  ``now - first_seen >= promotion_min_age``.
* push-pull period: ``push_pull_interval * (ceil(log2(n) - log2(32)) + 1)`` for n > 32
  (memberlist's ``pushPullScale``), ``push_pull_interval`` otherwise.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PROFILES", "GossipConfig", "ProfileName"]

ProfileName = Literal["lan", "wan", "local", "test"]


class GossipConfig(BaseModel):
    """All membership parameters (defaults: the ``lan`` profile).

    Build one with :meth:`profile` and override fields with ``model_copy(update=...)``
    or ``GossipConfig.profile("wan", probe_interval=3.0)``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- failure detection (SWIM) -------------------------------------------------------
    probe_interval: float = Field(1.0, gt=0, description="one probe of one member per period")
    probe_timeout: float = Field(
        0.5, gt=0, description="wait for a direct ack before asking k others (< probe_interval)"
    )
    indirect_checks: int = Field(3, ge=0, description="k members asked to ping-req a target")
    nack_fraction: float = Field(
        0.8, gt=0, lt=1, description="an intermediary nacks after this fraction of the timeout"
    )
    # --- suspicion (Lifeguard) -------------------------------------------------------------
    suspicion_mult: int = Field(4, ge=1, description="min timeout = mult*log10(n)*interval")
    suspicion_max_timeout_mult: int = Field(6, ge=1, description="max timeout = this * min")
    awareness_max_multiplier: int = Field(8, ge=1, description="cap of the local-health scale")
    # --- dissemination --------------------------------------------------------------------
    retransmit_mult: int = Field(4, ge=1, description="limit = mult*ceil(log10(n+1))")
    gossip_interval: float = Field(0.2, gt=0, description="period of piggyback-only gossip")
    gossip_nodes: int = Field(3, ge=1, description="members gossiped to per gossip_interval")
    gossip_to_the_dead_time: float = Field(
        30.0, ge=0, description="dead members still receive gossip this long (helps refute)"
    )
    max_piggyback: int = Field(128, ge=1, description="updates piggybacked per message")
    max_piggyback_bytes: int = Field(
        32_768, ge=512, description="byte budget of piggybacked updates per message"
    )
    push_pull_interval: float = Field(
        30.0, gt=0, description="full-state sync with one random member; scaled for n > 32"
    )
    reconnect_interval: float = Field(
        10.0, gt=0, description="push-pull with one random dead member (heals partitions)"
    )
    request_timeout: float = Field(10.0, gt=0, description="push-pull and join RPC timeout")
    max_incarnation_step: int = Field(
        2**20,
        ge=1,
        description="a statement may claim at most this far above the known incarnation",
    )
    # --- joining --------------------------------------------------------------------------
    join_retry_interval: float = Field(
        5.0, gt=0, description="retry join while no other member is known"
    )
    # --- table and flood protection --------------------------------------------------------
    max_members: int = Field(4096, ge=2, description="bound of the member table")
    dead_reclaim_time: float = Field(
        600.0, ge=0, description="dead/left entries are forgotten after this long"
    )
    inbound_rate: float = Field(50.0, gt=0, description="messages/s accepted per peer")
    inbound_burst: float = Field(100.0, ge=1, description="burst of messages per peer")
    join_rate_per_peer: float = Field(0.2, gt=0, description="joins/s accepted per peer")
    join_burst_per_peer: float = Field(3.0, ge=1, description="burst of joins per peer")
    # --- admission of identities new to this node (node/gossip/admission.py) ---------------
    introductions_rate_global: float = Field(
        128.0,
        gt=0,
        description="new identities/s entering the table through every path together",
    )
    introductions_burst_global: float = Field(
        256.0, ge=1, description="burst of new identities through every path together"
    )
    introductions_rate_per_introducer: float = Field(
        32.0, gt=0, description="new identities/s one member may bring in by relaying"
    )
    introductions_burst_per_introducer: float = Field(
        128.0, ge=1, description="burst of new identities one member may bring in"
    )
    introductions_max_pending: int = Field(
        4096, ge=1, description="deferred introductions kept (longest-queue drop beyond)"
    )
    unadmitted_state_members: int = Field(
        64,
        ge=1,
        description="members (established first) in the state answering a join or "
        "push-pull from a sender still waiting for admission; admitted senders get all",
    )
    # --- standing (new vs established members) ----------------------------------------------
    promotion_min_age: float = Field(
        30.0,
        ge=0,
        description="a member becomes established once it answered a request of ours and "
        "has been in our view this long; established members are never evicted for a "
        "newcomer and are preferred by sample(), push-pull and indirect probes",
    )

    @model_validator(mode="after")
    def _check(self) -> GossipConfig:
        if self.probe_timeout >= self.probe_interval:
            raise ValueError(
                f"probe_timeout ({self.probe_timeout}) must be below "
                f"probe_interval ({self.probe_interval})"
            )
        return self

    # --- profiles -------------------------------------------------------------------------
    @classmethod
    def profile(cls, name: ProfileName | str, **overrides: object) -> GossipConfig:
        """The named profile (``lan``, ``wan``, ``local``, ``test``) with ``overrides``.

        Raises
        ------
        ValueError
            For an unknown profile name or an invalid override.
        """
        try:
            base = PROFILES[name]
        except KeyError:
            raise ValueError(
                f"unknown gossip profile {name!r}; choose one of {', '.join(PROFILES)}"
            ) from None
        return cls.model_validate({**base, **overrides})

    # --- derived quantities ---------------------------------------------------------------
    def retransmit_limit(self, n: int) -> int:
        """Times each update is piggybacked: ``retransmit_mult * ceil(log10(n + 1))``."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def suspicion_min(self, n: int) -> float:
        """``suspicion_mult * max(1, log10(max(1, n))) * probe_interval``."""
        scale = max(1.0, math.log10(max(1, n)))
        return self.suspicion_mult * scale * self.probe_interval

    def suspicion_max(self, n: int) -> float:
        """``suspicion_max_timeout_mult * suspicion_min(n)``."""
        return self.suspicion_max_timeout_mult * self.suspicion_min(n)

    def suspicion_confirmations(self, n: int) -> int:
        """K: confirmations that bring the timeout down to the minimum."""
        k = self.suspicion_mult - 2
        return 0 if n - 2 < k else max(0, k)

    def suspicion_timeout(self, n: int, confirmations: int) -> float:
        """Lifeguard's ``max(min, max - (max-min)*log(C+1)/log(K+1))``."""
        lo, hi = self.suspicion_min(n), self.suspicion_max(n)
        k = self.suspicion_confirmations(n)
        if k < 1:
            return lo
        frac = math.log(confirmations + 1) / math.log(k + 1)
        return max(lo, hi - (hi - lo) * frac)

    def push_pull_period(self, n: int) -> float:
        """``push_pull_interval`` scaled by ``ceil(log2(n) - log2(32)) + 1`` above 32 nodes."""
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


PROFILES: dict[str, dict[str, object]] = {
    # memberlist DefaultLANConfig.
    "lan": {},
    # memberlist DefaultWANConfig: slower probes, longer suspicion, more fan-out.
    "wan": {
        "probe_interval": 5.0,
        "probe_timeout": 3.0,
        "suspicion_mult": 6,
        "gossip_interval": 0.5,
        "gossip_nodes": 4,
        "gossip_to_the_dead_time": 60.0,
        "push_pull_interval": 60.0,
        "reconnect_interval": 30.0,
        "request_timeout": 30.0,
        "dead_reclaim_time": 1800.0,
        "promotion_min_age": 120.0,
    },
    # memberlist DefaultLocalConfig: loopback, fast timeouts, fewer retransmits.
    "local": {
        "probe_interval": 1.0,
        "probe_timeout": 0.2,
        "indirect_checks": 1,
        "retransmit_mult": 2,
        "suspicion_mult": 3,
        "gossip_interval": 0.1,
        "gossip_to_the_dead_time": 15.0,
        "push_pull_interval": 15.0,
        "reconnect_interval": 5.0,
        "request_timeout": 1.0,
        "join_retry_interval": 1.0,
        "dead_reclaim_time": 120.0,
        "promotion_min_age": 15.0,
    },
    # LAN / 10 in every duration: for real-time tests of the asyncio driver.
    "test": {
        "probe_interval": 0.1,
        "probe_timeout": 0.05,
        "gossip_interval": 0.02,
        "gossip_to_the_dead_time": 3.0,
        "push_pull_interval": 3.0,
        "reconnect_interval": 1.0,
        "request_timeout": 1.0,
        "join_retry_interval": 0.5,
        "dead_reclaim_time": 60.0,
        "inbound_rate": 1000.0,
        "inbound_burst": 1000.0,
        "join_rate_per_peer": 20.0,
        "promotion_min_age": 3.0,
    },
}
