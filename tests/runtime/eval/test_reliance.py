"""The image-reliance diagnostic: equal-area background regions, noised pairs, graded scores."""

from __future__ import annotations

import numpy as np
import pytest
from mfpo_runtime.eval.generation import AnswerLogp
from mfpo_runtime.eval.reliance import (
    background_region,
    change_rate,
    graded_reliance,
    heavy_noise,
    noised_pair,
)
from PIL import Image


def square_mask(size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def test_background_region_has_equal_area_and_avoids_objects():
    objects = square_mask(16, (2, 2, 6, 6)) | square_mask(16, (10, 10, 13, 13))
    region = background_region(objects, seed=0)
    assert region.sum() == objects.sum() == 16 + 9
    assert not (region & objects).any()


def test_background_region_is_the_objects_shape_moved_inside_the_image():
    # Two 3x3 objects; their union's shape fits off them, so the region is that shape moved
    # whole, never wrapped around an edge (np.roll split it across the right edge here).
    objects = square_mask(16, (10, 2, 13, 5)) | square_mask(16, (7, 6, 10, 9))

    def crop(mask):
        ys, xs = np.nonzero(mask)
        return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]

    for seed in range(5):
        region = background_region(objects, seed=seed)
        assert not (region & objects).any()
        assert np.array_equal(crop(region), crop(objects))


def test_background_region_tops_up_when_no_shift_is_free():
    objects = np.zeros((8, 8), dtype=bool)
    objects[:, :5] = True  # 40 object pixels, 24 background: every shift overlaps
    objects[0, 4] = False  # 39 object pixels, 25 background
    region = background_region(objects, seed=0)
    assert region.sum() == 25 and not (region & objects).any()  # all the background there is
    small = square_mask(8, (0, 0, 8, 3))  # 24 object pixels, 40 background, no shift is free
    region = background_region(small, seed=1)
    assert region.sum() == 24 and not (region & small).any()


def test_background_region_of_no_object_is_empty():
    assert not background_region(np.zeros((4, 4), dtype=bool), seed=0).any()


def test_noised_pair_touches_only_its_region():
    image = Image.new("RGB", (16, 16), (120, 130, 140))
    objects = square_mask(16, (4, 4, 8, 8))
    on_objects, on_background = noised_pair(image, objects, step=500, seed=3)
    before = np.asarray(image)
    changed_obj = (np.asarray(on_objects) != before).any(axis=2)
    changed_bg = (np.asarray(on_background) != before).any(axis=2)
    assert changed_obj.any() and not changed_obj[~objects].any()
    assert changed_bg.any() and not changed_bg[objects].any()
    assert (np.asarray(heavy_noise(image, step=900, seed=3)) != before).any(axis=2).mean() > 0.9


def test_graded_reliance_hand_worked():
    clean = [AnswerLogp(-5.0, 5), AnswerLogp(-8.0, 4)]  # -1.0 and -2.0 per token
    objects = [AnswerLogp(-7.5, 5), AnswerLogp(-12.0, 4)]  # drops 0.5 and 1.0
    background = [AnswerLogp(-6.25, 5), AnswerLogp(-9.0, 4)]  # drops 0.25 and 0.25
    got = graded_reliance(clean, objects, background)
    assert got.drop_object == pytest.approx(0.75)
    assert got.drop_background == pytest.approx(0.25)
    assert got.metrics()["logp_drop_excess"] == pytest.approx(0.5)
    assert got.metrics()["object_reliance_contrast"] == pytest.approx(0.5 / 1.0)
    assert "object_reliance" not in got.metrics()


def test_reliance_contrast_stays_bounded_when_the_background_barely_moves():
    # The demo run's align-2 case: objects noised *raise* the likelihood by 0.597 nats/token,
    # background 0.001: the old ratio was -597; the contrast is about -1, the excess -0.598.
    clean = [AnswerLogp(-4.0, 4)]
    got = graded_reliance(clean, [AnswerLogp(-4.0 + 4 * 0.597, 4)], [AnswerLogp(-4.0 - 4 * 0.001, 4)])
    assert got.metrics()["object_reliance_contrast"] == pytest.approx(-0.598 / 0.598)
    assert got.metrics()["logp_drop_excess"] == pytest.approx(-0.598)
    same = [AnswerLogp(-4.0, 4)]
    assert graded_reliance(same, same, same).metrics()["object_reliance_contrast"] == 0.0
    with pytest.raises(ValueError, match="same non-zero number"):
        graded_reliance([], [], [])


def test_change_rate_ignores_case_and_spacing():
    assert change_rate(["A dog.", "a  dog.", "cat"], ["a dog.", "A dog.", "dog"]) == pytest.approx(1 / 3)
