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


# ------------------------------------------------------------------ records a model cannot learn from


def test_equal_chosen_and_rejected_is_a_bad_record_in_every_format(tmp_path: Path):
    rows = rlaif_v_rows(2)
    rows[1]["rejected"] = "  " + rows[1]["chosen"] + "\n"  # the same answer, but for spaces
    items = list(iter_samples(str(write_parquet(rows, tmp_path / "r.parquet")), "rlaif-v"))
    assert isinstance(items[0], Sample)
    assert isinstance(items[1], BadRecord) and items[1].record_id == "RLAIF-V-1"
    assert "same answer" in items[1].reason and "no preference" in items[1].reason
    (tmp_path / "img.png").write_bytes(png_bytes(0))
    llava = [{"id": "same", "image": "img.png", "question": "q?", "chosen": "A cat.", "rejected": "A cat."}]
    (tmp_path / "l.json").write_text(json.dumps(llava))
    (item,) = iter_samples(str(tmp_path / "l.json"), "llava")
    assert isinstance(item, BadRecord) and item.record_id == "same" and "same answer" in item.reason


@pytest.mark.parametrize("field", ["question", "chosen", "rejected"])
def test_a_lone_surrogate_in_model_text_is_a_bad_record_naming_field_and_position(tmp_path, field):
    rows = rlaif_v_rows(1)
    rows[0][field] = "ab\ud800cd"
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({**rows[0], "image": None}) + "\n")  # the escape: ASCII JSON
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "0.png").write_bytes(png_bytes(0))
    (item,) = iter_samples(str(path), "rlaif-v")
    assert isinstance(item, BadRecord) and item.record_id == "RLAIF-V-0"
    assert f"field {field!r}" in item.reason and "U+D800 at character 2" in item.reason


def test_image_decode_failures_of_every_class_are_bad_records(tmp_path: Path):
    from image_files import huge_png_header
    from test_image_decoding import _text_bomb_png, _two_idat_png_with_a_broken_second_chunk

    good = png_bytes(1)
    broken = {
        1: good[: len(good) // 2],  # truncated: OSError
        2: _two_idat_png_with_a_broken_second_chunk(),  # SyntaxError
        3: huge_png_header(9000, 9000),  # DecompressionBombWarning (over our limit)
        4: huge_png_header(20000, 20000),  # DecompressionBombError
        5: _text_bomb_png(),  # ValueError
    }
    rows = rlaif_v_rows(6)
    for index, data in broken.items():
        rows[index]["image"] = {"bytes": data, "path": f"coco/{index}.png"}
    items = list(iter_samples(str(write_parquet(rows, tmp_path / "r.parquet")), "rlaif-v"))
    assert isinstance(items[0], Sample)
    for index in broken:
        assert isinstance(items[index], BadRecord), index
        assert items[index].record_id == f"RLAIF-V-{index}"
        assert "unreadable image" in items[index].reason and f"coco/{index}.png" in items[index].reason


def test_masks_follow_the_exif_orientation_of_their_image(tmp_path: Path):
    from image_files import GRAY, RGB, exif_orientation, png

    stored = np.zeros((32, 40, 3), dtype=np.uint8)  # 40 wide, 32 high as stored
    stored[2:10, 30:38] = (255, 0, 0)  # the object, near the stored top-right corner
    mask = np.zeros((32, 40), dtype=np.uint8)
    mask[2:10, 30:38] = 255
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0.png").write_bytes(png(stored, RGB, exif=exif_orientation(6)))
    (tmp_path / "images" / "0-ball.png").write_bytes(png(mask, GRAY, exif=exif_orientation(6)))
    (tmp_path / "images" / "1-ball.png").write_bytes(png(mask, GRAY))  # no orientation: 40x32
    rows = [
        {"id": f"r{i}", "question": "q", "image": "images/0.png", "chosen": "a ball", "rejected": "a cup",
         "objects": ["ball"], "masks": {"ball": f"images/{i}-ball.png"}}
        for i in range(2)
    ]  # fmt: skip
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    aligned, mismatched = iter_samples(str(tmp_path), "synthetic")
    assert aligned.image.size == (32, 40)  # shown upright: rotated 90 degrees clockwise
    red = (np.asarray(aligned.image) == (255, 0, 0)).all(axis=2)
    np.testing.assert_array_equal(np.asarray(aligned.masks["ball"]) > 127, red)
    assert isinstance(mismatched, BadRecord) and mismatched.record_id == "r1"
    assert "mask 'ball' (images/1-ball.png) is 40x32" in mismatched.reason and "32x40" in mismatched.reason


# ------------------------------------------------------------------ dataset files as stored


def _part_dir(tmp_path: Path, second: bytes) -> str:
    write_parquet(rlaif_v_rows(2), tmp_path / "d" / "part-000.parquet")
    (tmp_path / "d" / "part-001.parquet").write_bytes(second)
    return f"file://{tmp_path}/d"


def _parquet_bytes(rows: list[dict], tmp_path: Path) -> bytes:
    return write_parquet(rows, tmp_path / "scratch" / "x.parquet").read_bytes()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("empty-file", "Parquet file size is 0 bytes"),
        ("not-parquet", "magic bytes not found"),
        ("truncated", "magic bytes not found"),
        ("bad-page-header", "OSError: .*thrift|page header"),
        ("bad-checksum", "CRC checksum verification failed"),
    ],
)
def test_a_broken_part_file_is_named_with_what_is_wrong(tmp_path: Path, damage, reason):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = _parquet_bytes(rlaif_v_rows(300), tmp_path)
    if damage == "empty-file":
        second = b""
    elif damage == "not-parquet":
        second = b"PK\x03\x04 a zip archive saved as .parquet"
    elif damage == "truncated":
        second = good[: len(good) // 2]
    elif damage == "bad-page-header":  # the bytes where the second data page's header starts
        data = bytearray(good)
        with pq.ParquetFile(tmp_path / "scratch" / "x.parquet") as handle:
            start = handle.metadata.row_group(0).column(0).data_page_offset
        data[start : start + 16] = b"\xff" * 16
        second = bytes(data)
    else:  # a value changed inside a page written with its CRC
        path = tmp_path / "scratch" / "crc.parquet"
        pq.write_table(pa.Table.from_pylist(rlaif_v_rows(3)), path, write_page_checksum=True, compression="none")
        data = bytearray(path.read_bytes())
        at = data.find(b"Describe the image.")
        data[at] = ord("d")
        second = bytes(data)
    uri = _part_dir(tmp_path, second)
    items = iter_samples(uri, "rlaif-v")
    assert [next(items).record.id, next(items).record.id] == ["RLAIF-V-0", "RLAIF-V-1"]  # part-000
    with pytest.raises(formats.DatasetFileError, match=reason) as raised:
        list(items)
    assert str(raised.value).startswith(f"{uri}/part-001.parquet is not a readable parquet file")


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"train.jsonl": b""}, "train.jsonl: 0 bytes"),
        ({"train.jsonl": b"\n\r\n  \n"}, "train.jsonl: 6 bytes, no record"),
        ({"train.json": b"[]"}, "train.json: an empty JSON list"),
        ({"part-000.parquet": None, "part-001.parquet": None}, "part-000.parquet: 0 rows; part-001.parquet: 0 rows"),
    ],
    ids=["zero-bytes", "blank-lines", "empty-list", "parquet-without-rows"],
)
def test_a_dataset_without_records_says_so(tmp_path: Path, files, reason):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "data"
    root.mkdir()
    schema = pa.Table.from_pylist(rlaif_v_rows(1)).schema
    for name, data in files.items():
        if data is None:
            pq.write_table(schema.empty_table(), root / name)
        else:
            (root / name).write_bytes(data)
    uri = str(root / next(iter(files))) if len(files) == 1 else f"file://{root}"
    with pytest.raises(formats.EmptyDataset, match="holds no record") as raised:
        list(iter_samples(uri, "rlaif-v"))
    assert reason in str(raised.value)
    assert formats.count_rows(uri, "rlaif-v") == 0
