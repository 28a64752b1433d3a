"""Hugging Face folder tasks on tiny random models built offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from node.training.datasets import DatasetError, load_task, node_data
from node.training.hf.folder import HFFolderError, check_model_folder, folder_sha256
from node.training.hf.model import HFLoraModel
from node.training.models import build_model
from node.training.params import flatten, layout_of, load_vector
from node.training.spec import LearnerSpec, TaskSpec
from node.training.tasks import build_local_task, spsa_learner
from node.training.trainer import make_trainer


def _spec(tiny: dict[str, Any], kind: str = "text-classification", **kw: Any) -> TaskSpec:
    folder = tiny["bert"] if kind == "text-classification" else tiny["gpt2"]
    base: dict[str, Any] = {
        "name": kind,
        "model_path": str(folder),
        "model_sha256": folder_sha256(folder),
        "data_path": str(tiny["jsonl"]),
        "max_length": 12,
        "num_nodes": 3,
        "batch_size": 16,
    }
    return TaskSpec(**{**base, **kw})


def test_spec_requires_folder_data_and_hash(tiny_hf: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="model_path"):
        TaskSpec(name="text-classification", data_path="x.csv")
    with pytest.raises(ValueError, match="model_sha256"):
        TaskSpec(name="causal-lm", model_path=str(tiny_hf["gpt2"]), data_path="x.jsonl")
    with pytest.raises(ValueError, match="only available for Hugging Face"):
        TaskSpec(name="digits", model="lora")
    assert _spec(tiny_hf).model == "lora"


def test_incomplete_folder_is_one_error_naming_what_is_missing(
    tiny_hf: dict[str, Any], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_hf["bert"], broken)
    (broken / "model.safetensors").unlink()
    (broken / "vocab.txt").unlink()
    (broken / "tokenizer.json").unlink()
    with pytest.raises(HFFolderError) as info:
        check_model_folder(broken)
    msg = str(info.value)
    assert "\n" not in msg and "weights" in msg and "tokenizer" in msg
    assert "config.json" not in msg
    with pytest.raises(HFFolderError, match="does not exist"):
        check_model_folder(tmp_path / "nowhere")


def test_different_weights_are_refused(tiny_hf: dict[str, Any], tmp_path: Path) -> None:
    from node.training.hf.tiny import write_tiny_model

    other = write_tiny_model(tmp_path / "other", "bert", seed=1)
    assert folder_sha256(other) != folder_sha256(tiny_hf["bert"])
    spec = _spec(tiny_hf, model_path=str(other))  # the genesis hash is the first folder's
    with pytest.raises(HFFolderError, match="other weights than the network"):
        HFLoraModel(spec, 0, 2)
    # README-like files do not change the hash
    (other / "README.md").write_text("notes")
    assert folder_sha256(other) == spec_hash(other)


def spec_hash(folder: Path) -> str:
    return folder_sha256(folder)


def test_jsonl_csv_parquet_give_the_same_tokens_and_the_cache_is_used(
    tiny_hf: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = [
        load_task(_spec(tiny_hf, data_path=str(tiny_hf[k])), 0, cache=tmp_path)
        for k in ("jsonl", "csv", "parquet")
    ]
    for other in loaded[1:]:
        assert np.array_equal(loaded[0].x, other.x) and np.array_equal(loaded[0].y, other.y)
    data = loaded[0]
    assert data.class_names == ("neg", "pos") and data.num_classes == 2
    assert data.x.shape[1:] == (2, 12) and len(data.y) + len(data.y_test) == 240
    # Tokenised once: a second load reads the cache and never calls the tokenizer.
    import node.training.hf.data as hf_data

    def no_tokenizer(spec: TaskSpec) -> None:
        raise AssertionError("tokenised again")

    monkeypatch.setattr(hf_data, "load_tokenizer", no_tokenizer)
    again = load_task(_spec(tiny_hf), 0, cache=tmp_path)
    assert np.array_equal(again.x, data.x)
    assert list(tmp_path.glob("hf-*.npz"))


def test_labels_select_and_order_classes_and_bad_columns_are_named(
    tiny_hf: dict[str, Any], tmp_path: Path
) -> None:
    data = load_task(_spec(tiny_hf, labels=("pos", "neg")), 0, cache=tmp_path)
    plain = load_task(_spec(tiny_hf), 0, cache=tmp_path)
    assert data.class_names == ("pos", "neg")
    assert np.array_equal(data.y, 1 - plain.y)
    with pytest.raises(DatasetError, match=r"no column 'stars' \(columns: text, label\)"):
        load_task(_spec(tiny_hf, label_column="stars"), 0, cache=tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_task(_spec(tiny_hf, data_path=str(tmp_path / "none.csv")), 0, cache=tmp_path)


def test_dirichlet_partition_over_text_labels(tiny_hf: dict[str, Any], tmp_path: Path) -> None:
    spec = _spec(tiny_hf, partition="dirichlet", alpha=0.3)
    data = load_task(spec, 0, cache=tmp_path)
    shards = [node_data(spec, 0, i, task=data) for i in range(3)]
    idx = np.concatenate([s.indices for s in shards])
    assert len(idx) == len(set(idx.tolist())) == len(data.y)
    causal = _spec(tiny_hf, "causal-lm", partition="dirichlet")
    cdata = load_task(causal, 0, cache=tmp_path)
    assert cdata.y.shape[1] == 11 and (cdata.y == -100).any()
    sizes = [node_data(causal, 0, i, task=cdata).num_examples for i in range(3)]
    assert sum(sizes) == len(cdata.y) and min(sizes) > 0


@pytest.mark.parametrize("kind", ["text-classification", "causal-lm"])
def test_only_lora_b_and_new_head_train_and_nodes_agree(
    tiny_hf: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    spec = _spec(tiny_hf, kind)
    data = load_task(spec, 0, cache=tmp_path)
    model = build_model(spec, 4, input_dim=0, num_classes=data.num_classes)
    names = layout_of(model).names
    assert all("lora_B" in n or "modules_to_save" in n for n in names)
    assert any("modules_to_save" in n for n in names) == (kind == "text-classification")
    twin = build_model(spec, 4, input_dim=0, num_classes=data.num_classes)
    assert torch.equal(flatten(model), flatten(twin))
    a = {n: p for n, p in model.named_parameters() if "lora_A" in n}
    b = dict(twin.named_parameters())
    assert a and all(torch.equal(p, b[n]) and not p.requires_grad for n, p in a.items())


@pytest.mark.parametrize("kind", ["text-classification", "causal-lm"])
def test_sgd_lowers_the_loss(tiny_hf: dict[str, Any], tmp_path: Path, kind: str) -> None:
    spec = _spec(tiny_hf, kind, num_nodes=1)
    data = load_task(spec, 0, cache=tmp_path)
    trainer = make_trainer(
        spec,
        LearnerSpec(kind="sgd", lr=1e-2, local_steps=40),
        seed=0,
        node_index=0,
        node_id="n0",
        task_data=data,
    )
    before = trainer.evaluate()
    losses = [trainer.train(r).loss for r in range(3)]
    after = trainer.evaluate()
    # The training loss falls; a tiny random encoder generalises poorly, so only the
    # causal LM (whose test texts share the training texts' word statistics) is held to
    # a lower test loss.
    assert losses[-1] < losses[0] - 0.05, losses
    assert np.isfinite(after.loss) and np.isfinite(after.accuracy)
    if kind == "causal-lm":
        assert after.loss < before.loss - 0.1


def test_spsa_round_on_an_hf_model(tiny_hf: dict[str, Any], tmp_path: Path) -> None:
    spec = _spec(tiny_hf, num_nodes=1)
    task = build_local_task(spec, 0, 0, cache=tmp_path)
    learner = spsa_learner(
        task, LearnerSpec(kind="spsa", lr=1e-2, spsa_steps=3), batch_size=8, seed=0, node="n"
    )
    w0 = flatten(task.model)
    batch = learner.train_round(task.model, task.data, 0)
    assert len(batch.seed_ids) == 3 and np.isfinite(batch.loss)
    assert torch.equal(flatten(task.model), w0)  # the model is restored after the round


@pytest.mark.parametrize("kind", ["text-classification", "causal-lm"])
@pytest.mark.parametrize("merged", [False, True])
def test_export_loads_with_peft_alone_and_gives_the_nodes_logits(
    tiny_hf: dict[str, Any], tmp_path: Path, kind: str, merged: bool
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from node.training.hf.export import export_hf_model

    spec = _spec(tiny_hf, kind)
    data = load_task(spec, 2, cache=tmp_path)
    model = build_model(spec, 2, input_dim=0, num_classes=data.num_classes)
    layout = layout_of(model)
    gen = torch.Generator().manual_seed(0)
    load_vector(model, torch.randn(layout.numel, generator=gen) * 0.1)  # a trained state
    tensors = layout.split(flatten(model))
    out = export_hf_model(
        spec, 2, tensors, tmp_path / "out", class_names=data.class_names, merged=merged
    )
    x = torch.from_numpy(data.x_test[:6])
    ids, mask = x[:, 0], x[:, 1]
    folder = spec.model_path
    if merged:
        assert not (out / "adapter_config.json").exists()
        cls = AutoModelForSequenceClassification if kind != "causal-lm" else AutoModelForCausalLM
        loaded = cls.from_pretrained(out, local_files_only=True)
    else:
        assert (out / "adapter_config.json").is_file()
        assert (out / "adapter_model.safetensors").is_file()
        assert not list(out.glob("*.bin"))
        if kind == "causal-lm":
            base = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        else:
            base = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=2, local_files_only=True
            )
        loaded = PeftModel.from_pretrained(base, out)
    loaded.eval()
    model.eval()
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask).logits
        ours = model.peft(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(theirs, ours, atol=1e-5), float((theirs - ours).abs().max())
    if kind == "text-classification" and merged:
        assert loaded.config.id2label == {0: "neg", 1: "pos"}


@pytest.mark.parametrize("rank", [4, 0])
@pytest.mark.parametrize("merged", [False, True])
def test_mean_pooling_export_loads_with_peft_and_the_head_file(
    tiny_hf: dict[str, Any], tmp_path: Path, rank: int, merged: bool
) -> None:
    # pooling "mean": the encoder (AutoModel) + LoRA, a new linear head over the
    # mask-averaged token states. A user rebuilds the node's logits from the export with
    # transformers, peft and safetensors alone.
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel

    from node.training.hf.export import export_hf_model

    spec = _spec(tiny_hf, pooling="mean", lora_rank=rank)
    data = load_task(spec, 2, cache=tmp_path)
    model = build_model(spec, 2, input_dim=0, num_classes=data.num_classes)
    layout = layout_of(model)
    assert list(layout.names[-2:]) == ["head.weight", "head.bias"]
    assert all(n.startswith("head.") or "lora_B" in n for n in layout.names)
    assert any("lora_B" in n for n in layout.names) == (rank > 0)
    gen = torch.Generator().manual_seed(0)
    load_vector(model, torch.randn(layout.numel, generator=gen) * 0.1)
    out = export_hf_model(
        spec,
        2,
        layout.split(flatten(model)),
        tmp_path / "out",
        class_names=data.class_names,
        merged=merged,
    )
    assert (out / "adapter_config.json").is_file() == (rank > 0 and not merged)
    if merged:
        loaded = AutoModel.from_pretrained(out, local_files_only=True)
    else:
        loaded = AutoModel.from_pretrained(spec.model_path, local_files_only=True)
        if rank > 0:
            loaded = PeftModel.from_pretrained(loaded, out)
    head = load_file(str(out / "head.safetensors"))
    x = torch.from_numpy(data.x_test[:6])
    ids, mask = x[:, 0], x[:, 1]
    loaded.eval()
    model.eval()
    with torch.no_grad():
        states = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        theirs = ((states * m).sum(1) / m.sum(1)) @ head["weight"].T + head["bias"]
        ours = model(x)
    assert torch.allclose(theirs, ours, atol=1e-5), float((theirs - ours).abs().max())
    meta = json.loads((out / "fednode_export.json").read_text())
    assert meta["pooling"] == "mean" and meta["head"] == "head.safetensors"


def test_rank_zero_trains_only_the_head_and_needs_a_classifier(
    tiny_hf: dict[str, Any], tmp_path: Path
) -> None:
    from node.training.hf.export import export_hf_model

    spec = _spec(tiny_hf, lora_rank=0)
    data = load_task(spec, 0, cache=tmp_path)
    model = build_model(spec, 0, input_dim=0, num_classes=data.num_classes)
    names = layout_of(model).names
    assert names and all("classifier" in n for n in names), names
    frozen = [p for n, p in model.named_parameters() if "classifier" not in n]
    assert frozen and not any(p.requires_grad for p in frozen)
    with pytest.raises(HFFolderError, match="export it merged"):
        export_hf_model(spec, 0, layout_of(model).split(flatten(model)), tmp_path / "o")
    with pytest.raises(ValueError, match="lora_rank 0"):
        _spec(tiny_hf, "causal-lm", lora_rank=0)
    with pytest.raises(ValueError, match="pooling 'mean'"):
        _spec(tiny_hf, "causal-lm", pooling="mean")


def test_genesis_picks_mean_pooling_for_a_sentence_transformers_folder(
    tiny_hf: dict[str, Any], tmp_path: Path
) -> None:
    from node.training.genesis import task_and_learner

    folder = tmp_path / "st"
    shutil.copytree(tiny_hf["bert"], folder)
    args: dict[str, Any] = {"model": str(folder), "data": str(tiny_hf["jsonl"])}
    assert "pooling" not in task_and_learner("text-classification", "sgd", **args)[0]
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False})
    )
    (folder / "modules.json").write_text(
        json.dumps([{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    )
    assert task_and_learner("text-classification", "sgd", **args)[0]["pooling"] == "mean"
    explicit = task_and_learner(
        "text-classification", "sgd", task_options={"pooling": "model"}, **args
    )[0]
    assert explicit["pooling"] == "model"


def test_dp_sgd_step_on_an_hf_model_clips_per_example_lora_gradients(
    tiny_hf: dict[str, Any], tmp_path: Path
) -> None:
    # Opacus records activations only of modules in training mode; the LoRA model kept
    # every peft module in eval mode (no dropout), so DP-SGD failed at its first backward
    # ("No activations detected for Linear"). One step, z = 0, q = 1, plain SGD lr 1:
    # the update is minus the mean of per-example gradients each clipped to C.
    import dataclasses

    from node.training.learners.sgd import SGDLearner

    spec = _spec(tiny_hf, num_nodes=1)
    data = load_task(spec, 0, cache=tmp_path)
    shard = node_data(spec, 0, 0, task=data)
    shard = dataclasses.replace(shard, x=shard.x[:12], y=shard.y[:12])
    model = build_model(spec, 0, input_dim=0, num_classes=data.num_classes)
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    model.train()
    for i in range(12):
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(shard.x[i : i + 1]), shard.y[i : i + 1])
        loss.backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in params]))  # type: ignore[union-attr]
    model.zero_grad(set_to_none=True)
    grads = torch.stack(rows)
    clip = 0.5 * float(grads.norm(dim=1).median())
    clipped = grads * (clip / (grads.norm(dim=1) + 1e-6)).clamp(max=1.0).unsqueeze(1)
    learner = SGDLearner(
        LearnerSpec(
            kind="sgd",
            optimizer="sgd",
            lr=1.0,
            local_steps=1,
            dp_sgd=True,
            dp_sgd_noise_multiplier=0.0,
            dp_sgd_max_grad_norm=clip,
        ),
        batch_size=12,
        seed=0,
        node="n",
    )
    res = learner.train_round(model, shard, 0)
    assert torch.allclose(res.update, -clipped.mean(dim=0), atol=1e-5)
    assert float((res.update + grads.mean(dim=0)).norm()) > 0.05 * float(res.update.norm())
    # Training mode still means no dropout: the frozen encoder gives the same logits.
    model.train()
    train_logits = model(shard.x)
    model.eval()
    assert torch.equal(train_logits, model(shard.x))
