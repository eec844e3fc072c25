"""Small datasets in every supported format, made in the tests, and stage-config helpers."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
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


def spec(data_uri: str, data_format: str, storage_uri: str, **overrides) -> MFPORunSpec:
    body = {
        "model": {
            "uri": overrides.pop("model_uri", "file:///nonexistent-model"),
            "family": overrides.pop("model_family", "llava"),
        },
        "data": {"uri": data_uri, "format": data_format, **overrides.pop("data", {})},
        # An s3:// run names its endpoint: the one the s3_bucket fixture points the stages at.
        "storage": {"uri": storage_uri, **({"endpoint": os.environ["MFPO_S3_ENDPOINT"]} if storage_uri.startswith("s3://") else {})},
        # Only synthetic data brings its own evaluation world; other formats name a benchmark
        # (never read here: these tests run datagen).
        **({} if data_format == "synthetic" else {"evaluation": {"benchmarks": [{"name": "pope", "uri": "file:///unused-pope"}]}}),
        **overrides,
    }
    return MFPORunSpec.model_validate(body)


def stage_config(
    tmp_path: Path, run_spec: MFPORunSpec, stage: str, shard: int | None = None
) -> StageConfig:
    return StageConfig(
        run="demo",
        stage=stage,
        run_uri=f"file://{tmp_path}/runs/demo",
        spec=run_spec,
        shard_index=shard,
    )
