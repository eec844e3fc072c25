"""The preference record and the on-disk dataset layout shared by every stage.

A dataset is a directory (local or in storage); image paths in records are relative to it,
or absolute storage URIs (a merged dataset points into its shards):

    records.jsonl    one `PreferenceRecord` per line
    manifest.json    {"count": N, "kind": "...", "source": "...", ...}
    images/ ...      image files referenced by the records (relative paths)

The synthetic world writes it (kind "text-preference"), datagen enriches it with perturbed
images and keywords ("image-preference"), score adds entropy and bins ("curriculum").
Pure data code: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RECORDS_FILE = "records.jsonl"
MANIFEST_FILE = "manifest.json"


class DatasetError(ValueError):
    """A dataset or record is malformed; the message names the file and record."""


class PreferenceRecord(BaseModel):
    """One training or evaluation sample. Image paths are relative to the dataset root."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1)
    question: str = Field(..., min_length=1)
    image: str = Field(..., min_length=1, description="Image path relative to the dataset root, or a storage URI.")
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
    # Added by score.
    entropy: float | None = None
    bin: int | None = Field(None, ge=1, description="Curriculum stage (1 = easiest).")
    # Added per align stage when the reference is precomputed: summed log-probs.
    ref_logps: dict[str, float] | None = Field(None, description="chosen, rejected, perturbed")
    extra: dict[str, object] = Field(default_factory=dict, description="Format-specific fields kept as is.")


def read_records(root: str | Path) -> list[PreferenceRecord]:
    """Read `records.jsonl` under a local dataset directory; errors name the line."""
    path = Path(root) / RECORDS_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: no {RECORDS_FILE} in dataset directory {root}")
    records = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(PreferenceRecord.model_validate_json(line))
            except ValidationError as err:
                fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
                raise DatasetError(f"{path} line {number}: {fields}") from err
    return records


def write_records(records: Iterable[PreferenceRecord], root: str | Path, **manifest: object) -> int:
    """Write `records.jsonl` and `manifest.json` under a local directory; returns the count."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    with (root / RECORDS_FILE).open("w") as handle:
        for record in records:
            handle.write(record.model_dump_json(exclude_none=True) + "\n")
            count += 1
    (root / MANIFEST_FILE).write_text(json.dumps({"count": count, **manifest}, indent=2, sort_keys=True))
    return count


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
