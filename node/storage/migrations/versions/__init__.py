"""Alembic revisions; a package so that a regular (non-editable) install ships them."""

__all__: list[str] = []
