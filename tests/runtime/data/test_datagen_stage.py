"""The datagen stage through the stage contract: synthetic world, RLAIF-V sample, bad records."""

import json
import re
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


def test_synthetic_world_two_shards_noise_only_the_object_regions(tmp_path: Path, tiny_llava_dir):
    # 48 px scenes, a 32 px model: regions and noise in the model's view of each scene
    run_spec = spec(
        _world(tmp_path), "synthetic", f"file://{tmp_path}/runs",
        model_uri=str(tiny_llava_dir), image_preference={"shards": 2},
    )  # fmt: skip
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
    assert result.metrics == {
        "records": 3, "skipped": 1, "fallbacks": 3, "fallbacks_no_keywords": 0,
        "fallbacks_not_grounded": 3, "fallbacks_outside_view": 0, "ungrounded": 0,
        "regions_lost": 0, "no_keywords": 0, "non_english": 0,
    }  # fmt: skip
    (warning,) = [r.getMessage() for r in caplog.records if "found no region in any" in r.getMessage()]
    assert "annotation grounder" in warning and "grounding-sam or clipseg" in warning
    assert "RLAIF-V-1" in result.details["skips"][0]
    root = _published(config, (0, 1))
    records = read_records(root)
    assert [r.id for r in records] == ["RLAIF-V-0", "RLAIF-V-2", "RLAIF-V-3"]
    assert all(
        r.grounding == "fallback-whole-image" and r.regions == [[0, 0, 32, 32]] for r in records
    )
    assert {r.fallback_reason for r in records} == {"keywords not grounded"}
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
        tmp_path,
        spec(str(data), "rlaif-v", f"file://{tmp_path}/runs", image_preference={"imageSize": 32}),
        "datagen",
    )
    with pytest.raises(BadInput, match=r"RLAIF-V-1.*'question'"):
        run_stage(config, progress=False)


def test_missing_dataset_is_bad_input(tmp_path: Path):
    run_spec = spec(
        str(tmp_path / "none"), "synthetic", f"file://{tmp_path}/runs",
        image_preference={"imageSize": 32},
    )  # fmt: skip
    with pytest.raises(BadInput, match="data.uri"):
        run_stage(stage_config(tmp_path, run_spec, "datagen"), progress=False)


def test_missing_model_is_bad_input_naming_model_uri_and_image_size(tmp_path: Path):
    """Without imageSize, datagen reads the model's image processor: no model, no view."""
    config = stage_config(
        tmp_path, spec(_world(tmp_path, 2), "synthetic", f"file://{tmp_path}/runs"), "datagen"
    )
    with pytest.raises(BadInput, match="model.uri file://.*unread-model.*imagePreference.imageSize"):
        run_stage(config, progress=False)


def test_without_fallback_ungrounded_samples_are_left_out_and_counted(tmp_path: Path):
    data = write_parquet(rlaif_v_rows(2), tmp_path / "rlaif.parquet")
    run_spec = spec(
        str(data), "rlaif-v", f"file://{tmp_path}/runs",
        image_preference={"grounding": {"fallbackWholeImage": False}, "imageSize": 32},
    )  # fmt: skip
    result = run_stage(stage_config(tmp_path, run_spec, "datagen"), progress=False)
    assert result.metrics["records"] == 0 and result.metrics["ungrounded"] == 2


def test_rerun_after_publish_reuses_the_shard(tmp_path: Path, tiny_llava_dir):
    run_spec = spec(
        _world(tmp_path, 2), "synthetic", f"file://{tmp_path}/runs", model_uri=str(tiny_llava_dir)
    )
    config = stage_config(tmp_path, run_spec, "datagen")
    first = run_stage(config, progress=False)
    storage.delete(result_uri(config.run_uri, "datagen", (0, 1)))  # crash before the result doc
    root = _published(config, (0, 1))
    before = (root / "records.jsonl").stat().st_mtime_ns
    again = run_stage(config, progress=False)
    assert again.metrics == first.metrics
    assert (root / "records.jsonl").stat().st_mtime_ns == before


def test_noise_is_deterministic_across_shardings(tmp_path: Path, tiny_llava_dir):
    world, model = _world(tmp_path, 4), str(tiny_llava_dir)
    one = spec(world, "synthetic", f"file://{tmp_path}/one", model_uri=model)
    two = spec(
        world, "synthetic", f"file://{tmp_path}/two", model_uri=model, image_preference={"shards": 2}
    )
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
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs", image_preference={"imageSize": 32})
    run_stage(stage_config(tmp_path, run_spec, "datagen"), progress=False)
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
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs", image_preference={"imageSize": 32})
    config = stage_config(tmp_path, run_spec, "datagen")
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


# ------------------------------------------------------------------ real files and real strings


def _real_files_dataset(root: Path) -> tuple[Path, dict[int, dict], dict[int, bytes]]:
    """An RLAIF-V JSONL dataset with image files beside it: five records datagen must keep
    exactly and five it must name as bad, one of each kind."""
    from image_files import (
        GRAY,
        PALETTE,
        RGB,
        encoded,
        exif_orientation,
        huge_png_header,
        noise_rgb,
        png,
    )
    from test_image_decoding import _two_idat_png_with_a_broken_second_chunk

    jpeg = encoded(Image.fromarray(noise_rgb(3)), "JPEG", quality=90)
    files = {
        0: png(noise_rgb(0), RGB),
        1: png(noise_rgb(1), RGB),
        2: png(noise_rgb(2), RGB),
        3: jpeg[: len(jpeg) // 2],  # truncated
        4: png(np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64), GRAY, bit_depth=16),
        5: huge_png_header(9000, 9000),  # over the pixel limit
        6: png(noise_rgb(6, size=(48, 40)), RGB, exif=exif_orientation(6)),
        7: _two_idat_png_with_a_broken_second_chunk(),
        8: png(np.array([[0, 1], [2, 0]], dtype=np.uint8), PALETTE, palette=[(9, 9, 9), (250, 0, 0), (0, 0, 250)], trns=b"\x80"),
        9: png(noise_rgb(9), RGB),
    }  # fmt: skip
    rows = {
        i: {"ds_name": "mine", "idx": i, "image": f"images/{i}.png", "question": "Describe the image.",
            "chosen": f"A red apple next to a banana ({i}).", "rejected": f"A pear and a knife ({i}).",
            "origin_dataset": "phone camera"}
        for i in files
    }  # fmt: skip
    rows[0].update(ds_name="mine\ud800", chosen="An apple\u2028next to\u2029a banana\u0085 and a\x00 cup\x1c\x1d\x1e.")
    rows[1]["chosen"] = "An apple \udc00 on a plate."  # a lone surrogate in the model's text
    rows[2]["rejected"] = rows[2]["chosen"]  # no preference
    rows[4].update(question="What is\u2028shown?", rejected="Two\u2029pears.")
    rows[9].update(question="nul\x00 and \r\n inside", origin_dataset="\ufeffbom \U0001f600")
    (root / "images").mkdir(parents=True)
    lines = []
    for i, row in rows.items():
        (root / row["image"]).write_bytes(files[i])
        ascii_only = i in (0, 1)  # a lone surrogate can only travel escaped
        lines.append(json.dumps(row, ensure_ascii=ascii_only).encode("utf-8"))
    (root / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return root / "train.jsonl", rows, files


def test_datagen_names_every_bad_file_and_string_and_keeps_the_good_ones_exactly(tmp_path: Path):
    from mfpo_runtime.data.images import decode
    from mfpo_runtime.models import build_tiny_model, load_vlm
    from mfpo_runtime.stages.score import shard_records
    from real_photos import model_input

    data, rows, files = _real_files_dataset(tmp_path / "data")
    # A 64 px model: the 64 x 64 16-bit image is its own view; the others are resized into it.
    model = build_tiny_model("llava", tmp_path / "model", image_size=64)
    run_spec = spec(
        str(data), "rlaif-v", f"file://{tmp_path}/runs", model_uri=str(model),
        data={"onBadRecord": "skip", "maxSkippedFraction": 0.5},
    )  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen")
    result = run_stage(config, progress=False)
    assert result.metrics == {
        "records": 5, "skipped": 5, "fallbacks": 5, "fallbacks_no_keywords": 0,
        "fallbacks_not_grounded": 5, "fallbacks_outside_view": 0, "ungrounded": 0,
        "regions_lost": 0, "no_keywords": 0, "non_english": 0,
    }  # fmt: skip
    skips = result.details["skips"]
    expected = {
        1: "field 'chosen' holds the lone surrogate U+DC00 at character 9",
        2: "fields 'chosen' and 'rejected' hold the same answer",
        3: "image file is truncated",
        5: "9000 x 9000 = 81,000,000 pixels, more than the limit of 67,108,864 pixels",
        7: "SyntaxError: broken PNG file",
    }
    assert len(skips) == len(expected)
    for skip, (index, reason) in zip(skips, expected.items()):
        assert f"record 'mine-{index}' (#{index}, {data} line {index + 1})" in skip, skip
        assert reason in skip, skip
        if index != 1 and index != 2:
            assert f"images/{index}.png" in skip
    root = _published(config, (0, 1))
    assert (root / "records.jsonl").read_bytes().isascii()
    published = read_records(root)
    assert [r.id for r in published] == ["mine\ud800-0", "mine-4", "mine-6", "mine-8", "mine-9"]
    image_processor = load_vlm(str(model)).processor.image_processor
    for record in published:
        index = int(record.id.rsplit("-", 1)[1])
        source = rows[index]
        assert (record.question, record.chosen, record.rejected) == (source["question"], source["chosen"], source["rejected"])
        assert record.extra["origin_dataset"] == source["origin_dataset"]
        # Stored in the model's view: the model gets from it what it gets from the decoded file.
        stored = Image.open(root / record.image)
        decoded = decode(files[index], "x")
        np.testing.assert_array_equal(model_input(image_processor, stored), model_input(image_processor, decoded))
        assert record.extra["source_size"] == list(decoded.size)
    assert published[2].extra["source_size"] == [40, 48]  # upright: EXIF orientation 6
    sixteen_bit = np.asarray(Image.open(root / published[1].image))  # v / 257, not clipped at 255
    assert sixteen_bit[0, 16].tolist() == [1, 1, 1] and sixteen_bit[32, 0].tolist() == [128] * 3
    scored_input = shard_records(dataset_uri(config.run_uri, (0, 1)))
    assert [(r.id, r.question, r.chosen, r.rejected) for r in scored_input] == [
        (r.id, r.question, r.chosen, r.rejected) for r in published
    ]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("syntax-error-image", r"record 'mine\\ud800-0'.*images/0.png.*SyntaxError: broken PNG file"),
        ("empty-file", r"holds no record \(train.jsonl: 0 bytes\)"),
        ("broken-part-file", r"data/part-001.parquet is not a readable parquet file: OSError: .*thrift"),
    ],
)
def test_bad_files_exit_65_with_the_reason(tmp_path: Path, monkeypatch, case, message):
    from mfpo_core.contract import ExitCode, TerminationSummary
    from mfpo_runtime.stage import main
    from test_image_decoding import _two_idat_png_with_a_broken_second_chunk

    root = tmp_path / "data"
    if case == "syntax-error-image":
        data, _, _ = _real_files_dataset(root)
        (root / "images" / "0.png").write_bytes(_two_idat_png_with_a_broken_second_chunk())
    elif case == "empty-file":
        root.mkdir()
        data = root / "train.jsonl"
        data.write_bytes(b"")
    else:
        import pyarrow.parquet as pq

        write_parquet(rlaif_v_rows(2), root / "part-000.parquet")
        good = write_parquet(rlaif_v_rows(300), tmp_path / "scratch.parquet").read_bytes()
        with pq.ParquetFile(tmp_path / "scratch.parquet") as handle:
            start = handle.metadata.row_group(0).column(0).data_page_offset
        (root / "part-001.parquet").write_bytes(good[:start] + b"\xff" * 16 + good[start + 16 :])
        data = root
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs", image_preference={"imageSize": 32})
    config = stage_config(tmp_path, run_spec, "datagen")
    (tmp_path / "config.json").write_text(config.to_json())
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(tmp_path / "termination-log"))
    codes = []
    main(["--config", str(tmp_path / "config.json"), "--no-progress"], exit=codes.append)
    assert codes == [ExitCode.BAD_INPUT]
    summary = TerminationSummary.decode((tmp_path / "termination-log").read_text())
    assert summary.status == "bad-input"
    assert re.search(message, summary.message), summary.message
    assert not storage.is_complete(dataset_uri(config.run_uri, (0, 1)))


def test_a_one_megabyte_answer_is_cut_at_the_models_length_before_keyword_ranking(tmp_path, monkeypatch):
    from mfpo_runtime.data import keywords
    from mfpo_runtime.stages.datagen import WORD_RUN

    rng = np.random.default_rng(0)
    filler = " ".join("".join(chr(97 + c) for c in rng.integers(0, 26, 6)) for _ in range(150_000))
    answer = "A red apple next to a banana. " + filler
    assert len(answer) > 1_000_000
    rows = rlaif_v_rows(1)
    rows[0]["chosen"] = answer
    data = write_parquet(rows, tmp_path / "long.parquet")
    max_length = 64
    seen = []
    rank = keywords.rank_keywords

    def counting(text, **options):
        words = len(WORD_RUN.findall(text))
        assert words <= max_length, f"keyword ranking was given {words} words"
        seen.append((text, len(keywords.candidates(text))))
        return rank(text, **options)

    monkeypatch.setattr(keywords, "rank_keywords", counting)
    run_spec = spec(
        str(data), "rlaif-v", f"file://{tmp_path}/runs",
        training={"maxLength": max_length}, image_preference={"imageSize": 32},
    )  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen")
    assert run_stage(config, progress=False).metrics["records"] == 1
    ((text, candidates),) = seen
    assert answer.startswith(text) and len(WORD_RUN.findall(text)) == max_length
    assert candidates <= max_length
    (record,) = read_records(_published(config, (0, 1)))
    assert record.chosen == answer  # the record itself keeps the whole answer
    assert set(record.keywords) <= {c.keyword for c in keywords.candidates(text).values()}


def test_answer_head_counts_runs_of_letters_or_digits():
    from mfpo_runtime.stages.datagen import answer_head

    assert answer_head("a1b2c3d", 3) == "a1b"  # digits count: a 1 MB number is cut too
    assert answer_head("abécd efg", 3) == "abécd"  # letters of any script count
    assert answer_head("it's a cat-dog", 3) == "it's a"
    assert answer_head("猫が座っている。 Кошка сидит", 2) == "猫が座っている。 Кошка"
    assert answer_head("short one", 10) == "short one"
    assert answer_head("", 5) == ""


# ------------------------------------------------------------------ own data through the stage

PHOTOS = Path(__file__).parents[2] / "fixtures" / "photos"


def _exit_code_and_message(tmp_path: Path, monkeypatch, run_spec, shard: int | None = None):
    """What the operator sees of a datagen attempt: its exit code and termination message."""
    from mfpo_core.contract import TerminationSummary
    from mfpo_runtime.stage import main

    config = stage_config(tmp_path, run_spec, "datagen", shard=shard)
    path = tmp_path / f"config-{shard}.json"
    path.write_text(config.to_json())
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(tmp_path / "termination-log"))
    codes = []
    main(["--config", str(path), "--no-progress"], exit=codes.append)
    return codes, TerminationSummary.decode((tmp_path / "termination-log").read_text()).message


def _photo_rows(answers: dict[str, str], photo: str = "chelsea.jpg") -> list[dict]:
    return [
        {"id": key, "image": str(PHOTOS / photo), "question": "What is in the picture?",
         "chosen": answer, "rejected": "A dog sleeps on a sofa next to a ball."}
        for key, answer in answers.items()
    ]  # fmt: skip


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("shard", [0, 1])
def test_two_records_with_one_id_stop_every_shard_naming_both(tmp_path: Path, monkeypatch, shard):
    """The tester's t1-emoji-rtl twice: both records passed datagen, score and align, and with
    referenceMode precomputed one trained against the other's reference log-probs (loss.text
    12.34 at step 1 instead of ln 2). Now every shard of the run exits 65 naming both."""
    from mfpo_core.contract import ExitCode

    rows = _photo_rows({"t1": "A tabby cat lies on a grey carpet.", "t2": "A cat on a rug.",
                        "t3": "A grey carpet.", "t4": "A cat."})  # fmt: skip
    rows[3]["id"] = "t1"
    data = _write_jsonl(tmp_path / "text.jsonl", rows)
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs",
                    image_preference={"imageSize": 32, "shards": 2})  # fmt: skip
    codes, message = _exit_code_and_message(tmp_path, monkeypatch, run_spec, shard)
    assert codes == [ExitCode.BAD_INPUT]
    assert f"records #0, {data} line 1 and #3, {data} line 4 have the same id 't1'" in message


def test_the_manifest_names_the_files_read_and_passed_over(tmp_path: Path):
    root = tmp_path / "repo"
    write_parquet(rlaif_v_rows(2), root / "data" / "train-00000-of-00001.parquet")
    (root / "README.md").write_text("# my preferences\n")
    (root / ".gitattributes").write_text("*.parquet filter=lfs\n")
    run_spec = spec(f"file://{root}", "rlaif-v", f"file://{tmp_path}/runs",
                    image_preference={"imageSize": 32})  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen")
    assert run_stage(config, progress=False).metrics["records"] == 2
    assert read_manifest(_published(config, (0, 1)))["source_files"] == {
        "read": [f"file://{root}/data/train-00000-of-00001.parquet"],
        "ignored": [{"path": ".gitattributes", "why": "hidden"}, {"path": "README.md", "why": "dataset metadata"}],
    }


def test_a_record_keeps_its_source_and_each_fallback_its_reason(tmp_path: Path, caplog):
    """Answers in Chinese, Arabic, emoji alone give the English ranker no candidate: their
    records fall back to whole-image noise, now with the reason, and the shard says once that
    the ranker reads English only. The record keeps the image's path (was 'row-N')."""
    answers = {
        "zh": "一只橘色的虎斑猫躺在灰色的地毯上，向左看。",
        "ar": "قطة مخططة مستلقية على سجادة رمادية.",
        "de": "Eine getigerte Katze liegt auf einem grauen Teppich.",
        "emoji": "🐱 🧶",
        "en": "A tabby cat lies on a grey carpet.",
    }
    data = _write_jsonl(tmp_path / "intl.jsonl", _photo_rows(answers))
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs",
                    image_preference={"imageSize": 32, "grounding": {"method": "annotation"}})  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen")
    metrics = run_stage(config, progress=False).metrics
    assert (metrics["no_keywords"], metrics["non_english"]) == (3, 4)
    assert (metrics["fallbacks_no_keywords"], metrics["fallbacks_not_grounded"]) == (3, 2)
    records = {r.id: r for r in read_records(_published(config, (0, 1)))}
    assert {k: (r.keywords, r.fallback_reason) for k, r in records.items() if not r.keywords} == {
        "zh": ([], "no keyword candidates"), "ar": ([], "no keyword candidates"),
        "emoji": ([], "no keyword candidates"),
    }  # fmt: skip
    assert records["en"].fallback_reason == "keywords not grounded"  # no masks to annotate
    assert records["en"].extra["source_image"] == str(PHOTOS / "chelsea.jpg")
    assert records["en"].extra["source_record"] == f"{data} line 5"
    (warning,) = [r.getMessage() for r in caplog.records if "reads English only" in r.getMessage()]
    assert "3 of 5 chosen answers gave no keyword candidate and 4 look non-English" in warning


def test_a_grounder_model_of_another_class_exits_65_before_any_record(tmp_path, monkeypatch, tiny_llava_dir):
    """grounding: {method: clipseg, modelUri: <a LLaVA directory>} was retried until the attempts
    ran out ('tuple index out of range', naming nothing)."""
    from mfpo_core.contract import ExitCode

    data = _write_jsonl(tmp_path / "d.jsonl", _photo_rows({"a": "A cat on a carpet."}))
    grounding_spec = {"method": "clipseg", "modelUri": f"file://{tiny_llava_dir}"}
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs",
                    image_preference={"imageSize": 32, "grounding": grounding_spec})  # fmt: skip
    codes, message = _exit_code_and_message(tmp_path, monkeypatch, run_spec)
    assert codes == [ExitCode.BAD_INPUT]
    assert f"imagePreference.grounding.modelUri file://{tiny_llava_dir} holds a model of model_type 'llava'" in message


def test_a_segmenter_failing_on_a_photo_exits_65_naming_the_record_and_the_model(tmp_path, monkeypatch):
    from mfpo_core.contract import ExitCode
    from mfpo_runtime.data.grounding import build_tiny_clipseg

    model = build_tiny_clipseg(tmp_path / "clipseg", image_size=32)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "extract_layers": [0, 7]}))  # no layer 7
    data = _write_jsonl(tmp_path / "d.jsonl", _photo_rows({"a": "A cat on a carpet."}))
    grounding_spec = {"method": "clipseg", "modelUri": f"file://{model}"}
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs",
                    image_preference={"imageSize": 32, "grounding": grounding_spec})  # fmt: skip
    codes, message = _exit_code_and_message(tmp_path, monkeypatch, run_spec)
    assert codes == [ExitCode.BAD_INPUT]
    assert message.startswith(f"record 'a' ({data} line 1; image {PHOTOS / 'chelsea.jpg'}, 451x300)")
    assert f"grounder of imagePreference.grounding.modelUri file://{model} failed" in message
    assert "IndexError: tuple index out of range" in message


def test_a_model_of_another_family_than_model_family_exits_65(tmp_path, monkeypatch, tiny_llava_dir):
    from mfpo_core.contract import ExitCode

    data = _write_jsonl(tmp_path / "d.jsonl", _photo_rows({"a": "A cat on a carpet."}))
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs",
                    model={"uri": str(tiny_llava_dir), "family": "qwen2-vl"})  # fmt: skip
    codes, message = _exit_code_and_message(tmp_path, monkeypatch, run_spec)
    assert codes == [ExitCode.BAD_INPUT]
    assert f"model.uri {tiny_llava_dir}:" in message
    assert "holds a 'llava' model" in message and "but model.family is 'qwen2-vl'" in message


def test_every_input_of_the_run_is_checked_by_its_first_stage_before_any_work(tmp_path: Path):
    """Before: a benchmark's data was first read by the eval stage, after every alignment stage
    had trained; a split the data lacked was left out without a word."""
    data = write_parquet(rlaif_v_rows(2), tmp_path / "rlaif.parquet")
    pope_dir = tmp_path / "pope"
    (pope_dir / "images").mkdir(parents=True)
    (pope_dir / "coco_pope_random.json").write_text("")  # random only; the default lists all three
    benchmarks = [{"name": "pope", "uri": str(pope_dir)},
                  {"name": "object-halbench", "uri": f"file://{tmp_path}/cocoo"},  # a typo
                  {"name": "synthetic", "uri": f"file://{tmp_path}/no-world"}]  # fmt: skip
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs", image_preference={"imageSize": 32},
                    model_uri=f"file://{tmp_path}/no-model", evaluation={"benchmarks": benchmarks})  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen", 0)
    with pytest.raises(BadInput) as caught:
        run_stage(config, progress=False)
    assert str(caught.value) == (
        "inputs the run would fail to read (checked before any training): "
        f"spec.model.uri: file://{tmp_path}/no-model does not exist; "
        f"spec.evaluation.benchmarks[0]: POPE at {pope_dir}: split 'popular' (pope.splits) has no question file "
        "*popular.json or *popular.jsonl there (POPE's own: coco_pope_popular.json); "
        f"spec.evaluation.benchmarks[0]: POPE at {pope_dir}: split 'adversarial' (pope.splits) has no question "
        "file *adversarial.json or *adversarial.jsonl there (POPE's own: coco_pope_adversarial.json); "
        f"spec.evaluation.benchmarks[1]: evaluation benchmark object-halbench: file://{tmp_path}/cocoo does not exist; "
        f"spec.evaluation.benchmarks[2]: evaluation benchmark synthetic: file://{tmp_path}/no-world does not exist"
    )
    assert not storage.exists(dataset_uri(config.run_uri, (0, 1)))  # nothing done


def test_the_first_stage_reads_each_benchmark_question_file_as_eval_does(tmp_path: Path):
    """Hostile-user report: a POPE question naming a missing image and a label 'yes.' were found
    only by the eval stage, after every alignment stage had trained (the label not at all).
    docs/own-data.md promises the first stage finds them."""
    data = write_parquet(rlaif_v_rows(2), tmp_path / "rlaif.parquet")
    pope_dir = tmp_path / "pope"
    (pope_dir / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(pope_dir / "images" / "gh 1.jpg")
    questions = [{"question_id": 1, "image": "gh 1.jpg", "text": "Is there a cat?", "label": "Yes"},
                 {"question_id": 2, "image": "missing.jpg", "text": "Is there a dog?", "label": "no"},
                 {"question_id": 3, "image": "gh 1.jpg", "text": "Is there a cup?", "label": "yes."}]  # fmt: skip
    (pope_dir / "coco_pope_adversarial.json").write_text("".join(json.dumps(q) + "\n" for q in questions))
    benchmarks = [{"name": "pope", "uri": str(pope_dir), "pope": {"splits": ["adversarial"]}}]
    run_spec = spec(str(data), "rlaif-v", f"file://{tmp_path}/runs", image_preference={"imageSize": 32},
                    evaluation={"benchmarks": benchmarks})  # fmt: skip
    config = stage_config(tmp_path, run_spec, "datagen", 0)
    with pytest.raises(BadInput) as caught:
        run_stage(config, progress=False)
    file = f"{pope_dir}/coco_pope_adversarial.json"
    assert str(caught.value) == (
        "inputs the run would fail to read (checked before any training): "
        f"spec.evaluation.benchmarks[0]: {file} line 3: label 'yes.' is not yes or no (any case; a ground-truth "
        "label is exactly one of them)"
    )
    questions[2]["label"] = "yes"
    (pope_dir / "coco_pope_adversarial.json").write_text("".join(json.dumps(q) + "\n" for q in questions))
    with pytest.raises(BadInput) as caught:
        run_stage(config, progress=False)
    assert str(caught.value) == (
        "inputs the run would fail to read (checked before any training): "
        f"spec.evaluation.benchmarks[0]: {file} line 2: image 'missing.jpg' does not exist (under {pope_dir}/images)"
    )
    assert not storage.exists(dataset_uri(config.run_uri, (0, 1)))  # nothing done


def test_the_first_stage_checks_the_splits_of_the_runs_own_world(tmp_path: Path):
    world = _world(tmp_path, 2)  # a train split only: the default benchmark needs eval, eval-counterprior
    run_spec = spec(world, "synthetic", f"file://{tmp_path}/runs", image_preference={"imageSize": 32},
                    evaluation={"benchmarks": [{"name": "synthetic"}]})  # fmt: skip
    with pytest.raises(BadInput, match=r"split 'eval' \(synthetic.splits\) has no .*/world/eval/records.jsonl; "):
        run_stage(stage_config(tmp_path, run_spec, "datagen", 0), progress=False)
