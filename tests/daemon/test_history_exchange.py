"""History exchange without processes: two exchanges wired through an in-memory stub.

The stub checks each pushed envelope exactly as the peer service does
(:func:`node.wire.envelope.check_envelope`) and hands the batch to the other exchange's
``on_history``, so signing, relaying, merging and refusing run for real; only the socket
is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from aggregation.sybil import SimilarityHistory
from fednode_proto.v1.envelope_pb2 import Envelope, Receipt
from fednode_proto.v1.training_pb2 import HistoryGossip
from node.base.identity import Identity
from node.daemon.history_gossip import HistoryExchange, check_report
from node.storage import open_store
from node.wire.envelope import Verified, check_envelope
from node.wire.service import Rejected

from .conftest import FakeMembership, make_context, member

DIM = 6
A, B, C, D = (Identity.generate(0) for _ in range(4))


class Stub:
    def __init__(self, network: Network, address: str) -> None:
        self.network = network
        self.address = address

    async def PushHistory(self, env: Envelope, timeout: float) -> Receipt:
        target = self.network.by_address[self.address]
        msg = check_envelope(env, target.network_id, replay=None, kinds=frozenset({"history"}))
        try:
            await target.on_history(msg, HistoryGossip.FromString(msg.body))
        except Rejected as exc:
            return Receipt(accepted=False, reason=exc.reason)
        return Receipt(accepted=True)


class Network:
    """Plays the part of ``PeerChannels``: addresses map to exchanges in this process."""

    def __init__(self) -> None:
        self.by_address: dict[str, HistoryExchange] = {}

    def stub(self, address: str) -> Stub:
        return Stub(self, address)


def _exchange(
    tmp_path: Path, me: Identity, view: list[Identity], net: Network, **kw: Any
) -> HistoryExchange:
    store = open_store(data_dir=tmp_path / me.node_id_hex[:8])
    ctx = replace(make_context(me, store), channels=net)
    members = FakeMembership([member(i, address=f"mem:{i.node_id_hex[:8]}") for i in view])
    history = SimilarityHistory(DIM, self_id=me.node_id_hex)
    exchange = HistoryExchange(ctx, members, history, lambda: 5, **kw)
    net.by_address[f"mem:{me.node_id_hex[:8]}"] = exchange
    return exchange


def test_a_report_travels_two_hops_and_still_verifies(tmp_path: Path) -> None:
    net = Network()
    # C heard B directly; A never did (it banned B, say) and learns B's history through C.
    c = _exchange(tmp_path, C, [A, B], net, fanout=1)
    a = _exchange(tmp_path, A, [C, D], net)
    c.history.add_update(B.node_id_hex, torch.arange(DIM, dtype=torch.float32), 3)

    sent = asyncio.run(c.push_round(3, [A.node_id_hex]))
    assert sent == 1 and c.stats()["sent"] == 1
    got = a.history.get(B.node_id_hex)
    assert got is not None and not got.direct
    assert (got.round, got.hops, got.via) == (3, 2, C.node_id_hex)
    assert torch.equal(got.vector, torch.arange(DIM, dtype=torch.float32))
    assert a.stats()["merged"] == 1
    # A forwards C's signed report unchanged but for the hop count: it verifies at D.
    [forwarded] = a.build(D.node_id_hex).reports
    assert forwarded.hops == 2 and forwarded.reporter_id == C.node_id
    checked = check_report(forwarded, network_id=a.network_id, vector_dim=DIM)
    assert checked.reporter == C.node_id_hex and checked.subject == B.node_id_hex
    # Records about the recipient are never sent back to it.
    assert list(a.build(B.node_id_hex).reports) == []


def test_one_tampered_report_refuses_the_whole_batch(tmp_path: Path) -> None:
    net = Network()
    c = _exchange(tmp_path, C, [A, B, D], net)
    a = _exchange(tmp_path, A, [C], net)
    c.history.add_update(B.node_id_hex, torch.ones(DIM), 3)
    c.history.add_update(D.node_id_hex, torch.ones(DIM), 3)
    batch = HistoryGossip(reports=[r for r in map(c._report_for, c.history) if r is not None])
    assert len(batch.reports) == 2
    batch.reports[1].vector = torch.full((DIM,), 9.0).numpy().astype("<f4").tobytes()
    msg = Verified(C.node_id, C.public_key, "history", 1, 3, 0, b"")
    with pytest.raises(Rejected) as info:
        asyncio.run(a.on_history(msg, batch))
    assert info.value.reason == "history_bad_signature"
    assert len(a.history) == 0  # the good report of the batch was not merged either


def test_reports_of_strangers_and_from_the_far_future_are_not_merged(tmp_path: Path) -> None:
    net = Network()
    c = _exchange(tmp_path, C, [A, B], net)
    stranger_view = _exchange(tmp_path, A, [D], net)  # C is not in A's view
    c.history.add_update(B.node_id_hex, torch.ones(DIM), 3)
    assert asyncio.run(c.push_round(3, [A.node_id_hex])) == 1  # accepted, then ignored
    assert len(stranger_view.history) == 0
    assert stranger_view.stats()["unknown_reporter"] == 1

    far = _exchange(tmp_path / "far", A, [C], net, max_round_lead=2)
    c.history.add_update(B.node_id_hex, torch.ones(DIM), 9)  # 9 > 5 + 2
    assert asyncio.run(c.push_round(9, [A.node_id_hex])) == 1
    assert len(far.history) == 0 and far.stats()["future"] == 1
