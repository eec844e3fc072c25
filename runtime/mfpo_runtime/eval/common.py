"""What every benchmark shares: its result, its environment, reading its files from storage.

A benchmark is a function `evaluate(policy, bench, env) -> BenchmarkResult` (see
mfpo_runtime.eval.benchmarks). Its files are named by storage URIs (file:// or s3://); errors in
them raise `BadInput` naming the URI and the record, so the eval stage fails at once, unretried.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfpo_core import storage
from mfpo_core.contract import BadInput
from PIL import Image

from mfpo_runtime.data import image_refs, images, json_lines
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
    """An RGB image from a storage URI, a path relative to `base`, a data: URI or inline base64
    data (Object HalBench inlines its images so): `data.image_refs`."""
    try:
        data, found = image_refs.read(reference, base, bare_base64=True)
        return images.decode(data, f"image {found.name()}")
    except (image_refs.ImageRefError, images.ImageDecodeError) as err:
        raise BadInput(f"{where}: {err}") from err


def image_problem(base: str, reference: Any, where: str, listed: set[str] | None = None) -> str | None:
    """Why `reference` (a question's image) would not be read, found without reading or
    decoding it (the run's first stage checks every question so), else None. `listed`: the URIs
    of `base` listed once."""
    if not isinstance(reference, str) or not reference:
        return f"{where}: field 'image' is {'missing' if reference in (None, '') else type(reference).__name__}, expected a path or URI"
    try:
        found = image_refs.resolve(reference, base, bare_base64=True)
        if not image_refs.exists(found, listed):
            return f"{where}: image {image_refs.quoted(reference)} does not exist (under {base})"
    except (image_refs.ImageRefError, storage.StorageError) as err:
        return f"{where}: {err}"
    return None


def listed_uris(base: str) -> set[str]:
    """The URIs of every object under `base` (one listing), as `image_refs.resolve` builds them
    from relative names; empty when `base` holds nothing."""
    try:
        names = storage.list_files(base)
    except (storage.StorageError, FileNotFoundError):
        return set()
    listed = set()
    for name in names:
        with contextlib.suppress(ValueError, storage.StorageError):  # a name no reference can spell
            listed.add(storage.join(base, name))
    return listed


def yes_no(value: Any, where: str, field: str = "label") -> bool:
    """A ground-truth yes/no answer: True for "yes", False for "no", in any case with surrounding
    white space; anything else is bad input naming `where` and the value.

    POPE's own evaluate.py (RUCAIBox/POPE, copied verbatim into LLaVA's and LLaVA-RLHF's
    eval_pope.py) reads `0 if label == 'no' else 1`: a label "No", "no." or "" counts as a
    positive there, and "yes." as one too. We differ on purpose: POPE's generator writes only
    "yes" and "no", so any other label was typed or converted by hand, and a wrong guess silently
    moves every metric. Case and white space are forgiven (no reading of them is in doubt); a
    trailing period is not: accepting "yes." raises the question of "yes!", "y", "yes, a dog",
    whose meaning a ground truth must not leave to us.
    """
    if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
        return value.strip().lower() == "yes"
    shown = image_refs.quoted(value) if isinstance(value, str) else f"{value!r:.80}"
    raise BadInput(f"{where}: {field} {shown} is not yes or no (any case; a ground-truth label is exactly one of them)")


def limit(rows: list, bench: Benchmark) -> list:
    return rows[: bench.max_samples] if bench.max_samples else rows
