"""Every string JSON allows (RFC 8259) survives the JSON Lines files of every stage (jsonlines.org).

RFC 8259 section 7: any code point may appear in a string, escaped or (but for '"', '\\' and
U+0000-U+001F) raw; "\\ud800" alone is a valid escape (section 8.2: software's behaviour with it
is "unpredictable"). JSON Lines: lines are separated by "\\n" ("\\r\\n" tolerated), UTF-8.
`str.splitlines()` also splits on U+2028, U+2029, U+0085, \\x0b, \\x0c, \\x1c-\\x1e and a lone
"\\r": the strings below are chosen to catch that.
"""

import json
from pathlib import Path

import pytest
from datagen_samples import png_bytes
from mfpo_core import storage
from mfpo_runtime.data import formats, json_lines
from mfpo_runtime.data.records import PreferenceRecord, read_records, write_records
from mfpo_runtime.eval.common import read_json_lines
from mfpo_runtime.stages.score import shard_records

JSON_STRINGS = {
    "lone high surrogate": "a\ud800b",
    "lone low surrogate": "\udfffx",
    "astral plane": "\U0001f600",  # JSON escapes it as the pair "\ud83d\ude00"
    "line separator": "one\u2028two",
    "paragraph separator": "one\u2029two",
    "next line": "one\u0085two",
    "nul": "a\x00b",
    "file/group/record separators": "a\x1cb\x1dc\x1ed",
    "vertical tab and form feed": "a\x0bb\x0cc",
    "carriage return": "a\rb",
    "crlf": "a\r\nb",
    "newline": "a\nb",
    "byte order mark inside": "\ufeffa",
    "quote and backslash": 'say "\\n"',
    "non-latin": "猫が座っている。 Кошка. قطة",
}


def _record(text: str) -> PreferenceRecord:
    return PreferenceRecord(
        id=f"id {text}", question=f"q {text}", image="images/0.png", chosen=f"c {text}",
        rejected=f"r {text}", keywords=[text], objects=[text], extra={"note": text, "nested": [text]},
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(JSON_STRINGS))
def test_records_round_trip_through_write_and_read(tmp_path: Path, name):
    text = JSON_STRINGS[name]
    records = [_record(text), _record("plain")]
    write_records(records, tmp_path)
    data = (tmp_path / "records.jsonl").read_bytes()
    data.decode("utf-8")  # RFC 8259 8.1: UTF-8
    assert data.count(b"\n") == 2 and data.endswith(b"\n")  # one record a line
    assert json.loads(data.split(b"\n")[0])["chosen"] == f"c {text}"
    assert read_records(tmp_path) == records


@pytest.mark.parametrize("name", sorted(JSON_STRINGS))
def test_score_reads_a_published_shard_unchanged(tmp_path: Path, name):
    records = [_record(JSON_STRINGS[name]), _record("plain")]
    write_records(records, tmp_path / "shard")
    read = shard_records(f"file://{tmp_path}/shard")
    assert [r.model_copy(update={"image": "images/0.png"}) for r in read] == records


def _raw_line(row: dict) -> bytes:
    """A line as another tool writes it: UTF-8 with non-ASCII characters unescaped."""
    return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"


def test_a_jsonl_dataset_with_raw_separators_inside_strings(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0.png").write_bytes(png_bytes(0))
    texts = ["one\u2028two", "one\u2029two", "one\u0085two", "tab\tand \u00e9"]
    rows = [
        {"idx": i, "image": "images/0.png", "question": "What?", "chosen": t, "rejected": "No."}
        for i, t in enumerate(texts)
    ]
    # A "\r" between tokens is JSON whitespace, and a file may end its lines with "\r\n".
    lines = [_raw_line(r) for r in rows]
    lines[1] = lines[1].replace(b', "question"', b',\r"question"')
    lines[2] = lines[2].replace(b"\n", b"\r\n")
    path = tmp_path / "data.jsonl"
    path.write_bytes(json_lines.BOM + b"".join(lines))
    samples = list(formats.iter_samples(str(path), "rlaif-v"))
    assert [s.record.chosen for s in samples] == texts
    assert formats.count_rows(str(path), "rlaif-v") == 4


def test_a_raw_control_character_spoils_only_its_own_line(tmp_path: Path):
    (tmp_path / "0.png").write_bytes(png_bytes(0))
    good = {"idx": 0, "image": "0.png", "question": "q", "chosen": "a", "rejected": "b"}
    bad = json.dumps({**good, "idx": 1, "chosen": "a\x1cb"}).replace("\\u001c", "\x1c")  # raw: not JSON
    path = tmp_path / "d.jsonl"
    path.write_bytes(_raw_line(good) + bad.encode() + b"\n" + _raw_line({**good, "idx": 2}))
    items = list(formats.iter_samples(str(path), "rlaif-v"))
    assert [type(i).__name__ for i in items] == ["Sample", "BadRecord", "Sample"]
    assert "line 2): the line is not JSON: Invalid control character" in items[1].describe()
    assert [i.record.id for i in items if isinstance(i, formats.Sample)] == ["0", "2"]


def test_benchmark_json_lines_keep_questions_with_line_separators(tmp_path: Path):
    questions = [
        {"image_id": 1, "question": "Describe\u2028the image."},
        {"image_id": 2, "question": "What is\u0085here?"},
    ]
    path = tmp_path / "questions.jsonl"
    path.write_bytes(b"".join(_raw_line(q) for q in questions))
    assert read_json_lines(storage.join(f"file://{tmp_path}", "questions.jsonl"), "questions") == questions


def test_writers_emit_ascii_that_any_json_reader_reads_back():
    value = {"s": "".join(JSON_STRINGS.values())}
    line = json_lines.dumps(value)
    assert line.isascii() and "\n" not in line
    assert json.loads(line) == value
    with pytest.raises(ValueError):
        json_lines.dumps({"x": float("nan")})  # NaN is not JSON
