"""Models of the built-in tasks, initialised identically on every node.

All initialisation is drawn inside a forked torch RNG seeded from the genesis
seed, so two nodes of one network build bit-identical models without
exchanging anything and without perturbing the caller's global RNG.

The Hugging Face tasks use FFA-LoRA on a local model folder
(:class:`node.training.hf.model.HFLoraModel`).
"""

from __future__ import annotations

import torch
from torch import nn

from node.training.seeding import derive_seed
from node.training.spec import TaskSpec

__all__ = ["MLP", "Mnist1dCNN", "build_model"]


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
    if spec.name == "python":
        raise ValueError("task 'python' builds its model in its factory (node.training.tasks)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("model-init", seed, spec.name, spec.model))
        model: nn.Module
        if spec.model == "mlp":
            model = MLP(input_dim, num_classes)
        elif spec.model == "cnn":
            model = Mnist1dCNN(num_classes, input_dim)
        else:
            from node.training.hf.model import HFLoraModel

            model = HFLoraModel(spec, seed, num_classes)
    return model
