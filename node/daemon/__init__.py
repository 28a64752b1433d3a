"""The daemon: the only owner of asyncio tasks and sockets.

``core.Daemon`` builds and owns every component (membership, the learner runtime, the
operator API, the dashboard); the learner runtimes (``training_runtime``,
``spsa_runtime``) drive the sans-I/O engines of ``node.training``.
"""

__all__: list[str] = []
