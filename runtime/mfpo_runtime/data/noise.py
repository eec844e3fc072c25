"""Region noise: the dispreferred image m' of MFPO (paper, Sec. 3.1).

DDPM forward diffusion (Ho et al. 2020, eq. 4) at step t, applied only inside the grounded
regions R of the image:

    m'_R = sqrt(abar_t) * R + sqrt(1 - abar_t) * eps,   eps ~ N(0, I)

with pixels scaled to [-1, 1] as in DDPM, and every pixel outside the regions left exactly as
it was. The paper's best setting is t = 500 of a 1000-step linear schedule.

Where the noise is added. On 8-bit pixels scaled linearly to [-1, 1], DDPM's own convention
(Ho et al. 2020, Sec. 3.3), in the model's view of the image (`models.image_view`: the
geometry its image processor gives it), so before the processor rescales and normalises. The
model's normalised input therefore sees eps scaled by 1 / (2 std_c): with CLIP's std (0.27)
the formula's sqrt(1 - abar_500) = 0.96 becomes about 1.8 per channel (before clipping).
Noise added after normalisation could not be stored as an image, and would tie m' to one
model's mean and std.

What an image file does to the formula. m' is a PNG: `from_unit` clips x_t to [-1, 1] and
rounds it to 8 bits. Rounding costs nothing measurable (noise std 0.999 of the formula's at
t = 500). Clipping does: at t = 500 (sqrt(abar) 0.279, sqrt(1 - abar) 0.960) 30% of the
values fall outside [-1, 1], the effective noise std is 0.73 of sqrt(1 - abar_t) and the
signal's scale 0.70 of sqrt(abar_t); at t = 50, 0.96 and 0.98; at t = 900, 0.72 and 0.78
(2.0 M values of six real photographs in LLaVA-1.5's view, `benchmarks/model_input_noise.py`,
table 3). So the step t names the formula an image file can hold, not a Gaussian of
std sqrt(1 - abar_t); datagen's tests hold the model's input to that clipped formula.

Called by the datagen stage (`mfpo_runtime.stages.datagen`) and the benchmark. Pure numpy;
deterministic for a seed. Hand-written rather than taken from diffusers: diffusers is not a
dependency of the runtime image and the schedule is three lines.

eps is drawn by inverse transform from a 16-bit quantile table (`gaussian_noise`): a sixth of
the cost of numpy's ziggurat (which was most of the datagen time per image), integer-exact
on every platform, and indistinguishable after the pixels are rounded to 8 bits.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np
from PIL import Image

Schedule = Literal["linear", "cosine"]
Box = Sequence[int]  # [x0, y0, x1, y1], x1/y1 exclusive


def betas(
    schedule: Schedule, steps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """The per-step noise variances beta_1..beta_T, shape (T,)."""
    if steps < 1:
        raise ValueError(f"noise schedule needs at least one step, got {steps}")
    if schedule == "linear":  # DDPM (Ho et al. 2020)
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    if schedule == "cosine":  # improved DDPM (Nichol & Dhariwal 2021, eq. 17), s = 0.008
        return _cosine_betas(steps)
    raise ValueError(f"unknown noise schedule {schedule!r}: expected linear or cosine")


def _cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    def f(t: float) -> float:
        return math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2

    return np.array([min(1 - f(i + 1) / f(i), max_beta) for i in range(steps)], dtype=np.float64)


def alphas_cumprod(schedule: Schedule, steps: int, **kwargs: float) -> np.ndarray:
    """abar_t = prod_{s<=t} (1 - beta_s), shape (T,); index t is 0-based as in diffusers."""
    return np.cumprod(1.0 - betas(schedule, steps, **kwargs))


def alpha_bar(
    step: int, schedule: Schedule = "linear", steps: int = 1000, **kwargs: float
) -> float:
    """abar at one step t (0 <= t < steps)."""
    if not 0 <= step < steps:
        raise ValueError(f"noise step {step} outside the schedule 0..{steps - 1}")
    return float(alphas_cumprod(schedule, steps, **kwargs)[step])


def seed_for(base_seed: int, record_id: str) -> int:
    """A per-record seed: the same record gets the same noise whatever shard it lands in.
    (surrogatepass: an id may hold a lone surrogate from a JSON escape; valid text encodes as UTF-8.)"""
    return (base_seed * 1_000_003 + zlib.crc32(record_id.encode("utf-8", "surrogatepass"))) % (2**32)


QUANTILE_BITS = 16


@functools.cache
def _normal_quantiles() -> np.ndarray:
    """N(0, 1) quantiles at the midpoints of 2**16 equal-probability bins, float32 (2**16,)."""
    bins = 1 << QUANTILE_BITS
    inv_cdf = NormalDist().inv_cdf
    table = np.array([inv_cdf((i + 0.5) / bins) for i in range(bins)], dtype=np.float32)
    table.flags.writeable = False
    return table


def gaussian_noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """eps ~ N(0, I) of the given shape, float32, reproducible for a seed.

    Inverse transform sampling: one uniform 16-bit integer per value picks one of 2**16
    equal-probability bins of N(0, 1), represented by its median. The bins are 4e-5 sigma
    wide near 0 and the largest |eps| is 4.3 sigma (the true tail beyond is 1.4e-5 of the
    mass), far below the 8-bit rounding of the noised pixels (1/127.5 of the [-1, 1] range).
    numpy's Generator fills the integers in order, so the first k values of a draw are the
    same whatever the shape drawn: region_noise draws only the rows it needs.
    """
    count = math.prod(shape)
    bins = np.random.default_rng(seed).integers(0, 1 << QUANTILE_BITS, count, dtype=np.uint16)
    return _normal_quantiles().take(bins).reshape(shape)


def region_mask(
    size: tuple[int, int], boxes_or_mask: np.ndarray | Sequence[Box] | None
) -> np.ndarray:
    """A (H, W) bool mask from a mask array or a list of boxes; None means the whole image."""
    width, height = size
    if boxes_or_mask is None:
        return np.ones((height, width), dtype=bool)
    if isinstance(boxes_or_mask, np.ndarray):
        if boxes_or_mask.shape != (height, width):
            raise ValueError(
                f"region mask shape {boxes_or_mask.shape} != image (H, W) {(height, width)}"
            )
        return boxes_or_mask.astype(bool)
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes_or_mask:
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = True
    return mask


def from_unit(pixels: np.ndarray) -> Image.Image:
    """float pixels in [-1, 1] (H, W, 3) -> an RGB image (clipped, rounded)."""
    values = np.clip(np.rint((np.clip(pixels, -1.0, 1.0) + 1.0) * 127.5), 0, 255)
    return Image.fromarray(values.astype(np.uint8), mode="RGB")


def forward_diffuse(x0: np.ndarray, abar: float, eps: np.ndarray) -> np.ndarray:
    """q(x_t | x_0) sample: sqrt(abar) x0 + sqrt(1 - abar) eps (DDPM eq. 4)."""
    return math.sqrt(abar) * x0 + math.sqrt(1.0 - abar) * eps


def region_noise(
    image: Image.Image,
    boxes_or_mask: np.ndarray | Sequence[Box] | None,
    *,
    step: int = 500,
    schedule: Schedule = "linear",
    schedule_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    seed: int = 0,
) -> Image.Image:
    """The image with DDPM forward noise at `step` inside the regions only (None: everywhere).

    eps is the seed's draw for the whole image (`gaussian_noise(image shape, seed)`), so the
    noise at a pixel depends on the seed only, not on the region's shape. The float32
    operations are those of `forward_diffuse` then `from_unit`, in the same order, so every
    output byte is what computing them on the region's pixels alone gives.
    """
    mask = region_mask(image.size, boxes_or_mask)  # (H, W)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    original = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))  # (H, W, 3)
    if not rows.size:
        return Image.fromarray(original, mode="RGB")
    # The bounding rectangle of the regions is computed whole (dense float32 passes are
    # cheaper than gathering the region's pixels), then copied back where the mask is set.
    rect = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    abar = alpha_bar(step, schedule, schedule_steps, beta_start=beta_start, beta_end=beta_end)
    noised = _noised_rect(original, rect, abar, seed)  # the rectangle's pixels, uint8
    out = original.copy()
    rect_mask = mask[rect]
    if rect_mask.all():
        out[rect] = noised
    else:
        np.copyto(out[rect], noised, where=rect_mask[..., None])
    return Image.fromarray(out, mode="RGB")


def _noised_rect(
    original: np.ndarray, rect: tuple[slice, slice], abar: float, seed: int
) -> np.ndarray:
    """from_unit(forward_diffuse(x0, abar, eps)) on original[rect], by in-place passes."""
    rows, cols = rect
    _, width, channels = original.shape
    # The first rows of the whole image's draw, up to the rectangle's last: no more is drawn.
    eps = gaussian_noise((rows.stop, width, channels), seed)[rows, cols]
    x = original[rect].astype(np.float32)
    x /= 127.5
    x -= 1.0  # x0 in [-1, 1]
    x *= math.sqrt(abar)
    eps *= math.sqrt(1.0 - abar)
    x += eps  # forward_diffuse
    np.clip(x, -1.0, 1.0, out=x)
    x += 1.0
    x *= 127.5
    np.rint(x, out=x)  # from_unit; its final clip to [0, 255] cannot change a value here
    return x.astype(np.uint8)
