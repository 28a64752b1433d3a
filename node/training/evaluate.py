"""Accuracy and loss of a model on a node's test split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["EvalResult", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy, accuracy and example count of one evaluation."""

    loss: float
    accuracy: float
    num_examples: int

    def as_dict(self) -> dict[str, float]:
        """Metrics as a plain dict (for storage and the engine)."""
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "num_examples": float(self.num_examples),
        }


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512
) -> EvalResult:
    """Evaluate ``model`` on ``(x, y)`` in eval mode.

    Parameters
    ----------
    model
        Classifier returning logits.
    x, y
        Inputs and int64 labels.
    batch_size
        Examples per forward pass (default 512; bounds memory for the LoRA model).
    """
    n = int(y.shape[0])
    if n == 0:
        raise ValueError("evaluate: empty test split")
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    correct = 0
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        logits = model(xb)
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return EvalResult(loss_sum / n, correct / n, n)
