"""In-process networks: training rounds, Byzantine and Sybil simulations, gossip at scale.

Each simulation runs the same engines and policy code as the daemon, on a virtual clock,
with no sockets and no processes.

The face is lazy (:func:`node.base.lazy_face.lazy_face`): the round simulations load
torch, which the gossip simulator (``node.sim.gossip``) must not, or every simulated
network pays torch's memory in the max RSS that ``bench/bench_gossip_sybil.py`` reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.base.lazy_face import lazy_face

if TYPE_CHECKING:
    from node.sim.rounds import SimResult, SpsaSimResult, simulate, simulate_spsa

__all__ = ["SimResult", "SpsaSimResult", "simulate", "simulate_spsa"]

__getattr__, __dir__ = lazy_face(
    __name__,
    {"node.sim.rounds": ("SimResult", "SpsaSimResult", "simulate", "simulate_spsa")},
)
