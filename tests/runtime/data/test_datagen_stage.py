"""The datagen stage through the stage contract: synthetic world, RLAIF-V sample, bad records."""

import json
from pathlib import Path

import numpy as np
import pytest
from datagen_samples import rlaif_v_rows, spec, stage_config, write_parquet
from mfpo_core import storage
from mfpo_core.contract import BadInput, result_uri
from mfpo_runtime.data import scenes
from mfpo_runtime.data.records import read_manifest, read_records
from mfpo_runtime.stage import run_stage
from mfpo_runtime.stages.datagen import dataset_uri
from PIL import Image


def _world(tmp_path: Path, count: int = 6) -> str:
    config = scenes.WorldConfig(seed=0, train=count, eval=0, counterprior=0, image_size=48)
    uri = f"file://{tmp_path}/world/train"
    scenes.write_split(config, "train", uri)
    return uri


def _published(config, shard) -> Path:
    uri = dataset_uri(config.run_uri, shard)
    assert storage.is_complete(uri)
    return storage.local_path(uri)


def test_synthetic_world_two_shards_noise_only_the_object_regions(tmp_path: Path):
    run_spec = spec(
        _world(tmp_path), "synthetic", f"file://{tmp_path}/runs", image_preference={"shards": 2}
    )
    totals = 0
    for index in (0, 1):
        config = stage_config(tmp_path, run_spec, "datagen", shard=index)
        result = run_stage(config, progress=False)
        assert storage.exists(result_uri(config.run_uri, "datagen", (index, 2)))
        root = _published(config, (index, 2))
        records = read_records(root)
        assert result.metrics["records"] == len(records) == 3
        assert result.metrics["fallbacks"] == 0 and result.metrics["skipped"] == 0
        assert read_manifest(root)["kind"] == "image-preference"
        for record in records:
            assert record.grounding == "annotation"
            assert set(record.keywords) <= set(record.objects)  # answers name only objects
            original = np.asarray(Image.open(root / record.image)).astype(int)
            perturbed = np.asarray(Image.open(root / record.perturbed_image)).astype(int)
            changed = (original != perturbed).any(axis=2)
            inside = np.zeros(changed.shape, bool)
            for x0, y0, x1, y1 in record.regions:
                inside[y0:y1, x0:x1] = True
            assert changed.any() and not changed[~inside].any()
        totals += len(records)
    assert totals == 6


def test_rlaif_v_parquet_with_a_bad_record_skipped_and_counted(tmp_path: Path, caplog):
    rows = rlaif_v_rows(4)
    rows[1]["image"] = {"bytes": b"broken", "path": "x.png"}
    data = write_parquet(rows, tmp_path / "rlaif.parquet")
    run_spec = spec(
        str(data), "rlaif-v", f"file://{tmp_path}/runs",
        data={"onBadRecord": "skip", "maxSkippedFraction": 0.25},
        image_preference={"grounding": {"method": "annotation"}, "imageSize": 32},
    )  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen")
    result = run_stage(config, progress=False)
    # RLAIF-V has no masks: every sample falls back to whole-image noise, and is counted,
    # and the log says that this is the global-noise ablation, not MFPO's regions.
    assert result.metrics == {"records": 3, "skipped": 1, "fallbacks": 3, "ungrounded": 0}
    (warning,) = [r.getMessage() for r in caplog.records if "found no region in any" in r.getMessage()]
    assert "annotation grounder" in warning and "grounding-sam or clipseg" in warning
    assert "RLAIF-V-1" in result.details["skips"][0]
    root = _published(config, (0, 1))
    records = read_records(root)
    assert [r.id for r in records] == ["RLAIF-V-0", "RLAIF-V-2", "RLAIF-V-3"]
    assert all(
        r.grounding == "fallback-whole-image" and r.regions == [[0, 0, 32, 32]] for r in records
    )
    assert records[0].keywords[0] == "apple"
    assert Image.open(root / records[0].image).size == (32, 32)
    assert read_manifest(root)["skips"] == result.details["skips"]


def _skipping_run(tmp_path: Path, bad: int, total: int, **data):
    rows = rlaif_v_rows(total)
    for row in rows[:bad]:
        row["image"] = {"bytes": b"broken", "path": "x.png"}
    run_spec = spec(
        str(write_parquet(rows, tmp_path / "rlaif.parquet")), "rlaif-v", f"file://{tmp_path}/runs",
        data={"onBadRecord": "skip", **data}, image_preference={"imageSize": 32},
    )  # fmt: skip
    return stage_config(tmp_path, run_spec, "datagen")


def test_every_record_skipped_fails_the_shard_with_the_count(tmp_path: Path):
    config = _skipping_run(tmp_path, bad=3, total=3, maxSkippedFraction=1.0)
    with pytest.raises(BadInput, match=r"3 of 3 records .* skipped \(every record\).*RLAIF-V-0"):
        run_stage(config, progress=False)
    assert not storage.is_complete(dataset_uri(config.run_uri, (0, 1)))


def test_more_skipped_than_the_maximum_fraction_fails_the_shard(tmp_path: Path):
    config = _skipping_run(tmp_path, bad=1, total=5)  # 20% skipped, default maximum 10%
    with pytest.raises(BadInput, match=r"1 of 5 records .*maxSkippedFraction 0.1"):
        run_stage(config, progress=False)
    within = _skipping_run(tmp_path / "b", bad=1, total=5, maxSkippedFraction=0.2)
    assert run_stage(within, progress=False).metrics["skipped"] == 1


def test_bad_record_fails_the_stage_by_default_naming_it(tmp_path: Path):
    rows = rlaif_v_rows(2)
    rows[1]["question"] = ""
    data = write_parquet(rows, tmp_path / "rlaif.parquet")
    config = stage_config(
        tmp_path, spec(str(data), "rlaif-v", f"file://{tmp_path}/runs"), "datagen"
    )
    with pytest.raises(BadInput, match=r"RLAIF-V-1.*'question'"):
        run_stage(config, progress=False)


def test_missing_dataset_is_bad_input(tmp_path: Path):
    config = stage_config(
        tmp_path, spec(str(tmp_path / "none"), "synthetic", f"file://{tmp_path}/runs"), "datagen"
    )
    with pytest.raises(BadInput, match="data.uri"):
        run_stage(config, progress=False)


def test_without_fallback_ungrounded_samples_are_left_out_and_counted(tmp_path: Path):
    data = write_parquet(rlaif_v_rows(2), tmp_path / "rlaif.parquet")
    run_spec = spec(
        str(data), "rlaif-v", f"file://{tmp_path}/runs",
        image_preference={"grounding": {"fallbackWholeImage": False}},
    )  # fmt: skip
    result = run_stage(stage_config(tmp_path, run_spec, "datagen"), progress=False)
    assert result.metrics["records"] == 0 and result.metrics["ungrounded"] == 2


def test_rerun_after_publish_reuses_the_shard(tmp_path: Path):
    run_spec = spec(_world(tmp_path, 2), "synthetic", f"file://{tmp_path}/runs")
    config = stage_config(tmp_path, run_spec, "datagen")
    first = run_stage(config, progress=False)
    storage.delete(result_uri(config.run_uri, "datagen", (0, 1)))  # crash before the result doc
    root = _published(config, (0, 1))
    before = (root / "records.jsonl").stat().st_mtime_ns
    again = run_stage(config, progress=False)
    assert again.metrics == first.metrics
    assert (root / "records.jsonl").stat().st_mtime_ns == before


def test_noise_is_deterministic_across_shardings(tmp_path: Path):
    world = _world(tmp_path, 4)
    one = spec(world, "synthetic", f"file://{tmp_path}/one")
    two = spec(world, "synthetic", f"file://{tmp_path}/two", image_preference={"shards": 2})
    a = stage_config(tmp_path / "a", one, "datagen")
    run_stage(a, progress=False)
    b = stage_config(tmp_path / "b", two, "datagen", shard=1)
    run_stage(b, progress=False)
    ra = {r.id: r for r in read_records(_published(a, (0, 1)))}
    rb = read_records(_published(b, (1, 2)))
    for record in rb:
        pa = np.asarray(Image.open(_published(a, (0, 1)) / ra[record.id].perturbed_image))
        pb = np.asarray(Image.open(_published(b, (1, 2)) / record.perturbed_image))
        np.testing.assert_array_equal(pa, pb)


def test_outcome_counters_reach_prometheus(tmp_path: Path, monkeypatch):
    from mfpo_runtime.metrics import StageMetrics

    seen = {}
    original = StageMetrics.for_config

    def capture(config):
        seen["metrics"] = original(config)
        return seen["metrics"]

    monkeypatch.setattr(StageMetrics, "for_config", staticmethod(capture))
    data = write_parquet(rlaif_v_rows(2), tmp_path / "rlaif.parquet")
    run_stage(
        stage_config(tmp_path, spec(str(data), "rlaif-v", f"file://{tmp_path}/runs"), "datagen"),
        progress=False,
    )
    registry = seen["metrics"].registry
    labels = {"namespace": "default", "run": "demo", "stage": "datagen", "attempt": "1"}
    assert registry.get_sample_value("mfpo_datagen_records_total", labels) == 2
    assert registry.get_sample_value("mfpo_datagen_grounding_fallbacks_total", labels) == 2
    assert json.loads(json.dumps(labels))  # labels are the stage identity


def test_mfpo_stage_command_exits_65_on_a_bad_record(tmp_path: Path, monkeypatch):
    from mfpo_core.contract import ExitCode, TerminationSummary
    from mfpo_runtime.stage import main

    rows = rlaif_v_rows(2)
    rows[0]["rejected"] = None
    data = write_parquet(rows, tmp_path / "rlaif.parquet")
    config = stage_config(
        tmp_path, spec(str(data), "rlaif-v", f"file://{tmp_path}/runs"), "datagen"
    )
    (tmp_path / "config.json").write_text(config.to_json())
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(tmp_path / "termination-log"))
    codes = []
    main(["--config", str(tmp_path / "config.json"), "--no-progress"], exit=codes.append)
    assert codes == [ExitCode.BAD_INPUT]
    summary = TerminationSummary.decode((tmp_path / "termination-log").read_text())
    assert summary.status == "bad-input" and "RLAIF-V-0" in summary.message
    assert "'rejected'" in summary.message


def test_keywords_can_use_the_base_models_own_embeddings(tmp_path: Path, tiny_llava_dir):
    run_spec = spec(
        _world(tmp_path, count=2), "synthetic", f"file://{tmp_path}/runs",
        model_uri=str(tiny_llava_dir), image_preference={"keywords": {"wordVectors": "model"}},
    )  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen", shard=0)
    result = run_stage(config, progress=False)
    records = read_records(_published(config, (0, 1)))
    assert result.metrics["records"] == len(records) == 2
    assert all(r.keywords and set(r.keywords) <= set(r.objects) for r in records)
