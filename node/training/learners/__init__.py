"""Local learners: how a node turns its data into an update each round.

- :mod:`~node.training.learners.sgd`: first-order, K local steps (update = new - old).
- :mod:`~node.training.learners.spsa`: zeroth-order SPSA with shared randomness
  (publishes only ``(seed id, scalar)`` pairs).
- :mod:`~node.training.learners.flower`: an unmodified Flower ``NumPyClient``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["LocalResult"]


@dataclass(frozen=True)
class LocalResult:
    """Outcome of one round of local training.

    Attributes
    ----------
    update
        Flat float32 change of the trainable vector (new - old).
    num_examples
        Training examples the node holds (FedAvg-style weight).
    loss
        Mean training loss over the round's steps (NaN if unknown).
    metrics
        Extra scalar metrics reported by the learner.
    """

    update: torch.Tensor
    num_examples: int
    loss: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)
