"""The image-reliance diagnostic: does the answer depend on the image, and on its objects?

Two forms (ARCHITECTURE.md, "Lessons"):

- answer change under heavy noise: the share of answers that change when the whole image is
  noised far along the DDPM schedule (the MFPO paper saw 9% after text-only DPO). It saturates
  near 1.0 for every small model that looks at all, hence
- the graded form: the drop in the reference answer's log-likelihood per token when the object
  regions are noised, against the same noise on an equal-area background region. Object-specific
  reliance is their excess (object drop - background drop, nats per token) and their contrast
  (d_obj - d_bg) / (|d_obj| + |d_bg|), bounded in [-1, 1]: > 0 when the model reads the objects,
  not just pixels. A ratio d_obj / d_bg is not used: it explodes when the background drop is
  near zero (-597 in one demo run).

Pure numpy except `noised_pair`, which calls `data.noise.region_noise` with one seed for both
regions (same noise field, different place). Called by mfpo_runtime.eval.synthetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mfpo_runtime.data.grounding import place_off_objects
from mfpo_runtime.data.noise import region_noise
from mfpo_runtime.eval.generation import AnswerLogp
from mfpo_runtime.eval.scores import ratio


def background_region(objects: np.ndarray, seed: int) -> np.ndarray:
    """A (H, W) bool region outside every object with the same area as `objects` (H, W).

    The objects' union shape moved whole to a place inside the image that touches none of them
    (no wrap-around: a shape of the same kind, so edge content is comparable), else the
    object-free pixels nearest a random free pixel: the random-region ablation's placement
    (data.grounding.place_off_objects). When the background is smaller than the objects, all
    of it is used.
    """
    if objects.ndim != 2:
        raise ValueError(f"object mask must be (H, W), got shape {objects.shape}")
    background = ~objects
    if not objects.any():
        return np.zeros_like(objects)
    if background.sum() <= objects.sum():
        return background.copy()
    return place_off_objects(objects, seed).mask


def noised_pair(
    image: Image.Image, objects: np.ndarray, *, step: int, seed: int, schedule: str = "linear"
) -> tuple[Image.Image, Image.Image]:
    """(objects noised, equal-area background noised), same step and noise seed."""
    background = background_region(objects, seed)
    on_objects = region_noise(image, objects, step=step, schedule=schedule, seed=seed)
    on_background = region_noise(image, background, step=step, schedule=schedule, seed=seed)
    return on_objects, on_background


def heavy_noise(image: Image.Image, *, step: int, seed: int, schedule: str = "linear") -> Image.Image:
    """The whole image noised at `step` (None region = everywhere)."""
    return region_noise(image, None, step=step, schedule=schedule, seed=seed)


def change_rate(before: Sequence[str], after: Sequence[str]) -> float:
    """Share of answers whose text changed (whitespace and case ignored)."""
    changed = sum(1 for a, b in zip(before, after) if " ".join(a.lower().split()) != " ".join(b.lower().split()))
    return ratio(changed, len(before))


@dataclass(frozen=True)
class GradedReliance:
    drop_object: float  # mean per-token log-likelihood drop, object regions noised
    drop_background: float  # the same, equal-area background noised

    @property
    def excess(self) -> float:
        return self.drop_object - self.drop_background

    @property
    def contrast(self) -> float:
        """(d_obj - d_bg) / (|d_obj| + |d_bg|) in [-1, 1]; 0.0 when neither drops at all."""
        scale = abs(self.drop_object) + abs(self.drop_background)
        return self.excess / scale if scale > MIN_DROP else 0.0

    def metrics(self) -> dict[str, float]:
        return {"logp_drop_object": self.drop_object, "logp_drop_background": self.drop_background,
                "logp_drop_excess": self.excess, "object_reliance_contrast": self.contrast}  # fmt: skip


# Below this total drop (nats per token) neither noised image changed the answer's likelihood.
MIN_DROP = 1e-6


def graded_reliance(
    clean: Sequence[AnswerLogp], objects: Sequence[AnswerLogp], background: Sequence[AnswerLogp]
) -> GradedReliance:
    """Mean per-token drops of the reference answer's log-likelihood, objects vs background."""
    if not (len(clean) == len(objects) == len(background)) or not clean:
        raise ValueError("graded reliance needs the same non-zero number of clean/object/background scores")
    drop_object = float(np.mean([c.per_token - o.per_token for c, o in zip(clean, objects)]))
    drop_background = float(np.mean([c.per_token - b.per_token for c, b in zip(clean, background)]))
    return GradedReliance(drop_object, drop_background)
