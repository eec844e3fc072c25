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


# ---------------------------------------------------------------- issue 14: the fast path


def _record_image() -> Image.Image:
    """A fixed 336 px record image: gradients plus texture."""
    rng = np.random.default_rng(2024)
    y, x = np.mgrid[0:336, 0:336]
    base = np.stack([x * 255 // 335, y * 255 // 335, (x + y) * 255 // 670], -1)
    pixels = np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _sparse_mask() -> np.ndarray:
    mask = np.zeros((336, 336), bool)
    mask[::7, 3::5] = True
    mask[200:, :40] = True
    return mask


REGIONS = {
    "boxes": [[50, 60, 200, 180], [150, 100, 300, 330]],  # overlapping
    "whole": None,
    "mask": _sparse_mask(),
    "cosine": [[0, 0, 336, 20]],  # step 900 of the cosine schedule
}


def _noised(region: str) -> Image.Image:
    extra = {"schedule": "cosine", "step": 900} if region == "cosine" else {}
    seed = noise.seed_for(7, "rlaif-v-000042")
    return noise.region_noise(_record_image(), REGIONS[region], seed=seed, **extra)


# sha256 of the noised pixels computed by the code before issue 14 (numpy's ziggurat eps,
# gathered over the region's pixels): with that eps, the fast path gives the same bytes.
PREVIOUS_CODE = {
    "boxes": "106c7bb19168ab24f04180b8c15edd57ace8d3e2f556fbd8002798cf83ed5231",
    "whole": "f4d221cdde6d39b68c7749aaa2e179aefc4cc77bd5200e4563fb83e5762e4f3d",
    "mask": "937c3bce88292e8fdb9e34deacd3e4628e608953b0d0a67beb3b8facca02b6fe",
    "cosine": "1513f27b5f41b12cf7a05f6d1aff934ca40ef25d4baf410767a13d9fd17f3f8c",
}
# ... and with the quantile-table eps of issue 14 (the bytes datagen writes from now on).
CURRENT = {
    "boxes": "d24a7db2babcbd717661460339b19755ffd7a3f095a7a23a84f972ec59036b09",
    "whole": "f4d23bcc52eee968440a395c4e92b147c582df7c2ff5cdff3f0fd16ec44214a9",
    "mask": "4cb2eb4ef4030158eda60cfa444d86cc233fded53b1a8966c574e8390920c869",
    "cosine": "0cda82bdece16948adf6141907801304e596da2aaaeded740e794c2697a96b49",
}


def _sha256(image: Image.Image) -> str:
    import hashlib

    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_fast_path_gives_the_previous_code_bytes_for_the_previous_eps(region, monkeypatch):
    def ziggurat(shape, seed):
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)

    monkeypatch.setattr(noise, "gaussian_noise", ziggurat)
    assert _sha256(_noised(region)) == PREVIOUS_CODE[region]


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_noise_of_a_fixed_record_is_pinned(region):
    first = _noised(region)
    assert _sha256(first) == CURRENT[region]
    assert _sha256(_noised(region)) == CURRENT[region]  # deterministic within the process too


def test_eps_are_normal_quantiles_drawn_uniformly():
    eps = noise.gaussian_noise((1_000_000,), 3)
    table = noise._normal_quantiles()
    assert np.isin(eps, table).all()  # every value is one of the 2**16 bin medians
    assert np.abs(eps).max() <= 4.33  # the outermost bins' medians (1 / 2**17 in the tail)
    # Kolmogorov-Smirnov distance to N(0, 1) on a grid: at n = 1e6 the critical value for
    # alpha = 1e-6 is sqrt(ln(2 / alpha) / 2) / sqrt(n) = 2.7e-3.
    grid = np.linspace(-4, 4, 161)
    empirical = np.searchsorted(np.sort(eps), grid, side="right") / eps.size
    from statistics import NormalDist

    normal = np.array([NormalDist().cdf(x) for x in grid])
    assert np.abs(empirical - normal).max() < 2.7e-3


def test_a_draw_of_fewer_rows_is_the_prefix_of_the_whole_draw():
    whole = noise.gaussian_noise((336, 336, 3), 11)
    np.testing.assert_array_equal(noise.gaussian_noise((40, 336, 3), 11), whole[:40])


def test_noise_at_a_pixel_does_not_depend_on_the_region():
    image = _record_image()
    small = np.asarray(noise.region_noise(image, [[100, 100, 110, 110]], seed=5))
    large = np.asarray(noise.region_noise(image, None, seed=5))
    np.testing.assert_array_equal(small[100:110, 100:110], large[100:110, 100:110])


def test_empty_region_and_grey_input_keep_the_pixels():
    grey = Image.new("L", (20, 10), 77)
    out = noise.region_noise(grey, np.zeros((10, 20), bool), seed=0)
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(grey.convert("RGB")))


# ------------------------------------------- the schedules the API lets through (NoiseSpec)


def _alpha_bar_of(spec) -> float:
    return noise.alpha_bar(
        spec.step, spec.schedule, spec.schedule_steps, beta_start=spec.beta_start, beta_end=spec.beta_end
    )


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_every_schedule_the_api_accepts_keeps_alpha_bar_in_0_1(schedule):
    """abar_t falls with t and with every beta: the corners of what NoiseSpec accepts are the
    worst cases. The runtime's own schedule (float64) stays above 0 at each of them."""
    from mfpo_core.api import MAX_NOISE_EXPONENT, MAX_SCHEDULE_STEPS, NoiseSpec

    for steps in (1, 2, 700, 1000, MAX_SCHEDULE_STEPS):
        beta = MAX_NOISE_EXPONENT / (steps + MAX_NOISE_EXPONENT) * (1 - 1e-12)  # steps * b / (1 - b) just under 700
        spec = NoiseSpec(step=steps - 1, schedule_steps=steps, schedule=schedule, beta_start=beta, beta_end=beta)
        abar = _alpha_bar_of(spec)
        assert 0.0 < abar <= 1.0, (steps, beta, abar)
        assert noise.forward_diffuse(np.ones(1), abar, np.zeros(1))[0] > 0  # a trace of the image is left


def test_what_the_api_refuses_breaks_the_runtimes_schedule():
    """beta >= 1 makes 1 - beta <= 0: abar_t is 0 or negative, and sqrt(abar) a domain error
    (the datagen stage would crash on every record); a long linear schedule of large betas
    underflows abar_t to 0 (the image is gone from m')."""
    from mfpo_core.api import NoiseSpec
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        NoiseSpec(step=1, schedule_steps=2, beta_start=0.5, beta_end=1.5)
    abar = noise.alpha_bar(1, "linear", 2, beta_start=0.5, beta_end=1.5)  # 0.5 * (1 - 1.5)
    assert abar == -0.25
    with pytest.raises(ValueError, match="math domain error"):
        noise.forward_diffuse(np.ones(1), abar, np.zeros(1))
    with pytest.raises(ValidationError):
        NoiseSpec(step=0, schedule_steps=1, beta_start=1.0, beta_end=1.0)
    assert noise.alpha_bar(0, "linear", 1, beta_start=1.0, beta_end=1.0) == 0.0
    with pytest.raises(ValidationError, match="alpha-bar underflows"):
        NoiseSpec(step=9999, schedule_steps=10_000, beta_start=0.5, beta_end=0.5)
    assert noise.alpha_bar(9999, "linear", 10_000, beta_start=0.5, beta_end=0.5) == 0.0
