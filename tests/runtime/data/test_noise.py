"""Region noise: the DDPM closed form, regions only, determinism."""

import math

import numpy as np
import pytest
from mfpo_runtime.data import noise
from PIL import Image


def test_linear_schedule_by_hand():
    # T = 2, betas 0.1 and 0.3: abar = [0.9, 0.9 * 0.7].
    np.testing.assert_allclose(
        noise.alphas_cumprod("linear", 2, beta_start=0.1, beta_end=0.3), [0.9, 0.63]
    )


def test_ddpm_step_500_matches_product_of_betas():
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    expected = math.prod(1 - b for b in betas[:501])
    assert noise.alpha_bar(500) == pytest.approx(expected, rel=1e-9)
    assert 0.07 < expected < 0.09  # the well-known DDPM value at t=500 (sqrt(abar) ~ 0.28)


def test_cosine_schedule_closed_form():
    s, steps, t = 0.008, 1000, 500
    f = lambda u: math.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2
    assert noise.alpha_bar(t, "cosine", steps) == pytest.approx(f(t + 1) / f(0), rel=1e-9)


def test_step_outside_schedule_is_rejected():
    with pytest.raises(ValueError, match="outside the schedule"):
        noise.alpha_bar(1000, "linear", 1000)


def test_region_noise_is_the_closed_form_inside_and_untouched_outside():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    out = np.asarray(noise.region_noise(image, [[2, 3, 7, 9]], step=500, seed=7)).astype(int)

    abar = noise.alpha_bar(500)
    eps = noise.gaussian_noise((12, 10, 3), 7)
    x0 = pixels / 127.5 - 1
    expected = np.rint(
        (np.clip(math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps, -1, 1) + 1) * 127.5
    )
    inside = np.zeros((12, 10), bool)
    inside[3:9, 2:7] = True
    np.testing.assert_array_equal(out[inside], expected[inside])
    np.testing.assert_array_equal(out[~inside], pixels[~inside])


def test_step_zero_barely_changes_and_mask_array_is_accepted():
    image = Image.new("RGB", (8, 8), (100, 150, 200))
    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    out = np.asarray(noise.region_noise(image, mask, step=0, seed=0)).astype(int)
    # abar_0 = 1 - 1e-4: noise std 0.01 in [-1, 1] units, about 1.3 grey levels.
    assert np.abs(out - np.array([100, 150, 200])).max() <= 8


def test_deterministic_for_a_seed_and_seed_matters():
    image = Image.new("RGB", (16, 16), (128, 128, 128))
    a = np.asarray(noise.region_noise(image, None, seed=3))
    b = np.asarray(noise.region_noise(image, None, seed=3))
    c = np.asarray(noise.region_noise(image, None, seed=4))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_noise_statistics_match_the_schedule():
    # A mid-grey image is 0 in [-1, 1]: the noised pixels are N(0, 1 - abar) before clipping.
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    out = np.asarray(noise.region_noise(image, None, step=100, seed=0)) / 127.5 - 1
    assert out.std() == pytest.approx(math.sqrt(1 - noise.alpha_bar(100)), rel=0.03)


def test_seed_for_is_stable_per_record():
    assert noise.seed_for(0, "abc") == noise.seed_for(0, "abc")
    assert noise.seed_for(0, "abc") != noise.seed_for(1, "abc")


def test_mask_shape_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        noise.region_mask((5, 5), np.zeros((4, 4), bool))
