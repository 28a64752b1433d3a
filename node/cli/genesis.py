"""``fednode genesis new`` and ``fednode genesis show``: the file that defines a network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from node.cli.options import FormatOpt, OutputFormat, comma_list
from node.cli.output import console, emit_json, fail
from node.cli.wide import print_wide
from node.training.genesis import (
    Genesis,
    GenesisError,
    load_genesis,
    render_genesis,
    task_and_learner,
)

__all__ = ["genesis_app", "genesis_new", "genesis_show"]

genesis_app = typer.Typer(
    help="Create and inspect genesis files (the definition of a network).",
    no_args_is_help=True,
)


@genesis_app.command("new")
def genesis_new(
    path: Annotated[Path, typer.Argument(help="Where to write the genesis TOML file.")],
    name: Annotated[str, typer.Option(help="Network name.")] = "fednode-demo",
    seed: Annotated[
        int | None, typer.Option(help="Genesis seed \\[default: random].", show_default=False)
    ] = None,
    difficulty: Annotated[int, typer.Option(help="Identity proof-of-work bits.")] = 16,
    task: Annotated[
        str,
        typer.Option(
            help="Task: mnist1d, digits, local (numeric CSV/Parquet), text-classification or "
            "causal-lm (a Hugging Face folder + a JSONL/CSV/Parquet file), python (a task "
            "factory), or sentiment (MiniLM tweet sentiment, a text-classification preset)."
        ),
    ] = "mnist1d",
    model: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face tasks: the model folder (config, weights, tokenizer; read "
            "offline, its hash enters the genesis). Built-in tasks: mlp or cnn.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Data file (local, text-classification, causal-lm).", show_default=False),
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column \\[default: text].")] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Label column \\[default: label].")
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="text-classification: comma-separated label values to keep, in class "
            "order \\[default: every value, sorted].",
            show_default=False,
        ),
    ] = None,
    lora_rank: Annotated[
        int | None,
        typer.Option(
            help="LoRA rank \\[default: 8]; 0 trains only the classification head (a linear probe)."
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            help="text-classification: 'model' (the Auto class's head, BERT: [CLS] pooler) "
            "or 'mean' (mask-averaged token states under a new head) \\[default: mean for a "
            "sentence-transformers folder, else model].",
            show_default=False,
        ),
    ] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha \\[default: 16].")] = None,
    lora_targets: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated module names to adapt \\[default: peft's for the architecture].",
            show_default=False,
        ),
    ] = None,
    factory: Annotated[
        str | None,
        typer.Option(help="python task: the factory as module:attribute (on PYTHONPATH)."),
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(help="Shards the data is split into \\[default: 8].")
    ] = None,
    partition: Annotated[
        str | None, typer.Option(help="iid or dirichlet \\[default: dirichlet].")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Dirichlet concentration \\[default: 0.5].")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Minibatch size.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Token length of text inputs.")] = None,
    max_samples: Annotated[
        int | None, typer.Option(help="Subsample the labelled pool to this many rows.")
    ] = None,
    learner: Annotated[str, typer.Option(help="Learner: sgd, spsa, flower.")] = "sgd",
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    local_steps: Annotated[int | None, typer.Option(help="sgd: local steps per round.")] = None,
    spsa_steps: Annotated[int | None, typer.Option(help="spsa: steps per round.")] = None,
    spsa_eps: Annotated[float | None, typer.Option(help="spsa: perturbation size.")] = None,
    flower_client: Annotated[
        str | None,
        typer.Option(
            help="flower: a NumPyClient, client_fn or ClientApp as module:attribute "
            "(its folder on PYTHONPATH)."
        ),
    ] = None,
    flower_initial: Annotated[
        str | None,
        typer.Option(help="flower: initial model of a Message-API ClientApp (module:attribute)."),
    ] = None,
    rule: Annotated[str, typer.Option(help="Aggregation rule (see docs/aggregation.md).")] = "mean",
    rounds: Annotated[
        int | None,
        typer.Option(
            help="Rounds each node trains, then stops training (rounds.max_rounds) "
            "\\[default: no limit: nodes train until stopped].",
            show_default=False,
            min=1,
        ),
    ] = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", "-b", help="First-contact address host:port (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a genesis file with every setting and its default documented inline.

    Flags not given keep the defaults recommended for the task and learner (small batches
    and sequences for Hugging Face models on CPU). Examples:

    fednode genesis new net.toml --name lab --nodes 2 --rounds 20

    fednode genesis new net.toml --name lab --bootstrap 10.0.0.5:7420

    fednode genesis new net.toml --task text-classification --model ./my-bert --data
    reviews.jsonl --label-column stars --learner spsa

    fednode genesis new net.toml --task python --factory my_task:make_task
    """
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to overwrite")
    try:
        task_table, learner_table = task_and_learner(
            task,
            learner,
            model=model,
            data=data,
            task_options={
                "text_column": text_column,
                "label_column": label_column,
                "labels": comma_list(labels),
                "lora_rank": lora_rank,
                "pooling": pooling,
                "lora_alpha": lora_alpha,
                "lora_targets": comma_list(lora_targets),
                "factory": factory,
                "num_nodes": nodes,
                "partition": partition,
                "alpha": alpha,
                "batch_size": batch_size,
                "max_length": max_length,
                "max_samples": max_samples,
            },
            learner_options={
                "lr": lr,
                "local_steps": local_steps,
                "spsa_steps": spsa_steps,
                "spsa_eps": spsa_eps,
                "flower_client": flower_client,
                "flower_initial": flower_initial,
            },
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    sections: dict[str, dict[str, Any]] = {
        "network": {
            "name": name,
            "pow_difficulty": difficulty,
            "bootstrap": list(bootstrap or []),
        },
        "task": task_table,
        "learner": learner_table,
        "aggregation": {"rule": rule},
    }
    if rounds is not None:
        sections["rounds"] = {"max_rounds": rounds}
    if seed is not None:
        sections["network"]["seed"] = seed
    try:
        gen = Genesis.fresh(**sections)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise fail(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    path.write_text(render_genesis(gen), encoding="utf-8")
    console.print(f"wrote {path}: network [bold]{gen.network.name}[/] id {gen.network_id_hex}")
    spec = gen.round_spec()
    console.print(
        f"its data is split into {gen.task.num_nodes} shards (one per node: fednode start "
        f"--shard 0..{gen.task.num_nodes - 1}); "
        + (
            f"nodes train {spec.max_rounds} rounds"
            if spec.max_rounds is not None
            else "nodes train until stopped (fednode stop; --rounds N sets a limit)"
        ),
        highlight=False,
    )


@genesis_app.command("show")
def genesis_show(
    path: Annotated[Path, typer.Argument(help="Genesis TOML file.")],
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Validate a genesis file and print its settings and network id (its hash).

    Example: fednode genesis show net.toml --format json
    """
    try:
        gen = load_genesis(path)
    except GenesisError as exc:
        raise fail(str(exc)) from None
    data = {"network_id": gen.network_id_hex, **gen.model_dump(mode="json")}
    if fmt is OutputFormat.json:
        emit_json(data)
        return
    table = Table(title=f"genesis {path}", show_header=True)
    table.add_column("setting")
    table.add_column("value")
    table.add_row("network id", gen.network_id_hex)
    for section, values in gen.model_dump(mode="json").items():
        for key, value in values.items():
            table.add_row(f"{section}.{key}", json.dumps(value))
    print_wide(console, table)
