"""Small datasets in every supported format, made in the tests, and stage-config helpers."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from mfpo_core import storage
from mfpo_core.api import MFPORunSpec
from mfpo_core.contract import StageConfig
from PIL import Image

QUESTIONS = ["Describe the image.", "What is in the picture?", "What do you see?"]
CHOSEN = [
    "The image shows a red apple next to a banana.",
    "There is a cat sitting on a sofa.",
    "A dog is running on the beach.",
]
REJECTED = [
    "The image shows a pear and a knife.",
    "There is a dog sitting on a chair.",
    "A horse is running on the road.",
]


def png_bytes(seed: int, size: tuple[int, int] = (40, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def rlaif_v_rows(count: int = 3) -> list[dict]:
    """Rows with the RLAIF-V-Dataset columns; `image` is the HF image struct {bytes, path}."""
    return [
        {
            "ds_name": "RLAIF-V",
            "image": {"bytes": png_bytes(i), "path": f"coco/{i}.png"},
            "question": QUESTIONS[i % 3],
            "chosen": CHOSEN[i % 3],
            "rejected": REJECTED[i % 3],
            "origin_dataset": "COCO",
            "origin_split": json.dumps({"model": "tiny"}),
            "idx": str(i),
            "image_path": f"coco/{i}.png",
        }
        for i in range(count)
    ]


def write_parquet(rows: list[dict], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl_with_image_files(rows: list[dict], root: Path) -> Path:
    """JSONL rows whose `image` is a path relative to the file (the images written beside it)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    with (root / "data.jsonl").open("w") as handle:
        for row in rows:
            rel = f"images/{row['idx']}.png"
            (root / rel).write_bytes(row["image"]["bytes"])
            handle.write(json.dumps({**row, "image": rel, "image_path": rel}) + "\n")
    return root / "data.jsonl"


def beside(data_uri: str, name: str) -> str:
    """A URI next to the data (a child of its parent): where `spec` writes the inputs the run's
    first stage checks but these tests never read."""
    return storage.join(data_uri.rstrip("/").rsplit("/", 1)[0], name)


def spec(data_uri: str, data_format: str, storage_uri: str, **overrides) -> MFPORunSpec:
    """A run spec for stage tests. The run's first stage checks that every input exists
    (stages.inputs), so what these tests never read is written beside the data: a model
    directory (never read when imagePreference.imageSize is set) and, for formats other than
    synthetic, whose world evaluates itself, a POPE benchmark of one split."""
    model_uri = overrides.pop("model_uri", None)
    if model_uri is None:
        model_uri = beside(data_uri, "unread-model")
        storage.write_text("not a model: the tests that use it set imageSize\n", storage.join(model_uri, "README"))
    if data_format == "synthetic":
        # The training dataset stands in for the evaluation (these worlds have no other split).
        evaluation = {"benchmarks": [{"name": "synthetic", "uri": data_uri}]}
    else:
        pope = beside(data_uri, "unread-pope")
        storage.write_text("", storage.join(pope, "coco_pope_random.json"))
        storage.write_text("", storage.join(pope, "images", "README"))
        evaluation = {"benchmarks": [{"name": "pope", "uri": pope, "pope": {"splits": ["random"]}}]}
    body = {
        "model": {"uri": model_uri, "family": overrides.pop("model_family", "llava")},
        "data": {"uri": data_uri, "format": data_format, **overrides.pop("data", {})},
        # An s3:// run names its endpoint: the one the s3_bucket fixture points the stages at.
        "storage": {"uri": storage_uri, **({"endpoint": os.environ["MFPO_S3_ENDPOINT"]} if storage_uri.startswith("s3://") else {})},
        "evaluation": evaluation,
        **overrides,
    }
    return MFPORunSpec.model_validate(body)


def stage_config(
    tmp_path: Path, run_spec: MFPORunSpec, stage: str, shard: int | None = None
) -> StageConfig:
    return StageConfig(
        uid="uid-test",
        runner="operator",
        run="demo",
        stage=stage,
        run_uri=f"file://{tmp_path}/runs/demo",
        spec=run_spec,
        shard_index=shard,
    )
