"""Both stages with every dataset and artifact in S3 (moto's server, the real minio client)."""

from pathlib import Path

from datagen_samples import QUESTIONS, rlaif_v_rows, spec, write_parquet
from mfpo_core import storage
from mfpo_core.contract import StageConfig
from mfpo_runtime.data import entropy, scenes
from mfpo_runtime.data.records import PreferenceRecord
from mfpo_runtime.stage import run_stage
from mfpo_runtime.stages import score
from mfpo_runtime.stages.datagen import dataset_uri
from mfpo_runtime.stages.score import scored_dataset_uri


def _config(run_spec, run_uri: str, stage: str, shard: int | None = None) -> StageConfig:
    return StageConfig(uid="uid-test", runner="operator", run="demo", stage=stage, run_uri=run_uri, spec=run_spec, shard_index=shard)


def test_synthetic_world_in_s3_two_shards(tmp_path: Path, s3_bucket: str, tiny_llava_dir: Path):
    world = f"s3://{s3_bucket}/world/train"
    scenes.write_split(
        scenes.WorldConfig(seed=1, train=4, eval=0, counterprior=0, image_size=32), "train", world
    )
    run_uri = f"s3://{s3_bucket}/runs/demo"
    run_spec = spec(
        world, "synthetic", f"s3://{s3_bucket}/runs",
        model_uri=f"file://{tiny_llava_dir}", image_preference={"shards": 2},
    )  # fmt: skip
    for index in (0, 1):
        result = run_stage(_config(run_spec, run_uri, "datagen", index), progress=False)
        assert result.metrics["records"] == 2 and result.metrics["fallbacks"] == 0
        assert storage.is_complete(dataset_uri(run_uri, (index, 2)))


def test_rlaif_v_parquet_in_s3_through_datagen_and_score(
    tmp_path: Path, s3_bucket: str, monkeypatch, tiny_llava_dir: Path
):
    local = write_parquet(rlaif_v_rows(3), tmp_path / "train.parquet")
    storage.put_file(local, f"s3://{s3_bucket}/rlaif/train.parquet")
    run_uri = f"s3://{s3_bucket}/runs/demo"
    # The model in S3 as well: datagen reads its image processor without the weights.
    storage.put_dir(tiny_llava_dir, f"s3://{s3_bucket}/models/tiny-llava")
    run_spec = spec(
        f"s3://{s3_bucket}/rlaif", "rlaif-v", f"s3://{s3_bucket}/runs",
        model_uri=f"s3://{s3_bucket}/models/tiny-llava",
        curriculum={"stages": 3, "entropySamples": 2, "equivalence": "exact"},
    )  # fmt: skip
    assert (
        run_stage(_config(run_spec, run_uri, "datagen", 0), progress=False).metrics["records"] == 3
    )

    scripts = {QUESTIONS[0]: ["a", "a"], QUESTIONS[1]: ["a", "b"], QUESTIONS[2]: ["a", "a"]}
    monkeypatch.setattr(score, "_load_reference", lambda ctx: None)
    monkeypatch.setattr(
        entropy, "sample_answers", lambda _m, qs, images, **_: [scripts[q] for q in qs]
    )
    result = run_stage(_config(run_spec, run_uri, "score"), progress=False)
    assert result.outputs["dataset"] == scored_dataset_uri(run_uri)
    text = storage.read_text(storage.join(scored_dataset_uri(run_uri), "records.jsonl"))
    records = [PreferenceRecord.model_validate_json(line) for line in text.splitlines()]
    assert [r.bin for r in records] == [1, 3, 2]  # entropies 0, ln 2, 0: ties keep input order
    assert all(
        r.perturbed_image.startswith(f"s3://{s3_bucket}/runs/demo/datagen/shards/") for r in records
    )
    assert storage.read_bytes(records[1].perturbed_image)[:4] == b"\x89PNG"


def test_datagen_reads_the_image_processor_from_s3_without_the_weights(
    tmp_path: Path, s3_bucket: str, tiny_llava_dir: Path
):
    """A policy in S3 naming a base model in S3: datagen fetches the base's configuration and
    processor files, never its weights (a 7B model's shard would otherwise download 14 GB)."""
    from mfpo_runtime.models.io import load_image_processor, write_policy_manifest

    base = f"s3://{s3_bucket}/models/tiny-llava"
    storage.put_dir(tiny_llava_dir, base)
    write_policy_manifest(tmp_path / "policy", family="llava", base=base, adapters=[])
    storage.put_dir(tmp_path / "policy", f"s3://{s3_bucket}/runs/demo/align-1/policy")
    cache = tmp_path / "cache"
    family, image_processor = load_image_processor(
        f"s3://{s3_bucket}/runs/demo/align-1/policy", cache_dir=cache
    )
    assert family == "llava" and type(image_processor).__name__ == "CLIPImageProcessorPil"
    assert image_processor.crop_size["height"] == 32
    fetched = {p.name for p in cache.rglob("*") if p.is_file()}
    assert "processor_config.json" in fetched and "config.json" in fetched
    assert not any(name.endswith(".safetensors") for name in fetched)
