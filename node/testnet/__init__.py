"""A whole network on one machine: loopback testnets, the netns fault fabric, scenarios.

Talks to node processes only through their command line and operator API, never by
importing the daemon.
"""

from node.testnet.local import FixedLoopbackPorts, NodePlacement, Testnet, TestnetError, TestnetNode

__all__ = ["FixedLoopbackPorts", "NodePlacement", "Testnet", "TestnetError", "TestnetNode"]
