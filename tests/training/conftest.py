"""Shared fixtures of the training tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch

from aggregation import RULES

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))  # simulate_command.py (importlib import mode)


@pytest.fixture(scope="session")
def rules() -> Mapping[str, Callable[..., torch.Tensor]]:
    return RULES


@pytest.fixture(scope="session")
def cache_path(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("fednode-cache")


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Tiny random BERT and GPT-2 folders and a learnable text file, written offline."""
    from node.training.hf.tiny import write_tiny_model, write_tiny_text_data

    root = tmp_path_factory.mktemp("tiny-hf")
    return {
        "bert": write_tiny_model(root / "bert", "bert"),
        "gpt2": write_tiny_model(root / "gpt2", "gpt2"),
        "jsonl": write_tiny_text_data(root / "data.jsonl", rows=240),
        "csv": write_tiny_text_data(root / "data.csv", rows=240),
        "parquet": write_tiny_text_data(root / "data.parquet", rows=240),
        "root": root,
    }
