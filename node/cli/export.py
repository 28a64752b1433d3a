"""``fednode export``: write the node's current model where other tools load it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli.admin import call, connect
from node.cli.options import DataDirOpt, open_data_dir
from node.cli.output import console, fail
from node.training.genesis import GenesisError, load_genesis

__all__ = ["export"]


def export(
    out_arg: Annotated[
        Path | None,
        typer.Argument(metavar="[OUT]", help="Same as --out.", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write: a folder for Hugging Face tasks, else a .safetensors file.",
            show_default=False,
        ),
    ] = None,
    merged: Annotated[
        bool,
        typer.Option(
            help="Hugging Face tasks: write the merged model (save_pretrained format, with "
            "the tokenizer) instead of the peft adapter."
        ),
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Export the node's current model.

    Hugging Face tasks get a folder that peft loads:
    PeftModel.from_pretrained(base, OUT), with base the task's Auto class on the model
    folder (num_labels = the task's classes); --merged writes a plain transformers
    folder. Other tasks get one safetensors file of the trainable tensors.

    Example: fednode export -d ./node1 --out ./adapter
    """
    target = out or out_arg
    if target is None:
        raise fail("give the output path: --out OUT")
    dd = open_data_dir(data_dir)
    with connect(data_dir) as client:
        reply = call(client.export)
    gen = None
    if dd.genesis.exists():
        try:
            gen = load_genesis(dd.genesis)
        except GenesisError as exc:
            raise fail(str(exc)) from None
    if gen is None or not gen.task.is_hf:
        if merged:
            raise fail("--merged is only for Hugging Face tasks (text-classification, causal-lm)")
        target.write_bytes(reply.model_safetensors)
        console.print(f"wrote {target}: round {reply.round}, model hash {reply.model_hash[:16]}")
        return
    # Imported here: these load torch (and transformers), which only this branch needs.
    from safetensors.torch import load as load_safetensors

    from node.training.datasets import DatasetError, load_task
    from node.training.hf.export import export_hf_model
    from node.training.hf.folder import HFFolderError

    try:
        tensors = load_safetensors(reply.model_safetensors)
        classes = (
            load_task(gen.task, gen.network.seed).class_names
            if gen.task.name == "text-classification"
            else ()
        )
        export_hf_model(
            gen.task,
            gen.network.seed,
            tensors,
            target,
            class_names=classes,
            merged=merged,
            info={"round": reply.round, "model_hash": reply.model_hash},
        )
    except (HFFolderError, DatasetError) as exc:
        raise fail(str(exc)) from None
    kind = "merged model" if merged else "peft adapter"
    console.print(
        f"wrote {kind} to {target}: round {reply.round}, model hash {reply.model_hash[:16]}"
    )
