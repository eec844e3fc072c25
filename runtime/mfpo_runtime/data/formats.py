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

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mfpo_core import storage
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

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


# ------------------------------------------------------------------ images


def decode_image(data: bytes, what: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.mode == "RGB":  # most JPEGs: decode in place, without convert's full copy
            image.load()
            return image
        return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise RecordError(f"unreadable image {what}: {err}") from err


def resolve(reference: str, base_uri: str) -> str:
    """A storage URI for an image reference: absolute URIs kept, relative paths under base_uri."""
    if "://" in reference or reference.startswith("/"):
        return reference
    return storage.join(base_uri, reference)


def load_image(reference: str, base_uri: str) -> Image.Image:
    uri = resolve(reference, base_uri)
    try:
        data = storage.read_bytes(uri)
    except (storage.StorageError, OSError) as err:
        raise RecordError(f"cannot read image {uri}: {err}") from err
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
    # Decoded line by line: one bad byte makes that line a bad record, not the whole file.
    for number, raw in enumerate(storage.read_bytes(uri).splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield RecordError(f"{uri} line {number} is not UTF-8: {err}")
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            yield RecordError(f"{uri} line {number} is not JSON: {err}")
            continue
        yield row if isinstance(row, dict) else RecordError(f"{uri} line {number} is not an object")


def _parquet_rows(uri: str) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq  # imported late: only parquet sources need it

    with pq.ParquetFile(storage.materialize(uri)) as handle:
        for batch in handle.iter_batches(batch_size=64):
            yield from batch.to_pylist()


def _rlaif_v_rows(uri: str) -> Iterator[tuple[dict[str, Any] | RecordError, str]]:
    # A directory's .json files may be metadata: only a .json named directly is read as rows.
    for file in _source_files(uri, (".parquet", ".jsonl", ".json"), (".parquet", ".jsonl")):
        if file.endswith(".parquet"):
            rows: Iterable[Any] = _parquet_rows(file)
        elif file.endswith(".jsonl"):
            rows = _jsonl_rows(file)
        else:
            rows = _json_list(file)
        for row in rows:
            yield row, _parent(file)


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
            fields.update(json.loads(fields["text"]))
        except json.JSONDecodeError as err:
            raise RecordError(
                f"field 'text' is not the RLHF-V JSON of question/chosen/rejected: {err}"
            ) from err
    record = PreferenceRecord(
        id=_row_id(fields, index),
        question=_text_field(fields, "question"),
        chosen=_text_field(fields, "chosen"),
        rejected=_text_field(fields, "rejected"),
        image=str(fields.get("image_path") or f"row-{index}"),
        extra={k: fields[k] for k in RLAIF_V_EXTRA if fields.get(k) is not None},
    )
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
    record = PreferenceRecord(
        id=_row_id(row, index),
        question=_question(row),
        chosen=_last_turn(row.get("chosen"), "gpt", "chosen"),
        rejected=_last_turn(row.get("rejected"), "gpt", "rejected"),
        image=image_ref,
    )
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
    masks = {
        name: load_image(path, base_uri).convert("L") for name, path in (record.masks or {}).items()
    }
    return Sample(index, record, load_image(record.image, base_uri), masks)


def _file_row_count(uri: str) -> int:
    if uri.endswith(".parquet"):
        import pyarrow.parquet as pq

        with pq.ParquetFile(storage.materialize(uri)) as handle:
            return handle.metadata.num_rows  # the footer alone: no row is decoded
    if uri.endswith(".jsonl"):
        return sum(1 for line in storage.read_text(uri).splitlines() if line.strip())
    return len(_json_list(uri))


def count_rows(uri: str, data_format: str) -> int:
    """How many records the dataset holds, bad ones included, without decoding an image: the
    total of datagen's progress bar. Same errors as iter_samples for a missing dataset."""
    if data_format == "rlaif-v":
        files = _source_files(uri, (".parquet", ".jsonl", ".json"), (".parquet", ".jsonl"))
    elif data_format == "llava":
        files = _source_files(uri, (".json",))[:1]
    elif data_format == "synthetic":
        files = [storage.join(uri, RECORDS_FILE)]
    else:
        raise ValueError(f"unknown data format {data_format!r}: expected one of {FORMATS}")
    return sum(_file_row_count(file) for file in files)


def shard_size(rows: int, shard: tuple[int, int], max_samples: int | None = None) -> int:
    """How many of `rows` records iter_samples yields for `shard` (index % count == shard)."""
    shard_index, shard_count = shard
    rows = rows if max_samples is None else min(rows, max_samples)
    return max(0, -(-(rows - shard_index) // shard_count))


# ------------------------------------------------------------------ entry point


def _rows(uri: str, data_format: str) -> Iterator[tuple[dict[str, Any] | RecordError, str]]:
    if data_format == "rlaif-v":
        yield from _rlaif_v_rows(uri)
    elif data_format == "llava":
        file = _source_files(uri, (".json",))[0]
        yield from ((row, _parent(file)) for row in _json_list(file))
    elif data_format == "synthetic":
        yield from ((row, uri) for row in _jsonl_rows(storage.join(uri, RECORDS_FILE)))
    else:
        raise ValueError(f"unknown data format {data_format!r}: expected one of {FORMATS}")


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
    unreadable; a bad record is yielded as a BadRecord. Images are decoded only for this shard.
    """
    shard_index, shard_count = shard
    reader = _READERS.get(data_format)
    if reader is None:
        raise ValueError(f"unknown data format {data_format!r}: expected one of {FORMATS}")
    for index, (row, base_uri) in enumerate(_rows(uri, data_format)):
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
