"""What the run's first stage pays to read a POPE benchmark's question files up front.

    python benchmarks/bench_input_check.py [--questions 3000] [--images 500] [--repeat 5]

Writes a POPE directory of one split (`coco_pope_adversarial.json`, `--questions` lines, as
POPE's own files: 3,000 for COCO's 500 images) with `--images` real JPEG files in `images/`, then
times, side by side in one process, the check the first stage runs now
(`pope.required_inputs`: every question read, its label checked, its image's existence checked
against one listing of `images/`) and the check it ran before (the split files and the images
directory exist), and decoding every image once (what the check does not do: the eval stage
decodes them). Prints the medians of `--repeat` runs and the ratio now / before. On file://
storage; on s3:// the listing is one LIST request per 1,000 images instead of a HEAD per question.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from mfpo_core import storage
from mfpo_core.api import BenchmarkSpec
from mfpo_runtime.data import images
from mfpo_runtime.eval import pope
from mfpo_runtime.stages.evaluate import benchmark_config
from PIL import Image


def write_pope(root: Path, questions: int, count: int) -> None:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)  # a COCO-sized JPEG
        Image.fromarray(pixels).save(root / "images" / f"COCO_val2014_{index:012d}.jpg", quality=90)
    lines = [{"question_id": q + 1, "image": f"COCO_val2014_{q % count:012d}.jpg",
              "text": "Is there a dog in the image?", "label": "yes" if q % 2 else "no"}
             for q in range(questions)]  # fmt: skip
    (root / "coco_pope_adversarial.json").write_text("".join(json.dumps(line) + "\n" for line in lines))


def check_before(bench, base: str) -> list[str]:
    """main's check before this change: the split files and the images directory exist."""
    _, missing = pope._find_splits(base, list(bench.options.splits))
    image_dir = pope.file_uri(base, bench.options.image_dir)
    return missing if storage.exists(image_dir) else [*missing, image_dir]


def decode_all(root: Path) -> None:
    for path in sorted((root / "images").iterdir()):
        images.decode(path, path.name)


def median_seconds(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=3000)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "pope")
        write_pope(root, args.questions, args.images)
        base = f"file://{root}"
        bench = benchmark_config(BenchmarkSpec(name="pope", uri=base, pope={"splits": ["adversarial"]}))
        assert pope.required_inputs(bench, base) == [] and check_before(bench, base) == []
        now = median_seconds(lambda: pope.required_inputs(bench, base), args.repeat)
        before = median_seconds(lambda: check_before(bench, base), args.repeat)
        decoding = median_seconds(lambda: decode_all(root), max(1, args.repeat // 2))
    print(f"POPE, {args.questions:,} questions, {args.images:,} images (640 x 480 JPEG), median of {args.repeat}:")
    print(f"  check now (every question read, labels, images exist): {now * 1000:8.1f} ms")
    print(f"  check before (files exist):                             {before * 1000:8.1f} ms")
    print(f"  decoding every image once (not done by the check):     {decoding * 1000:8.1f} ms")
    print(f"  now / before: {now / before:.1f}x; now / decoding: {now / decoding:.3f}")


if __name__ == "__main__":
    main()
