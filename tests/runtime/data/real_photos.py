"""The real photographs of tests/fixtures/photos with their free-form answers and hand-drawn
object regions, and what the tests measure on them at a model's input.

`model_input` runs a real image processor with its rescaling kept and its normalisation
dropped (pixels in [0, 1], mapped to DDPM's [-1, 1] here), and takes a region's pixels out of
whatever layout the processor returns (crops, tiles, flattened patches) by sending the region's
mask through the same processor: the entries where the processed mask is 1 are the region's.
No knowledge of the processor's layout is written here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PHOTOS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "photos"


@dataclass(frozen=True)
class Photo:
    file: str
    question: str
    chosen: str
    rejected: str
    objects: dict[str, np.ndarray]  # name -> (H, W) bool, in the photo's pixels

    @property
    def path(self) -> Path:
        return PHOTOS_DIR / self.file

    def image(self) -> Image.Image:
        with Image.open(self.path) as image:
            return image.convert("RGB")

    def mask_image(self, name: str) -> Image.Image:
        return Image.fromarray(self.objects[name].astype(np.uint8) * 255, mode="L")


def _shapes(size: tuple[int, int], spec: dict) -> np.ndarray:
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in spec.get("polygons", []):
        draw.polygon(list(zip(polygon[::2], polygon[1::2])), fill=255)
    for cx, cy, rx, ry in spec.get("ellipses", []):
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    return np.asarray(canvas) > 127


def photos() -> list[Photo]:
    doc = json.loads((PHOTOS_DIR / "photos.json").read_text())
    out = []
    for entry in doc["photos"]:
        size = tuple(entry["size"])
        drawn = {name: _shapes(size, spec) for name, spec in entry["objects"].items()}
        objects = {}
        for name, spec in entry["objects"].items():
            mask = drawn[name].copy()
            for other in spec.get("minus", []):
                mask &= ~drawn[other]
            objects[name] = mask
        objects.pop("corner", None)  # a helper shape, not an object
        out.append(
            Photo(entry["file"], entry["question"], entry["chosen"], entry["rejected"], objects)
        )
    return out


def model_input(image_processor, image: Image.Image, part: str = "all", **overrides) -> np.ndarray:
    """The processor's pixel values in [-1, 1] (rescaled, not normalised), flattened.
    LLaVA-NeXT's (1, 1 + tiles, C, H, W): part "base" (the whole image squashed to one tile)
    or "tiles" (the any-res grid) picks one of the two views. overrides: processor settings."""
    out = image_processor(
        images=[image.convert("RGB")], do_normalize=False, return_tensors="np", **overrides
    )
    values = np.asarray(out["pixel_values"], dtype=np.float64)
    if part == "base":
        values = values[:, 0]
    elif part == "tiles":
        values = values[:, 1:]
    return values.ravel() * 2.0 - 1.0


def region_entries(image_processor, mask: np.ndarray, part: str = "all") -> np.ndarray:
    """Which entries of `model_input` hold the region's pixels: where the mask, processed like
    the image, is fully inside (1.0; a resampled edge gives values between 0 and 1)."""
    rgb = Image.fromarray(np.repeat(mask.astype(np.uint8)[..., None] * 255, 3, axis=2), mode="RGB")
    return model_input(image_processor, rgb, part) >= 1.0 - 1e-6


@dataclass(frozen=True)
class NoiseAtInput:
    """m' against m inside a region, at the model's input, in DDPM's [-1, 1] units."""

    count: int  # entries (pixels x channels) measured
    scale: float  # least-squares slope of m' on m: sqrt(abar_t) by the formula
    noise_std: float  # std of m' - scale_formula * m: sqrt(1 - abar_t) by the formula


def noise_at_input(
    image_processor, original, perturbed, mask, abar: float, part: str = "all"
) -> NoiseAtInput:
    inside = region_entries(image_processor, mask, part)
    x0 = model_input(image_processor, original, part)[inside]
    x1 = model_input(image_processor, perturbed, part)[inside]
    centred = x0 - x0.mean()
    scale = float(centred @ (x1 - x1.mean()) / (centred @ centred))
    return NoiseAtInput(int(inside.sum()), scale, float(np.std(x1 - np.sqrt(abar) * x0)))


def ddpm_as_an_image_holds_it(
    x0: np.ndarray, abar: float, *, draws: int = 20, seed: int = 0
) -> NoiseAtInput:
    """The same statistics for the DDPM formula itself on the pixels x0 ([-1, 1]), with the
    clipping to [-1, 1] and the 8-bit rounding that any image file imposes, eps drawn by
    numpy's own normal generator (not the runtime's): the reference datagen is held to.
    At most 200 000 of the pixels (a random subset) enter: an expectation needs no more."""
    rng = np.random.default_rng(seed)
    if x0.size > 200_000:
        x0 = rng.choice(x0, 200_000, replace=False)
    scales, stds = [], []
    for _ in range(draws):
        raw = np.sqrt(abar) * x0 + np.sqrt(1.0 - abar) * rng.standard_normal(x0.shape)
        x1 = np.rint((np.clip(raw, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0
        centred = x0 - x0.mean()
        scales.append(centred @ (x1 - x1.mean()) / (centred @ centred))
        stds.append(np.std(x1 - np.sqrt(abar) * x0))
    return NoiseAtInput(x0.size, float(np.mean(scales)), float(np.mean(stds)))


def checkpoint_image_processors() -> dict[str, tuple[str, object]]:
    """name -> (family, image processor) with the settings of the released checkpoints'
    preprocessor_config.json (PIL backends: transformers' default backend needs torchvision)."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    square = {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}
    return {
        # llava-hf/llava-1.5-7b-hf: CLIPImageProcessor, shortest edge 336, center crop 336
        "llava-1.5": ("llava", CLIPImageProcessorPil(**square)),
        # liuhaotian/llava-v1.5-7b trains with image_aspect_ratio "pad": pad to a square
        # with the mean colour first (transformers' LlavaImageProcessor, do_pad)
        "llava-1.5-pad": ("llava", LlavaImageProcessorPil(**square, do_pad=True)),
        # llava-hf/llava-v1.6-mistral-7b-hf: any-res grid over these pinpoints (h, w)
        "llava-next": ("llava-next", LlavaNextImageProcessorPil(
            **square, image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        )),
        # Qwen/Qwen2-VL-7B-Instruct: 4..16384 tokens of 28 x 28 pixels, patch 14, merge 2
        "qwen2-vl": ("qwen2-vl", Qwen2VLImageProcessorPil(
            min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28, patch_size=14, merge_size=2,
            temporal_patch_size=2,
        )),
    }  # fmt: skip
