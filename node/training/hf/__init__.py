"""Hugging Face model folders fine-tuned with LoRA: folders, data files, models.

- :mod:`~node.training.hf.folder`: locations (``pkg:`` included), folder checks, weight hash
  (standard library only).
- :mod:`~node.training.hf.data`: JSONL/CSV/Parquet through ``datasets``, tokenised once.
- :mod:`~node.training.hf.model`: :class:`HFLoraModel` (FFA-LoRA through peft).
- :mod:`~node.training.hf.export`: peft adapter folders and merged models.
- :mod:`~node.training.hf.tiny`: tiny random model folders for tests and benchmarks.
"""

from __future__ import annotations

from node.training.hf.folder import HFFolderError, check_model_folder, folder_sha256

__all__ = ["HFFolderError", "check_model_folder", "folder_sha256"]
