"""fednode: the daemon of a decentralized federated-learning network.

Layers, each a sub-package whose ``__init__.py`` (its face) lists in ``__all__`` what
the layers above use; a layer imports only layers below it (docs/architecture.md):

- ``base``: primitives (identity, addresses, data dir, settings, logs, metrics);
- ``gossip``, ``storage``, ``training``: membership, SQL state, pure learning;
- ``wire``: gRPC and protobuf; ``dashboard``; ``daemon``: tasks and sockets;
- ``testnet``, ``sim``: whole networks, as processes or in one process;
- ``cli``: the ``fednode`` command (``python -m node`` is the same program).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
