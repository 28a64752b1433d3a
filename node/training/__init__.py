"""fednode package."""
