"""User models on real daemons: genesis flags, Hugging Face folders, Flower ClientApps."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.training.genesis import load_genesis

Cli = Callable[..., Any]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from node.training.hf.tiny import write_tiny_model, write_tiny_text_data

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "bert": write_tiny_model(root / "bert", "bert"),
        "gpt2": write_tiny_model(root / "gpt2", "gpt2"),
        "data": write_tiny_text_data(root / "data.csv", rows=160),
    }


def _combos(tiny: dict[str, Path]) -> list[list[str]]:
    return [
        ["--task", "sentiment"],
        ["--task", "sentiment", "--learner", "spsa"],
        ["--task", "mnist1d", "--model", "mlp", "--learner", "spsa"],
        ["--task", "digits", "--learner", "flower", "--flower-client", "digits_app:app",
         "--flower-initial", "digits_app:Net"],
        ["--task", "local", "--data", str(tiny["data"])],
        ["--task", "text-classification", "--model", str(tiny["bert"]), "--data",
         str(tiny["data"]), "--labels", "neg,pos", "--lora-rank", "4"],
        ["--task", "causal-lm", "--model", str(tiny["gpt2"]), "--data", str(tiny["data"]),
         "--learner", "spsa"],
        ["--task", "python", "--factory", "digits_task:make_task", "--learner", "spsa"],
    ]  # fmt: skip


def test_genesis_new_writes_a_valid_genesis_for_every_combination(
    cli: Cli, tmp_path: Path, tiny: dict[str, Path]
) -> None:
    for i, args in enumerate(_combos(tiny)):
        path = tmp_path / f"g{i}.toml"
        out = cli("genesis", "new", str(path), *args)
        assert out.returncode == 0, (args, out.stderr)
        shown = cli("genesis", "show", str(path), "--format", "json")
        assert shown.returncode == 0, shown.stderr
        network_id = json.loads(shown.stdout)["network_id"]
        # the id in the header comment is the file's real id
        assert f"#   {network_id}" in path.read_text()
        gen = load_genesis(path)
        if gen.task.is_hf:
            assert (gen.task.model_sha256 and Path(gen.task.model_path or "").is_absolute()) or (
                (gen.task.model_path or "").startswith("pkg:")
            )
    bad = cli(
        "genesis", "new", str(tmp_path / "bad.toml"), "--task", "text-classification",
        "--model", str(tmp_path), "--data", str(tiny["data"]),
    )  # fmt: skip
    assert bad.returncode == 1 and "is missing: config.json" in bad.stderr
    assert not (tmp_path / "bad.toml").exists()


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_hf_daemons_train_and_export_loads_with_peft(
    cli: Cli, tmp_path: Path, tiny: dict[str, Path]
) -> None:
    """Two daemons fine-tune a tiny BERT folder; the export is the node's model for peft."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from node.cli.testnet import testnet_genesis
    from node.testnet.local import Testnet
    from node.training.datasets import load_task
    from node.training.models import build_model
    from node.training.params import layout_of, load_vector, vector_hash

    gen = testnet_genesis(
        nodes=2, task="text-classification", model=str(tiny["bert"]), data=str(tiny["data"]),
        rounds=3, task_options={"max_length": 12, "batch_size": 8},
        learner_options={"local_steps": 5},
    )  # fmt: skip
    net = Testnet(tmp_path / "net", gen, 2)
    try:
        net.start()
        _wait(lambda: all(int(s.get("round", 0)) >= 2 for s in net.statuses().values()), 240,
              "two rounds")  # fmt: skip
        dd = net.nodes[0].data_dir.root
        adapter = tmp_path / "adapter"
        assert cli("export", "-d", str(dd), "--out", str(adapter)).returncode == 0
        out = cli("export", "-d", str(dd), "--out", str(tmp_path / "merged"), "--merged")
        assert out.returncode == 0, out.stderr
    finally:
        net.stop()
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    meta = json.loads((adapter / "fednode_export.json").read_text())
    assert meta["labels"] == ["neg", "pos"] and meta["round"] >= 2
    data = load_task(gen.task, gen.network.seed)
    node_model = build_model(gen.task, gen.network.seed, input_dim=0, num_classes=2)
    layout = layout_of(node_model)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    assert any("lora_B" in k for k in tensors) and any("classifier" in k for k in tensors)
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny["bert"], num_labels=2, local_files_only=True
    )
    peft_model = PeftModel.from_pretrained(base, adapter).eval()
    # The node's model: rebuilt from the genesis with the trainable state peft saved.
    own = {n: p for n, p in peft_model.named_parameters()}
    vec = torch.cat([own[n.removeprefix("peft.")].detach().reshape(-1) for n in layout.names])
    load_vector(node_model, vec)
    assert meta["model_hash"] == vector_hash(vec, layout)  # the export is the node's state
    x = torch.from_numpy(data.x_test[:8])
    with torch.no_grad():
        theirs = peft_model(input_ids=x[:, 0], attention_mask=x[:, 1]).logits
        ours = node_model.eval()(x)
    assert torch.allclose(theirs, ours, atol=1e-5)


@pytest.mark.slow
def test_flower_clientapp_testnet_and_a_broken_client_keeps_serving(
    cli: Cli, tmp_path: Path
) -> None:
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "examples" / "flower_clientapp"), str(tmp_path)])
    }
    out = cli(
        "testnet", "up", "--task", "digits", "--nodes", "3", "--rounds", "2", "--learner",
        "flower", "--flower-client", "digits_app:app", "--flower-initial", "digits_app:Net",
        "--format", "json", "--plot", str(tmp_path / "p.png"), "--workdir", str(tmp_path / "n"),
        timeout=600, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["honest_mean_accuracy"] > 0.5
    assert all(r["round"] == 2 for r in summary["per_node"])

    from node.cli.testnet import testnet_genesis
    from node.testnet.local import Testnet

    (tmp_path / "crashy_app.py").write_text("import definitely_not_installed_pkg\n")
    gen = testnet_genesis(nodes=1, task="digits", learner="flower",
                          flower_client="crashy_app:app", rounds=2)  # fmt: skip
    net = Testnet(tmp_path / "broken", gen, 1, env=env)
    try:
        net.start()
        time.sleep(3.0)
        status = net.statuses()[0]  # the admin API still answers: the node keeps serving
        assert status["state"] == "running" and not status.get("learner")
        assert status["learner_state"] == "failed"  # what a script polling for "running" sees
        assert net.nodes[0].alive()
    finally:
        net.stop()
    lines = [
        line
        for line in net.nodes[0].log_path.read_text().splitlines()
        if "training not started" in line
    ]
    assert len(lines) == 1 and "crashy_app.py:1" in lines[0]
    assert "definitely_not_installed_pkg" in lines[0]
    assert "Traceback" not in net.nodes[0].log_path.read_text()


def test_start_refuses_a_model_folder_with_other_weights(
    cli: Cli, tmp_path: Path, tiny: dict[str, Path]
) -> None:
    import shutil

    from node.training.hf.tiny import write_tiny_model

    path = tmp_path / "net.toml"
    args = ["--task", "causal-lm", "--model", str(tiny["gpt2"]), "--data", str(tiny["data"])]
    assert cli("genesis", "new", str(path), "--difficulty", "2", *args).returncode == 0
    other = tmp_path / "gpt2-other"
    shutil.copytree(tiny["gpt2"], other)
    write_tiny_model(other, "gpt2", seed=5)  # same files, other weights
    text = path.read_text().replace(str(tiny["gpt2"]), str(other))
    path.write_text(text)
    out = cli("start", "-d", str(tmp_path / "node"), "--genesis", str(path))
    assert out.returncode == 1
    assert "other weights than the network" in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_testnet_up_takes_the_columns_of_a_users_file(
    cli: Cli, tmp_path: Path, tiny: dict[str, Path]
) -> None:
    """``testnet up --text-column/--label-column/--labels`` on a file without text/label."""
    import pandas as pd

    frame = pd.read_csv(tiny["data"]).rename(columns={"text": "review", "label": "stars"})
    data = tmp_path / "reviews.csv"
    frame.to_csv(data, index=False)
    base = [
        "testnet", "up", "--nodes", "2", "--rounds", "1", "--task", "text-classification",
        "--model", str(tiny["bert"]), "--data", str(data), "--max-length", "12",
        "--local-steps", "2", "--plot", str(tmp_path / "acc.png"), "--timeout", "240",
    ]  # fmt: skip
    # A column the file lacks fails before any node starts, naming the file's columns.
    bad = cli(*base, "--workdir", str(tmp_path / "bad"), "--text-column", "review")
    assert bad.returncode != 0
    assert "no column 'label'" in bad.stderr and "review, stars" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()
    out = cli(
        *base, "--workdir", str(tmp_path / "net"), "--text-column", "review",
        "--label-column", "stars", "--labels", "pos,neg", "--format", "json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [r["round"] for r in summary["per_node"]] == [1, 1]
    gen = load_genesis(tmp_path / "net" / "genesis.toml")
    assert (gen.task.text_column, gen.task.label_column) == ("review", "stars")
    assert gen.task.labels == ("pos", "neg")
