"""Loss and metric of a model on a node's test split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["IGNORE_INDEX", "EvalResult", "evaluate"]

IGNORE_INDEX = -100
"""Target value that counts neither in the loss nor in accuracy (``cross_entropy``'s default)."""


@dataclass(frozen=True)
class EvalResult:
    """Mean loss, metric ("accuracy") and example count of one evaluation.

    ``accuracy`` is the task's metric: classification accuracy for the built-in and
    Hugging Face classification tasks, next-token accuracy for ``causal-lm`` (whose
    ``loss`` is the mean token cross-entropy, so perplexity is ``exp(loss)``), and the
    factory's own metric for ``python`` tasks.
    """

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


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 512,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``(x, y)`` in eval mode, without autograd.

    Parameters
    ----------
    model
        Model returning logits (class axis 1) or whatever ``loss``/``metric`` take.
    x, y
        Inputs and targets: int64 class indices of any shape; targets equal to
        :data:`IGNORE_INDEX` count in neither loss nor accuracy.
    batch_size
        Examples per forward pass (default 512).
    loss
        Mean-reduced ``loss(outputs, targets)``; default token-weighted cross-entropy.
    metric
        ``metric(outputs, targets) -> float`` averaged over batches weighted by their
        rows; default accuracy of ``argmax`` over axis 1 on the non-ignored targets.
    """
    n = int(y.shape[0])
    if n == 0:
        raise ValueError("evaluate: empty test split")
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    loss_count = 0
    score_sum = 0.0
    score_count = 0
    try:
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            out = model(xb)
            rows = int(yb.shape[0])
            if loss is None:
                counted = int((yb != IGNORE_INDEX).sum())
                loss_sum += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
                loss_count += counted
            else:
                loss_sum += float(loss(out, yb)) * rows
                loss_count += rows
            if metric is None:
                keep = yb != IGNORE_INDEX
                score_sum += float(((out.argmax(1) == yb) & keep).sum())
                score_count += int(keep.sum())
            else:
                score_sum += float(metric(out, yb)) * rows
                score_count += rows
    finally:
        model.train(was_training)
    nan = float("nan")
    return EvalResult(
        loss_sum / loss_count if loss_count else nan,
        score_sum / score_count if score_count else nan,
        n,
    )
