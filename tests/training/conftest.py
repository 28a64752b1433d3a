"""Shared fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import torch

from aggregation import RULES

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def rules() -> Mapping[str, Callable[..., torch.Tensor]]:
    return RULES


@pytest.fixture(scope="session")
def cache_path(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("fednode-cache")
