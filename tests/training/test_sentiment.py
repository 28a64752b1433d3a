from __future__ import annotations

import torch

from node.training.hf.model import HFLoraModel
from node.training.models import build_model
from node.training.params import flatten, layout_of
from node.training.spec import SENTIMENT_DEFAULTS, TaskSpec


def test_sentiment_is_the_minilm_text_classification_instance() -> None:
    spec = TaskSpec(name="sentiment", lora_rank=4)
    assert spec.name == "text-classification" and spec.model == "lora"
    assert spec.model_path == SENTIMENT_DEFAULTS["model_path"]
    assert spec.labels == ("negative", "positive") and spec.label_column == "sentiment"
    assert spec.pooling == "mean"  # MiniLM is a sentence-transformers (mean-pooling) encoder
    assert spec.model_sha256 is not None and len(spec.model_sha256) == 64
    # The expansion is what a genesis stores: round-tripping gives the same spec.
    assert TaskSpec.model_validate(spec.model_dump(mode="json")) == spec


def test_minilm_lora_model_offline_a_frozen_only_b_and_head_trainable() -> None:
    spec = TaskSpec(name="sentiment", lora_rank=4)
    model = build_model(spec, 5, input_dim=48, num_classes=2)
    assert isinstance(model, HFLoraModel)
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
    assert not model.peft.training  # the base never enters dropout mode
    logits = model(x)
    assert logits.shape == (1, 2)
    logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
