"""The score stage: merge the datagen shards, score semantic entropy, bin the curriculum.

1. Merge: read every shard's published dataset `<shard_uri(run_uri, i, n)>/dataset`
   (a missing shard is a retryable error naming it); image paths become absolute URIs into
   the shards, so no image is copied.
2. Score: K answers per prompt sampled from the reference (base) model at the curriculum's
   temperature; semantic entropy over meaning groups (`data.entropy`).
3. Bin: N = spec.curriculum.stages equal-frequency bins by entropy (bin 1 = easiest).
4. Publish `<run_uri>/score/dataset` (records with entropy and bin, `samples.jsonl` with the
   sampled answers, a manifest) with `storage.publish_dir`.

Called by `mfpo_runtime.stage.run_stage`. Checkpoint-free but idempotent: a published dataset
is reused; sampling is seeded, so a rerun gives the same bins.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from statistics import fmean

from mfpo_core import storage
from mfpo_core.contract import BadInput, StageInterrupted, stage_uri
from PIL import Image

from mfpo_runtime.data import entropy, images, json_lines
from mfpo_runtime.data.records import (
    MANIFEST_FILE,
    RECORDS_FILE,
    DatasetError,
    PreferenceRecord,
    first_duplicate_id,
    parse_records,
    write_records,
)
from mfpo_runtime.progress import progress_bar
from mfpo_runtime.stage import StageContext, StageOutcome
from mfpo_runtime.stages import plain
from mfpo_runtime.stages.datagen import dataset_uri as shard_dataset_uri

log = logging.getLogger("mfpo.score")

SAMPLES_FILE = "samples.jsonl"


class MissingShard(RuntimeError):
    """A datagen shard has not published its dataset: retryable (the shard may still run)."""


def scored_dataset_uri(run_uri: str) -> str:
    """Where the curriculum dataset lives; align-k reads the records with bin == k."""
    return f"{stage_uri(run_uri, 'score')}/dataset"


# ------------------------------------------------------------------ merge


def _absolute(reference: str | None, base_uri: str) -> str | None:
    if reference is None or "://" in reference or reference.startswith("/"):
        return reference
    return storage.join(base_uri, reference)


def shard_records(uri: str) -> list[PreferenceRecord]:
    """One shard's records, image paths made absolute URIs into the shard."""
    records = []
    where = storage.join(uri, RECORDS_FILE)
    try:
        parsed = parse_records(storage.read_bytes(where), where)
    except DatasetError as err:
        raise BadInput(f"datagen's published dataset is not readable: {err}") from err
    for record in parsed:
        update = {
            "image": _absolute(record.image, uri),
            "perturbed_image": _absolute(record.perturbed_image, uri),
        }
        records.append(record.model_copy(update=update))
    return records


def merge_shards(run_uri: str, count: int) -> list[PreferenceRecord]:
    """Every shard's records, shard by shard; raises MissingShard naming the first missing one,
    and BadInput when two records share an id (datagen refuses them within one reading of the
    data; shards that read different data, or published before that check, can still hold them)."""
    merged: list[PreferenceRecord] = []
    shard_of: list[int] = []
    for index in range(count):
        uri = shard_dataset_uri(run_uri, (index, count))
        if not storage.is_complete(uri):
            raise MissingShard(f"datagen shard {index} of {count} has not published {uri}")
        records = shard_records(uri)
        merged.extend(records)
        shard_of.extend([index] * len(records))
    duplicate = first_duplicate_id(merged)
    if duplicate is not None:
        where = [
            f"datagen shard {shard_of[i]} of {count}, from "
            f"{merged[i].extra.get('source_record', 'a place datagen did not record')}"
            for i in duplicate
        ]
        raise BadInput(
            f"two records have the id {merged[duplicate[0]].id!r} ({where[0]}; {where[1]}): a "
            "record's id keys its sampled answers and reference log-probs, so ids must be unique "
            f"across data.uri; fix the data, then start the run afresh (its datagen output at "
            f"{stage_uri(run_uri, 'datagen')} holds both)"
        )
    return merged


# ------------------------------------------------------------------ score


def _image(uri: str) -> Image.Image:
    try:
        return images.decode(storage.read_bytes(uri), uri)
    except images.ImageDecodeError as err:
        raise BadInput(f"an image of datagen's published dataset: {err}") from err


def _load_reference(ctx: StageContext):
    from mfpo_runtime.models import ModelLoadError, load_vlm  # imported late: torch, transformers

    model = ctx.config.spec.model
    try:
        return load_vlm(model.uri, family=plain(model.family))
    except (storage.StorageError, OSError, ValueError, ModelLoadError) as err:
        raise BadInput(f"model.uri {model.uri}: cannot load the reference model: {err}") from err


def score_records(
    ctx: StageContext, records: list[PreferenceRecord], loaded
) -> tuple[list[float], list[list[str]]]:
    """Semantic entropy and the sampled answers of every record, in batches."""
    spec = ctx.config.spec
    cur = spec.curriculum
    meaning = entropy.equivalence_for(cur.equivalence, spec.data.format)
    batch = spec.evaluation.batch_size
    entropies: list[float] = []
    answers: list[list[str]] = []
    bar = progress_bar(total=len(records), desc="score", unit="record", enabled=ctx.progress)
    for number, start in enumerate(range(0, len(records), batch)):
        if ctx.stop_requested:
            raise StageInterrupted("score stopped; it restarts from the merged shards")
        chunk = records[start : start + batch]
        sampled = entropy.sample_answers(
            loaded,
            [r.question for r in chunk],
            [_image(r.image) for r in chunk],
            samples=cur.entropy_samples,
            temperature=cur.temperature,
            max_new_tokens=cur.max_new_tokens,
            seed=spec.training.seed * 100_003 + number,
        )
        for group in sampled:
            entropies.append(entropy.semantic_entropy(group, meaning))
            answers.append(group)
        ctx.metrics.inc("mfpo_score_records_total", len(chunk))
        bar.update(len(chunk))
    bar.close()
    return entropies, answers


def _summary(records: list[PreferenceRecord], stages: int) -> dict[str, float]:
    values = [r.entropy for r in records if r.entropy is not None]
    metrics: dict[str, float] = {
        "records": len(records),
        "entropy.mean": fmean(values) if values else 0.0,
        "entropy.min": min(values, default=0.0),
        "entropy.max": max(values, default=0.0),
    }
    for k in range(1, stages + 1):
        metrics[f"bin.{k}.records"] = sum(1 for r in records if r.bin == k)
    return metrics


def build_curriculum(ctx: StageContext, out_dir: Path) -> dict[str, float]:
    """Merge, score, bin, and write the dataset into out_dir; returns the outcome metrics."""
    spec = ctx.config.spec
    records = merge_shards(ctx.config.run_uri, spec.image_preference.shards)
    if not records:
        raise BadInput(
            "the datagen shards hold no records: nothing to score (check data.uri and skips)"
        )
    entropies, answers = score_records(ctx, records, _load_reference(ctx))
    bins = entropy.curriculum_bins(entropies, spec.curriculum.stages)
    scored = [
        r.model_copy(update={"entropy": e, "bin": b}) for r, e, b in zip(records, entropies, bins)
    ]
    metrics = _summary(scored, spec.curriculum.stages)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / SAMPLES_FILE).open("w") as handle:
        for record, group in zip(scored, answers):
            handle.write(json_lines.dumps({"id": record.id, "answers": group}) + "\n")
    write_records(
        scored,
        out_dir,
        kind="curriculum",
        stages=spec.curriculum.stages,
        equivalence=spec.curriculum.equivalence,
        entropy_samples=spec.curriculum.entropy_samples,
        temperature=spec.curriculum.temperature,
        shards=spec.image_preference.shards,
        metrics=metrics,
    )
    return metrics


def run(ctx: StageContext) -> StageOutcome:
    uri = scored_dataset_uri(ctx.config.run_uri)
    if storage.is_complete(uri):
        log.info("curriculum already published at %s", uri)
        metrics = storage.read_json(storage.join(uri, MANIFEST_FILE))["metrics"]
    else:
        out_dir = ctx.work_dir / "dataset"
        metrics = build_curriculum(ctx, out_dir)
        storage.publish_dir(out_dir, uri)
    ctx.metrics.set("mfpo_score_semantic_entropy_mean", metrics["entropy.mean"])
    log.info("score: %s", metrics)
    if ctx.tracker is not None:
        track_datagen(ctx)
    return StageOutcome(metrics=metrics, outputs={"dataset": uri})


def datagen_summary(run_uri: str, shards: int) -> dict:
    """Every datagen shard's manifest (counts, skipped records, settings) and the totals."""
    manifests = [
        storage.read_json(storage.join(shard_dataset_uri(run_uri, (i, shards)), MANIFEST_FILE))
        for i in range(shards)
    ]
    totals: dict[str, int] = {}
    for manifest in manifests:
        for key, value in manifest.get("counts", {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    return {"shards": manifests, "totals": totals}


def track_datagen(ctx: StageContext) -> None:
    """The datagen summary, logged once here: the datagen shards run side by side and do not
    track (`stage.tracker_for`). Metrics datagen.<count>, artifact datagen/summary.json."""
    summary = datagen_summary(ctx.config.run_uri, ctx.config.spec.image_preference.shards)
    ctx.tracker.log_metrics({f"datagen.{key}": value for key, value in summary["totals"].items()})
    local = ctx.work_dir / "datagen-summary" / "summary.json"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(json.dumps(summary, indent=2, sort_keys=True))
    ctx.tracker.log_artifact(local, "datagen")
