"""Readers for text-preference datasets: RLAIF-V / RLHF-V, LLaVA-style JSON, the synthetic world.

Each reader turns a dataset URI (a file or a directory, local or in storage) into `Sample`s:
a `PreferenceRecord` plus its decoded RGB image (and ground-truth masks when the data has
them). A record that cannot be used becomes a `BadRecord` naming the record and the reason;
the caller decides (spec.data.onBadRecord) whether that fails the stage or is skipped and
counted. Nothing is dropped silently.

Formats (api.DataFormat):
- rlaif-v: parquet or JSONL rows with the RLAIF-V-Dataset columns (ds_name, image, question,
  chosen, rejected, origin_dataset, origin_split, idx, image_path); `image` is the Hugging
  Face image struct {bytes, path}, raw bytes, or a path/URI. RLHF-V-Dataset rows with a
  `text` column holding {"question", "chosen", "rejected"} as JSON are read too.
- llava: a JSON list of LLaVA conversation records: `conversations` (the human turn is the
  question) with `chosen` / `rejected` as strings or as conversations (the last gpt turn).
- synthetic: the records.jsonl dataset layout of `mfpo_runtime.data.records`.

Relative image paths resolve against the dataset file's directory. Called by the datagen stage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mfpo_core import storage
from PIL import Image
from pydantic import ValidationError

from mfpo_runtime.data import images, json_lines
from mfpo_runtime.data.records import RECORDS_FILE, PreferenceRecord

FORMATS = ("rlaif-v", "llava", "synthetic")
RLAIF_V_EXTRA = ("ds_name", "origin_dataset", "origin_split", "idx")


@dataclass
class Sample:
    """One usable record: position in the source, the record, its image and masks."""

    index: int
    record: PreferenceRecord
    image: Image.Image  # RGB
    masks: dict[str, Image.Image] = field(default_factory=dict)  # object name -> L mask


@dataclass
class BadRecord:
    """A record that cannot be used; `reason` names the field or the image."""

    index: int
    record_id: str
    reason: str

    def describe(self) -> str:
        return f"record {self.record_id!r} (#{self.index}): {self.reason}"


class RecordError(Exception):
    """Raised inside a reader for one record; turned into a BadRecord."""


class DatasetFileError(ValueError):
    """A file of the dataset cannot be read at all; the message names the file and why."""


class EmptyDataset(ValueError):
    """The dataset's files hold no record; the message names each file and what it holds."""


# ------------------------------------------------------------------ images


def decode_image(data: bytes, what: str) -> Image.Image:
    """The upright RGB image (`data.images.decode`); any failure is this record's RecordError."""
    try:
        return images.decode(data, what)
    except images.ImageDecodeError as err:
        raise RecordError(f"unreadable image: {err}") from err


def resolve(reference: str, base_uri: str) -> str:
    """A storage URI for an image reference: absolute URIs kept, relative paths under base_uri."""
    if "://" in reference or reference.startswith("/"):
        return reference
    return storage.join(base_uri, reference)


def load_image(reference: str, base_uri: str) -> Image.Image:
    uri = resolve(reference, base_uri)
    try:
        data = storage.read_bytes(uri)
    except (storage.StorageError, OSError, ValueError) as err:  # ValueError: a path no file can have
        raise RecordError(f"cannot read image {uri!r}: {err}") from err
    return decode_image(data, uri)


def _image_from_cell(cell: Any, path_hint: Any, base_uri: str) -> Image.Image:
    """The RLAIF-V `image` cell: {bytes, path} struct, raw bytes, or a path/URI string."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return decode_image(cell["bytes"], f"bytes of image {cell.get('path') or ''}".strip())
        if cell.get("path"):
            return load_image(cell["path"], base_uri)
    elif isinstance(cell, (bytes, bytearray)) and cell:
        return decode_image(bytes(cell), "bytes")
    elif isinstance(cell, str) and cell:
        return load_image(cell, base_uri)
    if isinstance(path_hint, str) and path_hint:
        return load_image(path_hint, base_uri)
    raise RecordError("missing field 'image' (expected {bytes, path}, bytes, or a path/URI)")


def _text_field(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"missing or empty field {name!r} (expected a non-empty string)")
    return value.strip()


# ------------------------------------------------------------------ sources


def _source_files(
    uri: str, suffixes: tuple[str, ...], dir_suffixes: tuple[str, ...] | None = None
) -> list[str]:
    """The data files of a dataset URI: the file itself, or the matching files of a directory
    (top level only, sorted: part-000.parquet, part-001.parquet, ...)."""
    if uri.endswith(suffixes) and storage.exists(uri):
        return [uri]
    wanted = dir_suffixes or suffixes
    files = [r for r in storage.list_files(uri) if r.endswith(wanted) and "/" not in r]
    if not files:
        raise FileNotFoundError(f"no {' or '.join(wanted)} file at {uri}")
    return [storage.join(uri, r) for r in files]


def _parent(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if "/" in uri else "."


def _jsonl_rows(uri: str) -> Iterator[dict[str, Any] | RecordError]:
    # Split on "\n" alone (`data.json_lines`); one bad byte spoils only its own line.
    for number, row in json_lines.read(storage.read_bytes(uri)):
        if isinstance(row, json_lines.LineError):
            yield RecordError(f"{uri} {row}")
        else:
            yield row if isinstance(row, dict) else RecordError(f"{uri} line {number} is not an object")


def _parquet_rows(uri: str) -> Iterator[dict[str, Any]]:
    """The rows of one parquet file; a file pyarrow cannot read is a DatasetFileError naming it
    (the rows before the damage have been yielded; how many follow it cannot be known). Pages
    written with CRC checksums are verified; damage inside a page without one goes unseen."""
    import pyarrow as pa  # imported late: only parquet sources need it
    import pyarrow.parquet as pq

    read = 0
    try:
        with pq.ParquetFile(storage.materialize(uri), page_checksum_verification=True) as handle:
            for batch in handle.iter_batches(batch_size=64):
                rows = batch.to_pylist()
                read += len(rows)
                yield from rows
    except (pa.ArrowException, OSError) as err:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        after = f" after {read} rows" if read else ""
        raise DatasetFileError(
            f"{uri} is not a readable parquet file{after}: {type(err).__name__}: {err}"
        ) from err


def dataset_files(uri: str, data_format: str) -> list[str]:
    """The files a dataset URI stands for, in reading order."""
    if data_format == "rlaif-v":
        # A directory's .json files may be metadata: only a .json named directly is read as rows.
        return _source_files(uri, (".parquet", ".jsonl", ".json"), (".parquet", ".jsonl"))
    if data_format == "llava":
        return _source_files(uri, (".json",))[:1]
    if data_format == "synthetic":
        return [storage.join(uri, RECORDS_FILE)]
    raise ValueError(f"unknown data format {data_format!r}: expected one of {FORMATS}")


def _file_rows(file: str) -> Iterable[dict[str, Any] | RecordError]:
    if file.endswith(".parquet"):
        return _parquet_rows(file)
    if file.endswith(".jsonl"):
        return _jsonl_rows(file)
    return _json_list(file)


def _why_empty(file: str) -> str:
    """What a data file that gave no row holds (read again only when every file gave none)."""
    if file.endswith(".parquet"):
        return "0 rows"
    size = len(storage.read_bytes(file))
    if not size:
        return "0 bytes"
    return f"{size} bytes, no record" if file.endswith(".jsonl") else "an empty JSON list"


def _json_list(uri: str) -> list[Any]:
    doc = storage.read_json(uri)
    if not isinstance(doc, list):
        raise TypeError(f"{uri}: expected a JSON list of records, got {type(doc).__name__}")
    return [
        row if isinstance(row, dict) else RecordError(f"item is not an object: {row!r:.60}")
        for row in doc
    ]


# ------------------------------------------------------------------ per format


def _row_id(row: dict[str, Any], index: int) -> str:
    for key in ("id", "idx"):
        if row.get(key) not in (None, ""):
            prefix = f"{row['ds_name']}-" if key == "idx" and row.get("ds_name") else ""
            return f"{prefix}{row[key]}"
    return f"record-{index:08d}"


def rlaif_v_sample(row: dict[str, Any], index: int, base_uri: str) -> Sample:
    """One RLAIF-V (or RLHF-V: a JSON `text` column) row."""
    fields = dict(row)
    if "question" not in fields and isinstance(fields.get("text"), str):
        try:
            text = json.loads(fields["text"])
        except json.JSONDecodeError as err:
            text = err
        if not isinstance(text, dict):
            raise RecordError(
                f"field 'text' is not the RLHF-V JSON object of question/chosen/rejected ({text})"
            )
        fields.update(text)
    record = _preference(PreferenceRecord(
        id=_row_id(fields, index),
        question=_text_field(fields, "question"),
        chosen=_text_field(fields, "chosen"),
        rejected=_text_field(fields, "rejected"),
        image=str(fields.get("image_path") or f"row-{index}"),
        extra={k: fields[k] for k in RLAIF_V_EXTRA if fields.get(k) is not None},
    ))
    return Sample(
        index, record, _image_from_cell(fields.get("image"), fields.get("image_path"), base_uri)
    )


def _last_turn(value: Any, speaker: str, name: str) -> str:
    """A string answer, or the last `speaker` turn of a LLaVA conversation list."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list):
        turns = [
            t.get("value", "") for t in value if isinstance(t, dict) and t.get("from") == speaker
        ]
        if turns and isinstance(turns[-1], str) and turns[-1].strip():
            return turns[-1].strip()
    raise RecordError(
        f"missing field {name!r} (expected a string or a conversation with a {speaker} turn)"
    )


def _question(row: dict[str, Any]) -> str:
    for source in (row.get("conversations"), row.get("chosen")):
        if isinstance(source, list):
            return (
                _last_turn(source[:1], "human", "conversations[0]").replace("<image>", "").strip()
            )
    for key in ("question", "prompt"):
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key].replace("<image>", "").strip()
    raise RecordError(
        "missing the question (expected conversations with a human turn, or 'question')"
    )


def llava_sample(row: dict[str, Any], index: int, base_uri: str) -> Sample:
    """One LLaVA-style record: {id, image, conversations, chosen, rejected}."""
    image_ref = row.get("image")
    if not isinstance(image_ref, str) or not image_ref:
        raise RecordError(
            "missing field 'image' (expected a path relative to the JSON file, or a URI)"
        )
    record = _preference(PreferenceRecord(
        id=_row_id(row, index),
        question=_question(row),
        chosen=_last_turn(row.get("chosen"), "gpt", "chosen"),
        rejected=_last_turn(row.get("rejected"), "gpt", "rejected"),
        image=image_ref,
    ))
    return Sample(index, record, load_image(image_ref, base_uri))


def synthetic_sample(row: dict[str, Any], index: int, base_uri: str) -> Sample:
    """One record of the records.jsonl layout, with its ground-truth masks."""
    try:
        record = PreferenceRecord.model_validate(row)
    except ValidationError as err:
        raise RecordError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        ) from err
    if not record.chosen or not record.rejected:
        raise RecordError("missing field 'chosen' or 'rejected' (a training record needs both)")
    _preference(record)
    image = load_image(record.image, base_uri)
    masks = {}
    for name, path in (record.masks or {}).items():
        mask = load_image(path, base_uri)  # its own EXIF orientation applied, as the image's
        if mask.size != image.size:
            raise RecordError(
                f"mask {name!r} ({path}) is {mask.width}x{mask.height} pixels but its image "
                f"{record.image} is {image.width}x{image.height} (both after EXIF orientation): "
                "a mask covers its image pixel for pixel"
            )
        masks[name] = mask.convert("L")
    return Sample(index, record, image, masks)


# A UTF-16 surrogate code point left alone in a str (a JSON "\ud800" escape with no partner):
# not a Unicode scalar value, so it has no UTF-8 form and no tokenizer can encode it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MODEL_TEXT_FIELDS = ("question", "chosen", "rejected")


def _preference(record: PreferenceRecord) -> PreferenceRecord:
    """The record, if its texts can be given to a model and its answers make a preference."""
    for name in MODEL_TEXT_FIELDS:
        found = LONE_SURROGATE.search(getattr(record, name))
        if found:
            raise RecordError(
                f"field {name!r} holds the lone surrogate U+{ord(found.group()):04X} at character "
                f"{found.start()}: JSON can carry it as an escape (RFC 8259 section 8.2), but it is "
                "not Unicode text and no tokenizer can encode it"
            )
    if record.chosen.strip() == record.rejected.strip():
        raise RecordError(
            "fields 'chosen' and 'rejected' hold the same answer: the pair carries no preference"
        )
    return record


def _file_row_count(uri: str) -> int:
    if uri.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(storage.materialize(uri)) as handle:
                return handle.metadata.num_rows  # the footer alone: no row is decoded
        except (pa.ArrowException, OSError) as err:
            raise DatasetFileError(f"{uri} is not a readable parquet file: {err}") from err
    if uri.endswith(".jsonl"):
        return json_lines.count(storage.read_bytes(uri))
    return len(_json_list(uri))


def count_rows(uri: str, data_format: str) -> int:
    """How many records the dataset holds, bad ones included, without decoding an image: the
    total of datagen's progress bar. Same errors as iter_samples for a missing dataset."""
    return sum(_file_row_count(file) for file in dataset_files(uri, data_format))


def shard_size(rows: int, shard: tuple[int, int], max_samples: int | None = None) -> int:
    """How many of `rows` records iter_samples yields for `shard` (index % count == shard)."""
    shard_index, shard_count = shard
    rows = rows if max_samples is None else min(rows, max_samples)
    return max(0, -(-(rows - shard_index) // shard_count))


# ------------------------------------------------------------------ entry point


def _rows(files: list[str], uri: str, data_format: str) -> Iterator[tuple[dict[str, Any] | RecordError, str]]:
    """(row, the URI its relative image paths resolve against) of every file in order."""
    for file in files:
        base_uri = uri if data_format == "synthetic" else _parent(file)
        for row in _file_rows(file):
            yield row, base_uri


_READERS = {"rlaif-v": rlaif_v_sample, "llava": llava_sample, "synthetic": synthetic_sample}


def iter_samples(
    uri: str,
    data_format: str,
    *,
    shard: tuple[int, int] = (0, 1),
    max_samples: int | None = None,
) -> Iterator[Sample | BadRecord]:
    """Samples of one shard (records whose index % count == shard index), in source order.

    Raises FileNotFoundError / ValueError / StorageError when the dataset itself is missing or
    unreadable (DatasetFileError names a broken file, EmptyDataset says that no file holds a
    record); a bad record is yielded as a BadRecord. Images are decoded only for this shard.
    """
    shard_index, shard_count = shard
    reader = _READERS.get(data_format)
    if reader is None:
        raise ValueError(f"unknown data format {data_format!r}: expected one of {FORMATS}")
    files = dataset_files(uri, data_format)
    index = -1
    for index, (row, base_uri) in enumerate(_rows(files, uri, data_format)):
        if max_samples is not None and index >= max_samples:
            return
        if index % shard_count != shard_index:
            continue
        if isinstance(row, RecordError):
            yield BadRecord(index, f"record-{index:08d}", str(row))
            continue
        try:
            yield reader(row, index, base_uri)
        except (RecordError, ValidationError) as err:
            yield BadRecord(index, _row_id(row, index), str(err))
    if index < 0:
        found = "; ".join(f"{file.rsplit('/', 1)[-1]}: {_why_empty(file)}" for file in files)
        raise EmptyDataset(f"{uri} holds no record ({found})")
