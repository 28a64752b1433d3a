"""Namespace-testnet fixtures: root and tools are required; leftovers are a failure.

In CI (``CI=true``) a missing requirement fails every test here; locally the tests skip
only when not running as root (anything else missing still fails).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from node.testnet.netns import NS_PREFIX, cleanup, list_namespaces, missing_requirements


def require_netns() -> None:
    missing = missing_requirements()
    if not missing:
        return
    reason = "namespace testnet unavailable: " + "; ".join(missing)
    if os.environ.get("CI", "").lower() == "true" or os.geteuid() == 0:
        pytest.fail(reason + " (run .ci/netns.sh as root)")
    pytest.skip(reason)


@pytest.fixture
def netns_ready() -> None:
    """Fail (CI, or root without tools) or skip (not root) unless namespaces work."""
    require_netns()


@pytest.fixture
def tag() -> Iterator[str]:
    """A fresh namespace tag; the test fails if any fnt-<tag>-* namespace outlives it."""
    require_netns()
    value = "t" + secrets.token_hex(3)
    yield value
    prefix = f"{NS_PREFIX}{value}-"
    left = list_namespaces(prefix)
    if left:
        cleanup(prefix)
        pytest.fail(f"namespaces left behind by the test: {', '.join(left)}")
