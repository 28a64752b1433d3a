"""In-process networks: training rounds, Byzantine and Sybil simulations, gossip at scale.

Each simulation runs the same engines and policy code as the daemon, on a virtual clock,
with no sockets and no processes.
"""

from node.sim.rounds import SimResult, SpsaSimResult, simulate, simulate_spsa

__all__ = ["SimResult", "SpsaSimResult", "simulate", "simulate_spsa"]
