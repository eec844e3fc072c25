"""The preference record and the on-disk dataset layout shared by every stage.

A dataset is a directory (local or in storage); image paths in records are relative to it,
or absolute storage URIs (a merged dataset points into its shards):

    records.jsonl    one `PreferenceRecord` per line (JSON Lines: `data.json_lines`)
    manifest.json    {"count": N, "kind": "...", "source": "...", ...}
    images/ ...      image files referenced by the records (relative paths)

The synthetic world writes it (kind "text-preference"), datagen enriches it with perturbed
images and keywords ("image-preference"), score adds entropy and bins ("curriculum").
Pure data code: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mfpo_runtime.data import json_lines

RECORDS_FILE = "records.jsonl"
MANIFEST_FILE = "manifest.json"


class DatasetError(ValueError):
    """A dataset or record is malformed; the message names the file and record."""


class PreferenceRecord(BaseModel):
    """One training or evaluation sample. Image paths are relative to the dataset root."""

    model_config = ConfigDict(extra="forbid")

    # Non-empty by a validator, not min_length: pydantic-core copies a constrained str into Rust,
    # which refuses a lone surrogate (a JSON "\ud800" escape), while a plain str is kept as is.
    id: str
    question: str
    image: str = Field(..., description="Image path relative to the dataset root, or a storage URI.")
    chosen: str = Field("", description="Preferred answer (empty for evaluation-only records).")
    rejected: str = Field("", description="Dispreferred answer (text hallucination).")
    # Ground truth when the data has it (synthetic world, COCO): object names and per-object masks.
    objects: list[str] | None = None
    masks: dict[str, str] | None = Field(None, description="Object name -> mask image path (relative).")
    # Added by datagen.
    perturbed_image: str | None = None
    keywords: list[str] | None = None
    regions: list[list[int]] | None = Field(None, description="Noised boxes [x0, y0, x1, y1] per grounded keyword.")
    grounding: str | None = Field(None, description="How the regions were found, or 'fallback-whole-image'.")
    fallback_reason: str | None = Field(
        None,
        description="Why a 'fallback-whole-image' record has no keyword region: 'no keyword candidates' "
        "(the answer gave the ranker no object noun phrase: e.g. not English), 'keywords not grounded' "
        "(the grounder found none), or \"regions outside the model's view\".",
    )
    regions_kept: dict[str, float] | None = Field(
        None, description="Per keyword the grounder found: share of its region inside the model's view (a center crop can cut regions off)."
    )
    regions_lost: list[str] | None = Field(
        None, description="Keywords found whose region the model's view cuts off entirely: not noised."
    )
    region_overlap: float | None = Field(
        None, ge=0.0, le=1.0, description="random-region grounding: share of the noised region on the grounded objects."
    )
    # Added by score.
    entropy: float | None = None
    bin: int | None = Field(None, ge=1, description="Curriculum stage (1 = easiest).")
    # Added per align stage when the reference is precomputed: summed log-probs.
    ref_logps: dict[str, float] | None = Field(None, description="chosen, rejected, perturbed")
    extra: dict[str, object] = Field(default_factory=dict, description="Format-specific fields kept as is.")

    @field_validator("id", "question", "image")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must be a non-empty string")
        return value


def first_duplicate_id(records: Sequence[PreferenceRecord]) -> tuple[int, int] | None:
    """(index of a record, index of a later one with the same id), or None when the ids are
    unique. Every stage keys a record's artifacts by its id (noise seed, sampled answers,
    reference log-probs), so records with one id would share them."""
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        first = seen.setdefault(record.id, index)
        if first != index:
            return first, index
    return None


def read_records(root: str | Path) -> list[PreferenceRecord]:
    """Read `records.jsonl` under a local dataset directory; errors name the line."""
    path = Path(root) / RECORDS_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: no {RECORDS_FILE} in dataset directory {root}")
    return parse_records(path.read_bytes(), str(path))


def parse_records(data: bytes, where: str) -> list[PreferenceRecord]:
    """The records of a `records.jsonl` file's bytes; DatasetError names `where` and the line."""
    records = []
    for number, raw in json_lines.lines(data):
        try:
            records.append(PreferenceRecord.model_validate(json_lines.parse(number, raw)))
        except json_lines.LineError as err:
            raise DatasetError(f"{where} {err}") from err
        except ValidationError as err:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise DatasetError(f"{where} line {number}: {fields}") from err
    return records


def record_line(record: PreferenceRecord) -> str:
    """One line of `records.jsonl` (ASCII JSON: any string round-trips, lone surrogates too)."""
    try:
        return json_lines.dumps(record.model_dump(mode="json", exclude_none=True))
    except ValueError as err:  # NaN or infinity: not JSON
        raise DatasetError(f"record {record.id!r}: {err}") from err


def write_records(records: Iterable[PreferenceRecord], root: str | Path, **manifest: object) -> int:
    """Write `records.jsonl` and `manifest.json` under a local directory; returns the count."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    with (root / RECORDS_FILE).open("w", encoding="ascii", newline="\n") as handle:
        for record in records:
            handle.write(record_line(record) + "\n")
            count += 1
    (root / MANIFEST_FILE).write_text(json.dumps({"count": count, **manifest}, indent=2, sort_keys=True))
    return count


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
