"""How much of datagen's noise reaches the model: measured at each family's model input.

    python benchmarks/model_input_noise.py [--step 500]

On the six real photographs of tests/fixtures/photos (640x427 to 1411x1411, landscape,
portrait, square), with each family's image processor at the settings of its released
checkpoint (tests/runtime/data/real_photos.py: llava-hf/llava-1.5-7b-hf, LLaVA-1.5's own
pad-to-square, llava-hf/llava-v1.6-mistral-7b-hf, Qwen/Qwen2-VL-7B-Instruct):

1. the objects' regions (all hand-drawn ones) noised at step t as datagen does now (in the
   model's view) and as it did before (at the photograph's own size, `noise.region_noise` on
   the photo), then both sent through the real processor; inside the regions at the model's
   input (before normalisation, DDPM's [-1, 1]): the std of m' - sqrt(abar) m and the slope of
   m' on m, each over the same figure for the DDPM formula with the clipping and 8-bit
   rounding an image file imposes (numpy's normal eps); 1.00 is the formula;
2. the share of each object a processor keeps (a center crop cuts some off);
3. what clipping to [-1, 1] and 8-bit rounding do to the formula itself: the effective noise
   std and signal scale over sqrt(1 - abar_t) and sqrt(abar_t), on the photos' pixels in
   LLaVA-1.5's view, for several t.

Deterministic (fixed seeds); no timing, so a shared machine changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime" / "data"))

from mfpo_runtime.data import noise
from mfpo_runtime.models.image_view import ModelView
from real_photos import (
    checkpoint_image_processors,
    ddpm_as_an_image_holds_it,
    model_input,
    photos,
    region_entries,
)


def _ratios(image_processor, original, perturbed, mask, abar, part):
    """(noise std, scale) at the model input over the clipped formula's, and the count."""
    inside = region_entries(image_processor, mask, part)
    x0 = model_input(image_processor, original, part)[inside]
    x1 = model_input(image_processor, perturbed, part)[inside]
    reference = ddpm_as_an_image_holds_it(x0, abar, draws=4)
    centred = x0 - x0.mean()
    scale = centred @ (x1 - x1.mean()) / (centred @ centred)
    std = np.std(x1 - np.sqrt(abar) * x0)
    return std / reference.noise_std, scale / reference.scale, int(inside.sum())


def noise_at_model_input(step: int) -> None:
    abar = noise.alpha_bar(step)
    print(f"1. noise inside the object regions at the model input, t = {step}, over the formula")
    print("   (with clip + 8-bit rounding; 1.00 = the formula); before: noised at the photo's size\n")
    print("| processor | photo | photo size | view | values | std now | scale now | std before | scale before |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (family, image_processor) in checkpoint_image_processors().items():
        view = ModelView(family, image_processor)
        parts = ["tiles", "base"] if family == "llava-next" else ["all"]
        for photo in photos():
            image = photo.image()
            union = np.logical_or.reduce(list(photo.objects.values()))
            seed = noise.seed_for(0, photo.file)
            seen = view.image(image)
            viewed, _ = view.mask(union)
            now = noise.region_noise(seen, viewed, step=step, seed=seed)
            before = noise.region_noise(image, union, step=step, seed=seed)
            for part in parts:
                std, scale, count = _ratios(image_processor, seen, now, union, abar, part)
                std_b, scale_b, _ = _ratios(image_processor, image, before, union, abar, part)
                label = name if part == "all" else f"{name} ({part})"
                print(
                    f"| {label} | {photo.file} | {image.width}x{image.height} | "
                    f"{seen.width}x{seen.height} | {count} | {std:.3f} | {scale:.3f} | "
                    f"{std_b:.3f} | {scale_b:.3f} |"
                )


def regions_kept() -> None:
    print("\n2. share of each object in the model's view (objects below 1.00 only)\n")
    for name, (family, image_processor) in checkpoint_image_processors().items():
        view = ModelView(family, image_processor)
        cut = []
        for photo in photos():
            for obj, mask in photo.objects.items():
                _, kept = view.mask(mask)
                if kept < 0.995:
                    cut.append(f"{photo.file} {obj} {kept:.2f}")
        print(f"- {name}: {'; '.join(cut) if cut else 'every object whole'}")


def clip_and_round() -> None:
    _, image_processor = checkpoint_image_processors()["llava-1.5"]
    view = ModelView("llava", image_processor)
    x0 = np.concatenate([model_input(image_processor, view.image(p.image())) for p in photos()])
    print("\n3. the DDPM formula as an 8-bit image holds it, on the photos' pixels (LLaVA-1.5 view,")
    print(f"   {x0.size} values): effective noise std / sqrt(1 - abar), scale / sqrt(abar)\n")
    print("| t | sqrt(abar) | sqrt(1 - abar) | clipped | std ratio | scale ratio | std, clip only | std, round only |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for step in (50, 100, 200, 300, 500, 700, 900):
        abar = noise.alpha_bar(step)
        raw = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * rng.standard_normal(x0.shape)
        clipped = np.clip(raw, -1, 1)
        rounded = np.rint((raw + 1) * 127.5) / 127.5 - 1
        both = np.rint((clipped + 1) * 127.5) / 127.5 - 1
        centred = x0 - x0.mean()
        scale = centred @ (both - both.mean()) / (centred @ centred)
        noise_std = np.sqrt(1 - abar)
        ratios = [np.std(x1 - np.sqrt(abar) * x0) / noise_std for x1 in (both, clipped, rounded)]
        print(
            f"| {step} | {np.sqrt(abar):.4f} | {noise_std:.4f} | {np.mean(np.abs(raw) > 1):.3f} | "
            f"{ratios[0]:.3f} | {scale / np.sqrt(abar):.3f} | {ratios[1]:.3f} | {ratios[2]:.4f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", type=int, default=500)
    args = parser.parse_args()
    noise_at_model_input(args.step)
    regions_kept()
    clip_and_round()


if __name__ == "__main__":
    main()
