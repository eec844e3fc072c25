"""Grounding: annotation masks, the whole-image fallback, CLIPSeg from a storage URI."""

from pathlib import Path

import numpy as np
import pytest
import torch
from mfpo_runtime.data import grounding
from mfpo_runtime.data.grounding import (
    FALLBACK,
    AnnotationGrounder,
    CLIPSegGrounder,
    WholeImageGrounder,
    ground,
    name_resolver,
)
from PIL import Image


def _mask(size, box) -> Image.Image:
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 255
    return Image.fromarray(pixels, mode="L")


IMAGE = Image.new("RGB", (20, 10), (90, 90, 90))
MASKS = {"cat": _mask((20, 10), (2, 1, 6, 5)), "sofa": _mask((20, 10), (10, 4, 18, 10))}


def test_bounding_box_is_exclusive():
    mask = np.zeros((10, 20), bool)
    mask[1:5, 2:6] = True
    assert grounding.bounding_box(mask) == [2, 1, 6, 5]


def test_annotation_grounder_resolves_synonyms_and_unions_regions():
    grounder = AnnotationGrounder(name_resolver({"cat": ["cats", "kitten"], "sofa": ["couch"]}))
    found = ground(grounder, IMAGE, ["kitten", "couch", "lamp"], MASKS)
    assert found.method == "annotation" and not found.fallback
    assert found.grounded == ["kitten", "couch"]
    assert found.boxes == [[2, 1, 6, 5], [10, 4, 18, 10]]
    assert found.mask.sum() == 4 * 4 + 8 * 6


def test_canonical_names_match_without_a_table():
    found = ground(AnnotationGrounder(), IMAGE, ["cat"], MASKS)
    assert found.boxes == [[2, 1, 6, 5]]


def test_no_region_falls_back_to_the_whole_image():
    found = ground(AnnotationGrounder(), IMAGE, ["lamp"], MASKS)
    assert found.fallback and found.method == FALLBACK
    assert found.mask.all() and found.boxes == [[0, 0, 20, 10]]
    assert ground(AnnotationGrounder(), IMAGE, [], MASKS).fallback  # no keywords at all


def test_no_region_without_fallback_is_none():
    assert ground(AnnotationGrounder(), IMAGE, ["lamp"], MASKS, fallback_whole_image=False) is None


def test_masks_at_another_resolution_are_resized():
    small = {"cat": _mask((10, 5), (1, 0, 3, 2))}
    found = ground(AnnotationGrounder(), IMAGE, ["cat"], small)
    assert found.boxes == [[2, 0, 6, 4]]


def test_whole_image_grounder_is_the_global_ablation():
    found = ground(WholeImageGrounder(), IMAGE, ["cat"], {})
    assert found.method == "whole-image" and not found.fallback and found.mask.all()


@pytest.fixture(scope="module")
def tiny_clipseg(tmp_path_factory) -> Path:
    return grounding.build_tiny_clipseg(tmp_path_factory.mktemp("clipseg"), image_size=32)


@pytest.mark.slow
def test_clipseg_loads_from_a_storage_uri_and_matches_the_model(tiny_clipseg: Path):
    grounder = CLIPSegGrounder.from_uri(f"file://{tiny_clipseg}", threshold=0.5)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8))
    probs = grounder.probabilities(image, ["cat", "red sofa"])
    assert probs.shape == (2, 32, 32)
    inputs = grounder.processor(text=["red sofa"], images=[image], return_tensors="pt")
    with torch.inference_mode():
        direct = torch.sigmoid(grounder.model(**inputs).logits).reshape(32, 32).numpy()
    np.testing.assert_allclose(probs[1], direct, atol=1e-5)
    masks = grounder.masks(image, ["cat", "red sofa"], {})
    assert [m.shape for m in masks] == [(24, 30), (24, 30)]


@pytest.mark.slow
def test_clipseg_thresholds_decide_region_or_fallback(tiny_clipseg: Path):
    image = Image.new("RGB", (30, 24), (10, 200, 30))
    everywhere = CLIPSegGrounder.from_uri(str(tiny_clipseg), threshold=1e-6)
    nowhere = CLIPSegGrounder.from_uri(str(tiny_clipseg), threshold=1 - 1e-6)
    assert ground(everywhere, image, ["cat"]).method == "clipseg"
    assert ground(everywhere, image, ["cat"]).mask.all()
    assert ground(nowhere, image, ["cat"]).fallback


def test_grounder_for_unknown_method_is_named():
    class Spec:
        method = "sam-3"

    with pytest.raises(ValueError, match="sam-3"):
        grounding.grounder_for(Spec(), "rlaif-v")


def test_a_box_label_names_the_keywords_whose_head_noun_it_holds():
    # Grounding DINO labels a box with the prompt tokens over text_threshold: a compound can
    # come back in part ("truck" for "fire truck"); a modifier alone is not the object.
    keywords = ["fire truck", "dog", "coffee table"]
    assert grounding.keywords_in_label("truck", keywords) == [0]
    assert grounding.keywords_in_label("fire truck", keywords) == [0]
    assert grounding.keywords_in_label("fire", keywords) == []
    assert grounding.keywords_in_label("dog table.", keywords) == [1, 2]
    assert grounding.keywords_in_label("", keywords) == []


@pytest.fixture(scope="module")
def tiny_grounding_sam(tmp_path_factory) -> tuple[Path, Path]:
    return grounding.build_tiny_grounding_sam(tmp_path_factory.mktemp("gsam"), image_size=64)


@pytest.mark.slow
def test_grounding_sam_boxes_become_sam_masks(tiny_grounding_sam):
    detector, sam = tiny_grounding_sam
    grounder = grounding.GroundingSamGrounder.from_uris(
        f"file://{detector}", f"file://{sam}", threshold=1e-6
    )
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    # Threshold ~0: every query box is kept and every prompt token is in its label.
    boxes = grounder.detect(image, ["cat", "red sofa"])
    assert len(boxes[0]) == len(boxes[1]) == 10  # num_queries of the tiny detector
    segmented = grounder.segment(image, boxes[0][:2])
    assert segmented.shape == (2, 40, 50) and segmented.dtype == bool
    masks = grounder.masks(image, ["cat", "red sofa"], {})
    assert [m.shape for m in masks] == [(40, 50), (40, 50)]
    np.testing.assert_array_equal(masks[0], grounder.segment(image, boxes[0]).any(axis=0))


@pytest.mark.slow
def test_grounding_sam_without_detections_falls_back(tiny_grounding_sam):
    detector, sam = tiny_grounding_sam
    grounder = grounding.GroundingSamGrounder.from_uris(str(detector), str(sam), threshold=1 - 1e-6)
    image = Image.new("RGB", (50, 40), (0, 0, 255))
    assert grounder.detect(image, ["cat"]) == [[]]
    assert ground(grounder, image, ["cat"]).fallback


def test_random_region_is_the_objects_shape_moved_off_them_without_wrapping():
    """The paper's random-region ablation: noise of the keyword regions' area, not on them.

    Main's np.roll put it anywhere, the objects included, and split it across the edges."""
    grounder = grounding.RandomRegionGrounder(AnnotationGrounder())
    keyword = ground(AnnotationGrounder(), IMAGE, ["cat", "sofa"], MASKS)
    moved = ground(grounder, IMAGE, ["cat", "sofa"], MASKS)
    assert moved.method == "random-region" and moved.grounded == ["cat", "sofa"]
    assert moved.mask.sum() == keyword.mask.sum() == 4 * 4 + 8 * 6
    assert not (moved.mask & keyword.mask).any()
    again = ground(grounding.RandomRegionGrounder(AnnotationGrounder()), IMAGE, ["cat", "sofa"], MASKS)
    assert np.array_equal(again.mask, moved.mask)  # the image alone places the region
    cat = keyword.mask.copy()
    cat[:, 10:] = False
    # Every place of a 4 x 4 square inside the 20 x 10 image that misses the cat, by brute force.
    clear = {(x, y) for y in range(7) for x in range(17) if not cat[y : y + 4, x : x + 4].any()}
    seen = set()
    for shade in range(300):
        image = Image.new("RGB", (20, 10), (shade % 256, shade // 256, 90))
        found = ground(grounder, image, ["cat"], MASKS)
        # one 4 x 4 square, whole: the cat's shape moved, never cut by an edge
        (x0, y0, x1, y1), = found.boxes
        assert (x1 - x0, y1 - y0) == (4, 4) and found.mask[y0:y1, x0:x1].all()
        assert found.mask.sum() == 16 and not (found.mask & cat).any()
        seen.add((x0, y0))
    assert seen <= clear and len(seen) > 0.9 * len(clear)  # drawn among all the clear places
    assert moved.overlap == 0.0  # recorded per record: none here


def test_random_region_around_large_objects_is_an_equal_area_blob_off_them():
    """No place for the objects' shape: the free pixels nearest a random free pixel."""
    image = Image.new("RGB", (20, 10), (10, 20, 30))
    band = np.zeros((10, 20), np.uint8)
    band[2:8, 3:17] = 255  # 84 pixels; every shift of the 6 x 14 band overlaps it
    found = ground(
        grounding.RandomRegionGrounder(AnnotationGrounder()), image, ["table"],
        {"table": Image.fromarray(band, mode="L")},
    )  # fmt: skip
    assert found.mask.sum() == 84 and not (found.mask & (band > 0)).any()
    assert found.overlap == 0.0


def test_random_region_records_the_overlap_the_image_forces():
    """Objects on 3/4 of the image leave 50 free pixels for a region of 150: 100 on them."""
    image = Image.new("RGB", (20, 10), (10, 20, 30))
    big = np.zeros((10, 20), np.uint8)
    big[:, 5:] = 255
    found = ground(
        grounding.RandomRegionGrounder(AnnotationGrounder()), image, ["sofa"],
        {"sofa": Image.fromarray(big, mode="L")},
    )  # fmt: skip
    assert found.mask.sum() == 150 and found.mask[:, :5].all()
    assert found.overlap == pytest.approx(100 / 150)


def test_random_region_keeps_the_whole_image_fallback():
    found = ground(grounding.RandomRegionGrounder(AnnotationGrounder()), IMAGE, ["lamp"], MASKS)
    assert found.fallback and found.mask.all()


def test_grounder_for_random_region_wraps_the_annotations():
    class Spec:
        method = "random-region"

    grounder = grounding.grounder_for(Spec(), "synthetic")
    assert isinstance(grounder, grounding.RandomRegionGrounder)
    assert isinstance(grounder.inner, AnnotationGrounder)


def test_grounder_for_random_region_places_regions_by_the_spec_seed():
    """imagePreference.seed reaches the random-region grounder: another seed, another place."""

    class Spec:
        method = "random-region"

    first = grounding.grounder_for(Spec(), "synthetic", seed=1)
    second = grounding.grounder_for(Spec(), "synthetic", seed=2)
    assert first.seed == 1 and second.seed == 2
    placed = [ground(g, IMAGE, ["cat"], MASKS).mask for g in (first, second)]
    assert placed[0].sum() == placed[1].sum()
    assert not np.array_equal(placed[0], placed[1])


# ------------------------------------------------------------------ the grounder's model directory


def test_fallback_reasons_tell_no_keywords_from_keywords_not_grounded():
    assert ground(AnnotationGrounder(), IMAGE, [], MASKS).reason == grounding.NO_KEYWORDS
    assert ground(AnnotationGrounder(), IMAGE, ["lamp"], MASKS).reason == grounding.NOT_GROUNDED
    assert ground(AnnotationGrounder(), IMAGE, ["cat"], MASKS).reason is None


def test_a_model_directory_of_another_class_is_refused_by_its_model_type(tmp_path, tiny_llava_dir):
    """The config.json's model_type is what transformers' AutoConfig dispatches on: CLIPSeg's is
    CLIPSegConfig.model_type, Grounding DINO's and SAM's theirs. A LLaVA directory given as
    the segmenter loaded into CLIPSeg with random weights and failed on every image with
    'tuple index out of range', retried until the attempts ran out."""
    from transformers import CLIPSegConfig, GroundingDinoConfig, SamConfig

    assert (CLIPSegConfig.model_type, GroundingDinoConfig.model_type, SamConfig.model_type) == (
        "clipseg", "grounding-dino", "sam",
    )  # fmt: skip
    llava = f"file://{tiny_llava_dir}"
    with pytest.raises(grounding.GrounderError) as raised:
        CLIPSegGrounder.from_uri(llava)
    assert str(raised.value).startswith(f"imagePreference.grounding.modelUri {llava} holds a model")
    assert "model_type 'llava'" in str(raised.value) and "expected 'clipseg'" in str(raised.value)
    empty, detector = tmp_path / "empty", tmp_path / "detector"
    empty.mkdir()
    detector.mkdir()
    (detector / "config.json").write_text('{"model_type": "grounding-dino"}')
    with pytest.raises(grounding.GrounderError, match=r"samUri .*empty: no config.json there"):
        grounding.GroundingSamGrounder.from_uris(str(detector), str(empty))
    with pytest.raises(grounding.GrounderError, match=r"grounding.modelUri .* model_type 'llava'.*expected 'grounding-dino'"):
        grounding.GroundingSamGrounder.from_uris(llava, str(empty))
    with pytest.raises(grounding.GrounderError, match=r"modelUri file:///nowhere: no such"):
        CLIPSegGrounder.from_uri("file:///nowhere")


def test_a_segmenter_that_fails_on_a_well_formed_image_is_a_grounder_error(tmp_path, tiny_clipseg):
    """A CLIPSeg directory of the right class whose decoder reads a layer the encoder does not
    have: transformers raises IndexError on every image. Not a property of the image, so not a
    bad record and not worth a retry: a GrounderError naming the field and the URI."""
    import json
    import shutil

    broken = tmp_path / "clipseg"
    shutil.copytree(tiny_clipseg, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "extract_layers": [0, 7]}))
    grounder = CLIPSegGrounder.from_uri(f"file://{broken}")
    with pytest.raises(grounding.GrounderError) as raised:
        ground(grounder, IMAGE, ["cat"])
    message = str(raised.value)
    assert f"the clipseg grounder of imagePreference.grounding.modelUri file://{broken} failed" in message
    assert "IndexError: tuple index out of range" in message and "20x10 image" in message
    assert isinstance(raised.value.__cause__, IndexError)
