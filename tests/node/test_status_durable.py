"""``fednode status`` reports what a restart resumes from, never more.

The engine's round advances when a merge finishes, before the checkpoint that makes it
durable is written; a status read in between, then a kill -9, made the restarted node
report fewer rounds than before. The runtime here holds only what its status and
checkpoint methods read, with a real SQLite store.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from fednode_proto.v1 import admin_pb2
from node.daemon.training_runtime import STATE_ROUND, TrainingRuntime
from node.storage import open_store
from node.training.genesis import Genesis
from node.training.params import ParamLayout


def test_status_round_is_the_stored_round(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    layout = ParamLayout(names=("w",), shapes=((4,),))
    genesis = Genesis.model_validate({"task": {"name": "digits", "num_nodes": 2}})
    rt = TrainingRuntime.__new__(TrainingRuntime)
    rt.ctx = SimpleNamespace(genesis=genesis, store=store)  # type: ignore[assignment]
    rt.trainer = SimpleNamespace(layout=layout)
    rt.evaluations = []
    rt.last_accuracy = 0.0
    rt.model_hash = "00" * 32
    rt.stored_round = 3
    # The merge of round 3 finished: the engine is in round 4, its checkpoint not written.
    rt.engine = SimpleNamespace(round=4)  # type: ignore[assignment]

    def status_round() -> int:
        reply = admin_pb2.StatusReply()
        rt.fill_status(reply)
        return int(reply.round)

    assert status_round() == 3
    rt._checkpoint(4, torch.ones(4))
    assert status_round() == 4
    assert int(store.get_state(STATE_ROUND, 0)) == 4
    latest = store.latest_checkpoint()
    assert latest is not None and latest.round == 4
