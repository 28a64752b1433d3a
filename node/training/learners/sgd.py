"""First-order local learner: K minibatch steps of Adam or SGD from the current model.

A fresh optimizer is created every round (as in the MNIST-1D FedAvg anchor), so
no optimizer state depends on a model the node has since replaced by an average.
"""

from __future__ import annotations

import torch
from torch import nn

from node.training.datasets import NodeData
from node.training.learners import LocalResult
from node.training.params import flatten, layout_of
from node.training.seeding import derive_seed
from node.training.spec import LearnerSpec

__all__ = ["SGDLearner"]


class SGDLearner:
    """K local steps per round; returns ``update = new - old`` of the trainable vector.

    Parameters
    ----------
    spec
        Learner spec (``lr``, ``local_steps``, ``optimizer``, ``momentum``).
    batch_size
        Minibatch size (task spec's ``batch_size``).
    seed
        Genesis seed; minibatch draws come from ``(seed, node, round)`` so a run
        is reproducible.
    node
        Node identity used in the minibatch seed.
    """

    def __init__(self, spec: LearnerSpec, *, batch_size: int, seed: int, node: str):
        if spec.kind != "sgd":
            raise ValueError(f"SGDLearner needs learner kind 'sgd', got {spec.kind!r}")
        self.spec = spec
        self.batch_size = batch_size
        self.seed = seed
        self.node = node

    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.spec.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.spec.lr)
        return torch.optim.SGD(params, lr=self.spec.lr, momentum=self.spec.momentum)

    def train_round(self, model: nn.Module, data: NodeData, round_idx: int) -> LocalResult:
        """Run ``local_steps`` steps on ``data`` in place and return the update.

        The model keeps the trained parameters; callers that need the old
        vector can subtract the update.
        """
        n = data.num_examples
        if n == 0:
            raise ValueError("node has no training examples")
        layout_of(model)  # raises early if nothing is trainable
        before = flatten(model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = self._optimizer(params)
        gen = torch.Generator().manual_seed(
            derive_seed("sgd-batch", self.seed, self.node, round_idx)
        )
        bs = min(self.batch_size, n)
        model.train()
        total = 0.0
        for _ in range(self.spec.local_steps):
            idx = torch.randint(0, n, (bs,), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(data.x[idx]), data.y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach())
        model.eval()
        return LocalResult(
            update=flatten(model) - before,
            num_examples=n,
            loss=total / self.spec.local_steps,
        )
