"""Fixtures: a real training testnet whose dashboards the tests open, and headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.testnet.local import Testnet
from node.training.genesis import Genesis

# Three digits nodes evaluating every round, with node-level DP on so the privacy chart has
# releases. The noise is deliberately weak (demo, not a privacy setting): the curves move.
GENESIS: dict[str, Any] = {
    "network": {
        "name": "dashboard-test",
        "seed": 11,
        "pow_difficulty": 4,
        # memberlist's local profile, as `fednode testnet up` uses: the ten-fold faster
        # "test" profile declares peers dead when many processes share two cores.
        "gossip_profile": "local",
    },
    "task": {"name": "digits", "num_nodes": 3},
    "rounds": {"max_rounds": 20, "eval_every": 1, "round_timeout": 15.0, "peers_per_round": 2},
    "privacy": {"enabled": True, "epsilon_budget": 1000.0, "noise_multiplier": 0.1, "clip": 1.0},
}
MIN_EVALUATIONS = 3


def chromium_binary() -> str:
    """Debian's chromium (installed by .ci/chromium.sh); fail loudly when missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed: run `bash .ci/chromium.sh` (Debian's chromium)")


class Browser:
    """Headless Chromium driven through its command line, one fresh profile per call."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    )

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self._runs = 0

    def _run(self, extra: list[str], url: str) -> subprocess.CompletedProcess[str]:
        self._runs += 1
        profile = self.workdir / f"profile-{self._runs}"
        cmd = [self.binary, *self.FLAGS, f"--user-data-dir={profile}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def dump_dom(self, url: str, budget_ms: int = 5000) -> str:
        """The DOM after ``budget_ms`` of virtual time (scripts ran, polls answered)."""
        done = self._run([f"--virtual-time-budget={budget_ms}", "--dump-dom"], url)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def screenshot(self, url: str, out: Path, size: tuple[int, int] = (1200, 900)) -> None:
        """A PNG of the page after 5 s of virtual time (its polls answered)."""
        done = self._run(
            [
                "--virtual-time-budget=5000",
                f"--window-size={size[0]},{size[1]}",
                f"--screenshot={out}",
            ],
            url,
        )
        assert done.returncode == 0 and out.exists(), done.stderr[-2000:]


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    return Browser(chromium_binary(), tmp_path_factory.mktemp("chromium"))


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET without raising on HTTP errors: (status, headers, body)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Dashboard:
    """Node 0's dashboard of the running testnet."""

    def __init__(self, net: Testnet) -> None:
        self.net = net
        node = net.nodes[0]
        info = node.runtime()
        assert info is not None
        self.base = str(info["dashboard"])
        self.token = node.data_dir.admin_token(create=False)

    @property
    def page_url(self) -> str:
        return f"{self.base}?token={self.token}"

    def state(self) -> dict[str, Any]:
        status, _, body = get(self.base + "api/state", {"Authorization": f"Bearer {self.token}"})
        assert status == 200, body[:300]
        data: dict[str, Any] = json.loads(body)
        return data

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"dashboard state never satisfied the wait: {state['node']}")
            time.sleep(1.0)


def exchanging(state: dict[str, Any]) -> bool:
    """Node 0 evaluated a few times, released under DP and pushed updates to its peers."""
    pushed = sum(
        t["bytes"]
        for t in state["traffic"]["bytes"]
        if t["direction"] == "out" and t["kind"] == "update"
    )
    return (
        len(state["evaluations"]) >= MIN_EVALUATIONS
        and bool(state["privacy"]["releases"])
        and pushed > 0
        and len(state["peers"]["rows"]) == 2
    )


@pytest.fixture(scope="module")
def dashnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A 3-node digits testnet, training, with at least a few evaluations on node 0."""
    net = Testnet(tmp_path_factory.mktemp("dashnet"), Genesis.model_validate(GENESIS), 3)
    with net.running(timeout=180):
        net.wait_full_view(timeout=120)
        dash = Dashboard(net)
        dash.wait(exchanging, timeout=300)
        yield dash


@pytest.fixture(scope="session")
def http_get() -> Callable[..., tuple[int, dict[str, str], bytes]]:
    """:func:`get` as a fixture (test modules cannot import conftest under importlib mode)."""
    return get
