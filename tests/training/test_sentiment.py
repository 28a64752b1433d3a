from __future__ import annotations

import os

import torch

from node.training.models import LoraSentimentClassifier, build_model
from node.training.params import flatten, layout_of
from node.training.spec import TaskSpec


def test_lora_model_offline_a_frozen_only_b_and_head_trainable() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    spec = TaskSpec(name="sentiment", model="lora", lora_rank=4)
    model = build_model(spec, 5, input_dim=48, num_classes=2)
    assert isinstance(model, LoraSentimentClassifier)
    layout = layout_of(model)
    assert layout.names and all("lora_B" in n or n.startswith("head.") for n in layout.names)
    assert sum("lora_B" in n for n in layout.names) == 12  # 6 layers x (query, value)
    a_params = {n: p for n, p in model.named_parameters() if "lora_A" in n}
    assert len(a_params) == 12 and not any(p.requires_grad for p in a_params.values())
    frozen_base = [
        p for n, p in model.named_parameters() if "lora" not in n and not n.startswith("head.")
    ]
    assert frozen_base and not any(p.requires_grad for p in frozen_base)
    # A comes from the genesis seed: a second node builds the identical A and trainable state
    other = build_model(spec, 5, input_dim=48, num_classes=2)
    other_a = {n: p for n, p in other.named_parameters() if "lora_A" in n}
    assert all(torch.equal(a_params[n], other_a[n]) for n in a_params)
    assert torch.equal(flatten(model), flatten(other))
    # B starts at zero, so the adapted encoder starts exactly at the pretrained one
    b_params = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert all(float(p.detach().abs().sum()) == 0 for p in b_params)
    ids = torch.tensor([[101, 2307, 2154, 102] + [0] * 4])
    x = torch.stack([ids, (ids != 0).long()], dim=1)
    model.train()
    assert not model.encoder.training  # encoder never enters dropout mode
    logits = model(x)
    assert logits.shape == (1, 2)
    logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
