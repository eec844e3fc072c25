"""POPE (Li et al. 2023): "Is there a <object> in the image?" with random, popular and
adversarial negative objects; accuracy, precision, recall, F1 ("yes" positive) and yes-ratio.

Data, in POPE's own format (`bench.uri` is the directory):

    coco_pope_random.json, coco_pope_popular.json, coco_pope_adversarial.json
        JSON lines {"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
                    "text": "Is there a snowboard in the image?", "label": "yes"}
        (any file named *random.json[l], *popular.json[l], *adversarial.json[l] is found;
        options `pope.splits` pick some, each once, e.g. [random, adversarial]; a split listed
        without its file is bad input naming it)
    images/   the images (options `pope.imageDir`)

An answer is read as POPE's evaluate.py reads it (`scores.parse_yes_no`: its first sentence).
Metrics are named `<split>.<metric>`, and unprefixed (`accuracy`, `precision`, `recall`, `f1`,
`yes_ratio`) pooled over every question of the splits evaluated, as POPE's evaluate.py scores
one answer file: from the summed true/false positives/negatives, not a mean over splits.
Called through mfpo_runtime.eval.benchmarks by the eval stage.
"""

from __future__ import annotations

from mfpo_core import storage
from mfpo_core.contract import BadInput

from mfpo_runtime.eval import scores
from mfpo_runtime.eval.common import (
    BenchmarkEnv,
    BenchmarkResult,
    data_uri,
    file_uri,
    limit,
    load_image,
    read_json_lines,
    require,
)
from mfpo_runtime.eval.config import Benchmark
from mfpo_runtime.eval.generation import Policy

SPLITS = ("random", "popular", "adversarial")


def split_files(base: str, wanted: list[str]) -> dict[str, str]:
    """split -> URI of its question file, among the files directly under `base`; a split
    listed without its file is bad input naming it."""
    found, missing = _find_splits(base, wanted)
    if missing:
        raise BadInput("; ".join(missing))
    return found


def _find_splits(base: str, wanted: list[str]) -> tuple[dict[str, str], list[str]]:
    names = [rel for rel in storage.list_files(base) if "/" not in rel]
    found, missing = {}, []
    for split in wanted:
        matches = [n for n in names if n.endswith((f"{split}.json", f"{split}.jsonl"))]
        if matches:
            found[split] = storage.join(base, min(matches))
        else:
            missing.append(
                f"POPE at {base}: split {split!r} (pope.splits) has no question file "
                f"*{split}.json or *{split}.jsonl there (POPE's own: coco_pope_{split}.json)"
            )
    return found, missing


def required_inputs(bench: Benchmark, base: str) -> list[str]:
    """What reading the benchmark at `base` would miss: a split's file, the images directory."""
    _, missing = _find_splits(base, list(bench.options.splits))
    image_dir = file_uri(base, bench.options.image_dir)
    if not storage.exists(image_dir):
        missing.append(f"POPE at {base}: the images directory {image_dir} (pope.imageDir) does not exist")
    return missing


def evaluate(policy: Policy, bench: Benchmark, env: BenchmarkEnv) -> BenchmarkResult:
    base = data_uri(bench, env)
    files = split_files(base, list(bench.options.splits))
    image_dir = file_uri(base, bench.options.image_dir)
    metrics: dict[str, float] = {}
    samples = []
    all_predicted: list[bool] = []
    all_labels: list[bool] = []
    for split, uri in files.items():
        rows = limit(read_json_lines(uri, f"POPE {split} file"), bench)
        where = [f"{uri} line {n + 1}" for n in range(len(rows))]
        questions = [require(r, "text", w) for r, w in zip(rows, where)]
        labels = [str(require(r, "label", w)).strip().lower() == "yes" for r, w in zip(rows, where)]
        images = [load_image(image_dir, require(r, "image", w), w) for r, w in zip(rows, where)]
        answers = policy.answer(questions, images)
        predicted = [scores.parse_yes_no(a) for a in answers]
        for name, value in scores.binary(predicted, labels, positive=True).items():
            metrics[f"{split}.{name}"] = value
        all_predicted += predicted
        all_labels += labels
        samples += [{"split": split, "question_id": r.get("question_id"), "question": q, "answer": a,
                     "yes": p, "label": r["label"]}
                    for r, q, a, p in zip(rows, questions, answers, predicted)]  # fmt: skip
    metrics |= scores.binary(all_predicted, all_labels, positive=True)
    return BenchmarkResult(metrics=metrics, samples=samples)
