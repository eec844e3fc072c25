"""Readers: RLAIF-V parquet and JSONL, RLHF-V, LLaVA JSON, the synthetic world; bad records."""

import json
import re
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
    assert isinstance(items[1], BadRecord) and "rows.jsonl line 2): the line is not JSON" in items[1].describe()


def test_a_non_utf8_byte_spoils_only_its_own_line(tmp_path: Path):
    path = write_jsonl_with_image_files(rlaif_v_rows(3), tmp_path / "j")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"chosen", b"cho\xffsen", 1)  # one Latin-1 byte in line 2
    path.write_bytes(b"".join(lines))
    items = list(iter_samples(str(path), "rlaif-v"))
    assert [type(i) for i in items] == [Sample, BadRecord, Sample]
    assert "data.jsonl line 2): the line is not UTF-8" in items[1].describe() and items[1].index == 1
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
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
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


# ------------------------------------------------------------------ own data: ids, files, messages


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _text_rows(ids: list[str], image: str = "0.png") -> list[dict]:
    return [
        {"id": i, "image": image, "question": "What is this?", "chosen": f"A cat ({i}).", "rejected": "A dog."}
        for i in ids
    ]


@pytest.mark.parametrize("shard", [(0, 1), (0, 2), (1, 2)])
def test_two_records_with_one_id_are_refused_in_every_shard_naming_both(tmp_path: Path, shard):
    """Ids key each record's artifacts (align's reference log-probs, score's sampled answers): a
    second record with the id would silently take the first's values. Every shard reads every
    row's id, so each refuses, whichever shard the two records fall in (#0 and #3)."""
    (tmp_path / "0.png").write_bytes(png_bytes(0))
    path = _jsonl(tmp_path / "text.jsonl", _text_rows(["t1", "t2", "t3", "t1"]))
    with pytest.raises(formats.DuplicateRecordId) as raised:
        list(iter_samples(str(path), "rlaif-v", shard=shard))
    message = str(raised.value)
    assert f"#0, {path} line 1" in message and f"#3, {path} line 4" in message
    assert "same id 't1'" in message


def test_ids_are_unique_across_the_files_of_a_directory(tmp_path: Path):
    rows = rlaif_v_rows(3)
    write_parquet(rows, tmp_path / "d" / "part-000.parquet")
    _jsonl(tmp_path / "d" / "part-001.jsonl", [{**rows[2], "image": {"bytes": None, "path": "x.png"}}])
    with pytest.raises(formats.DuplicateRecordId, match=r"#2, .*part-000.parquet row 2 and #3, .*part-001.jsonl line 1"):
        list(iter_samples(f"file://{tmp_path}/d", "rlaif-v"))
    assert formats.count_rows(f"file://{tmp_path}/d", "rlaif-v") == 4  # counting reads no id


def test_a_directory_reads_every_data_file_whatever_the_case_and_gzip(tmp_path: Path):
    """The tester's directory (a.jsonl, b.json, c.JSONL, d.jsonl.gz) gave 2 records of 5: the
    others were passed over without a word. gzip as Python's gzip module writes it (RFC 1952)."""
    import gzip

    root = tmp_path / "mix"
    (root / "images").mkdir(parents=True)
    (root / "images" / "0.png").write_bytes(png_bytes(0))
    rows = _text_rows([f"r{i}" for i in range(6)], image="images/0.png")
    _jsonl(root / "a.jsonl", rows[:1])
    (root / "b.json").write_text(json.dumps(rows[1:3]))  # a JSON list
    _jsonl(root / "c.JSONL", rows[3:4])
    (root / "d.jsonl.gz").write_bytes(gzip.compress(json.dumps(rows[4]).encode() + b"\n"))
    (root / "e.Json.GZ").write_bytes(gzip.compress(json.dumps([rows[5]]).encode()))
    files = formats.source_files(str(root), "rlaif-v")
    assert [f.name for f in files.read] == ["a.jsonl", "b.json", "c.JSONL", "d.jsonl.gz", "e.Json.GZ"]
    assert files.ignored == [("images/", "1 image file (not records: records name their images)")]
    samples = _samples(iter_samples(str(root), "rlaif-v"))
    assert [s.record.id for s in samples] == [r["id"] for r in rows]
    assert formats.count_rows(str(root), "rlaif-v") == 6


@pytest.mark.parametrize(
    "stray", ["notes.txt", "more.csv", "more.jsonl.zst", "data-00000-of-00001.arrow", "x.parquet.gz"]
)
def test_a_file_the_reader_cannot_read_refuses_the_directory_naming_it(tmp_path: Path, stray):
    root = tmp_path / "d"
    write_parquet(rlaif_v_rows(2), root / "part-000.parquet")
    (root / stray).write_bytes(b"1,2,3\n")
    with pytest.raises(formats.DatasetFileError, match=f"not data files this reader reads: {re.escape(stray)} "):
        formats.source_files(str(root), "rlaif-v")


def test_a_hugging_face_download_is_read_from_its_data_folder_and_its_metadata_named(tmp_path: Path):
    """`huggingface-cli download --local-dir` of a dataset repository: data/*.parquet, README.md,
    .gitattributes, and huggingface_hub's .cache/ of download metadata."""
    root = tmp_path / "repo"
    rows = rlaif_v_rows(4)
    write_parquet(rows[:2], root / "data" / "part-000.parquet")
    write_parquet(rows[2:], root / "data" / "part-001.parquet")
    for name in ("README.md", ".gitattributes", "dataset_info.json", ".cache/huggingface/download/data/part-000.parquet.metadata"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    files = formats.source_files(f"file://{root}", "rlaif-v")
    assert [f.name for f in files.read] == ["part-000.parquet", "part-001.parquet"]
    assert files.manifest()["ignored"] == [
        {"path": ".cache/huggingface/download/data/part-000.parquet.metadata", "why": "hidden"},
        {"path": ".gitattributes", "why": "hidden"},
        {"path": "README.md", "why": "dataset metadata"},
        {"path": "dataset_info.json", "why": "dataset metadata"},
    ]
    assert [s.record.id for s in _samples(iter_samples(f"file://{root}", "rlaif-v"))] == [
        f"RLAIF-V-{i}" for i in range(4)
    ]


@pytest.mark.parametrize(
    "layout",
    [
        ["data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"],
        ["train.jsonl", "eval.jsonl"],
        ["train/part-0.jsonl", "validation/part-0.jsonl"],
        ["data/dpo-00000-of-00002.parquet", "data/dpo-00001-of-00002.parquet"],
        ["part-000.parquet", "part-001.parquet"],
        ["retrain_set.jsonl", "interval.jsonl"],
        ["my-train.jsonl", "extra.jsonl"],
    ],
)
def test_several_splits_in_one_directory_are_refused_as_hugging_face_datasets_splits_them(
    tmp_path: Path, layout
):
    """The reference: `datasets`' own resolution of a directory's files into splits
    (datasets.data_files.get_data_patterns). Training on a directory that it would split in two
    would silently train on the test split."""
    from datasets.data_files import get_data_patterns

    root = tmp_path / "d"
    for rel in layout:
        if rel.endswith(".parquet"):
            write_parquet(rlaif_v_rows(1), root / rel)
        else:
            _jsonl(root / rel, _text_rows(["x"]))
    splits = get_data_patterns(str(root))
    if len(splits) > 1:
        with pytest.raises(formats.DatasetFileError, match=f"holds the files of {len(splits)} dataset splits"):
            formats.source_files(str(root), "rlaif-v")
    else:
        assert [f.uri for f in formats.source_files(str(root), "rlaif-v").read] == [
            str(root / rel) for rel in sorted(layout)
        ]


def test_a_single_file_is_read_by_its_suffix_in_any_case(tmp_path: Path):
    (tmp_path / "0.png").write_bytes(png_bytes(0))
    path = _jsonl(tmp_path / "TRAIN.JSONL", _text_rows(["a", "b"]))
    assert [s.record.id for s in _samples(iter_samples(str(path), "rlaif-v"))] == ["a", "b"]
    (tmp_path / "train.txt").write_text(path.read_text())
    with pytest.raises(formats.DatasetFileError, match=r"train.txt is not a data file this reader reads"):
        formats.source_files(str(tmp_path / "train.txt"), "rlaif-v")


def test_json_lines_named_json_says_so(tmp_path: Path):
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in _text_rows(["a", "b"])))
    with pytest.raises(formats.DatasetFileError, match=r"Extra data: line 2 column 1 .*name the file .jsonl"):
        list(iter_samples(str(path), "rlaif-v"))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (42, "field 'chosen' is an integer (42), expected a non-empty string"),
        (["A cup", "of coffee"], "field 'chosen' is a list of 2 items, expected a non-empty string"),
        ({"text": "a cup"}, "field 'chosen' is an object, expected a non-empty string"),
        (True, "field 'chosen' is a boolean (True), expected a non-empty string"),
        (None, "field 'chosen' is null, expected a non-empty string"),
        ("", "field 'chosen' is empty, expected a non-empty string"),
        (" \n\t", "field 'chosen' is only whitespace, expected a non-empty string"),
    ],
)
def test_a_wrong_typed_field_is_named_by_its_json_type(tmp_path: Path, value, reason):
    (tmp_path / "0.png").write_bytes(png_bytes(0))
    path = _jsonl(tmp_path / "t.jsonl", [{**_text_rows(["x"])[0], "chosen": value}])
    (item,) = iter_samples(str(path), "rlaif-v")
    assert isinstance(item, BadRecord) and item.reason == reason


def test_a_missing_field_and_a_parquet_int_column_are_named(tmp_path: Path):
    rows = rlaif_v_rows(2)
    del rows[0]["rejected"]
    items = list(iter_samples(str(write_parquet([rows[0]], tmp_path / "a.parquet")), "rlaif-v"))
    assert items[0].reason == "missing field 'rejected' (expected a non-empty string)"
    rows[1]["chosen"] = 7  # an int64 column
    (item,) = iter_samples(str(write_parquet([rows[1]], tmp_path / "b.parquet")), "rlaif-v")
    assert item.reason == "field 'chosen' is an integer (7), expected a non-empty string"


def test_the_record_keeps_where_its_image_came_from(tmp_path: Path):
    """The image's URI when it was read from a path, the struct's path of inline bytes, and
    the record's own place only for bytes that no path names."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cat.png").write_bytes(png_bytes(0))
    rows = [
        {"id": "struct", "image": {"bytes": None, "path": "images/cat.png"}},
        {"id": "bytes-named", "image": {"bytes": png_bytes(1), "path": "coco/1.png"}},
        {"id": "bytes-column", "image": {"bytes": png_bytes(2), "path": None}, "image_path": "coco/2.png"},
        {"id": "bytes", "image": {"bytes": png_bytes(3), "path": None}},
    ]
    rows = [{"image_path": None, **r, "question": "q?", "chosen": "a cat", "rejected": "a dog"} for r in rows]
    path = write_parquet(rows, tmp_path / "p.parquet")
    samples = _samples(iter_samples(str(path), "rlaif-v"))
    assert [(s.image_source, s.record.image) for s in samples] == [
        (f"{tmp_path}/images/cat.png",) * 2,
        ("coco/1.png",) * 2,
        ("coco/2.png",) * 2,
        (f"{path} row 3",) * 2,  # was "row-3": which file's row?
    ]
    assert [s.source for s in samples] == [f"{path} row {i}" for i in range(4)]
    lines = _jsonl(tmp_path / "l.jsonl", _text_rows(["path"], image="images/cat.png"))
    (sample,) = iter_samples(str(lines), "rlaif-v")
    assert sample.image_source == f"{tmp_path}/images/cat.png" and sample.source == f"{lines} line 1"
