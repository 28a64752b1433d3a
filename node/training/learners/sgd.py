"""First-order local learner: K minibatch steps of Adam or SGD from the current model.

A fresh optimizer is created every round (as in the MNIST-1D FedAvg anchor), so
no optimizer state depends on a model the node has since replaced by an average.

With ``LearnerSpec.dp_sgd`` the steps are sample-level DP-SGD (Abadi et al. 2016)
through Opacus: each step draws a Poisson-sampled minibatch (every example
independently with probability ``q = min(1, batch_size / examples)``), Opacus's
``GradSampleModule`` computes per-example gradients, and its ``DPOptimizer`` clips
each to ``dp_sgd_max_grad_norm`` (L2 over all trainable parameters), adds Gaussian
noise of std ``dp_sgd_noise_multiplier * dp_sgd_max_grad_norm`` to the sum and
divides by the expected batch size ``q * examples`` before the Adam/SGD step. An
Opacus ``RDPAccountant`` kept by the learner (across rounds) is stepped by the
optimizer, as ``PrivacyEngine`` wires it: :meth:`SGDLearner.sample_epsilon`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from node.training.datasets import NodeData
from node.training.learners import LocalResult
from node.training.params import flatten, layout_of
from node.training.seeding import derive_seed
from node.training.spec import LearnerSpec
from privacy import secure_normal, secure_uniform

if TYPE_CHECKING:
    from opacus.accountants import RDPAccountant

__all__ = ["SGDLearner", "secure_dp_optimizer"]


@functools.cache
def secure_dp_optimizer() -> type:
    """Opacus's ``DPOptimizer`` with its Gaussian noise from :func:`privacy.secure_normal`.

    Opacus's own ``secure_mode`` needs ``torchcsprng``, which is not available here; this
    subclass keeps everything of ``DPOptimizer`` (clipping, accounting hooks, scaling) and
    replaces only the noise draw: OS CSPRNG uniforms, Box-Muller, four samples summed
    (the same floating-point mitigation as ``secure_mode``).
    """
    from opacus.optimizers import DPOptimizer
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    class SecureDPOptimizer(DPOptimizer):
        def add_noise(self) -> None:
            std = self.noise_multiplier * self.max_grad_norm
            for p in self.params:
                _check_processed_flag(p.summed_grad)
                summed = p.summed_grad
                noise = secure_normal(summed.shape, std).to(summed.dtype)
                p.grad = (summed + noise).view_as(p)
                _mark_as_processed(p.summed_grad)

    return SecureDPOptimizer


class SGDLearner:
    """K local steps per round; returns ``update = new - old`` of the trainable vector.

    Parameters
    ----------
    spec
        Learner spec (``lr``, ``local_steps``, ``optimizer``, ``momentum``, and the
        ``dp_sgd*`` fields).
    batch_size
        Minibatch size (task spec's ``batch_size``); with ``dp_sgd`` the expected
        size of a Poisson draw, ``q = min(1, batch_size / examples)``.
    seed
        Genesis seed; minibatch draws come from ``(seed, node, round)`` so a run
        is reproducible. DP-SGD draws use OS randomness instead (they must be secret).
    node
        Node identity used in the minibatch seed.
    loss
        Mean-reduced ``loss(outputs, targets)`` (default cross-entropy; a ``python``
        task's factory supplies its own).
    """

    def __init__(
        self,
        spec: LearnerSpec,
        *,
        batch_size: int,
        seed: int,
        node: str,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ):
        if spec.kind != "sgd":
            raise ValueError(f"SGDLearner needs learner kind 'sgd', got {spec.kind!r}")
        self.spec = spec
        self.batch_size = batch_size
        self.seed = seed
        self.node = node
        self.loss = loss or nn.functional.cross_entropy
        self.accountant: RDPAccountant | None = None
        """Opacus accountant of the DP-SGD steps so far (None without ``dp_sgd``)."""
        if spec.dp_sgd:
            # Imported only here: Opacus costs seconds of start-up every node would pay.
            from opacus.accountants import RDPAccountant

            self.accountant = RDPAccountant()

    def sample_rate(self, examples: int) -> float:
        """DP-SGD's Poisson sampling rate ``q = min(1, batch_size / examples)``."""
        if examples <= 0:
            raise ValueError("node has no training examples")
        return min(1.0, self.batch_size / examples)

    def dp_round(self, examples: int) -> tuple[float, float, int] | None:
        """``(noise multiplier, sample rate, steps)`` of one DP-SGD round, None without DP.

        What the node's record-level ledger debits per round (every local step is a
        Poisson-subsampled Gaussian mechanism, empty draws included).
        """
        if not self.spec.dp_sgd:
            return None
        return (
            self.spec.dp_sgd_noise_multiplier,
            self.sample_rate(examples),
            self.spec.local_steps,
        )

    def resume_accounting(self, history: list[tuple[float, float, int]]) -> None:
        """Restore the accountant's history ``[(z, q, steps), ...]`` (from the durable ledger).

        A restarted node's learner then reports the same :meth:`sample_epsilon` as before.
        """
        if self.accountant is None:
            raise ValueError("resume_accounting needs a learner spec with dp_sgd = true")
        self.accountant.history = [(float(z), float(q), int(n)) for z, q, n in history]

    @property
    def dp_steps(self) -> int:
        """Noised DP-SGD steps taken so far (0 without ``dp_sgd``)."""
        if self.accountant is None:
            return 0
        return sum(steps for _, _, steps in self.accountant.history)

    def sample_epsilon(self, delta: float) -> float:
        """Sample-level epsilon spent by this learner's DP-SGD steps at ``delta``.

        Opacus's ``RDPAccountant`` over the Poisson-subsampled Gaussian steps taken so
        far (add/remove-one-example adjacency within this node's data). ``0.0``
        before the first step; ``inf`` with noise multiplier 0.

        Raises
        ------
        ValueError
            Without ``dp_sgd``, or if ``delta`` is not in (0, 1).
        """
        if self.accountant is None:
            raise ValueError("sample_epsilon needs a learner spec with dp_sgd = true")
        if not (0.0 < float(delta) < 1.0):
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if self.dp_steps == 0:
            return 0.0
        if self.spec.dp_sgd_noise_multiplier == 0.0:
            return math.inf
        return float(self.accountant.get_epsilon(delta=float(delta)))

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
        if self.spec.dp_sgd:
            return self._train_round_dp(model, data, round_idx)
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
            loss = self.loss(model(data.x[idx]), data.y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach())
        model.eval()
        return LocalResult(
            update=flatten(model) - before,
            num_examples=n,
            loss=total / self.spec.local_steps,
        )

    def _train_round_dp(self, model: nn.Module, data: NodeData, round_idx: int) -> LocalResult:
        from opacus import GradSampleModule

        assert self.accountant is not None
        n = data.num_examples
        q = self.sample_rate(n)
        errors = GradSampleModule.validate(model, strict=False)
        if errors:
            raise ValueError(f"dp_sgd: Opacus cannot compute per-example gradients: {errors[0]}")
        before = flatten(model)
        params = [p for p in model.parameters() if p.requires_grad]
        # Hooks go on the model's own submodules and the parameters stay the same
        # objects, so flatten/load_vector on ``model`` see the trained values; the
        # wrapper is removed at the end of the round.
        wrapped = GradSampleModule(model, loss_reduction="mean", strict=True)
        opt = secure_dp_optimizer()(
            self._optimizer(params),
            noise_multiplier=self.spec.dp_sgd_noise_multiplier,
            max_grad_norm=self.spec.dp_sgd_max_grad_norm,
            expected_batch_size=max(1, round(q * n)),
            loss_reduction="mean",
        )
        opt.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=q))
        model.train()
        total = 0.0
        counted = 0
        try:
            with warnings.catch_warnings():
                # Inputs never require grad; Opacus's hooks need only the outputs' gradients.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                for _ in range(self.spec.local_steps):
                    total, counted = self._dp_step(
                        wrapped, opt, params, data, q, total, counted, self.loss
                    )
        finally:
            opt.zero_grad(set_to_none=True)
            wrapped.to_standard_module()
            model.eval()
        return LocalResult(
            update=flatten(model) - before,
            num_examples=n,
            loss=total / counted if counted else float("nan"),
            metrics={
                "dp_sgd_steps": float(self.dp_steps),
                "dp_sgd_sample_rate": q,
                "dp_sgd_empty_draws": float(self.spec.local_steps - counted),
            },
        )

    @staticmethod
    def _dp_step(
        wrapped: nn.Module,
        opt: torch.optim.Optimizer,
        params: list[nn.Parameter],
        data: NodeData,
        q: float,
        total: float,
        counted: int,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> tuple[float, int]:
        """One DP-SGD step on a Poisson-sampled batch; returns the running loss sum and count."""
        # Poisson sampling, the sampling the RDP accountant's bound assumes. Amplification
        # by subsampling needs a *secret* sample: the genesis seed is known to every peer,
        # so the draws come from the OS CSPRNG (DP-SGD rounds are not reproducible).
        idx = torch.nonzero(secure_uniform(data.num_examples) < q).reshape(-1)
        opt.zero_grad(set_to_none=True)
        if idx.numel() == 0:
            # An empty draw is still a step of the mechanism: noise only.
            for p in params:
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)  # type: ignore[attr-defined]
        else:
            loss = loss_fn(wrapped(data.x[idx]), data.y[idx])
            loss.backward()
            total += float(loss.detach())
            counted += 1
        opt.step()
        return total, counted
