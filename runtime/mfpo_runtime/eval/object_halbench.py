"""Object HalBench: CHAIR on COCO images (Rohrbach et al. 2018; RLHF-V's 300-question set).

Data, as storage URIs (`bench.uri` is the directory; options override each file):

    questions.jsonl   {"image_id": 42, "question": "...", "image": <path | URI | base64>}
                      (RLHF-V's obj_halbench_300_with_image.jsonl has this form)
    instances.json    COCO instance annotations (categories, annotations, images)
    captions.json     COCO caption annotations (optional; CHAIR adds their objects to the truth)
    images/           used when a question has no "image": instances' images[].file_name

Ground truth per image = the categories of its instance annotations plus the COCO objects its
reference captions name, both mapped through CHAIR's synonym list (as in the original code).
Object mentions come from the rules (`coco_extractor`) or, with options `objectHalbench.judge:
llm`, from an OpenAI-compatible judge (judgeUrl, judgeModel; its key from judgeSecretRef, given
to the eval stage as MFPO_JUDGE_API_KEY and passed here in `BenchmarkEnv.judge_api_key`).
Called through mfpo_runtime.eval.benchmarks by the eval stage.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mfpo_core import storage
from mfpo_core.contract import BadInput

from mfpo_runtime.data.image_refs import BASE64_IMAGE_PREFIXES
from mfpo_runtime.data.mentions import MentionExtractor, coco_extractor
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
    read_json,
    read_json_lines,
    require,
)
from mfpo_runtime.eval.config import Benchmark
from mfpo_runtime.eval.generation import Policy
from mfpo_runtime.eval.judge import OpenAIJudge


def instance_objects(instances: dict[str, Any], extractor: MentionExtractor, uri: str) -> dict[int, set[str]]:
    """image id -> canonical objects of its instance annotations."""
    names = {c["id"]: c["name"] for c in require(instances, "categories", uri)}
    truth: dict[int, set[str]] = defaultdict(set)
    for number, ann in enumerate(require(instances, "annotations", uri)):
        where = f"{uri} annotations[{number}]"
        category = require(ann, "category_id", where)
        if category not in names:
            raise BadInput(f"{where}: category_id {category} is not in the categories list")
        canonical = extractor.canonical(names[category])
        if canonical is None:
            raise BadInput(f"{where}: category {names[category]!r} is not a COCO category")
        truth[require(ann, "image_id", where)].add(canonical)
    return truth


def caption_objects(captions: dict[str, Any], extractor: MentionExtractor, uri: str) -> dict[int, set[str]]:
    """image id -> COCO objects named by its reference captions."""
    truth: dict[int, set[str]] = defaultdict(set)
    for number, ann in enumerate(require(captions, "annotations", uri)):
        where = f"{uri} annotations[{number}]"
        truth[require(ann, "image_id", where)] |= extractor.objects(require(ann, "caption", where))
    return truth


def coco_truth(instances_uri: str, captions_uri: str | None, extractor: MentionExtractor) -> dict[int, set[str]]:
    """CHAIR's ground truth: instance categories plus caption objects, per image id."""
    truth = instance_objects(read_json(instances_uri, "COCO instances file"), extractor, instances_uri)
    if captions_uri:
        captions = read_json(captions_uri, "COCO captions file")
        for image_id, objects in caption_objects(captions, extractor, captions_uri).items():
            truth[image_id] = truth.get(image_id, set()) | objects
    return truth


def _image_files(instances_uri: str) -> dict[int, str]:
    doc = read_json(instances_uri, "COCO instances file")
    return {img["id"]: img["file_name"] for img in doc.get("images", [])}


def _mention_fn(bench: Benchmark, extractor: MentionExtractor, env: BenchmarkEnv):
    options = bench.options  # judge llm comes with judgeUrl and judgeModel (api.py checks it)
    if options.judge == "rules":
        return extractor.mentions
    llm = OpenAIJudge(options.judge_url, options.judge_model, api_key=env.judge_api_key)
    return lambda text: llm.mentions(text, extractor)


def required_inputs(bench: Benchmark, base: str) -> list[str]:
    """What reading Object HalBench at `base` would miss: the questions and COCO instances files,
    the captions file when named, and the image of each question that carries one (exists, or
    inline data that is base64). A question without an image is read from the images directory
    by its instances entry, which only reading the COCO instances file (160 MB for val2014) tells:
    that is left to the eval stage."""
    options = bench.options
    files = [("questions", options.questions), ("instances", options.instances)]
    files += [("captions", options.captions)] if options.captions else []
    missing = [
        f"Object HalBench at {base}: {file_uri(base, name)} (objectHalbench.{option}) does not exist"
        for option, name in files
        if not storage.exists(file_uri(base, name))
    ]
    if missing:
        return missing
    questions_uri = file_uri(base, options.questions)
    try:
        rows = limit(read_json_lines(questions_uri, "Object HalBench questions file"), bench)
    except BadInput as err:
        return [str(err)]
    listed = listed_uris(base) if any(isinstance(r, dict) and _names_a_file(r.get("image")) for r in rows) else None
    return [p for number, row in enumerate(rows) if isinstance(row, dict) and row.get("image")
            if (p := image_problem(base, row["image"], f"{questions_uri} line {number + 1}", listed))]  # fmt: skip


def _names_a_file(image) -> bool:
    return isinstance(image, str) and bool(image) and not image.startswith(("data:", *BASE64_IMAGE_PREFIXES))


def evaluate(policy: Policy, bench: Benchmark, env: BenchmarkEnv) -> BenchmarkResult:
    base = data_uri(bench, env)
    extractor = coco_extractor()
    options = bench.options
    instances_uri = file_uri(base, options.instances)
    captions_uri = file_uri(base, options.captions or "captions.json")
    if options.captions is None and not storage.exists(captions_uri):
        captions_uri = None  # the captions file is optional unless named
    truth = coco_truth(instances_uri, captions_uri, extractor)
    questions_uri = file_uri(base, options.questions)
    rows = limit(read_json_lines(questions_uri, "Object HalBench questions file"), bench)
    if not rows:
        raise BadInput(f"the Object HalBench questions file {questions_uri} has no questions")
    image_dir = file_uri(base, options.image_dir)
    files = None
    questions, images, truths, ids = [], [], [], []
    for number, row in enumerate(rows):
        where = f"{questions_uri} line {number + 1}"
        image_id = require(row, "image_id", where)
        questions.append(require(row, "question", where))
        if row.get("image"):
            images.append(load_image(base, row["image"], where))
        else:
            files = files if files is not None else _image_files(instances_uri)
            if image_id not in files:
                raise BadInput(f"{where}: image_id {image_id} has no 'image' and no file in {instances_uri}")
            images.append(load_image(image_dir, files[image_id], where))
        truths.append(truth.get(image_id, set()))
        ids.append(image_id)
    answers = policy.answer(questions, images)
    mention = _mention_fn(bench, extractor, env)
    judged = [scores.chair_sample(mention(a), t, a) for a, t in zip(answers, truths)]
    metrics = scores.chair(judged, truths)
    metrics["well_formed"] = scores.well_formed_rate(answers)
    samples = [
        {"image_id": i, "question": q, "answer": a, "truth": sorted(t),
         "mentioned": s.mentioned, "hallucinated": s.hallucinated, "degenerate": scores.degeneracy(a)}
        for i, q, a, t, s in zip(ids, questions, answers, truths, judged)
    ]  # fmt: skip
    return BenchmarkResult(metrics=metrics, samples=samples, flags=scores.degenerate_flags(metrics))

