"""The model's view of an image: the pixels its image processor feeds the vision tower, before
rescaling and normalisation. Datagen noises images in this geometry (issue 25.1).

A model never sees the photograph a user supplies: its image processor resizes it, and for
LLaVA-1.5 also pads or crops it to a square. DDPM noise added at the photo's own size would be
averaged down by that resize (640 -> 336 px roughly halves its standard deviation) and a
center crop can cut a noised region away. So datagen first brings the image into the model's
view, grounds and noises it there, and stores the view: the processor then finds nothing left
to resample (the view is a fixed point of its geometry, which `ModelView.image` checks), and
the noise reaching the model is the DDPM formula at the step the user set.

The geometry is run by the processor's own methods, in the order of its `_preprocess` (the
PIL backends of transformers 5), so that sizes and crop offsets cannot drift from what the
model sees:

- llava (`CLIPImageProcessorPil`, or `LlavaImageProcessorPil`): pad to a square with the
  mean colour when `do_pad` (the original LLaVA-1.5's `image_aspect_ratio: pad`), resize the
  shortest edge, center-crop (`LlavaImageProcessorPil._preprocess`, `PilBackend._preprocess`);
- llava-next (`LlavaNextImageProcessorPil`): the any-res grid: `select_best_resolution` over
  `image_grid_pinpoints`, then `_resize_for_patching` (aspect kept). The processor pads that to
  the grid and cuts it into tiles, which see the view at its own resolution; its extra base
  tile squashes the whole view to `size` and sees the noise averaged down (measured in
  docs/own-data.md);
- qwen2-vl (`Qwen2VLImageProcessorPil`): `smart_resize` to multiples of patch x merge within
  min/max pixels (`Qwen2VLImageProcessorPil.resize`).

Masks follow the same steps with nearest-neighbour resampling and report the share of their
area that survives a crop. Called by the datagen stage; tests hold every view to the real
processor's output (`tests/runtime/data/test_image_view.py`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from transformers.image_processing_utils import select_best_resolution
from transformers.image_utils import PILImageResampling
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import (
    LlavaNextImageProcessorPil,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

# The image processor classes whose geometry each family's view runs (PIL backends).
PROCESSOR_CLASSES = {
    "llava": (CLIPImageProcessorPil, LlavaImageProcessorPil),
    "llava-next": (LlavaNextImageProcessorPil,),
    "qwen2-vl": (Qwen2VLImageProcessorPil,),
}


def _chw(image: Image.Image) -> np.ndarray:
    """RGB pixels as the processors hold them: (3, H, W) uint8."""
    return np.moveaxis(np.asarray(image.convert("RGB")), -1, 0)


def _mask_chw(mask: np.ndarray) -> np.ndarray:
    """A (H, W) bool mask as a one-channel image: (1, H, W) uint8, 255 inside."""
    return (mask.astype(np.uint8) * 255)[None]


class NotAFixedPoint(ValueError):
    """The processor would resize the view again: no geometry to noise in (names the sizes)."""


class ModelView:
    """The geometry of one model's image processor, applied to images and masks."""

    def __init__(self, family: str, image_processor) -> None:
        expected = PROCESSOR_CLASSES.get(family)
        if expected is None:
            raise ValueError(
                f"unknown model family {family!r}; expected one of {sorted(PROCESSOR_CLASSES)}"
            )
        if not isinstance(image_processor, expected):
            raise TypeError(
                f"{family}: image processor {type(image_processor).__name__} is not one of "
                f"{[c.__name__ for c in expected]}: its geometry is unknown to datagen"
            )
        self.family = family
        self.processor = image_processor

    def __repr__(self) -> str:
        return f"ModelView({self.family}, {type(self.processor).__name__})"

    def image(self, image: Image.Image) -> Image.Image:
        """The image as the model sees it (uint8 RGB, before rescaling and normalisation)."""
        view = self._crop(self._scale(_chw(image), self.processor.resample, fill=None))
        self._check_fixed_point(view)
        return Image.fromarray(np.ascontiguousarray(np.moveaxis(view, 0, -1)), mode="RGB")

    def mask(self, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """A (H, W) bool mask of the input image mapped into the view (nearest neighbour), and
        the share of its area the view kept: 1.0 all of it, less when a center crop cut part
        of it off, 0.0 none (cut off, or too thin to survive the downsampling)."""
        scaled = self._scale(_mask_chw(mask), PILImageResampling.NEAREST, fill=0)
        seen = self._crop(scaled)[0] > 127
        before = int((scaled[0] > 127).sum())
        return seen, int(seen.sum()) / before if before else 0.0

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the view of an image of that size."""
        view = self._crop(
            self._scale(np.zeros((1, height, width), np.uint8), PILImageResampling.NEAREST, fill=0)
        )
        return view.shape[2], view.shape[1]

    # -- the processor's steps, in its `_preprocess` order -----------------------------------

    def _scale(self, chw: np.ndarray, resample, *, fill: int | None) -> np.ndarray:
        """Every step before the crop. fill: the pad colour of a mask (None: the processor's)."""
        p = self.processor
        if self.family == "llava":
            if isinstance(p, LlavaImageProcessorPil) and p.do_pad:
                # LlavaImageProcessorPil._preprocess's background: the mean colour, 8-bit.
                colour = tuple(int(x * 255) for x in p.image_mean) if p.image_mean else 0
                chw = p.pad_to_square(chw, background_color=colour if fill is None else fill)
            return p.resize(image=chw, size=p.size, resample=resample) if p.do_resize else chw
        if self.family == "llava-next":
            best = select_best_resolution(chw.shape[-2:], p.image_grid_pinpoints)
            return p._resize_for_patching(chw, best, resample=resample)
        # qwen2-vl: smart_resize inside the processor's own resize
        if not p.do_resize:
            return chw
        return p.resize(chw, size=p.size, resample=resample, factor=p.patch_size * p.merge_size)

    def _crop(self, chw: np.ndarray) -> np.ndarray:
        p = self.processor
        if self.family == "llava" and p.do_center_crop:
            return p.center_crop(chw, p.crop_size)
        return chw

    def _check_fixed_point(self, view: np.ndarray) -> None:
        """The processor must leave the view's size as it is, or it resamples the noise again."""
        height, width = view.shape[-2:]
        if self.size(width, height) != (width, height):
            raise NotAFixedPoint(
                f"{self.family}: the image processor ({type(self.processor).__name__}, "
                f"size {dict(self.processor.size)}) resizes its own {width}x{height} output to "
                f"{self.size(width, height)}: the noise would be resampled again; set "
                "imagePreference.imageSize or fix the processor's size settings"
            )
