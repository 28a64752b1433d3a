"""A Hugging Face model folder with FFA-LoRA adapters, as a fednode model.

``text-classification`` loads ``AutoModelForSequenceClassification`` with a new head sized
from the labels (``pooling = "model"``), or the bare encoder (``AutoModel``) under a new
linear head that reads the mask-averaged token states (``pooling = "mean"``, how
sentence-transformers encoders are trained to be read); ``causal-lm`` loads
``AutoModelForCausalLM``; all offline (``local_files_only``). peft adds LoRA adapters to the
architecture's attention projections (peft's own per-architecture defaults, or
``TaskSpec.lora_targets``); ``lora_rank = 0`` adds none, so only the head trains (a
linear probe of the frozen encoder).

Only the adapters' ``B`` factors and the task head train (FFA-LoRA, Sun et al. 2024):
``A`` is drawn from the genesis seed and frozen, so averaging ``B`` over nodes averages
their weight changes exactly (docs/training.md). Every weight the folder does not hold
(the new classification head, a missing pooler) is initialised from the genesis seed,
trains, and is saved with the adapter, so an export loads onto the plain folder.

The base model always runs in eval mode (no dropout): a loss is a deterministic function
of the trainable vector, which SPSA relies on.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from node.training.hf.folder import HFFolderError, check_model_folder, verify_model_folder
from node.training.seeding import derive_seed
from node.training.spec import TaskSpec

__all__ = ["HFLoraModel", "lora_targets"]


def lora_targets(spec: TaskSpec, model_type: str) -> list[str]:
    """Module names to adapt: ``spec.lora_targets``, else peft's default for the architecture."""
    if spec.lora_targets:
        return list(spec.lora_targets)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

    targets = known.get(model_type)
    if not targets:
        raise HFFolderError(
            f"no default LoRA target modules for model type {model_type!r}; set "
            "task.lora_targets (e.g. ['q_proj', 'v_proj']) in the genesis"
        )
    return list(targets)


def _new_modules(missing: list[str]) -> list[str]:
    """Modules whose weights the folder lacks (initialised here: they must train and save)."""
    return sorted({key.rsplit(".", 1)[0] for key in missing if "." in key})


class HFLoraModel(nn.Module):
    """A peft-wrapped Hugging Face model taking fednode's ``(batch, 2, length)`` input.

    Parameters
    ----------
    spec
        A ``text-classification`` or ``causal-lm`` task.
    seed
        Genesis seed: draws the frozen LoRA ``A`` factors (new head weights are drawn
        from the caller's RNG, which :func:`~node.training.models.build_model` seeds).
    num_classes
        Classes of a ``text-classification`` task (ignored by ``causal-lm``).

    Attributes
    ----------
    peft : peft.PeftModel or None
        The adapted model; ``peft.save_pretrained(dir)`` writes what
        ``PeftModel.from_pretrained(base, dir)`` loads. None when ``lora_rank = 0``.
    plain : transformers.PreTrainedModel or None
        The Hugging Face model without adapters when ``lora_rank = 0``, else None.
    head : torch.nn.Linear or None
        The linear head over mean-pooled states (``pooling = "mean"``), else None (the
        Auto class's own head, inside ``backbone``).
    """

    def __init__(self, spec: TaskSpec, seed: int, num_classes: int):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from peft import LoraConfig, get_peft_model
        from transformers import (
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
        )
        from transformers.utils import logging as hf_logging

        # The load report and progress bars would repeat on every node start; what is
        # missing from the folder is trained and saved anyway (new_modules).
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

        if not spec.is_hf or spec.model_path is None:
            raise ValueError(f"HFLoraModel needs a Hugging Face task, not {spec.name!r}")
        verify_model_folder(spec.model_path, spec.model_sha256)
        folder = check_model_folder(spec.model_path)
        self.causal = spec.name == "causal-lm"
        self.mean_pooling = not self.causal and spec.pooling == "mean"
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": torch.float32}
        loaded: Any
        try:
            if self.causal:
                loaded = AutoModelForCausalLM.from_pretrained(
                    folder.path, output_loading_info=True, **kwargs
                )
            elif self.mean_pooling:
                loaded = AutoModel.from_pretrained(folder.path, output_loading_info=True, **kwargs)
            else:
                loaded = AutoModelForSequenceClassification.from_pretrained(
                    folder.path, num_labels=num_classes, output_loading_info=True, **kwargs
                )
            base, info = loaded
        except (OSError, ValueError, KeyError) as exc:
            raise HFFolderError(f"model folder {folder.path}: cannot load it: {exc}") from None
        if base.config.pad_token_id is None:
            # Sequence classification finds each row's last token through the pad id;
            # tokenisation pads with eos when the tokenizer has no pad token.
            base.config.pad_token_id = base.config.eos_token_id
        self.model_type = str(base.config.model_type)
        # A mean-pooling encoder's missing weights (a pooler it never reads) stay frozen.
        missing = [] if self.mean_pooling else list(info.get("missing_keys", []))
        self.new_modules = _new_modules(missing)
        self.peft: Any = None
        self.plain: Any = None
        if spec.lora_rank == 0:
            self.plain = base
        else:
            config = LoraConfig(
                r=spec.lora_rank,
                lora_alpha=spec.lora_alpha,
                target_modules=lora_targets(spec, self.model_type),
                lora_dropout=0.0,
                bias="none",
                task_type=(
                    "CAUSAL_LM"
                    if self.causal
                    else "FEATURE_EXTRACTION"
                    if self.mean_pooling
                    else "SEQ_CLS"
                ),
                modules_to_save=self.new_modules or None,
            )
            self.peft = get_peft_model(base, config)
        self.head: nn.Linear | None = None
        if self.mean_pooling:
            hidden = getattr(base.config, "hidden_size", None) or base.config.n_embd
            self.head = nn.Linear(int(hidden), num_classes)
        gen = torch.Generator().manual_seed(derive_seed("lora-A", seed))
        new_prefixes = tuple(f"{m}." for m in self.new_modules)
        for name, p in self.backbone.named_parameters():
            if "lora_A" in name:
                # peft's Kaiming-uniform bound, drawn from the genesis seed so that every
                # node shares the same frozen A.
                bound = 1.0 / float(p.shape[1]) ** 0.5
                with torch.no_grad():
                    p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)
                p.requires_grad_(False)
            elif "lora_B" in name:
                with torch.no_grad():
                    p.zero_()
                p.requires_grad_(True)
            elif "modules_to_save" in name or (self.peft is None and name.startswith(new_prefixes)):
                p.requires_grad_(True)
            else:
                p.requires_grad_(False)
        if not any(p.requires_grad for p in self.parameters()):
            if spec.lora_rank == 0:
                raise HFFolderError(
                    "lora_rank 0 trains only a new task head, and this model has none; "
                    "set lora_rank >= 1"
                )
            raise HFFolderError(
                f"LoRA targets {lora_targets(spec, self.model_type)} matched no module of this "
                f"{self.model_type} model; set task.lora_targets"
            )
        self.backbone.eval()

    @property
    def backbone(self) -> Any:
        """The Hugging Face model the forward pass runs: ``peft``, or ``plain`` at rank 0."""
        return self.peft if self.peft is not None else self.plain

    def train(self, mode: bool = True) -> HFLoraModel:
        super().train(mode)
        # The frozen encoder stays in eval mode (no dropout: its attention modules read
        # their own ``training`` flag). The modules that own trainable parameters (LoRA B
        # factors, the new head: Linear layers, same output in either mode) follow
        # ``mode``, because Opacus records per-example activations only of modules in
        # training mode and DP-SGD fails without them.
        self.backbone.eval()
        if mode:
            for module in self.modules():
                if any(p.requires_grad for p in module.parameters(recurse=False)):
                    module.train()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        if not self.causal:
            # Inputs are right-padded to max_length: cut the columns no row uses. With the
            # attention mask the logits are those of the full width.
            width = max(1, int(mask.sum(1).max()))
            ids, mask = ids[:, :width], mask[:, :width]
            out = self.backbone(input_ids=ids, attention_mask=mask)
            if self.head is None:
                return out.logits
            states = out.last_hidden_state
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return self.head(pooled)
        logits = self.backbone(input_ids=ids, attention_mask=mask).logits
        # (batch, vocab, length - 1): cross_entropy's class axis, against next-token targets.
        return logits[:, :-1].transpose(1, 2)
