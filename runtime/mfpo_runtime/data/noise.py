"""Region noise: the dispreferred image m' of MFPO (paper, Sec. 3.1).

DDPM forward diffusion (Ho et al. 2020, eq. 4) at step t, applied only inside the grounded
regions R of the image:

    m'_R = sqrt(abar_t) * R + sqrt(1 - abar_t) * eps,   eps ~ N(0, I)

with pixels scaled to [-1, 1] as in DDPM, and every pixel outside the regions left exactly as
it was. The paper's best setting is t = 500 of a 1000-step linear schedule.

Called by the datagen stage (`mfpo_runtime.stages.datagen`) and the benchmark. Pure numpy;
deterministic for a seed. Hand-written rather than taken from diffusers: diffusers is not a
dependency of the runtime image and the schedule is three lines.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
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
    """A per-record seed: the same record gets the same noise whatever shard it lands in."""
    return (base_seed * 1_000_003 + zlib.crc32(record_id.encode())) % (2**32)


def gaussian_noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """eps ~ N(0, I) of the given shape, float32, reproducible for a seed."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


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
    """The image with DDPM forward noise at `step` inside the regions only (None: everywhere)."""
    mask = region_mask(image.size, boxes_or_mask)  # (H, W)
    abar = alpha_bar(step, schedule, schedule_steps, beta_start=beta_start, beta_end=beta_end)
    original = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    # eps is drawn for the whole image, then indexed: the noise at a pixel depends on the
    # seed only, not on the region's shape. Only region pixels are computed; the rest are copied.
    eps = gaussian_noise(original.shape, seed)[mask]  # (N, 3)
    x0 = original[mask].astype(np.float32) / 127.5 - 1.0  # (N, 3) in [-1, 1]
    out = original.copy()
    out[mask] = np.asarray(from_unit(forward_diffuse(x0, abar, eps)[None]))[0]
    return Image.fromarray(out, mode="RGB")
