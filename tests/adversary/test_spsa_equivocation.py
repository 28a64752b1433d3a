"""SPSA batch equivocation on real daemons: two signed batches for one round convict the origin.

Three honest ``spsa`` daemons train; a fourth daemon joined by gossip with a valid proof of
work and trains nothing: it is the attacker's member. The test signs with its key two
*valid* scalar batches (right seed ids, dtype and size) of the same round with different
scalars, and pushes the first to node 0 and the second to node 1 only; node 2 gets neither.
In a network this small every origin pushes to every member itself, so nobody forwards, and
a pull names the batches it holds by (round, origin) only: before sightings, no node ever
saw both batches and node 1's model silently differed from nodes 0 and 2 for good. Now the
nodes that got a batch straight from its origin relay it as a sighting; a node that holds
both turns the pair into evidence (node/wire/equivocation.py), gossips it
(node/daemon/evidence_gossip.py), and every honest node verifies it and quarantines the
origin: its later requests are refused ``quarantined`` everywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import grpc
import pytest
from malicious_peer import Adversary

from fednode_proto.v1 import training_pb2 as pb
from node.base.identity import Identity
from node.testnet.local import Testnet
from node.training.genesis import Genesis
from node.training.learners.spsa import ScalarBatch, quantize, seed_id
from node.wire.spsa_batch import batch_to_wire

pytestmark = pytest.mark.slow

HONEST = (0, 1, 2)
#: Refusals that say when a batch came, not what it is.
TIMING = ("stale_round", "future_round", "not_ready")
ATTACKER = 3
GENESIS = {
    "network": {"name": "spsa-equiv", "seed": 11, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 3, "partition": "iid"},
    "learner": {"kind": "spsa", "lr": 1e-2, "spsa_steps": 4},
    "rounds": {"max_rounds": 1000, "eval_every": 50, "round_timeout": 10.0, "peers_per_round": 2},
}


@pytest.fixture(scope="module")
def spsa_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    net = Testnet(
        tmp_path_factory.mktemp("spsa-equiv"),
        Genesis.model_validate(GENESIS),
        4,
        node_args={ATTACKER: ["--no-train"]},
    )
    with net.running(timeout=150):
        net.wait_full_view(timeout=90)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = net.statuses()
            if all(int(st.get(i, {}).get("round", 0)) >= 2 for i in HONEST):
                break
            time.sleep(0.5)
        yield net


def _batch(net: Testnet, origin: Identity, round_idx: int, values: list[float]) -> pb.ScalarBatch:
    g = net.genesis
    codes, scale = quantize(values, g.learner.spsa_scalar_dtype)
    steps = tuple(range(len(values)))
    schedule = g.learner.spsa_seed_schedule
    learner_batch = ScalarBatch(
        round=round_idx,
        node=origin.node_id_hex,
        schedule=schedule,
        dtype=g.learner.spsa_scalar_dtype,
        steps=steps,
        seed_ids=tuple(
            seed_id(g.network.seed, round_idx, origin.node_id_hex, s, schedule) for s in steps
        ),
        codes=codes,
        scale=scale,
    )
    return batch_to_wire(learner_batch, origin, g.network_id)


def _wait_proven(net: Testnet, origin: Identity, since: float) -> dict[int, float]:
    """Seconds after ``since`` at which each honest node logged the SPSA proof of ``origin``."""
    proven: dict[int, float] = {}
    pattern = re.compile(rf"equivocation proven node_id={origin.node_id_hex[:16]}.*kind=spsa")
    while time.monotonic() < since + 60 and len(proven) < len(HONEST):
        for i in HONEST:
            if i not in proven and pattern.search(
                net.nodes[i].log_path.read_text(errors="replace")
            ):
                proven[i] = time.monotonic() - since
        time.sleep(0.2)
    return proven


def _assert_quarantined_everywhere(net: Testnet, origin: Identity, rnd: int) -> None:
    for i in HONEST:
        adv = Adversary(origin, net.genesis.network_id, net.nodes[i].address)
        try:
            with pytest.raises(grpc.RpcError) as info:
                adv.push_scalars(_batch(net, origin, rnd, [1.0]), round=rnd)
            assert (info.value.details() or "").startswith("quarantined"), (i, info.value.details())
        finally:
            adv.close()


def test_two_batches_for_one_round_to_two_nodes_convict_the_origin_everywhere(
    spsa_net: Testnet,
) -> None:
    g = spsa_net.genesis
    key = Identity.load(spsa_net.nodes[ATTACKER].data_dir.identity)
    to_a = Adversary(key, g.network_id, spsa_net.nodes[0].address)
    to_b = Adversary(key, g.network_id, spsa_net.nodes[1].address)
    try:
        rnd = max(int(s.get("round", 0)) for s in spsa_net.statuses().values()) + 1
        a = _batch(spsa_net, key, rnd, [0.5, -1.0, 0.25, 2.0])
        b = _batch(spsa_net, key, rnd, [-3.0, 1.0, 0.75, -2.0])
        sent = time.monotonic()
        ra = to_a.push_scalars(a, round=rnd)
        # Alone, each batch is valid; a node whose own round moved on may still refuse it
        # for timing, which does not matter: evidence is taken before the learner judges.
        assert ra.accepted or ra.reason.startswith(TIMING), ra.reason
        # Node 0 relays batch a at once: node 1 may convict before batch b reaches it.
        try:
            rb = to_b.push_scalars(b, round=rnd)
            outcome = "accepted" if rb.accepted else rb.reason
        except grpc.RpcError as exc:
            outcome = exc.details() or ""
        assert outcome.startswith(("accepted", "quarantined", "banned", *TIMING)), outcome
    finally:
        to_a.close()
        to_b.close()
    # No node was sent both. Nodes 0 and 1 relay what they got from the origin as sightings;
    # whoever holds both proves it, and the others convict on the proof alone.
    proven = _wait_proven(spsa_net, key, sent)
    assert sorted(proven) == list(HONEST), (proven, spsa_net.tail(spsa_net.nodes[2], 30))
    _assert_quarantined_everywhere(spsa_net, key, rnd + 1)
