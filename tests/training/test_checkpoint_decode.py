"""Checkpoint bytes from a peer are decoded strictly: safetensors only, our layout only."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save

from node.training.params import (
    ParamError,
    ParamLayout,
    checkpoint_tensors,
    decode_checkpoint,
)

LAYOUT = ParamLayout(("w", "b"), ((3, 2), (2,)))


def test_roundtrip() -> None:
    vec = torch.arange(8, dtype=torch.float32)
    got = decode_checkpoint(save(checkpoint_tensors(vec, LAYOUT)), LAYOUT)
    assert torch.equal(got, vec)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (save({"vector": torch.zeros(8, dtype=torch.float64)}), "dtype"),
        (save({"vector": torch.zeros(9)}), "shape"),
        (save({"vector": torch.zeros(8), "extra": torch.zeros(1)}), "names differ"),
        (save({"other": torch.zeros(8)}), "names differ"),
        (save({"vector": torch.full((8,), float("nan"))}), "NaN"),
        (pickle.dumps({"vector": [0.0] * 8}), "safetensors"),
        (b"\x00" * (8 * 4 + 70_000), "exceeds"),
    ],
)
def test_refused(payload: bytes, match: str) -> None:
    with pytest.raises(ParamError, match=match):
        decode_checkpoint(payload, LAYOUT)
