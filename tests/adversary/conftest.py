"""One small real network shared by every attack (starting daemons is the slow part).

A second network, the *clean baseline*, runs the same genesis and seed on the two honest
nodes alone (no attacker daemon, no attack); it is started only when a selected test asks for
it, alongside the attacked network so that the two overlap in time, and the honest nodes'
accuracy under attack is compared with it.

Nodes 0 and 1 are honest and train (digits, rule ``mean``: the rule that the free-key
attack of issue 12 drove to chance). Node 2 is the attacker's *member* daemon: it joined by
gossip with a valid proof of work and trains nothing; the tests sign with its key (read
from its data dir) to attack from inside the membership. Free keys are generated per test.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.base.identity import Identity
from node.testnet.local import FixedLoopbackPorts, Testnet
from node.training.genesis import Genesis
from node.training.trainer import make_trainer

sys.path.insert(0, str(Path(__file__).parent))  # malicious_peer.py (importlib import mode)

ADVERSARY_GENESIS = {
    "network": {"name": "adversary", "seed": 23, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 2, "partition": "iid"},
    "aggregation": {"rule": "mean"},
    "rounds": {
        "peers_per_round": 2,
        "min_updates": 1,
        "round_timeout": 3.0,
        "max_rounds": 40,
        "eval_every": 1,
    },
}

VICTIM = 0
ATTACKER = 2
HONEST = (0, 1)
#: Evaluations of the last this-many rounds make up a run's accuracy: one round's value on
#: the 360-sample digits test split moves by a few points between identical clean runs.
ACCURACY_WINDOW = 10


def run_accuracy(statuses: dict[int, dict[str, Any]], nodes: tuple[int, ...] = HONEST) -> float:
    """A run's honest accuracy: the mean over ``nodes`` of their evaluations in the last
    :data:`ACCURACY_WINDOW` rounds (a node that caught up may have only the final one)."""
    last = int(ADVERSARY_GENESIS["rounds"]["max_rounds"])  # type: ignore[index]
    per_node = []
    for i in nodes:
        recent = [
            float(e.get("accuracy", 0.0))
            for e in statuses[i].get("history", [])
            if int(e.get("round", 0)) > last - ACCURACY_WINDOW
        ]
        assert recent, f"node {i} has no evaluation after round {last - ACCURACY_WINDOW}"
        per_node.append(statistics.fmean(recent))
    return statistics.fmean(per_node)


def wait_rounds(net: Testnet, rounds: int, timeout: float) -> dict[int, dict[str, Any]]:
    """Wait until every honest node of ``net`` completed ``rounds``; return the statuses."""
    deadline = time.monotonic() + timeout
    st = net.statuses()
    while time.monotonic() < deadline:
        st = net.statuses()
        if all(int(st.get(i, {}).get("round", 0)) >= rounds for i in HONEST):
            break
        time.sleep(0.5)
    for i in HONEST:
        got = st.get(i, {}).get("round", "no answer")
        assert int(st.get(i, {}).get("round", 0)) >= rounds, f"node {i} stuck at round {got}"
    return st


class AdversaryNet:
    """The running network and what the attacks need to know about it."""

    def __init__(self, net: Testnet) -> None:
        self.net = net
        self.network_id = net.genesis.network_id
        self.member_key = Identity.load(net.nodes[ATTACKER].data_dir.identity)
        g = net.genesis
        trainer = make_trainer(
            g.task, g.learner, seed=g.network.seed, node_index=0, node_id="00" * 32
        )
        self.numel = int(trainer.layout.numel)

    @property
    def victim_address(self) -> str:
        return self.net.nodes[VICTIM].address

    def metrics_text(self, index: int = VICTIM) -> str:
        info = self.net.nodes[index].runtime()
        assert info is not None
        with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
        return text

    def metric(self, name: str, *labels: str, index: int = VICTIM) -> float:
        """Sum of the samples of ``name`` whose label text contains every one of ``labels``."""
        total = 0.0
        for line in self.metrics_text(index).splitlines():
            if line.startswith(name) and all(lab in line for lab in labels):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def rss_mb(self, index: int = VICTIM) -> float:
        """Resident memory of node ``index``'s process, in MB."""
        proc = self.net.nodes[index].process
        assert proc is not None
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def status(self, index: int) -> dict[str, object]:
        return self.net.statuses()[index]


@contextlib.contextmanager
def started_together(net: Testnet, timeout: float = 150.0) -> Iterator[Testnet]:
    """Start every node of ``net`` at once (ports chosen up front), always stop them.

    ``Testnet.start`` waits for node 0 before it starts the others, and node 0 waits at most
    one ``round_timeout`` (3 s here) for a peer before it trains alone: on a loaded machine it
    then ran most of its 40 rounds before node 1 came up, and node 1 caught up in one step.
    Started together, the two honest nodes train together.
    """
    net.prepare()
    try:
        assert net.placement is not None, "needs ports chosen up front (FixedLoopbackPorts)"
        bootstrap = net.placement.listen(0)
        for node in net.nodes:
            net.spawn_node(node, None if node.index == 0 else bootstrap)
        net.wait_started(net.nodes, timeout)
        yield net
    finally:
        net.stop()


# Module scope: only test_attacks.py uses the two networks. Session scope kept their five
# daemons running (about half a core, idle after round 40) until the worker's last test.
@pytest.fixture(scope="module")
def clean_baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    """The same genesis and seed on the two honest nodes alone: no attacker, no attack."""
    net = Testnet(
        tmp_path_factory.mktemp("cleannet"),
        Genesis.model_validate(ADVERSARY_GENESIS),
        2,
        placement=FixedLoopbackPorts(2),
    )
    with started_together(net):
        yield net


@pytest.fixture(scope="module")
def advnet(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[AdversaryNet]:
    # Started first, so that the baseline trains while the attacks run (CI wall time).
    if any("clean_baseline" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("clean_baseline")
    root = tmp_path_factory.mktemp("advnet")
    net = Testnet(
        root,
        Genesis.model_validate(ADVERSARY_GENESIS),
        3,
        node_args={ATTACKER: ["--no-train"]},
        placement=FixedLoopbackPorts(3),
    )
    with started_together(net):
        net.wait_full_view(timeout=60)
        # Training has started on both honest nodes (their updates are being admitted).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = net.statuses()
            if all(int(st.get(i, {}).get("round", 0)) >= 1 for i in (0, 1)):
                break
            time.sleep(0.2)
        yield AdversaryNet(net)
