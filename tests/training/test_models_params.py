from __future__ import annotations

import pytest
import torch
from safetensors.torch import save as st_save

from node.training.models import build_model
from node.training.params import (
    ParamError,
    decode_state,
    decode_vector,
    encode_state,
    encode_vector,
    flatten,
    layout_of,
    load_vector,
    model_hash,
    vector_hash,
)
from node.training.spec import TaskSpec


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_same_seed_same_init_on_every_node(model: str) -> None:
    spec = TaskSpec(name="mnist1d", model=model)
    before = torch.get_rng_state()
    a = build_model(spec, 11, input_dim=40, num_classes=10)
    b = build_model(spec, 11, input_dim=40, num_classes=10)
    c = build_model(spec, 12, input_dim=40, num_classes=10)
    assert torch.equal(torch.get_rng_state(), before)  # caller's RNG untouched
    assert torch.equal(flatten(a), flatten(b))
    assert model_hash(a) == model_hash(b) != model_hash(c)


def test_anchor_shapes() -> None:
    mlp = build_model(TaskSpec(name="mnist1d", model="mlp"), 0, input_dim=40, num_classes=10)
    cnn = build_model(TaskSpec(name="mnist1d", model="cnn"), 0, input_dim=40, num_classes=10)
    assert layout_of(mlp).numel == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert layout_of(cnn).shapes[-2] == (10, 125)
    assert cnn(torch.zeros(3, 40)).shape == (3, 10)


def _mlp() -> torch.nn.Module:
    return build_model(TaskSpec(name="digits"), 0, input_dim=64, num_classes=10)


def test_flatten_load_roundtrip_and_rejects() -> None:
    m = _mlp()
    layout = layout_of(m)
    v = torch.randn(layout.numel)
    load_vector(m, v)
    assert torch.equal(flatten(m), v)
    parts = layout.split(v)
    assert list(parts) == list(layout.names)
    with pytest.raises(ParamError, match="expected float32"):
        load_vector(m, torch.zeros(layout.numel + 1))
    with pytest.raises(ParamError, match="expected float32"):
        load_vector(m, torch.zeros(layout.numel, dtype=torch.float64))
    bad = v.clone()
    bad[5] = float("nan")
    with pytest.raises(ParamError, match="NaN"):
        load_vector(m, bad)
    assert torch.equal(flatten(m), v)  # untouched by rejected loads


def test_safetensors_roundtrip_and_rejection() -> None:
    m = _mlp()
    layout = layout_of(m)
    v = flatten(m)
    data = encode_vector(v, layout)
    assert torch.equal(decode_vector(data, layout), v)
    state = decode_state(data, layout)
    assert [tuple(t.shape) for t in state.values()] == list(layout.shapes)

    tensors = layout.split(v)
    first = layout.names[0]
    wrong_shape = {**tensors, first: torch.zeros(3, 3)}
    with pytest.raises(ParamError, match="shape"):
        decode_state(encode_state(wrong_shape), layout)
    wrong_dtype = st_save(
        {k: t.contiguous() for k, t in tensors.items()}
        | {first: tensors[first].double().contiguous()}
    )
    with pytest.raises(ParamError, match="dtype"):
        decode_state(wrong_dtype, layout)
    nan = {**tensors, first: torch.full(layout.shapes[0], float("nan"))}
    with pytest.raises(ParamError, match="NaN"):
        decode_state(encode_state(nan), layout)
    missing = {k: t for k, t in tensors.items() if k != first}
    with pytest.raises(ParamError, match="missing"):
        decode_state(encode_state(missing), layout)
    with pytest.raises(ParamError, match="safetensors"):
        decode_state(b"\x00" * 64, layout)
    with pytest.raises(ParamError, match="exceeds"):
        decode_state(data, layout, max_bytes=100)


def test_vector_hash_binds_values_and_layout() -> None:
    m = _mlp()
    layout = layout_of(m)
    v = flatten(m)
    h = vector_hash(v, layout)
    assert h == model_hash(m)
    w = v.clone()
    w[0] = torch.nextafter(w[0], torch.tensor(10.0))
    assert vector_hash(w, layout) != h
