"""Tiny randomly initialised Hugging Face model folders, written offline.

Tests and the cost benchmarks need real model folders (config, safetensors weights,
tokenizer files) without a download. These builders write one from a ``transformers``
config class and a hand-written word-level vocabulary; the result loads with the same
``Auto*.from_pretrained(folder, local_files_only=True)`` calls as a real checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["TINY_WORDS", "write_tiny_model", "write_tiny_text_data"]

TINY_WORDS = [
    "good",
    "great",
    "fine",
    "happy",
    "love",
    "nice",
    "fun",
    "best",
    "bad",
    "awful",
    "sad",
    "hate",
    "worst",
    "poor",
    "boring",
    "ugly",
    "the",
    "a",
    "is",
    "was",
    "it",
    "this",
    "that",
    "movie",
    "day",
    "food",
    "film",
    "very",
    "so",
    "not",
    "and",
    "but",
    "i",
    "you",
    "we",
    "they",
]
"""The vocabulary of the tiny models (plus special tokens)."""

_POSITIVE = TINY_WORDS[:8]
_NEGATIVE = TINY_WORDS[8:16]
_FILLER = TINY_WORDS[16:]


def write_tiny_model(
    path: Path,
    kind: Literal["bert", "gpt2"] = "bert",
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    max_positions: int = 128,
) -> Path:
    """Write a random ``kind`` model with a word-level tokenizer into ``path``.

    ``bert`` is a BertModel checkpoint (no task head, as a sentence encoder ships);
    ``gpt2`` is a GPT2LMHeadModel checkpoint. Weights are drawn from ``seed``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizer,
        GPT2Config,
        GPT2LMHeadModel,
        PreTrainedTokenizerFast,
    )

    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "bert":
            specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            words = specials + list(TINY_WORDS)
            (path / "vocab.txt").write_text("\n".join(words) + "\n")
            tok: Any = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
            bconfig = BertConfig(
                vocab_size=len(specials) + len(TINY_WORDS),
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                intermediate_size=4 * hidden,
                max_position_embeddings=max_positions,
                pad_token_id=0,
                # At BERT's 0.02 a tiny random encoder's outputs barely depend on the input.
                initializer_range=0.2,
            )
            BertModel(bconfig).save_pretrained(path)
        else:
            from tokenizers import Tokenizer
            from tokenizers.models import WordLevel
            from tokenizers.pre_tokenizers import Whitespace

            vocab = {w: i for i, w in enumerate(["<|endoftext|>", "<unk>", *TINY_WORDS])}
            backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
            backend.pre_tokenizer = Whitespace()
            tok = PreTrainedTokenizerFast(
                tokenizer_object=backend, eos_token="<|endoftext|>", unk_token="<unk>"
            )
            gconfig = GPT2Config(
                vocab_size=len(vocab),
                n_embd=hidden,
                n_layer=layers,
                n_head=heads,
                n_positions=max_positions,
                bos_token_id=0,
                eos_token_id=0,
                initializer_range=0.2,
            )
            GPT2LMHeadModel(gconfig).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_tiny_text_data(
    path: Path, *, rows: int = 200, seed: int = 0, label_names: tuple[str, str] = ("neg", "pos")
) -> Path:
    """Write a learnable two-class text file (format from the suffix: .jsonl, .csv, .parquet).

    A row's label is ``pos`` when its sentence draws its sentiment word from the positive
    list; columns ``text`` and ``label``.
    """
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[str] = []
    for _ in range(rows):
        positive = bool(rng.random() < 0.5)
        words = list(rng.choice(_FILLER, size=int(rng.integers(2, 6))))
        words.insert(
            int(rng.integers(0, len(words) + 1)),
            str(rng.choice(_POSITIVE if positive else _NEGATIVE)),
        )
        texts.append(" ".join(words))
        labels.append(label_names[int(positive)])
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        path.write_text(
            "".join(
                json.dumps({"text": t, "label": lab}) + "\n"
                for t, lab in zip(texts, labels, strict=True)
            )
        )
    else:
        import pandas as pd

        df = pd.DataFrame({"text": texts, "label": labels})
        if suffix == ".csv":
            df.to_csv(path, index=False)
        elif suffix in (".parquet", ".pq"):
            df.to_parquet(path, index=False)
        else:
            raise ValueError(f"unsupported data suffix {suffix!r}")
    return path
