"""Suite-wide ordering: the longest test files first.

``scripts/test.sh`` runs two xdist workers with ``--dist loadfile``: each file goes whole to
one worker, in collection order, as workers become free. A file of several minutes collected
late (the compose testnet runs last alphabetically among the slow ones it shares a worker
with) leaves the other worker idle at the end; started first, it runs while the other
worker takes everything else. The list holds the files that took longest in CI (the
``--durations`` table ``scripts/test.sh`` prints), longest first; order within a file is
unchanged.
"""

from __future__ import annotations

import pytest

#: Test files (paths under tests/) that go first, longest first.
LONGEST_FIRST = (
    "deploy/test_containers.py",
    "node/test_release_wire.py",
    "node/test_catchup.py",
    "node/test_user_models_network.py",
    "node/test_training_network.py",
    "node/test_status_json.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    for rank, suffix in enumerate(LONGEST_FIRST):
        if path.endswith("tests/" + suffix):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: files and the tests within them keep their order
