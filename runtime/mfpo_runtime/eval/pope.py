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

A label is "yes" or "no" in any case (`common.yes_no`, which says where and why we differ from
POPE's evaluate.py); anything else is bad input naming the file and line, found by the run's first
stage (`required_inputs` reads every question file, and checks each image exists) before any
training. An answer is read as POPE's evaluate.py reads it (`scores.parse_yes_no`: its first sentence).
Metrics are named `<split>.<metric>`, and unprefixed (`accuracy`, `precision`, `recall`, `f1`,
`yes_ratio`) pooled over every question of the splits evaluated, as POPE's evaluate.py scores
one answer file: from the summed true/false positives/negatives, not a mean over splits.
Called through mfpo_runtime.eval.benchmarks by the eval stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfpo_core import storage
from mfpo_core.contract import BadInput

from mfpo_runtime.eval import scores
from mfpo_runtime.eval.common import (
    BenchmarkEnv,
    BenchmarkResult,
    data_uri,
    file_uri,
    image_problem,
    limit,
    listed_uris,
    load_image,
    read_json_lines,
    require,
    yes_no,
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
    """What evaluating the benchmark at `base` would fail on, found without generating or
    decoding anything: a split's file, the images directory, and in every question file read as
    `evaluate` reads it, each question's fields, label (`common.yes_no`) and image (exists)."""
    files, missing = _find_splits(base, list(bench.options.splits))
    image_dir = file_uri(base, bench.options.image_dir)
    if not storage.exists(image_dir):
        missing.append(f"POPE at {base}: the images directory {image_dir} (pope.imageDir) does not exist")
        return missing
    listed = listed_uris(image_dir)  # one listing, not one request per question
    for split, uri in files.items():
        try:
            questions = _questions(uri, split, bench)
        except BadInput as err:
            missing.append(str(err))
            continue
        missing += [p for q in questions if (p := image_problem(image_dir, q.image, q.where, listed))]
    return missing


@dataclass(frozen=True)
class Question:
    where: str  # "<file URI> line N"
    row: dict
    text: str
    label: bool  # True: "yes"
    image: str


def _questions(uri: str, split: str, bench: Benchmark) -> list[Question]:
    """The questions of one split's file, as evaluate reads them; BadInput names the file, the
    line and the field (a label that is not yes or no: `common.yes_no`)."""
    rows = limit(read_json_lines(uri, f"POPE {split} file"), bench)
    questions = []
    for number, row in enumerate(rows):
        where = f"{uri} line {number + 1}"
        if not isinstance(row, dict):
            raise BadInput(f"{where}: a question is a JSON object, not {type(row).__name__}")
        label = yes_no(require(row, "label", where), where)
        questions.append(Question(where, row, require(row, "text", where), label, require(row, "image", where)))
    return questions


def evaluate(policy: Policy, bench: Benchmark, env: BenchmarkEnv) -> BenchmarkResult:
    base = data_uri(bench, env)
    files = split_files(base, list(bench.options.splits))
    image_dir = file_uri(base, bench.options.image_dir)
    metrics: dict[str, float] = {}
    samples = []
    all_predicted: list[bool] = []
    all_labels: list[bool] = []
    for split, uri in files.items():
        questions = _questions(uri, split, bench)
        images = [load_image(image_dir, q.image, q.where) for q in questions]
        answers = policy.answer([q.text for q in questions], images)
        predicted = [scores.parse_yes_no(a) for a in answers]
        labels = [q.label for q in questions]
        for name, value in scores.binary(predicted, labels, positive=True).items():
            metrics[f"{split}.{name}"] = value
        all_predicted += predicted
        all_labels += labels
        samples += [{"split": split, "question_id": q.row.get("question_id"), "question": q.text, "answer": a,
                     "yes": p, "label": q.row["label"]}
                    for q, a, p in zip(questions, answers, predicted)]  # fmt: skip
    metrics |= scores.binary(all_predicted, all_labels, positive=True)
    return BenchmarkResult(metrics=metrics, samples=samples)
