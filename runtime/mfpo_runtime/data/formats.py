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

import functools
import gzip
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mfpo_core import storage
from PIL import Image
from pydantic import ValidationError

from mfpo_runtime.data import image_refs, images, json_lines
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
    source: str = ""  # where the record is: "<file URI> line N" (or row N, item N)
    image_source: str = ""  # the image's URI, the struct's path of inline bytes, else `source`


@dataclass
class BadRecord:
    """A record that cannot be used; `reason` names the field or the image."""

    index: int
    record_id: str
    reason: str
    source: str = ""  # where the record is, as Sample.source

    def describe(self) -> str:
        where = f", {self.source}" if self.source else ""
        return f"record {self.record_id!r} (#{self.index}{where}): {self.reason}"


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


def load_image(reference: str, base_uri: str, source: str) -> tuple[Image.Image, str]:
    """(the image, where it came from: the URI read, else `source`, the record's own place, for
    inline data). `image_refs` says what a reference may be."""
    try:
        data, found = image_refs.read(reference, base_uri)
    except image_refs.ImageRefError as err:
        raise RecordError(str(err)) from err
    return decode_image(data, found.name()), found.uri or source


def _image_from_cell(
    cell: Any, path_hint: Any, base_uri: str, source: str
) -> tuple[Image.Image, str]:
    """The RLAIF-V `image` cell ({bytes, path} struct, raw bytes, or a path/URI string) and
    where it came from: the URI read, else the struct's `path` (or the `image_path` column) of
    inline bytes, else `source` (the record's own place: inline bytes named nowhere)."""
    named = cell.get("path") if isinstance(cell, dict) else None
    name = next((n for n in (named, path_hint) if isinstance(n, str) and n), None)
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return decode_image(cell["bytes"], f"bytes of image {name or source}"), name or source
        if cell.get("path"):
            return load_image(cell["path"], base_uri, source)
    elif isinstance(cell, (bytes, bytearray)) and cell:
        return decode_image(bytes(cell), f"bytes of image {name or source}"), name or source
    elif isinstance(cell, str) and cell:
        return load_image(cell, base_uri, source)
    if isinstance(path_hint, str) and path_hint:
        return load_image(path_hint, base_uri, source)
    raise RecordError("missing field 'image' (expected {bytes, path}, bytes, or a path/URI)")


def kind_of(value: Any) -> str:
    """A JSON value's type in words, with the value when short: "an integer (42)"."""
    shown = f" ({value!r:.40})" if isinstance(value, (bool, int, float)) else ""
    if isinstance(value, bool):
        return f"a boolean{shown}"
    if isinstance(value, int):
        return f"an integer{shown}"
    if isinstance(value, float):
        return f"a number{shown}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else f"a {type(value).__name__}"


def _text_field(row: dict[str, Any], name: str) -> str:
    if name not in row:
        raise RecordError(f"missing field {name!r} (expected a non-empty string)")
    value = row[name]
    if value is None:
        raise RecordError(f"field {name!r} is null, expected a non-empty string")
    if not isinstance(value, str):
        raise RecordError(f"field {name!r} is {kind_of(value)}, expected a non-empty string")
    if not value.strip():
        what = "empty" if not value else "only whitespace"
        raise RecordError(f"field {name!r} is {what}, expected a non-empty string")
    return value.strip()


# ------------------------------------------------------------------ sources

# A data file by its name, case ignored: how its records are stored.
PARQUET, JSON_LINES, JSON_LIST = "parquet", "jsonl", "json"
DATA_SUFFIXES = {
    ".parquet": PARQUET,
    ".jsonl": JSON_LINES,
    ".jsonl.gz": JSON_LINES,
    ".json": JSON_LIST,
    ".json.gz": JSON_LIST,
}
# What a Hugging Face dataset directory holds besides data: the names its own loader passes
# over (datasets/data_files.py, FILES_TO_IGNORE), hidden files and directories (".gitattributes",
# huggingface_hub's ".cache/"), which it passes over too, and documentation files.
HF_FILES_TO_IGNORE = frozenset(
    {"README.md", "config.json", "dataset_info.json", "dataset_infos.json", "dummy_data.zip", "dataset_dict.json"}
)
DOCUMENTATION = re.compile(r"(?i)(readme|license|licence|notice|citation)([-._].*)?|.*\.md")
# Hugging Face's split naming (datasets/data_files.py: SPLIT_KEYWORDS, NON_WORDS_CHARS, the
# keyword patterns for file and directory names, and SPLIT_PATTERN_SHARDED): a directory whose
# data files name more than one split is not read as one training set.
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SEP = "[-._ 0-9]"
SHARDED_SPLIT = re.compile(r"(?P<split>\w+)-[0-9]{5}-of-[0-9]{5}.*\..*")


@dataclass(frozen=True)
class DataFile:
    """One file of records: its URI and how its records are stored."""

    uri: str
    kind: str  # PARQUET, JSON_LINES or JSON_LIST
    gzip: bool = False

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    def place(self, number: int) -> str:
        """Where record `number` of the file is, as its user would find it: JSON Lines count
        lines from 1 (as editors do), parquet rows and JSON list items from 0 (as pyarrow and
        JSON Pointer do)."""
        unit = {PARQUET: "row", JSON_LINES: "line", JSON_LIST: "item"}[self.kind]
        return f"{self.uri} {unit} {number}"


@dataclass
class SourceFiles:
    """The files a dataset URI stands for: read in order, and those passed over, with why."""

    read: list[DataFile]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path under the URI, why)

    def manifest(self) -> dict[str, Any]:
        return {
            "read": [f.uri for f in self.read],
            "ignored": [{"path": path, "why": why} for path, why in self.ignored],
        }


def data_kind(name: str) -> tuple[str, bool] | None:
    """(kind, gzipped) of a data file's name, case ignored; None for any other name."""
    lower = name.lower()
    for suffix, kind in DATA_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind, suffix.endswith(".gz")
    return None


def _data_file(uri: str) -> DataFile | None:
    found = data_kind(uri.rsplit("/", 1)[-1])
    return DataFile(uri, *found) if found else None


@functools.lru_cache(maxsize=1)
def _image_suffixes() -> frozenset[str]:
    Image.init()
    return frozenset(Image.registered_extensions())


def _passed_over(rel: str) -> str | None:
    """Why a file of a dataset directory is no data file and may be passed over; None when it
    may hold records this reader does not read (the dataset is then refused)."""
    parts = rel.split("/")
    if any(part.startswith(".") for part in parts):
        return "hidden"
    name = parts[-1]
    if name in HF_FILES_TO_IGNORE or DOCUMENTATION.fullmatch(name):
        return "dataset metadata"
    if "." in name and "." + name.rsplit(".", 1)[-1].lower() in _image_suffixes():
        return "image"
    return None


def split_of(rel: str) -> str | None:
    """The Hugging Face split a data file's path names (train, validation, test, or the split
    of a sharded `<split>-00000-of-00003.parquet`), None when it names none."""
    *dirs, name = rel.split("/")
    sharded = SHARDED_SPLIT.fullmatch(name)
    if sharded:
        return sharded["split"]
    for split, keywords in SPLIT_KEYWORDS.items():
        for keyword in keywords:
            if re.match(f"(.*{_SEP})?{keyword}{_SEP}", name) or any(
                re.fullmatch(f"(.*{_SEP})?{keyword}({_SEP}.*)?", d) for d in dirs
            ):
                return split
    return None


def _directory_files(uri: str, rels: list[str]) -> SourceFiles:
    """Every data file under a directory, in path order; refused: files that are neither data
    nor passed over (records could be in them), and data files of several splits."""
    read, ignored, unreadable = [], [], []
    images: dict[str, int] = {}  # directory ("" for the top) -> image files in it
    for rel in rels:
        found = data_kind(rel.rsplit("/", 1)[-1])
        why = None if found and rel.rsplit("/", 1)[-1] not in HF_FILES_TO_IGNORE else _passed_over(rel)
        if found and why is None:
            read.append(DataFile(storage.join(uri, rel), *found))
        elif why == "image":
            folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
            images[folder] = images.get(folder, 0) + 1
        elif why is not None:
            ignored.append((rel, why))
        else:
            unreadable.append(rel)
    if unreadable:
        raise DatasetFileError(
            f"{uri} holds files that are not data files this reader reads: "
            f"{', '.join(unreadable[:10])}{' ...' if len(unreadable) > 10 else ''} "
            f"(read: {', '.join(DATA_SUFFIXES)}, any case; passed over: images, hidden files, "
            f"README/LICENSE/*.md and {', '.join(sorted(HF_FILES_TO_IGNORE - {'README.md'}))}): "
            "convert them, or move them out of the directory"
        )
    for folder, count in images.items():
        plural = "s" if count != 1 else ""
        ignored.append((folder, f"{count} image file{plural} (not records: records name their images)"))
    splits: dict[str, list[str]] = {}
    for file in read:
        split = split_of(file.uri[len(uri.rstrip("/")) + 1 :])
        if split is not None:
            splits.setdefault(split, []).append(file.name)
    if len(splits) > 1:
        named = "; ".join(f"{split}: {', '.join(names[:3])}" for split, names in splits.items())
        raise DatasetFileError(
            f"{uri} holds the files of {len(splits)} dataset splits by Hugging Face's naming "
            f"({named}): point data.uri at one split's file or directory"
        )
    return SourceFiles(read, ignored)


def source_files(uri: str, data_format: str) -> SourceFiles:
    """The files a dataset URI stands for, in reading order, and those passed over.

    A file is read by its name: .parquet, .jsonl or .json (a JSON list of records), .jsonl.gz or
    .json.gz (gzip), any case. A directory is read whole, subdirectories included (Hugging
    Face's `data/`), in path order; DatasetFileError when it holds a file that is neither a data
    file nor one `_passed_over` names, or data files of several splits.
    """
    if data_format not in FORMATS:
        raise ValueError(f"unknown data format {data_format!r}: expected one of {FORMATS}")
    if data_format == "synthetic":
        return SourceFiles([DataFile(storage.join(uri, RECORDS_FILE), JSON_LINES)])
    rels = storage.list_files(uri)
    if rels == [""]:  # the URI is a file
        single = _data_file(uri)
        if single is None:
            raise DatasetFileError(
                f"{uri} is not a data file this reader reads: expected a name ending in "
                f"{', '.join(DATA_SUFFIXES)} (any case)"
            )
        return SourceFiles([single])
    if not rels:
        raise FileNotFoundError(f"no such file or directory: {uri}")
    files = _directory_files(uri, rels)
    if not files.read:
        passed = ", ".join(path or "images" for path, _ in files.ignored)
        raise FileNotFoundError(
            f"no data file ({', '.join(DATA_SUFFIXES)}) at {uri}"
            + (f" (passed over: {passed})" if passed else "")
        )
    return files


def dataset_files(uri: str, data_format: str) -> list[str]:
    """The URIs of the files a dataset URI stands for, in reading order."""
    return [file.uri for file in source_files(uri, data_format).read]


def _parent(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if "/" in uri else "."


def _file_bytes(file: DataFile) -> bytes:
    data = storage.read_bytes(file.uri)
    if not file.gzip:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; EOFError: cut short
        raise DatasetFileError(
            f"{file.uri} is not a readable gzip file: {type(err).__name__}: {err}"
        ) from err


def _jsonl_rows(file: DataFile) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
    # Split on "\n" alone (`data.json_lines`); one bad byte spoils only its own line.
    for number, row in json_lines.read(_file_bytes(file)):
        if isinstance(row, json_lines.LineError):  # "line N is not JSON: ...": N is in the place
            yield number, RecordError(str(row).replace(f"line {number} ", "the line ", 1))
        else:
            yield number, (
                row if isinstance(row, dict) else RecordError(f"the line is {kind_of(row)}, not an object")
            )


def _parquet_rows(file: DataFile) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of one parquet file; a file pyarrow cannot read is a DatasetFileError naming it
    (the rows before the damage have been yielded; how many follow it cannot be known). Pages
    written with CRC checksums are verified; damage inside a page without one goes unseen."""
    import pyarrow as pa  # imported late: only parquet sources need it
    import pyarrow.parquet as pq

    read = 0
    try:
        path = storage.materialize(file.uri)
        with pq.ParquetFile(path, page_checksum_verification=True) as handle:
            for batch in handle.iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    yield read, row
                    read += 1
    except (pa.ArrowException, OSError) as err:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        after = f" after {read} rows" if read else ""
        raise DatasetFileError(
            f"{file.uri} is not a readable parquet file{after}: {type(err).__name__}: {err}"
        ) from err


def _file_rows(file: DataFile) -> Iterable[tuple[int, dict[str, Any] | RecordError]]:
    """(the record's number in the file, its row) of every record of one file."""
    if file.kind == PARQUET:
        return _parquet_rows(file)
    if file.kind == JSON_LINES:
        return _jsonl_rows(file)
    return enumerate(_json_list(file))


def _why_empty(file: DataFile) -> str:
    """What a data file that gave no row holds (read again only when every file gave none)."""
    if file.kind == PARQUET:
        return "0 rows"
    size = len(_file_bytes(file))
    if not size:
        return "0 bytes"
    return f"{size} bytes, no record" if file.kind == JSON_LINES else "an empty JSON list"


def _json_list(file: DataFile) -> list[Any]:
    try:
        doc = json.loads(_file_bytes(file).decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DatasetFileError(f"{file.uri} is not UTF-8: {err}") from err
    except json.JSONDecodeError as err:
        hint = ""
        if err.msg == "Extra data" and err.colno == 1:  # a second value on a new line
            hint = " (one JSON value a line is JSON Lines: name the file .jsonl)"
        raise DatasetFileError(f"{file.uri} is not valid JSON: {err}{hint}") from err
    if not isinstance(doc, list):
        raise DatasetFileError(
            f"{file.uri}: expected a JSON list of records, got {kind_of(doc)}"
        )
    return [
        row if isinstance(row, dict) else RecordError(f"the item is {kind_of(row)}, not an object")
        for row in doc
    ]


# ------------------------------------------------------------------ per format


def _row_id(row: dict[str, Any], index: int) -> str:
    for key in ("id", "idx"):
        if row.get(key) not in (None, ""):
            prefix = f"{row['ds_name']}-" if key == "idx" and row.get("ds_name") else ""
            return f"{prefix}{row[key]}"
    return f"record-{index:08d}"


def record_id(row: dict[str, Any] | RecordError, index: int, data_format: str) -> str:
    """The id a row's record gets (or its bad record): the same in every shard, read or not."""
    if isinstance(row, RecordError):
        return f"record-{index:08d}"
    if data_format == "synthetic":
        value = row.get("id")
        return value if isinstance(value, str) and value else f"record-{index:08d}"
    return _row_id(row, index)


def rlaif_v_sample(row: dict[str, Any], index: int, base_uri: str, source: str) -> Sample:
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
        fields.update({k: v for k, v in text.items() if k in MODEL_TEXT_FIELDS})
    question, chosen, rejected = (_text_field(fields, name) for name in MODEL_TEXT_FIELDS)
    image, image_source = _image_from_cell(
        fields.get("image"), fields.get("image_path"), base_uri, source
    )
    record = _preference(PreferenceRecord(
        id=_row_id(row, index),
        question=question,
        chosen=chosen,
        rejected=rejected,
        image=image_source,
        extra={k: fields[k] for k in RLAIF_V_EXTRA if fields.get(k) is not None},
    ))
    return Sample(index, record, image, source=source, image_source=image_source)


def _last_turn(value: Any, speaker: str, name: str) -> str:
    """A string answer, or the last `speaker` turn of a LLaVA conversation list."""
    expected = f"expected a string or a conversation with a {speaker} turn"
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list):
        turns = [
            t.get("value", "") for t in value if isinstance(t, dict) and t.get("from") == speaker
        ]
        if turns and isinstance(turns[-1], str) and turns[-1].strip():
            return turns[-1].strip()
        raise RecordError(f"field {name!r} has no non-empty {speaker} turn ({expected})")
    if value is None:
        raise RecordError(f"missing field {name!r} ({expected})")
    what = kind_of(value) if not isinstance(value, str) else "empty"
    raise RecordError(f"field {name!r} is {what}, {expected}")


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


def llava_sample(row: dict[str, Any], index: int, base_uri: str, source: str) -> Sample:
    """One LLaVA-style record: {id, image, conversations, chosen, rejected}."""
    image_ref = row.get("image")
    if not isinstance(image_ref, str) or not image_ref:
        what = "missing" if image_ref in (None, "") else kind_of(image_ref)
        raise RecordError(
            f"field 'image' is {what}: expected a path relative to the JSON file, or a URI"
        )
    question = _question(row)
    chosen = _last_turn(row.get("chosen"), "gpt", "chosen")
    rejected = _last_turn(row.get("rejected"), "gpt", "rejected")
    image, image_source = load_image(image_ref, base_uri, source)
    record = _preference(PreferenceRecord(
        id=_row_id(row, index), question=question, chosen=chosen, rejected=rejected, image=image_source
    ))
    return Sample(index, record, image, source=source, image_source=image_source)


def synthetic_sample(row: dict[str, Any], index: int, base_uri: str, source: str) -> Sample:
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
    image, image_source = load_image(record.image, base_uri, source)
    masks = {}
    for name, path in (record.masks or {}).items():
        mask, _ = load_image(path, base_uri, source)  # its own EXIF orientation applied, as the image's
        if mask.size != image.size:
            raise RecordError(
                f"mask {name!r} ({path}) is {mask.width}x{mask.height} pixels but its image "
                f"{record.image} is {image.width}x{image.height} (both after EXIF orientation): "
                "a mask covers its image pixel for pixel"
            )
        masks[name] = mask.convert("L")
    return Sample(index, record, image, masks, source=source, image_source=image_source)


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


def _file_row_count(file: DataFile) -> int:
    if file.kind == PARQUET:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(storage.materialize(file.uri)) as handle:
                return handle.metadata.num_rows  # the footer alone: no row is decoded
        except (pa.ArrowException, OSError) as err:
            raise DatasetFileError(f"{file.uri} is not a readable parquet file: {err}") from err
    if file.kind == JSON_LINES:
        return json_lines.count(_file_bytes(file))
    return len(_json_list(file))


def count_rows(uri: str, data_format: str) -> int:
    """How many records the dataset holds, bad ones included, without decoding an image: the
    total of datagen's progress bar. Same errors as iter_samples for a missing dataset."""
    return sum(_file_row_count(file) for file in source_files(uri, data_format).read)


def shard_size(rows: int, shard: tuple[int, int], max_samples: int | None = None) -> int:
    """How many of `rows` records iter_samples yields for `shard` (index % count == shard)."""
    shard_index, shard_count = shard
    rows = rows if max_samples is None else min(rows, max_samples)
    return max(0, -(-(rows - shard_index) // shard_count))


# ------------------------------------------------------------------ entry point


class DuplicateRecordId(ValueError):
    """Two records of the dataset have one id; the message names both and where they are."""


class _IdRegister:
    """Every record id seen, with where it was: ids key each record's artifacts (its noise seed,
    its reference log-probs, its sampled answers), so two records may not share one."""

    def __init__(self, files: list[DataFile]) -> None:
        self._files = files
        self._seen: dict[str, tuple[int, int, int]] = {}  # id -> (index, file, number)

    def add(self, rid: str, index: int, file: int, number: int) -> None:
        first = self._seen.setdefault(rid, (index, file, number))
        if first != (index, file, number):
            was = f"#{first[0]}, {self._files[first[1]].place(first[2])}"
            now = f"#{index}, {self._files[file].place(number)}"
            raise DuplicateRecordId(
                f"records {was} and {now} have the same id {rid!r}: a record's id names its "
                "images, reference log-probs and sampled answers, so ids must be unique across "
                "the dataset (give one of them another 'id', or 'idx' for RLAIF-V rows)"
            )


def _rows(
    files: list[DataFile], uri: str, data_format: str
) -> Iterator[tuple[dict[str, Any] | RecordError, str, int, int]]:
    """(row, the URI its relative image paths resolve against, file index, number in the file)
    of every record of every file in order."""
    for file_index, file in enumerate(files):
        base_uri = uri if data_format == "synthetic" else _parent(file.uri)
        for number, row in _file_rows(file):
            yield row, base_uri, file_index, number


_READERS = {"rlaif-v": rlaif_v_sample, "llava": llava_sample, "synthetic": synthetic_sample}


def iter_samples(
    uri: str,
    data_format: str,
    *,
    shard: tuple[int, int] = (0, 1),
    max_samples: int | None = None,
    files: SourceFiles | None = None,
) -> Iterator[Sample | BadRecord]:
    """Samples of one shard (records whose index % count == shard index), in source order.

    Raises FileNotFoundError / ValueError / StorageError when the dataset itself is missing or
    unreadable (DatasetFileError names a broken file, EmptyDataset says that no file holds a
    record, DuplicateRecordId names two records with one id: every shard reads every row's id,
    so each sees every duplicate); a bad record is yielded as a BadRecord. Images are decoded
    only for this shard. `files`: `source_files(uri, data_format)` when the caller has it.
    """
    shard_index, shard_count = shard
    reader = _READERS.get(data_format)
    if reader is None:
        raise ValueError(f"unknown data format {data_format!r}: expected one of {FORMATS}")
    read = (files or source_files(uri, data_format)).read
    ids = _IdRegister(read)
    index = -1
    for index, (row, base_uri, file_index, number) in enumerate(_rows(read, uri, data_format)):
        if max_samples is not None and index >= max_samples:
            return
        rid = record_id(row, index, data_format)
        ids.add(rid, index, file_index, number)
        if index % shard_count != shard_index:
            continue
        source = read[file_index].place(number)
        if isinstance(row, RecordError):
            yield BadRecord(index, rid, str(row), source)
            continue
        try:
            yield reader(row, index, base_uri, source)
        except (RecordError, ValidationError) as err:
            yield BadRecord(index, rid, str(err), source)
    if index < 0:
        found = "; ".join(f"{file.name}: {_why_empty(file)}" for file in read)
        raise EmptyDataset(f"{uri} holds no record ({found})")
