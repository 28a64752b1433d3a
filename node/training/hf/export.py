"""Write a node's Hugging Face model as peft loads it: an adapter folder or a merged model.

The node's trainable state is its LoRA ``B`` factors and task head; ``A`` comes from the
genesis seed. Rebuilding the model from the genesis and loading the trainable tensors
gives the node's exact model, which peft then saves:

* adapter (default): ``adapter_config.json`` + ``adapter_model.safetensors``, loaded by
  ``peft.PeftModel.from_pretrained(base, folder)`` where ``base`` is
  ``AutoModelForSequenceClassification.from_pretrained(model_folder, num_labels=k)``
  (``text-classification``) or ``AutoModelForCausalLM.from_pretrained(model_folder)``;
* merged: the adapters folded into the weights, saved with ``save_pretrained`` together
  with the tokenizer (a plain ``transformers`` folder).

With ``pooling = "mean"`` the base is ``AutoModel.from_pretrained(model_folder)`` (the
encoder) and the linear head over the mask-averaged token states is written beside it as
``head.safetensors`` (``weight``, ``bias``); with ``lora_rank = 0`` there is no adapter, so
the export holds the head (mean pooling) or must be merged (the Auto class's own head).

Both also get ``fednode_export.json`` (task, labels, pooling, round, hashes). Only
safetensors are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from node.training.hf.folder import HFFolderError
from node.training.params import layout_of, load_vector
from node.training.spec import TaskSpec

__all__ = ["export_hf_model"]


def export_hf_model(
    spec: TaskSpec,
    seed: int,
    tensors: dict[str, torch.Tensor],
    out: Path,
    *,
    class_names: tuple[str, ...] = (),
    merged: bool = False,
    info: dict[str, Any] | None = None,
) -> Path:
    """Rebuild the node's model from ``tensors`` (its trainable state) and save it to ``out``.

    Parameters
    ----------
    spec, seed
        The genesis task and seed (they fix the base folder, LoRA settings and ``A``).
    tensors
        Trainable tensors by layout name, as the node exports them.
    out
        Output folder (created; existing files with the same names are replaced).
    class_names
        Labels of a ``text-classification`` task, written as ``id2label``.
    merged
        Save the merged model instead of the adapter.
    info
        Extra fields for ``fednode_export.json`` (round, model hash).

    Raises
    ------
    HFFolderError
        The tensors do not match the model the genesis describes.
    """
    from safetensors.torch import save_file

    from node.training.hf.data import load_tokenizer
    from node.training.models import build_model

    num_classes = len(class_names)
    if spec.name == "text-classification" and num_classes == 0:
        # The head is the last matrix that is not a LoRA factor (after a trained pooler).
        head = [t for n, t in tensors.items() if "lora_" not in n and t.ndim == 2]
        if not head:
            raise HFFolderError("cannot tell the number of classes: no head in the export")
        num_classes = int(head[-1].shape[0])
    model: Any = build_model(spec, seed, input_dim=0, num_classes=num_classes)
    layout = layout_of(model)
    if set(tensors) != set(layout.names):
        raise HFFolderError(
            "the exported tensors do not match this genesis's model "
            f"({len(tensors)} tensors, the model trains {len(layout.names)})"
        )
    vector = torch.cat([tensors[n].reshape(-1).to(torch.float32) for n in layout.names])
    load_vector(model, vector)
    peft_model = model.peft
    if peft_model is None and model.head is None and not merged:
        raise HFFolderError(
            "lora_rank 0 trains no adapter, only the model's own head: export it merged"
        )
    hf_model = peft_model.get_base_model() if peft_model is not None else model.plain
    if class_names:
        config = hf_model.config
        config.id2label = dict(enumerate(class_names))
        config.label2id = {c: i for i, c in enumerate(class_names)}
    out.mkdir(parents=True, exist_ok=True)
    if merged:
        plain = peft_model.merge_and_unload() if peft_model is not None else model.plain
        plain.save_pretrained(out, safe_serialization=True)
        load_tokenizer(spec).save_pretrained(out)
    elif peft_model is not None:
        peft_model.save_pretrained(out, safe_serialization=True)
    if model.head is not None:
        save_file(
            {
                "weight": model.head.weight.detach().contiguous(),
                "bias": model.head.bias.detach().contiguous(),
            },
            str(out / "head.safetensors"),
        )
    meta = {
        "task": spec.name,
        "base_model": spec.model_path,
        "base_model_sha256": spec.model_sha256,
        "num_labels": num_classes if spec.name == "text-classification" else None,
        "labels": list(class_names),
        "pooling": spec.pooling if spec.name == "text-classification" else None,
        "head": "head.safetensors" if model.head is not None else None,
        "format": "merged" if merged else "peft-adapter" if peft_model is not None else "head",
        **(info or {}),
    }
    (out / "fednode_export.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
