"""The synthetic scenes world: ground truth matches pixels, priors, formats, determinism."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from mfpo_core import storage
from mfpo_runtime.data import scenes
from mfpo_runtime.data.mentions import synthetic_extractor
from mfpo_runtime.data.records import read_manifest, read_records
from PIL import Image


def test_world_vocabulary_is_distinct():
    assert len(scenes.OBJECTS) >= 12
    assert len(set(scenes.OBJECT_COLOURS.values())) == len(scenes.OBJECTS)
    assert set(scenes.OBJECT_SHAPES) == set(scenes.OBJECT_COLOURS) == set(scenes.OBJECTS)
    for name in scenes.OBJECTS:
        assert scenes.OBJECT_SYNONYMS[name][0] == name
    for name, partner in scenes.PARTNERS.items():
        assert scenes.PARTNERS[partner] == name
        assert abs(scenes.OBJECTS.index(name) - scenes.OBJECTS.index(partner)) == 1


def test_backgrounds_can_never_take_an_object_colour():
    # Backgrounds are blends of the palette plus noise: all inside the palette's range +- noise.
    low = min(min(c) for c in scenes.BACKGROUNDS) - scenes.BACKGROUND_NOISE
    high = max(max(c) for c in scenes.BACKGROUNDS) + scenes.BACKGROUND_NOISE
    assert (low, high) == (119, 221)
    for name, colour in scenes.OBJECT_COLOURS.items():
        assert any(not low <= channel <= high for channel in colour), name


@pytest.mark.parametrize("seed", range(20))
def test_masks_and_object_list_match_the_pixels(seed):
    names = scenes.sample_objects(random.Random(seed), max_objects=4)
    scene = scenes.render_scene(names, size=48, seed=seed)
    pixels = np.asarray(scene.image)  # (H, W, 3)
    covered = np.zeros(pixels.shape[:2], dtype=int)
    for name, mask in scene.masks.items():
        inside = np.asarray(mask) > 0  # (H, W)
        assert inside.sum() >= 12, f"{name} is too small to see"
        assert (pixels[inside] == scene_colour(name)).all(), f"{name}'s mask holds other colours"
        covered += inside
    assert covered.max() == 1  # masks are disjoint
    # Every colour of the world appears exactly where, and only if, its object was drawn.
    for name, colour in scenes.OBJECT_COLOURS.items():
        exact = (pixels == colour).all(axis=-1)
        if name in names:
            assert (exact == (np.asarray(scene.masks[name]) > 0)).all()
        else:
            assert not exact.any(), f"{name} colour appears though it is not in the scene"


def scene_colour(name):
    return np.array(scenes.OBJECT_COLOURS[name], dtype=np.uint8)


def test_captions_are_hand_checked():
    assert scenes.caption(["cloud", "sun"], 0) == "The image shows a sun and a cloud."
    assert scenes.caption(["umbrella"], 1) == "There is an umbrella."
    assert scenes.caption(["fish", "tree", "boat"], 1) == "There are a tree, a boat and a fish."
    assert scenes.caption(["cup"], 3) == "The objects are a cup."
    with pytest.raises(ValueError, match="at least one object"):
        scenes.caption([], 0)


def test_hallucination_adds_the_missing_partner_or_one_absent_object():
    rng = random.Random(0)
    edits = Counter()
    for _ in range(300):
        present = scenes.sample_counterprior_objects(rng, max_objects=3)
        edit = scenes.hallucinate(present, rng)
        edits[edit.edit] += 1
        assert edit.hallucinated not in present
        assert set(edit.objects) - set(present) == {edit.hallucinated}
        if edit.edit == "add-partner":
            assert edit.hallucinated in {scenes.PARTNERS[n] for n in scenes.lonely_objects(present)}
        if edit.edit == "substitute":
            assert len(edit.objects) == len(present)
    assert 0.65 < edits["add-partner"] / 300 < 0.85  # partner_rate 0.75


def test_training_prior_and_counterprior_split():
    rng = random.Random(1)
    with_partner = Counter()
    seen = Counter()
    for _ in range(3000):
        names = scenes.sample_objects(rng, max_objects=4)
        assert 1 <= len(names) <= 4
        assert names == scenes.in_world_order(names)
        for name in names:
            if name in scenes.PARTNERS:
                seen[name] += 1
                with_partner[name] += scenes.PARTNERS[name] in names
    rate = sum(with_partner.values()) / sum(seen.values())
    assert 0.8 < rate < 0.95, rate
    for _ in range(200):
        names = scenes.sample_counterprior_objects(rng, max_objects=4)
        assert scenes.lonely_objects(names)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    config = scenes.WorldConfig(seed=7, train=30, eval=10, counterprior=10, image_size=32)
    return root, config, scenes.write_world(str(root), config)


def test_written_world_round_trips(small_world):
    root, config, uris = small_world
    assert set(uris) == set(scenes.SPLITS)
    extractor = synthetic_extractor()
    for split in scenes.SPLITS:
        assert storage.is_complete(uris[split])
        records = read_records(root / split)
        assert len(records) == config.count(split) == read_manifest(root / split)["count"]
        assert read_manifest(root / split)["kind"] == "text-preference"
        for record in records:
            image = Image.open(root / split / record.image)
            assert image.size == (32, 32) and image.mode == "RGB"
            assert set(record.masks) == set(record.objects)
            for name, mask_path in record.masks.items():
                mask = np.asarray(Image.open(root / split / mask_path)) > 0
                assert (np.asarray(image)[mask] == scene_colour(name)).all()
            # The faithful answer mentions exactly the objects; the rejected one adds one more.
            assert extractor.objects(record.chosen) == set(record.objects)
            assert extractor.objects(record.rejected) - set(record.objects) == {
                record.extra["hallucinated"]
            }
            assert record.question in scenes.QUESTIONS
        if split == "eval-counterprior":
            assert all(r.extra["lonely"] for r in records)
    world = storage.read_json(storage.join(str(root), scenes.WORLD_FILE))
    assert world["objects"] == scenes.OBJECTS and world["splits"]["train"] == 30


def test_same_seed_same_world_other_seed_other_world(tmp_path, small_world):
    root, config, _ = small_world
    scenes.write_world(str(tmp_path / "again"), config)
    for split in scenes.SPLITS:
        assert (tmp_path / "again" / split / "records.jsonl").read_bytes() == (
            root / split / "records.jsonl"
        ).read_bytes()
        first = sorted((root / split / "images").iterdir())
        assert [p.read_bytes() for p in first] == [
            (tmp_path / "again" / split / "images" / p.name).read_bytes() for p in first
        ]
    other = scenes.WorldConfig(seed=8, train=30, eval=0, counterprior=0, image_size=32)
    scenes.write_world(str(tmp_path / "other"), other)
    assert (tmp_path / "other" / "train" / "records.jsonl").read_bytes() != (
        root / "train" / "records.jsonl"
    ).read_bytes()


def test_cli_writes_the_splits(tmp_path, capsys):
    assert (
        scenes.main(
            [
                "--out",
                f"file://{tmp_path}/w",
                "--seed",
                "1",
                "--train",
                "4",
                "--eval",
                "2",
                "--image-size",
                "32",
            ]
        )
        == 0
    )
    assert len(read_records(tmp_path / "w" / "train")) == 4
    assert len(read_records(tmp_path / "w" / "eval-counterprior")) == 2
    assert "train: 4 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "8"], "image_size must be at least 16"),
        (["--max-objects", "5"], "max_objects"),
    ],
)
def test_cli_rejects_bad_settings(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit):
        scenes.main(["--out", str(tmp_path), *args])
    assert message in capsys.readouterr().err


def test_length_controlled_rejected_answers_are_as_long_as_chosen_ones(tmp_path, small_world):
    """The shortcut exists by default (rejected answers longer on average) and the option
    removes it, on the very same scenes, chosen answers and hallucinated objects."""
    root, config, _ = small_world
    controlled = scenes.WorldConfig(**{**config.__dict__, "length_controlled": True})
    scenes.write_world(str(tmp_path / "controlled"), controlled)
    extractor = synthetic_extractor()
    for split in scenes.SPLITS:
        default, equal = read_records(root / split), read_records(tmp_path / "controlled" / split)
        assert [(r.image, r.chosen, r.extra["hallucinated"]) for r in default] == [
            (r.image, r.chosen, r.extra["hallucinated"]) for r in equal
        ]
        for record in equal:
            assert len(record.rejected.split()) == len(record.chosen.split()), record
            assert extractor.objects(record.rejected) - set(record.objects) == {
                record.extra["hallucinated"]
            }
            assert record.extra["edit"] in ("substitute", "substitute-partner")
    train = read_records(root / "train")
    extra_words = [len(r.rejected.split()) - len(r.chosen.split()) for r in train]
    assert sum(extra_words) / len(train) > 0.5  # the default world's length shortcut
    images = sorted((root / "train" / "images").iterdir())
    assert [p.read_bytes() for p in images] == [
        (tmp_path / "controlled" / "train" / "images" / p.name).read_bytes() for p in images
    ]


def test_cli_length_controlled(tmp_path):
    assert scenes.main(["--out", str(tmp_path), "--train", "12", "--eval", "0",
                        "--image-size", "32", "--length-controlled"]) == 0  # fmt: skip
    for record in read_records(tmp_path / "train"):
        assert len(record.rejected.split()) == len(record.chosen.split())
    assert storage.read_json(storage.join(str(tmp_path), scenes.WORLD_FILE))["config"][
        "length_controlled"
    ]
