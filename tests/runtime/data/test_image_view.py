"""The model's view of real photographs (issue 25.1), held to the real image processors.

Every family's processor with the settings of its released checkpoint, on six real photographs
of different sizes and aspect ratios (tests/fixtures/photos): the view datagen stores must give
the model the very pixels the photograph gives it, must be left alone by the processor, and the
DDPM noise datagen adds to it must reach the model's input at the strength of the formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from mfpo_runtime.data import grounding, noise
from mfpo_runtime.data.grounding import AnnotationGrounder, ground
from mfpo_runtime.models.image_view import ModelView
from PIL import Image
from real_photos import (
    checkpoint_image_processors,
    ddpm_as_an_image_holds_it,
    model_input,
    photos,
    region_entries,
)

PROCESSORS = checkpoint_image_processors()
PHOTOS = photos()


def _pixel_values(image_processor, image) -> dict[str, np.ndarray]:
    out = image_processor(images=[image.convert("RGB")], return_tensors="np")
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("name", PROCESSORS)
def test_the_view_gives_the_model_the_photos_own_pixels_and_is_left_alone(name):
    """processor(view(photo)) == processor(photo), bit for bit; LLaVA-NeXT's any-res tiles
    likewise (its extra base tile squashes the whole image again: measured, not equal)."""
    family, image_processor = PROCESSORS[name]
    view = ModelView(family, image_processor)
    for photo in PHOTOS:
        image = photo.image()
        seen = view.image(image)
        assert view.image(seen).size == seen.size, photo.file  # a fixed point: nothing resampled
        direct, through = (
            _pixel_values(image_processor, image),
            _pixel_values(image_processor, seen),
        )
        if family == "llava-next":
            np.testing.assert_array_equal(
                direct["pixel_values"][:, 1:], through["pixel_values"][:, 1:], err_msg=photo.file
            )
        else:
            for key in direct:
                np.testing.assert_array_equal(
                    direct[key], through[key], err_msg=f"{photo.file} {key}"
                )


def test_model_sized_squares_are_their_own_view(scene_images, tiny_llava_dir, tmp_path):
    """The synthetic world's scenes are already the model's size: the view changes no pixel,
    so the synthetic world's datagen output and results are what they were."""
    from mfpo_runtime.models.io import load_image_processor

    family, image_processor = load_image_processor(str(tiny_llava_dir), cache_dir=tmp_path)
    view = ModelView(family, image_processor)
    for scene in scene_images:
        assert np.array_equal(np.asarray(view.image(scene)), np.asarray(scene))


def test_a_center_crop_cuts_the_edge_towers_off_and_the_record_says_so():
    """LLaVA-1.5 (llava-hf) crops a 640 x 427 photo to its middle 427 x 427: the two lattice
    towers at the rocket photo's edges are not in the model's input. They are listed as lost
    (not noised; with nothing else found, the whole view falls back); padding to a square
    (LLaVA-1.5's own `pad`), LLaVA-NeXT and Qwen2-VL keep them."""
    rocket = next(p for p in PHOTOS if p.file == "rocket.jpg")
    masks = {name: rocket.mask_image(name) for name in rocket.objects}
    for name, (family, image_processor) in PROCESSORS.items():
        view = ModelView(family, image_processor)
        found = ground(AnnotationGrounder(), rocket.image(), ["edge towers"], masks, view=view)
        both = ground(
            AnnotationGrounder(), rocket.image(), ["rocket", "edge towers"], masks, view=view
        )
        if name == "llava-1.5":
            assert (
                found.lost == ["edge towers"]
                and found.fallback
                and found.kept == {"edge towers": 0.0}
            )
            assert (
                both.grounded == ["rocket"] and both.lost == ["edge towers"] and not both.fallback
            )
        else:
            assert found.lost == [] and found.grounded == ["edge towers"], name
            assert found.kept["edge towers"] > 0.99, name


@pytest.mark.parametrize("name", ["llava-1.5", "llava-1.5-pad"])
def test_the_share_kept_of_each_region_is_the_processors_own(name):
    """Share of a region's area in the model's input: by the view (nearest-neighbour masks)
    and by the processor itself (the mask as an image, bicubic, with and without its crop)."""
    family, image_processor = PROCESSORS[name]
    view = ModelView(family, image_processor)
    for photo in PHOTOS:
        for obj, mask in photo.objects.items():
            _, kept = view.mask(mask)
            as_image = Image.fromarray(np.repeat(mask[..., None], 3, axis=2).astype(np.uint8) * 255)
            inside = (model_input(image_processor, as_image) + 1).sum()
            whole = (model_input(image_processor, as_image, do_center_crop=False) + 1).sum()
            assert kept == pytest.approx(inside / whole, abs=0.02), (photo.file, obj)


def _noised(view, photo, names, step: int):
    """What datagen does to a photo: ground the objects, noise them in the view."""
    masks = {n: photo.mask_image(n) for n in photo.objects}
    found = ground(AnnotationGrounder(), photo.image(), names, masks, view=view)
    perturbed = noise.region_noise(
        found.image, found.mask, step=step, seed=noise.seed_for(0, photo.file)
    )
    return found, perturbed


@pytest.mark.parametrize("name", PROCESSORS)
def test_noise_at_the_model_input_is_the_ddpm_formula_at_t_500(name):
    """The issue's check: processor(m') against processor(m) inside the object regions, before
    normalisation, in DDPM's [-1, 1], against the DDPM formula at t = 500 (with the [-1, 1]
    clipping and 8-bit rounding of an image file, eps from numpy's normal generator): the
    noise's std within 5% in each region of 3000 values or more, and the signal's scale within
    5% over all regions (a slope needs more values than a std to be as precise).
    LLaVA-NeXT: its any-res tiles."""
    family, image_processor = PROCESSORS[name]
    view = ModelView(family, image_processor)
    abar = noise.alpha_bar(500)
    part = "tiles" if family == "llava-next" else "all"
    x0s, x1s = [], []
    for photo in PHOTOS:
        found, perturbed = _noised(view, photo, list(photo.objects), 500)
        original = model_input(image_processor, found.image, part)
        noised = model_input(image_processor, perturbed, part)
        for obj, mask in photo.objects.items():
            inside = region_entries(image_processor, mask, part)
            if inside.sum() < 3000 or obj not in found.grounded:
                continue  # too few pixels at the model's input for a 5% figure
            x0, x1 = original[inside], noised[inside]
            measured = np.std(x1 - np.sqrt(abar) * x0)
            formula = ddpm_as_an_image_holds_it(x0, abar, draws=4)
            assert measured == pytest.approx(formula.noise_std, rel=0.05), (photo.file, obj)
            x0s.append(x0)
            x1s.append(x1)
    x0, x1 = np.concatenate(x0s), np.concatenate(x1s)
    centred = x0 - x0.mean()
    scale = centred @ (x1 - x1.mean()) / (centred @ centred)
    assert scale == pytest.approx(ddpm_as_an_image_holds_it(x0, abar, draws=4).scale, rel=0.05)


@pytest.mark.parametrize("name", ["llava-1.5", "qwen2-vl"])
def test_noise_at_the_model_input_is_the_bare_formula_where_nothing_clips(name):
    """At t = 50 (sqrt(1 - abar) = 0.17) on pixels the formula cannot push past [-1, 1]
    (|sqrt(abar) x0| <= 1 - 4 sqrt(1 - abar)): std sqrt(1 - abar_t), scale sqrt(abar_t)."""
    family, image_processor = PROCESSORS[name]
    view = ModelView(family, image_processor)
    abar = noise.alpha_bar(50)
    x0s, x1s = [], []
    for photo in PHOTOS:
        found, perturbed = _noised(view, photo, list(photo.objects), 50)
        inside = region_entries(image_processor, found.mask)
        x0s.append(model_input(image_processor, found.image)[inside])
        x1s.append(model_input(image_processor, perturbed)[inside])
    x0, x1 = np.concatenate(x0s), np.concatenate(x1s)
    keep = np.abs(np.sqrt(abar) * x0) <= 1 - 4 * np.sqrt(1 - abar)
    x0, x1 = x0[keep], x1[keep]
    assert keep.sum() > 100_000
    centred = x0 - x0.mean()
    assert centred @ (x1 - x1.mean()) / (centred @ centred) == pytest.approx(
        np.sqrt(abar), rel=0.05
    )
    assert np.std(x1 - np.sqrt(abar) * x0) == pytest.approx(np.sqrt(1 - abar), rel=0.05)


def test_square_view_is_the_explicit_image_size():
    view = grounding.SquareView(32)
    image = PHOTOS[0].image()
    assert view.image(image).size == (32, 32)
    mask, kept = view.mask(PHOTOS[0].objects["rocket"])
    assert mask.shape == (32, 32) and mask.any() and kept == 1.0


def test_an_unknown_processor_class_for_a_family_is_named():
    _, image_processor = PROCESSORS["qwen2-vl"]
    with pytest.raises(TypeError, match="llava: image processor Qwen2VLImageProcessorPil"):
        ModelView("llava", image_processor)


def test_a_processor_that_resizes_its_own_output_again_is_refused():
    """min_pixels == max_pixels (main's tiny Qwen2-VL config) sends a 640 x 427 photo to
    32 x 48, then 48 x 64, then back: no view the noise could be added in."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    flip_flop = Qwen2VLImageProcessorPil(
        patch_size=8, merge_size=2, min_pixels=1024, max_pixels=1024
    )
    with pytest.raises(ValueError, match="resizes its own .* output"):
        ModelView("qwen2-vl", flip_flop).image(PHOTOS[0].image())


def test_random_region_in_the_view_avoids_the_objects_the_model_sees():
    family, image_processor = PROCESSORS["llava-1.5"]
    view = ModelView(family, image_processor)
    coffee = next(p for p in PHOTOS if p.file == "coffee.jpg")
    masks = {n: coffee.mask_image(n) for n in coffee.objects}
    grounder = grounding.RandomRegionGrounder(AnnotationGrounder(), seed=3)
    objects = ground(AnnotationGrounder(), coffee.image(), ["cup", "spoon"], masks, view=view)
    placed = ground(grounder, coffee.image(), ["cup", "spoon"], masks, view=view)
    assert placed.mask.sum() == objects.mask.sum() and placed.overlap == 0.0
    assert not (placed.mask & objects.mask).any()
