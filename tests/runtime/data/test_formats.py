"""Readers: RLAIF-V parquet and JSONL, RLHF-V, LLaVA JSON, the synthetic world; bad records."""

import json
from pathlib import Path

import numpy as np
import pytest
from datagen_samples import (
    CHOSEN,
    png_bytes,
    rlaif_v_rows,
    write_jsonl_with_image_files,
    write_parquet,
)
from mfpo_runtime.data import formats, scenes
from mfpo_runtime.data.formats import BadRecord, Sample, iter_samples


def _samples(items):
    return [i for i in items if isinstance(i, Sample)]


def test_rlaif_v_parquet_reads_columns_and_image_bytes(rlaif_parquet: Path):
    items = list(iter_samples(str(rlaif_parquet), "rlaif-v"))
    assert [type(i) for i in items] == [Sample] * 6
    first = items[0]
    assert first.record.id == "RLAIF-V-0"
    assert first.record.chosen == CHOSEN[0]
    assert first.record.extra["origin_dataset"] == "COCO"
    assert first.image.mode == "RGB" and first.image.size == (40, 32)


def test_rlaif_v_directory_of_parquet_files_and_sharding(tmp_path: Path):
    rows = rlaif_v_rows(5)
    write_parquet(rows[:3], tmp_path / "d" / "part-000.parquet")
    write_parquet(rows[3:], tmp_path / "d" / "part-001.parquet")
    uri = f"file://{tmp_path}/d"
    everything = [s.index for s in _samples(iter_samples(uri, "rlaif-v"))]
    shard1 = [s.index for s in _samples(iter_samples(uri, "rlaif-v", shard=(1, 2)))]
    assert everything == [0, 1, 2, 3, 4]
    assert shard1 == [1, 3]
    assert [s.index for s in _samples(iter_samples(uri, "rlaif-v", max_samples=2))] == [0, 1]


def test_rlaif_v_jsonl_with_relative_image_paths(tmp_path: Path):
    path = write_jsonl_with_image_files(rlaif_v_rows(3), tmp_path / "j")
    samples = _samples(iter_samples(str(path), "rlaif-v"))
    assert len(samples) == 3
    expected = np.asarray(formats.decode_image(png_bytes(2), "x"))
    np.testing.assert_array_equal(np.asarray(samples[2].image), expected)


def test_missing_field_and_unreadable_image_are_named(tmp_path: Path):
    rows = rlaif_v_rows(3)
    rows[0]["chosen"] = None
    rows[2]["image"] = {"bytes": b"not an image", "path": "x.png"}
    items = list(iter_samples(str(write_parquet(rows, tmp_path / "bad.parquet")), "rlaif-v"))
    assert isinstance(items[0], BadRecord) and "'chosen'" in items[0].describe()
    assert items[0].record_id == "RLAIF-V-0"
    assert isinstance(items[1], Sample)
    assert isinstance(items[2], BadRecord) and "unreadable image" in items[2].reason


def test_missing_image_file_is_named(tmp_path: Path):
    path = tmp_path / "rows.jsonl"
    row = {
        "idx": "7",
        "question": "q?",
        "chosen": "a cat",
        "rejected": "a dog",
        "image": "gone.png",
    }
    path.write_text(json.dumps(row) + "\n" + "{not json\n")
    items = list(iter_samples(str(path), "rlaif-v"))
    assert isinstance(items[0], BadRecord) and "gone.png" in items[0].reason
    assert isinstance(items[1], BadRecord) and "line 2 is not JSON" in items[1].reason


def test_a_non_utf8_byte_spoils_only_its_own_line(tmp_path: Path):
    path = write_jsonl_with_image_files(rlaif_v_rows(3), tmp_path / "j")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"chosen", b"cho\xffsen", 1)  # one Latin-1 byte in line 2
    path.write_bytes(b"".join(lines))
    items = list(iter_samples(str(path), "rlaif-v"))
    assert [type(i) for i in items] == [Sample, BadRecord, Sample]
    assert "line 2 is not UTF-8" in items[1].reason and items[1].index == 1
    assert [i.record.id for i in _samples(items)] == ["RLAIF-V-0", "RLAIF-V-2"]


def test_rlhf_v_text_column(tmp_path: Path):
    rows = [
        {
            "idx": 3,
            "image": {"bytes": png_bytes(3), "path": None},
            "text": json.dumps({"question": "What?", "chosen": "A cup.", "rejected": "A kite."}),
        }
    ]
    (sample,) = list(iter_samples(str(write_parquet(rows, tmp_path / "rlhf.parquet")), "rlaif-v"))
    assert (sample.record.question, sample.record.chosen, sample.record.rejected) == (
        "What?",
        "A cup.",
        "A kite.",
    )


def test_llava_json_with_conversations_and_answer_forms(tmp_path: Path):
    (tmp_path / "img.png").write_bytes(png_bytes(0))
    records = [
        {
            "id": "a",
            "image": "img.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}],
            "chosen": "A cat.",
            "rejected": "A dog.",
        },
        {
            "id": "b",
            "image": "img.png",
            "chosen": [
                {"from": "human", "value": "Describe.<image>"},
                {"from": "gpt", "value": "A sun."},
            ],
            "rejected": [
                {"from": "human", "value": "Describe.<image>"},
                {"from": "gpt", "value": "A moon."},
            ],
        },
        {"id": "c", "image": "img.png", "conversations": [], "chosen": "x", "rejected": "y"},
    ]
    (tmp_path / "prefs.json").write_text(json.dumps(records))
    a, b, c = iter_samples(str(tmp_path / "prefs.json"), "llava")
    assert (a.record.question, a.record.chosen, a.record.rejected) == (
        "What is this?",
        "A cat.",
        "A dog.",
    )
    assert (b.record.question, b.record.chosen, b.record.rejected) == (
        "Describe.",
        "A sun.",
        "A moon.",
    )
    assert isinstance(c, BadRecord) and c.record_id == "c"


def test_synthetic_world_records_with_masks(tmp_path: Path):
    config = scenes.WorldConfig(seed=0, train=4, eval=0, counterprior=0, image_size=48)
    scenes.write_split(config, "train", f"file://{tmp_path}/world/train")
    samples = _samples(iter_samples(f"file://{tmp_path}/world/train", "synthetic"))
    assert len(samples) == 4
    for sample in samples:
        assert set(sample.masks) == set(sample.record.objects)
        assert all(m.mode == "L" and m.size == sample.image.size for m in sample.masks.values())


def test_synthetic_record_without_rejected_is_bad(tmp_path: Path):
    (tmp_path / "records.jsonl").write_text(
        json.dumps({"id": "e1", "question": "q", "image": "i.png", "chosen": "c"}) + "\n"
    )
    (item,) = list(iter_samples(str(tmp_path), "synthetic"))
    assert isinstance(item, BadRecord) and "rejected" in item.reason and item.record_id == "e1"


def test_missing_dataset_and_unknown_format_raise(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no .parquet or .jsonl"):
        list(iter_samples(str(tmp_path / "nothing"), "rlaif-v"))
    with pytest.raises(ValueError, match="unknown data format"):
        list(iter_samples(str(tmp_path), "coco"))
