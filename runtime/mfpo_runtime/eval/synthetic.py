"""The synthetic benchmark: the scenes world's evaluation splits, with exact ground truth.

Data: the world written by `mfpo_runtime.data.scenes` (`bench.uri` is the world's root, or one
split's dataset directory: then that split, its manifest's). Splits (options
`synthetic.splits`, each once; unset: [eval, eval-counterprior] of a world's root): the held-out
scenes of the training distribution, and the counter-prior scenes where an object appears
without its usual partner, where prior-driven hallucination shows. A split the data lacks is
bad input naming it.

Metrics per split (the `eval` split unprefixed, others prefixed `counterprior.`):
- CHAIR (chair_s, chair_s_all, chair_i), recall, mean_length, mentioning_rate, against the
  record's exact `objects`, mentions by `synthetic_extractor`;
- well_formed: share of answers that are sentences, not collapses; a rate below 0.5 flags the
  policy "degenerate" (its low CHAIR is a failure, not a win);
- answer_change_rate / object_change_rate: answers that change when the whole image is noised
  at step `heavyNoiseStep` (default 900 of 1000);
- logp_drop_object / logp_drop_background / logp_drop_excess / object_reliance_contrast: the
  graded reliance on the reference answer at step `regionNoiseStep` (default 500, the paper's t);
  the contrast (d_obj - d_bg) / (|d_obj| + |d_bg|) lies in [-1, 1] (`reliance.GradedReliance`).
  MFPO's image term optimises this very quantity (with its own m'), so for a policy trained
  with it these are a manipulation check, not evidence of better grounding.
Option `synthetic.reliance: false` skips both reliance forms. Called via mfpo_runtime.eval.benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mfpo_core import storage
from mfpo_core.contract import BadInput
from PIL import Image

from mfpo_runtime.data import images
from mfpo_runtime.data.mentions import MentionExtractor, synthetic_extractor
from mfpo_runtime.data.noise import seed_for
from mfpo_runtime.data.records import (
    MANIFEST_FILE,
    RECORDS_FILE,
    DatasetError,
    PreferenceRecord,
    read_records,
)
from mfpo_runtime.eval import reliance, scores
from mfpo_runtime.eval.common import BenchmarkEnv, BenchmarkResult, data_uri, limit
from mfpo_runtime.eval.config import Benchmark
from mfpo_runtime.eval.generation import Policy

# The splits evaluated when synthetic.splits is unset and uri is the world's root.
DEFAULT_SPLITS = ("eval", "eval-counterprior")


def split_uris(base: str, wanted: list[str] | None) -> dict[str, str]:
    """split -> dataset URI: `base/<split>` for each split listed (default DEFAULT_SPLITS), or
    `base` itself when it is one split's dataset; a split the data lacks is bad input naming it."""
    problems = split_problems(base, wanted)
    if problems:
        raise BadInput("; ".join(problems))
    one = _one_dataset_split(base, wanted)
    if one is not None:
        return {one: base}
    return {split: storage.join(base, split) for split in wanted or DEFAULT_SPLITS}


def _one_dataset_split(base: str, wanted: list[str] | None) -> str | None:
    """The split `base` is when it is one dataset (its manifest's split, else the one listed,
    else eval); None when it is a world's root."""
    if not storage.exists(storage.join(base, RECORDS_FILE)):
        return None
    manifest = storage.join(base, MANIFEST_FILE)
    named = storage.read_json(manifest).get("split") if storage.exists(manifest) else None
    return named or (wanted[0] if wanted else "eval")


def split_problems(base: str, wanted: list[str] | None) -> list[str]:
    """What is missing for the splits listed: checked by the eval stage and, before any
    training, by the run's first stage (`stages.inputs`)."""
    one = _one_dataset_split(base, wanted)
    if one is not None:
        if wanted is None or list(wanted) == [one]:
            return []
        return [
            (f"synthetic benchmark at {base}: it is one dataset, of split {one!r}, but synthetic.splits lists "
            f"{list(wanted)}: point uri at the world's root (the directory holding one directory per split), "
            "or list that split, or leave synthetic.splits unset")
        ]
    return [
        f"synthetic benchmark at {base}: split {split!r} (synthetic.splits) has no "
        f"{storage.join(base, split, RECORDS_FILE)}"
        for split in wanted or DEFAULT_SPLITS
        if not storage.exists(storage.join(base, split, RECORDS_FILE))
    ]


def metric_prefix(split: str) -> str:
    return "" if split == "eval" else split.removeprefix("eval-") + "."


def load_split(uri: str, work_dir: Path) -> tuple[Path, list[PreferenceRecord]]:
    try:
        root = storage.materialize(uri, cache_dir=work_dir)
        return root, read_records(root)
    except (storage.StorageError, DatasetError) as err:
        raise BadInput(f"synthetic benchmark: cannot read the dataset {uri}: {err}") from err


def _open(root: Path, reference: str) -> Image.Image:
    try:
        path = root / reference if "://" not in reference else storage.materialize(reference)
        return images.decode(path, f"image {reference} of the synthetic benchmark {root}")
    except (storage.StorageError, images.ImageDecodeError) as err:
        raise BadInput(str(err)) from err


def object_mask(root: Path, record: PreferenceRecord, size: tuple[int, int]) -> np.ndarray:
    """(H, W) union of the record's object masks."""
    width, height = size
    union = np.zeros((height, width), dtype=bool)
    for name, reference in (record.masks or {}).items():
        mask = np.asarray(_open(root, reference).convert("L")) > 0
        if mask.shape != union.shape:
            raise BadInput(f"record {record.id}: mask of {name} is {mask.shape[::-1]}, image is {size}")
        union |= mask
    return union


def truth_of(record: PreferenceRecord, extractor: MentionExtractor) -> set[str]:
    if record.objects is None:
        raise BadInput(f"synthetic benchmark: record {record.id} has no ground-truth objects")
    return {extractor.canonical(o) or o for o in record.objects}


def evaluate_split(
    policy: Policy, root: Path, records: list[PreferenceRecord], bench: Benchmark
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    extractor = synthetic_extractor()
    questions = [r.question for r in records]
    images = [_open(root, r.image) for r in records]
    truths = [truth_of(r, extractor) for r in records]
    answers = policy.answer(questions, images)
    judged = [scores.chair_sample(extractor.mentions(a), t, a) for a, t in zip(answers, truths)]
    metrics = scores.chair(judged, truths)
    metrics["well_formed"] = scores.well_formed_rate(answers)
    samples = [{"id": r.id, "question": q, "answer": a, "truth": sorted(t), "mentioned": s.mentioned,
                "hallucinated": s.hallucinated, "degenerate": scores.degeneracy(a)}
               for r, q, a, t, s in zip(records, questions, answers, truths, judged)]  # fmt: skip
    if bench.options.reliance:
        metrics |= _reliance(policy, root, records, questions, images, answers, extractor, bench, samples)
    return metrics, samples


def _reliance(policy, root, records, questions, images, answers, extractor, bench, samples) -> dict[str, float]:
    seed = bench.options.noise_seed
    seeds = [seed_for(seed, r.id) for r in records]
    heavy_step = bench.options.heavy_noise_step
    heavy = [reliance.heavy_noise(img, step=heavy_step, seed=s) for img, s in zip(images, seeds)]
    noisy_answers = policy.answer(questions, heavy)
    metrics = {
        "answer_change_rate": reliance.change_rate(answers, noisy_answers),
        "object_change_rate": scores.ratio(
            sum(1 for a, b in zip(answers, noisy_answers) if extractor.objects(a) != extractor.objects(b)),
            len(answers),
        ),
    }
    for sample, noisy in zip(samples, noisy_answers):
        sample["answer_heavy_noise"] = noisy
    graded = [i for i, r in enumerate(records) if r.masks and r.chosen]
    if not graded:
        return metrics
    step = bench.options.region_noise_step
    pairs = [reliance.noised_pair(images[i], object_mask(root, records[i], images[i].size), step=step,
                                  seed=seeds[i]) for i in graded]  # fmt: skip
    qs, refs = [questions[i] for i in graded], [records[i].chosen for i in graded]
    clean = policy.answer_logps(qs, [images[i] for i in graded], refs)
    on_objects = policy.answer_logps(qs, [p[0] for p in pairs], refs)
    on_background = policy.answer_logps(qs, [p[1] for p in pairs], refs)
    for i, c, o, b in zip(graded, clean, on_objects, on_background):
        samples[i]["logp_per_token"] = {"clean": c.per_token, "objects_noised": o.per_token,
                                        "background_noised": b.per_token}  # fmt: skip
    return metrics | reliance.graded_reliance(clean, on_objects, on_background).metrics()


def default_uri(data_uri_of_run: str) -> str:
    """The world's root from a run's data URI (a synthetic run trains on `<world>/train`)."""
    return data_uri_of_run.rstrip("/").removesuffix("/train")


def _listed(bench: Benchmark) -> list[str] | None:
    return list(bench.options.splits) if bench.options.splits is not None else None


def required_inputs(bench: Benchmark, base: str) -> list[str]:
    """Problems with the benchmark's data at `base` that reading it would meet (see `split_problems`)."""
    return split_problems(base, _listed(bench))


def evaluate(policy: Policy, bench: Benchmark, env: BenchmarkEnv) -> BenchmarkResult:
    base = data_uri(bench, env)
    wanted = _listed(bench)
    metrics: dict[str, float] = {}
    samples: list[dict[str, Any]] = []
    counts = {}
    for split, uri in split_uris(base, wanted).items():
        root, records = load_split(uri, env.work_dir)
        records = limit(records, bench)
        if not records:
            raise BadInput(f"synthetic benchmark: the dataset {uri} has no records")
        split_metrics, split_samples = evaluate_split(policy, root, records, bench)
        prefix = metric_prefix(split)
        metrics |= {prefix + k: v for k, v in split_metrics.items()}
        samples += [{"split": split, **s} for s in split_samples]
        counts[split] = len(records)
    flags = sorted({f for split in counts for f in scores.degenerate_flags(metrics, metric_prefix(split) + "well_formed")})
    return BenchmarkResult(metrics=metrics, samples=samples, flags=flags, details={"records": counts})
