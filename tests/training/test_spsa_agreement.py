"""agreed_checkpoint: which served final checkpoint a joining SPSA node may trust."""

from __future__ import annotations

import pytest
import torch

from node.training.spsa.agreement import Agreement, ServedCheckpoint, agreed_checkpoint


def _ckpt(round_idx: int, value: float, digest: str = "d") -> ServedCheckpoint:
    return ServedCheckpoint(round_idx, torch.full((4,), value), digest)


def test_f_liars_cannot_outvote_f_plus_one_honest_servers() -> None:
    # f = 1: two honest members serve the same bits, one liar a later, forged checkpoint.
    served = [_ckpt(10, 1.0), _ckpt(12, 9.0), _ckpt(10, 1.0)]
    assert agreed_checkpoint(served, need=2) == Agreement(index=0, members=2, round=10)


def test_no_group_large_enough_gives_none() -> None:
    served = [_ckpt(10, 1.0), _ckpt(10, 2.0), None]
    assert agreed_checkpoint(served, need=2) is None
    assert agreed_checkpoint([], need=1) is None
    assert agreed_checkpoint([None, None], need=1) is None


def test_same_round_and_bits_but_another_digest_do_not_agree() -> None:
    served = [_ckpt(10, 1.0, "a"), _ckpt(10, 1.0, "b")]
    assert agreed_checkpoint(served, need=2) is None


def test_one_differing_bit_splits_the_group() -> None:
    a = torch.zeros(4)
    b = a.clone()
    b.view(torch.int32)[3] ^= 1  # the smallest change a float can make
    served = [ServedCheckpoint(5, a, "d"), ServedCheckpoint(5, b, "d")]
    assert agreed_checkpoint(served, need=2) is None
    assert agreed_checkpoint(served, need=1) is not None


def test_of_several_agreed_groups_the_latest_round_wins() -> None:
    served = [None, _ckpt(8, 1.0), _ckpt(9, 2.0), _ckpt(8, 1.0), _ckpt(9, 2.0), _ckpt(9, 2.0)]
    assert agreed_checkpoint(served, need=2) == Agreement(index=2, members=3, round=9)


def test_need_must_be_positive() -> None:
    with pytest.raises(ValueError, match="need"):
        agreed_checkpoint([_ckpt(1, 1.0)], need=0)
