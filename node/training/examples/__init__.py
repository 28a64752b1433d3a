"""Example third-party code fednode can run, e.g. a plain Flower client."""

__all__: list[str] = []
