"""Alembic migration environment of the node store (run by ``node.storage.migrate``)."""

__all__: list[str] = []
