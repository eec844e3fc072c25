"""The datagen stage on real photographs with free-form answers, for every model family
(issue 25.5): six photographs of different sizes and aspect ratios (tests/fixtures/photos),
paragraph-long answers, hand-drawn object masks, through the stage and then through each
family's real processor class (tiny models at the 336 px geometry of the released ones).

What the model is fed is measured with the model's own processor, never with datagen's code:
the regions are the hand-drawn masks of the objects the record says were grounded, sent
through the processor like the photograph (tests/runtime/data/real_photos.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datagen_samples import spec, stage_config
from mfpo_core import storage
from mfpo_runtime.data import grounding, noise
from mfpo_runtime.data.records import PreferenceRecord, read_records, write_records
from mfpo_runtime.models import build_tiny_model, load_vlm
from mfpo_runtime.models.families import TinySize
from mfpo_runtime.models.inputs import encode, encode_prompts
from mfpo_runtime.models.logprobs import sequence_logps
from mfpo_runtime.stage import run_stage
from mfpo_runtime.stages.datagen import dataset_uri
from PIL import Image
from real_photos import ddpm_as_an_image_holds_it, model_input, photos, region_entries

FAMILIES = ["llava", "llava-next", "qwen2-vl"]
PHOTOS = {photo.file: photo for photo in photos()}


@pytest.fixture(scope="module")
def real_photo_dataset(tmp_path_factory) -> Path:
    """The photographs as a records.jsonl dataset with their object masks (the layout the
    `synthetic` format reads, the one layout that carries masks for the annotation grounder)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    records = []
    for index, photo in enumerate(PHOTOS.values()):
        stem = Path(photo.file).stem
        shutil.copyfile(photo.path, root / "images" / photo.file)
        masks = {}
        for name in photo.objects:
            rel = f"masks/{stem}-{name.replace(' ', '-')}.png"
            photo.mask_image(name).save(root / rel)
            masks[name] = rel
        records.append(
            PreferenceRecord(
                id=f"photo-{index}-{stem}", question=photo.question, image=f"images/{photo.file}",
                chosen=photo.chosen, rejected=photo.rejected, objects=list(photo.objects), masks=masks,
            )
        )  # fmt: skip
    write_records(records, root, kind="text-preference")
    return root


@pytest.fixture(scope="module")
def tiny_336(tmp_path_factory) -> dict[str, Path]:
    """Tiny models of each family's real class at the released models' 336 px geometry."""
    size = TinySize(image_size=336, patch_size=14)
    return {
        family: build_tiny_model(family, tmp_path_factory.mktemp(f"tiny336-{family}"), size=size)
        for family in FAMILIES
    }


def _regions(record: PreferenceRecord, photo) -> np.ndarray:
    """The photograph's pixels the record's noise covers: the hand-drawn masks of the objects
    its grounded keywords name (the annotation grounder's matching), or all of it."""
    if record.grounding == grounding.FALLBACK:
        return np.ones(next(iter(photo.objects.values())).shape, bool)
    resolve = grounding.annotation_resolver("synthetic")
    names = set()
    for keyword in record.extra["grounded"]:
        names |= (resolve(keyword) | {keyword.lower()}) & set(photo.objects)
    return np.logical_or.reduce([photo.objects[n] for n in names])


@pytest.mark.parametrize("family", FAMILIES)
def test_real_photos_reach_the_model_noised_at_the_step_set(
    family, real_photo_dataset, tiny_336, tmp_path
):
    run_spec = spec(
        f"file://{real_photo_dataset}", "synthetic", f"file://{tmp_path}/runs",
        model_uri=f"file://{tiny_336[family]}", model_family=family,
    )  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen")
    result = run_stage(config, progress=False)
    root = storage.local_path(dataset_uri(config.run_uri, (0, 1)))
    records = read_records(root)
    assert result.metrics["records"] == len(records) == len(PHOTOS)
    image_processor = load_vlm(str(tiny_336[family])).processor.image_processor
    part = "tiles" if family == "llava-next" else "all"
    abar = noise.alpha_bar(500)
    x0s, x1s = [], []
    for record in records:
        photo = PHOTOS[Path(record.extra["source_image"]).name]
        original, perturbed = (
            Image.open(root / record.image),
            Image.open(root / record.perturbed_image),
        )
        # The stored image gives the model what the photograph gives it: nothing is resampled.
        np.testing.assert_array_equal(
            model_input(image_processor, original, part),
            model_input(image_processor, photo.image(), part),
        )
        inside = region_entries(image_processor, _regions(record, photo), part)
        assert inside.any(), record.id
        x0s.append(model_input(image_processor, original, part)[inside])
        x1s.append(model_input(image_processor, perturbed, part)[inside])
    x0, x1 = np.concatenate(x0s), np.concatenate(x1s)
    formula = ddpm_as_an_image_holds_it(x0, abar, draws=4)
    assert np.std(x1 - np.sqrt(abar) * x0) == pytest.approx(formula.noise_std, rel=0.05)
    centred = x0 - x0.mean()
    assert centred @ (x1 - x1.mean()) / (centred @ centred) == pytest.approx(
        formula.scale, rel=0.05
    )
    # Every region found is either in the model's input (kept) or listed as lost.
    for record in records:
        photo = PHOTOS[Path(record.extra["source_image"]).name]
        for keyword, share in (record.regions_kept or {}).items():
            lost = keyword in (record.regions_lost or [])
            assert (share == 0) == lost, (record.id, keyword)
            for name in {keyword.lower()} & set(photo.objects):
                assert region_entries(image_processor, photo.objects[name], part).any() != lost


@pytest.mark.parametrize("family", FAMILIES)
def test_the_model_reads_the_stored_pair(family, real_photo_dataset, tiny_336, tmp_path):
    """The stored original and perturbed photograph, through the family's processor and tiny
    model: as many image tokens as the photograph itself gets, and the chosen answer's
    log-likelihood finite on both and different between them."""
    run_spec = spec(
        f"file://{real_photo_dataset}", "synthetic", f"file://{tmp_path}/runs",
        model_uri=f"file://{tiny_336[family]}", model_family=family, data={"maxSamples": 1},
    )  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen")
    run_stage(config, progress=False)
    root = storage.local_path(dataset_uri(config.run_uri, (0, 1)))
    (record,) = read_records(root)
    vlm = load_vlm(str(tiny_336[family]))
    images = [Image.open(root / record.image), Image.open(root / record.perturbed_image)]
    photo = PHOTOS[Path(record.extra["source_image"]).name].image()
    tokens = [
        encode_prompts(vlm.processor, family, [record.question], [image])["input_ids"].shape[1]
        for image in (photo, images[0])
    ]
    assert tokens[0] == tokens[1]
    batch = encode(vlm.processor, family, [record.question] * 2, images, [record.chosen] * 2)
    with torch.inference_mode():
        logps = sequence_logps(vlm.model, batch)
    assert torch.isfinite(logps).all() and logps[0] != logps[1]
