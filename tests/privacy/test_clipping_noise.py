"""Clipping bounds and the Gaussian mechanism's noise distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privacy.clipping import (
    clip_scalars,
    clip_tensors,
    clip_update,
    clip_vector,
    l2_norm,
)
from privacy.noise import (
    add_gaussian_noise,
    fresh_generator,
    noise_std,
    privatize_scalars,
    privatize_update,
    secure_normal,
    secure_uniform,
)


def seeded(seed: int = 0) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def test_clip_vector_scales_long_vector_to_bound() -> None:
    x = torch.tensor([3.0, 4.0])
    clipped, norm = clip_vector(x, 1.0)
    assert norm == pytest.approx(5.0)
    assert torch.allclose(clipped, torch.tensor([0.6, 0.8]))
    assert l2_norm(clipped) == pytest.approx(1.0, rel=1e-6)


def test_clip_vector_leaves_short_vector_unchanged_and_returns_new_tensor() -> None:
    x = torch.tensor([0.3, -0.4])
    clipped, norm = clip_vector(x, 1.0)
    assert norm == pytest.approx(0.5)
    assert torch.equal(clipped, x)
    clipped[0] = 10.0
    assert x[0].item() == pytest.approx(0.3)


def test_clip_large_float32_vector_stays_within_bound() -> None:
    x = torch.randn(1_000_000, generator=seeded(1)) * 3.0
    clipped, norm = clip_vector(x, 2.5)
    assert norm > 2.5
    assert l2_norm(clipped) <= 2.5 * (1 + 1e-6)
    # The direction is kept.
    cos = torch.nn.functional.cosine_similarity(clipped.double(), x.double(), dim=0)
    assert cos.item() == pytest.approx(1.0, abs=1e-9)


def test_clip_tensors_is_joint_over_all_tensors() -> None:
    tensors = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[0.0], [4.0]])}
    clipped, norm = clip_tensors(tensors, 1.0)
    assert norm == pytest.approx(5.0)
    assert set(clipped) == {"a", "b"}
    assert clipped["b"].shape == (2, 1)
    assert torch.allclose(clipped["a"], torch.tensor([0.6, 0.0]))
    assert torch.allclose(clipped["b"], torch.tensor([[0.0], [0.8]]))
    assert l2_norm(clipped) == pytest.approx(1.0, rel=1e-6)


def test_clip_update_dispatches_on_type() -> None:
    assert isinstance(clip_update(torch.ones(4), 1.0).update, torch.Tensor)
    assert isinstance(clip_update({"w": torch.ones(4)}, 1.0).update, dict)
    assert clip_update({}, 1.0).norm == 0.0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_clip_rejects_bad_bound(bad: float) -> None:
    with pytest.raises(ValueError, match="max_norm"):
        clip_vector(torch.ones(3), bad)
    with pytest.raises(ValueError, match="bound"):
        clip_scalars(torch.ones(3), bad)


def test_clip_rejects_non_finite_and_integer_updates() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        clip_vector(torch.tensor([1.0, math.nan]), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        clip_tensors({"w": torch.tensor([math.inf])}, 1.0)
    with pytest.raises(TypeError, match="floating"):
        clip_vector(torch.tensor([1, 2]), 1.0)


def test_clip_scalars_per_scalar() -> None:
    out = clip_scalars([-5.0, -0.5, 0.0, 0.7, 9.0, math.inf], 1.0)
    assert out.tolist() == [-1.0, -0.5, 0.0, 0.7, 1.0, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        clip_scalars([0.0, math.nan], 1.0)


def test_noise_std_validation() -> None:
    assert noise_std(2.0, 1.5) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="noise_multiplier"):
        noise_std(1.0, -0.1)
    with pytest.raises(ValueError, match="clip_norm"):
        noise_std(0.0, 1.0)


def test_privatize_update_noise_has_std_z_times_c() -> None:
    d = 200_000
    update = torch.zeros(d)
    update[0] = 100.0  # clipped to norm C; one coordinate cannot move the statistics
    out = privatize_update(update, clip_norm=0.5, noise_multiplier=2.0, generator=seeded(3))
    assert out.norm == pytest.approx(100.0)
    assert out.std == pytest.approx(1.0)
    noise = out.update.double()
    noise[0] -= 0.5
    # Sample std of 2e5 Gaussians: relative error ~ 1/sqrt(2 d) = 0.16%; tolerance 2%.
    assert noise.std().item() == pytest.approx(1.0, rel=0.02)
    assert abs(noise.mean().item()) < 0.02
    assert out.update.dtype == torch.float32


def test_privatize_update_mean_is_clipped_update() -> None:
    update = torch.tensor([30.0, 40.0])
    reps = torch.stack(
        [
            privatize_update(
                update, clip_norm=1.0, noise_multiplier=0.5, generator=seeded(s)
            ).update
            for s in range(4000)
        ]
    )
    mean = reps.mean(dim=0)
    # Standard error 0.5/sqrt(4000) ~ 0.008.
    assert torch.allclose(mean, torch.tensor([0.6, 0.8]), atol=0.04)
    assert reps.std(dim=0).tolist() == pytest.approx([0.5, 0.5], rel=0.06)


def test_privatize_tensors_is_deterministic_with_seed_and_key_order_free() -> None:
    a = {"x": torch.ones(10), "y": torch.ones(3, 3)}
    b = {"y": torch.ones(3, 3), "x": torch.ones(10)}
    out_a = privatize_update(a, clip_norm=1.0, noise_multiplier=1.0, generator=seeded(7))
    out_b = privatize_update(b, clip_norm=1.0, noise_multiplier=1.0, generator=seeded(7))
    assert list(out_a.update) == ["x", "y"]
    assert list(out_b.update) == ["y", "x"]
    for key in a:
        assert torch.equal(out_a.update[key], out_b.update[key])
    assert out_a.norm == pytest.approx(math.sqrt(19))


def test_default_generator_is_fresh_each_call() -> None:
    x = torch.zeros(16)
    first = privatize_update(x, clip_norm=1.0, noise_multiplier=1.0).update
    second = privatize_update(x, clip_norm=1.0, noise_multiplier=1.0).update
    assert not torch.equal(first, second)
    g1, g2 = fresh_generator(), fresh_generator()
    assert g1.initial_seed() != g2.initial_seed()


def test_zero_noise_multiplier_only_clips() -> None:
    out = privatize_update(torch.tensor([3.0, 4.0]), clip_norm=1.0, noise_multiplier=0.0)
    assert torch.allclose(out.update, torch.tensor([0.6, 0.8]))
    assert out.std == 0.0


def test_privatize_scalars_clip_then_noise() -> None:
    scalars = torch.full((100_000,), 50.0, dtype=torch.float64)
    out = privatize_scalars(scalars, clip_bound=2.0, noise_multiplier=0.5, generator=seeded(5))
    assert out.shape == scalars.shape
    assert out.mean().item() == pytest.approx(2.0, abs=0.02)
    assert out.std().item() == pytest.approx(1.0, rel=0.02)
    listed = privatize_scalars([0.1, -7.0], clip_bound=1.0, noise_multiplier=0.0)
    assert listed.tolist() == [0.1, -1.0]


def test_add_gaussian_noise_keeps_low_precision_dtype() -> None:
    x = torch.zeros(1000, dtype=torch.bfloat16)
    out = add_gaussian_noise(x, 1.0, generator=seeded(0))
    assert out.dtype == torch.bfloat16
    assert 0.8 < out.float().std().item() < 1.2
    with pytest.raises(ValueError, match="std"):
        add_gaussian_noise(x, -1.0)


def test_secure_normal_is_standard_normal_at_the_given_std() -> None:
    from scipy import stats

    x = secure_normal((400, 500), std=3.0)
    assert x.shape == (400, 500) and x.dtype == torch.float64
    flat = x.reshape(-1).numpy()
    # 2e5 samples: std within 1 % (se 0.16 %), mean within 5 se, and Gaussian by KS.
    assert flat.std() == pytest.approx(3.0, rel=0.01)
    assert abs(flat.mean()) < 5 * 3.0 / math.sqrt(flat.size)
    assert stats.kstest(flat / 3.0, "norm").pvalue > 1e-4
    assert torch.equal(secure_normal((3,), 0.0), torch.zeros(3, dtype=torch.float64))
    odd = secure_normal((7,))
    assert odd.shape == (7,) and bool(torch.isfinite(odd).all())
    with pytest.raises(ValueError, match="std"):
        secure_normal((2,), -1.0)
    with pytest.raises(ValueError, match="std"):
        secure_normal((2,), math.inf)


def test_secure_uniform_is_open_interval_uniform() -> None:
    from scipy import stats

    u = secure_uniform(100_000).numpy()
    assert u.min() > 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    assert len(np.unique(u)) == u.size  # 53 random bits: no collisions at this size
    assert secure_uniform(0).numel() == 0
    with pytest.raises(ValueError):
        secure_uniform(-1)


def test_default_noise_comes_from_the_os_csprng_not_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import privacy.noise as noise_module

    calls: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(noise_module.os, "urandom", counting)
    torch.manual_seed(1234)
    expected_next = torch.rand(4)
    torch.manual_seed(1234)
    out = privatize_update(torch.zeros(1000), clip_norm=1.0, noise_multiplier=1.0).update
    scalars = privatize_scalars([0.5, -0.5], clip_bound=1.0, noise_multiplier=2.0)
    # torch's global generator was not consumed: the noise is not torch's Mersenne Twister.
    assert torch.equal(torch.rand(4), expected_next)
    # 4 Box-Muller draws of 500 pairs, two 53-bit uniforms each (8 bytes per uniform).
    assert sum(calls) >= 4 * 2 * 500 * 8
    assert 0.9 < float(out.std()) < 1.1 and scalars.shape == (2,)
