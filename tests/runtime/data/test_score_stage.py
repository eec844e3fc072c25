"""The score stage through the stage contract: merge shards, semantic entropy, curriculum bins."""

import json
import math
from pathlib import Path

import pytest
from datagen_samples import QUESTIONS, rlaif_v_rows, spec, stage_config, write_parquet
from mfpo_core import storage
from mfpo_core.contract import result_uri
from mfpo_runtime.data import entropy, grounding, scenes
from mfpo_runtime.data.records import read_manifest, read_records
from mfpo_runtime.stage import run_stage
from mfpo_runtime.stages import score
from mfpo_runtime.stages.score import MissingShard, scored_dataset_uri


def _datagen(tmp_path: Path, run_spec, shards: int) -> None:
    for index in range(shards):
        run_stage(stage_config(tmp_path, run_spec, "datagen", shard=index), progress=False)


def _world_spec(tmp_path: Path, count: int, **overrides):
    config = scenes.WorldConfig(seed=0, train=count, eval=0, counterprior=0, image_size=32)
    scenes.write_split(config, "train", f"file://{tmp_path}/world/train")
    return spec(
        f"file://{tmp_path}/world/train", "synthetic", f"file://{tmp_path}/runs", **overrides
    )


@pytest.fixture
def scripted_sampler(monkeypatch):
    """Replaces the model's sampling with answers scripted per question: the bins by hand."""
    scripts = {}

    def sample(loaded, questions, images, *, samples, **_):
        return [scripts[q][:samples] for q in questions]

    monkeypatch.setattr(score, "_load_reference", lambda ctx: None)
    monkeypatch.setattr(entropy, "sample_answers", sample)
    return scripts


def test_missing_shard_is_a_retryable_error_naming_it(tmp_path: Path, tiny_llava_dir: Path):
    run_spec = _world_spec(
        tmp_path, 4, model_uri=f"file://{tiny_llava_dir}", image_preference={"shards": 2}
    )
    run_stage(stage_config(tmp_path, run_spec, "datagen", shard=0), progress=False)
    with pytest.raises(MissingShard, match=r"shard 1 of 2 .*00001-of-00002/dataset"):
        run_stage(stage_config(tmp_path, run_spec, "score"), progress=False)


def test_bins_from_scripted_answers(tmp_path: Path, scripted_sampler, tiny_llava_dir: Path):
    # Three questions (RLAIF-V rows cycle over them): entropies 0, ln 2 and h3 by hand.

    scripted_sampler.update(
        {
            QUESTIONS[0]: ["a cat", "A cat.", "a cat", "a cat"],
            QUESTIONS[1]: ["a cat", "a dog", "a cat", "a dog"],
            QUESTIONS[2]: ["a cat", "a dog", "a sun", "a sun"],
        }
    )
    data = write_parquet(rlaif_v_rows(6), tmp_path / "rlaif.parquet")
    run_spec = spec(
        str(data), "rlaif-v", f"file://{tmp_path}/runs",
        model_uri=f"file://{tiny_llava_dir}",
        image_preference={"shards": 2},
        curriculum={"stages": 3, "entropySamples": 4, "equivalence": "exact"},
    )  # fmt: skip
    _datagen(tmp_path, run_spec, 2)
    config = stage_config(tmp_path, run_spec, "score")
    result = run_stage(config, progress=False)

    root = storage.local_path(scored_dataset_uri(config.run_uri))
    records = {r.id: r for r in read_records(root)}
    h3 = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))  # groups of 2, 1, 1
    expected = {0: 0.0, 1: math.log(2), 2: h3}
    for i in range(6):
        assert records[f"RLAIF-V-{i}"].entropy == pytest.approx(expected[i % 3])
        assert records[f"RLAIF-V-{i}"].bin == 1 + i % 3  # two records per bin, easiest first
    assert result.metrics["records"] == 6
    assert result.metrics["entropy.mean"] == pytest.approx((math.log(2) + h3) / 3)
    assert [result.metrics[f"bin.{k}.records"] for k in (1, 2, 3)] == [2, 2, 2]
    # Images point into the shards: readable URIs, nothing copied.
    record = records["RLAIF-V-1"]
    assert "/datagen/shards/00001-of-00002/dataset/images/" in record.perturbed_image
    assert storage.exists(record.image) and storage.exists(record.perturbed_image)
    assert not (root / "images").exists()
    assert read_manifest(root)["kind"] == "curriculum"
    assert storage.exists(result_uri(config.run_uri, "score"))


def test_republish_is_reused(tmp_path: Path, scripted_sampler, tiny_llava_dir: Path):
    scripted_sampler.update({q: ["x", "y"] for q in QUESTIONS})
    data = write_parquet(rlaif_v_rows(3), tmp_path / "rlaif.parquet")
    run_spec = spec(
        str(data),
        "rlaif-v",
        f"file://{tmp_path}/runs",
        model_uri=f"file://{tiny_llava_dir}",
        curriculum={"entropySamples": 2, "equivalence": "exact"},
    )
    _datagen(tmp_path, run_spec, 1)
    config = stage_config(tmp_path, run_spec, "score")
    first = run_stage(config, progress=False)
    storage.delete(result_uri(config.run_uri, "score"))
    scripted_sampler.clear()  # a rescore would fail: the published dataset must be reused
    assert run_stage(config, progress=False).metrics == first.metrics


@pytest.mark.slow
def test_synthetic_world_scored_by_the_tiny_model(tmp_path: Path, tiny_llava_dir: Path):
    run_spec = _world_spec(
        tmp_path, 6,
        model_uri=f"file://{tiny_llava_dir}",
        image_preference={"shards": 2},
        curriculum={"stages": 3, "entropySamples": 3, "maxNewTokens": 6},
    )  # fmt: skip
    _datagen(tmp_path, run_spec, 2)
    config = stage_config(tmp_path, run_spec, "score")
    result = run_stage(config, progress=False)
    root = storage.local_path(scored_dataset_uri(config.run_uri))
    records = read_records(root)
    assert len(records) == 6 and sorted(r.bin for r in records) == [1, 1, 2, 2, 3, 3]
    assert all(0.0 <= r.entropy <= math.log(3) + 1e-9 for r in records)
    by_bin = {k: [r.entropy for r in records if r.bin == k] for k in (1, 2, 3)}
    assert max(by_bin[1]) <= min(by_bin[2]) and max(by_bin[2]) <= min(by_bin[3])
    samples = storage.read_text(storage.join(scored_dataset_uri(config.run_uri), "samples.jsonl"))
    assert len(samples.splitlines()) == 6
    # Seeded sampling: a fresh score of the same shards gives the same entropies.
    storage.delete(scored_dataset_uri(config.run_uri))
    storage.delete(result_uri(config.run_uri, "score"))
    again = run_stage(config, progress=False)
    assert again.metrics == result.metrics


@pytest.mark.slow
def test_rlaif_v_sample_with_clipseg_through_both_stages(tmp_path: Path, tiny_llava_dir: Path):
    clipseg = grounding.build_tiny_clipseg(tmp_path / "clipseg", image_size=32)
    data = write_parquet(rlaif_v_rows(4), tmp_path / "rlaif.parquet")
    run_spec = spec(
        str(data), "rlaif-v", f"file://{tmp_path}/runs",
        model_uri=f"file://{tiny_llava_dir}",
        image_preference={"grounding": {"method": "clipseg", "modelUri": f"file://{clipseg}"}},
        curriculum={"stages": 2, "entropySamples": 2, "maxNewTokens": 4},
    )  # fmt: skip
    datagen = run_stage(stage_config(tmp_path, run_spec, "datagen"), progress=False)
    assert datagen.metrics["records"] == 4
    assert datagen.metrics["fallbacks"] <= 4
    result = run_stage(stage_config(tmp_path, run_spec, "score"), progress=False)
    records = read_records(storage.local_path(scored_dataset_uri(f"file://{tmp_path}/runs/demo")))
    assert [r.grounding in ("clipseg", "fallback-whole-image") for r in records] == [True] * 4
    assert sorted(r.bin for r in records) == [1, 1, 2, 2]
    assert result.metrics["bin.1.records"] == 2


def test_two_shards_holding_one_id_are_refused_naming_both(tmp_path: Path):
    """Datagen refuses a duplicate id in the data it reads; shards that read different data
    (the file changed between two shards' attempts) can still publish one id twice. Score reads
    every shard and keys sampled answers by id: it stops, naming both records' shards and lines."""
    from datagen_samples import png_bytes
    from mfpo_core.contract import BadInput

    (tmp_path / "0.png").write_bytes(png_bytes(0))
    data = tmp_path / "prefs.jsonl"

    def write(ids):
        data.write_text("".join(
            json.dumps({"id": i, "image": "0.png", "question": "q?", "chosen": f"A cat {i}.", "rejected": "A dog."}) + "\n"
            for i in ids
        ))  # fmt: skip

    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs",
                    image_preference={"shards": 2, "imageSize": 32})  # fmt: skip
    write(["a", "b"])
    run_stage(stage_config(tmp_path, run_spec, "datagen", shard=0), progress=False)  # publishes "a"
    write(["x", "a"])
    run_stage(stage_config(tmp_path, run_spec, "datagen", shard=1), progress=False)  # "a" again
    with pytest.raises(BadInput) as raised:
        run_stage(stage_config(tmp_path, run_spec, "score"), progress=False)
    message = str(raised.value)
    assert "two records have the id 'a'" in message
    assert f"datagen shard 0 of 2, from {data} line 1; datagen shard 1 of 2, from {data} line 2" in message
