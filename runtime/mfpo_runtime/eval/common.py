"""What every benchmark shares: its result, its environment, reading its files from storage.

A benchmark is a function `evaluate(policy, bench, env) -> BenchmarkResult` (see
mfpo_runtime.eval.benchmarks). Its files are named by storage URIs (file:// or s3://); errors in
them raise `BadInput` naming the URI and the record, so the eval stage fails at once, unretried.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfpo_core import storage
from mfpo_core.contract import BadInput
from PIL import Image

from mfpo_runtime.data import images, json_lines
from mfpo_runtime.eval.config import Benchmark
from mfpo_runtime.eval.generation import GenerationSettings


@dataclass
class BenchmarkResult:
    """Scores of one policy on one benchmark, with the per-sample evidence."""

    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # e.g. "degenerate": do not read CHAIR as a win
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchmarkEnv:
    """What a benchmark may use besides the policy."""

    work_dir: Path  # scratch space for downloads
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    default_uri: str | None = None  # where the benchmark's data is when its spec names none
    progress: bool = False
    judge_api_key: str | None = field(default=None, repr=False)  # the LLM judge's key (MFPO_JUDGE_API_KEY)


# Inline base64 image data starts with the encoded magic bytes of PNG, JPEG, GIF or WebP.
_BASE64_IMAGE_PREFIXES = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")


def data_uri(bench: Benchmark, env: BenchmarkEnv) -> str:
    uri = bench.uri or env.default_uri
    if not uri:
        raise BadInput(f"evaluation benchmark {bench.label}: uri is required (where its data lies)")
    return uri


def file_uri(base: str, name_or_uri: str) -> str:
    """A storage URI as is, else a path relative to `base`."""
    return name_or_uri if "://" in name_or_uri else storage.join(base, name_or_uri)


def read_json(uri: str, what: str) -> Any:
    try:
        return storage.read_json(uri)
    except storage.StorageError as err:
        raise BadInput(f"cannot read the {what} {uri}: {err}") from err


def read_json_lines(uri: str, what: str) -> list[dict[str, Any]]:
    """JSON lines, or a JSON list (both forms of these benchmarks' files are in use)."""
    try:
        data = storage.read_bytes(uri)
    except storage.StorageError as err:
        raise BadInput(f"cannot read the {what} {uri}: {err}") from err
    if data.removeprefix(json_lines.BOM).lstrip().startswith(b"["):
        try:
            return json.loads(data)  # bytes: json detects UTF-8/16/32 (RFC 8259 allows only 8)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadInput(f"the {what} {uri} is not valid JSON: {err}") from err
    rows = []
    for number, row in json_lines.read(data):  # split on "\n" only: JSON Lines
        if isinstance(row, json_lines.LineError):
            raise BadInput(f"the {what} {uri}: {row}")
        rows.append(row)
    return rows


def require(row: dict[str, Any], key: str, where: str) -> Any:
    if key not in row:
        raise BadInput(f"{where}: missing field {key!r} (has {sorted(row)})")
    return row[key]


def load_image(base: str, reference: str, where: str) -> Image.Image:
    """An RGB image from a storage URI, a path relative to `base`, or inline base64 data."""
    try:
        if reference.startswith("data:image/"):
            reference = reference.split(",", 1)[1]
        if reference.startswith(_BASE64_IMAGE_PREFIXES):
            data = base64.b64decode(reference, validate=True)  # Object HalBench inlines images
        else:
            data = storage.read_bytes(file_uri(base, reference))
        return images.decode(data, f"image {reference[:80]!r}")
    except (storage.StorageError, binascii.Error, images.ImageDecodeError) as err:
        raise BadInput(f"{where}: cannot read image {reference[:80]!r} under {base}: {err}") from err


def limit(rows: list, bench: Benchmark) -> list:
    return rows[: bench.max_samples] if bench.max_samples else rows
