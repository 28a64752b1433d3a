"""fednode: the daemon of a decentralized federated-learning network.

Subpackages: ``gossip`` (membership), ``storage`` (SQL state), ``training`` (tasks,
models, learners, round engine). Entry point: ``python -m node`` / ``fednode``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
