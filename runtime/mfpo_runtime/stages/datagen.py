"""The datagen stage: text-preference records -> MFPO image-preference samples (one shard).

For shard (i, n) it reads the records whose index % n == i (`data.formats`), ranks the chosen
answer's keywords (`data.keywords`), grounds them to regions (`data.grounding`, with the
paper's whole-image fallback), noises those regions (`data.noise`), and publishes the enriched
dataset (original and perturbed images, keywords, regions, grounding) with a manifest to
`<shard_uri(run_uri, i, n)>/dataset` through `storage.publish_dir`.

Images are noised and stored in the model's view (`models.image_view`): the geometry its
image processor gives them (resize, crop or pad, any-res grid, dynamic resolution), read from
`model.uri` without the weights; `imagePreference.imageSize` replaces it by a plain square.
The processor then has nothing left to resample, so the noise reaches the model at the step
the user set; grounded regions a center crop cuts off are recorded per record.

Shard 0 first checks that every input of the run exists (`stages.inputs`: model, data,
segmenters, every benchmark's files), so that a wrong URI fails before any training.

Called by `mfpo_runtime.stage.run_stage` (the `mfpo-stage` command). Checkpoint-free: a
preempted shard starts over; a shard whose dataset is already published returns its counts.
"""

from __future__ import annotations

import ctypes
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import fpng
import numpy as np
from mfpo_core import storage
from mfpo_core.contract import BadInput, StageInterrupted, shard_uri

from mfpo_runtime.data import formats, grounding, keywords, noise
from mfpo_runtime.data.records import MANIFEST_FILE, write_records
from mfpo_runtime.progress import each_done, progress_bar
from mfpo_runtime.stage import StageContext, StageOutcome
from mfpo_runtime.stages import plain

log = logging.getLogger("mfpo.datagen")

MAX_SKIPS_LISTED = 100  # in the manifest; the counters count them all


def dataset_uri(run_uri: str, shard: tuple[int, int]) -> str:
    """Where shard (i, n) publishes its dataset (the score stage reads it there)."""
    return f"{shard_uri(run_uri, *shard)}/dataset"


# A record's fallback reason (grounding.NO_KEYWORDS, ...) -> the shard count of that reason.
FALLBACK_COUNTS = {
    grounding.NO_KEYWORDS: "fallbacks_no_keywords",
    grounding.NOT_GROUNDED: "fallbacks_not_grounded",
    grounding.OUTSIDE_VIEW: "fallbacks_outside_view",
}
# Warn (once a shard) when at least this share of the answers gives no keyword candidate, or
# looks non-English: the ranker reads English only.
WARN_SHARE = 0.1


@dataclass
class ShardCounts:
    records: int = 0
    skipped: int = 0
    fallbacks: int = 0  # whole-image noise instead of keyword regions; by reason below
    fallbacks_no_keywords: int = 0  # the answer gave no keyword candidate
    fallbacks_not_grounded: int = 0  # keywords, but the grounder found none of them
    fallbacks_outside_view: int = 0  # found, but the model's view cuts every region off
    ungrounded: int = 0  # no region and fallbackWholeImage false: left out, counted
    regions_lost: int = 0  # keyword regions found but cut off by the model's view (not noised)
    no_keywords: int = 0  # answers (of records enriched or left out) without a keyword candidate
    non_english: int = 0  # answers that look non-English (`keywords.looks_english`)
    skips: list[str] = field(default_factory=list)

    def outcome_metrics(self) -> dict[str, float]:
        return {
            "records": self.records,
            "skipped": self.skipped,
            "fallbacks": self.fallbacks,
            "fallbacks_no_keywords": self.fallbacks_no_keywords,
            "fallbacks_not_grounded": self.fallbacks_not_grounded,
            "fallbacks_outside_view": self.fallbacks_outside_view,
            "ungrounded": self.ungrounded,
            "regions_lost": self.regions_lost,
            "no_keywords": self.no_keywords,
            "non_english": self.non_english,
        }


@dataclass(frozen=True)
class Enricher:
    """Everything applied to one sample, configured once from the spec."""

    grounder: grounding.Grounder
    keyword_spec: object  # api.KeywordSpec
    noise_spec: object  # api.NoiseSpec
    fallback_whole_image: bool
    view: grounding.View  # the model's view of an image (ModelView), or imageSize's SquareView
    seed: int
    answer_words: int  # keyword ranking reads the chosen answer up to this many words
    vectors: keywords.WordVectors | None = None  # None: rank_keywords' hashed n-gram default

    def keywords_of(self, answer: str) -> list[str]:
        ks = self.keyword_spec
        return keywords.rank_keywords(
            answer,
            top_k=ks.top_k,
            phi=ks.phi,
            gamma=ks.gamma,
            decay=ks.decay,
            damping=ks.damping,
            vectors=self.vectors,
        )

    def enrich(self, sample: formats.Sample, out_dir: Path, words: list[str] | None = None):
        """(the enriched record (images written under out_dir/images), its Grounding), or
        (None, None) if ungrounded. `words`: the chosen answer's keywords, when known."""
        if words is None:
            words = self.keywords_of(answer_head(sample.record.chosen, self.answer_words))
        where = (
            f"record {sample.record.id!r} ({sample.source}; image {sample.image_source}, "
            f"{sample.image.width}x{sample.image.height})"
        )
        try:
            found = grounding.ground(
                self.grounder,
                sample.image,
                words,
                sample.masks,
                view=self.view,
                fallback_whole_image=self.fallback_whole_image,
            )
        except grounding.GrounderError as err:  # the grounder's model, not this image
            raise BadInput(f"{where}: {err}") from err
        except ValueError as err:  # e.g. the model's processor has no fixed point for its size
            raise BadInput(f"{where}: {err}") from err
        if found is None:
            return None, None
        ns = self.noise_spec
        perturbed = noise.region_noise(
            found.image,
            found.mask,
            step=ns.step,
            schedule=ns.schedule,
            schedule_steps=ns.schedule_steps,
            beta_start=ns.beta_start,
            beta_end=ns.beta_end,
            seed=noise.seed_for(self.seed, sample.record.id),
        )
        stem = f"images/{sample.index:08d}"
        write_png(found.image, out_dir / f"{stem}.png")
        write_png(perturbed, out_dir / f"{stem}-perturbed.png")
        record = sample.record.model_copy(
            update={
                "image": f"{stem}.png",
                "perturbed_image": f"{stem}-perturbed.png",
                "masks": None,  # ground truth stays in the source dataset; regions say where noise went
                "keywords": words,
                "regions": found.boxes,
                "grounding": found.method,
                "regions_kept": found.kept or None,
                "regions_lost": found.lost or None,
                "region_overlap": found.overlap,
                "fallback_reason": found.reason,
                "extra": {
                    **sample.record.extra,
                    "source_record": sample.source,
                    "source_image": sample.image_source,
                    "source_size": list(sample.image.size),
                    "grounded": found.grounded,
                },
            }
        )
        return record, found


# glibc's mallopt parameters (malloc.h); values in bytes.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_FREE_BYTES = 256 << 20  # freed heap memory glibc keeps instead of returning it
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest: smaller blocks come from the heap


def keep_freed_memory() -> bool:
    """Let glibc reuse the per-image arrays instead of mapping and faulting them in anew.

    Every record allocates and frees a few 0.3-1.4 MB arrays (pixels, eps, PNG bytes); by
    default glibc trims the heap on each free and the next record page-faults the memory
    back, which cost as much CPU as the noise itself (about 1300 faults per record at 336 px).
    Hand-written with ctypes: no library exposes mallopt. True when set (glibc only).
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(
        mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES)
        and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    )


def write_png(image, path: Path) -> None:
    """A lossless RGB PNG by fpng: 10-20x faster than Pillow's zlib encoder (which took most of
    the time per record) for 10-50% larger files; any PNG reader decodes the same pixels."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    path.write_bytes(fpng.from_ndarray(np.asarray(rgb)))


def enricher_for(ctx: StageContext) -> Enricher:
    spec = ctx.config.spec
    pref = spec.image_preference
    try:
        grounder = grounding.grounder_for(
            pref.grounding, spec.data.format, cache_dir=str(ctx.work_dir / "models"), seed=pref.seed
        )
    except grounding.GrounderError as err:  # names imagePreference.grounding.modelUri / samUri
        raise BadInput(f"cannot load the {pref.grounding.method} grounder: {err}") from err
    except (storage.StorageError, OSError, ValueError) as err:
        raise BadInput(
            f"imagePreference.grounding: cannot load the {pref.grounding.method} grounder: {err}"
        ) from err
    return Enricher(
        grounder=grounder,
        keyword_spec=pref.keywords,
        noise_spec=pref.noise,
        fallback_whole_image=pref.grounding.fallback_whole_image,
        view=_view(ctx),
        seed=pref.seed,
        answer_words=spec.training.max_length,
        vectors=_word_vectors(spec) if pref.keywords.word_vectors == "model" else None,
    )


# The words a cut counts: runs of ASCII letters, of other letters, of digits. The ranker's
# words (`keywords.tokens` with a position: the tagger's tokens that hold a letter or a digit)
# each hold one of these at least, so after N runs it has at most N words, and at most N
# candidates, whatever else the text holds.
WORD_RUN = re.compile(r"[A-Za-z]+|[^\W\d_A-Za-z]+|\d+")


def answer_head(answer: str, max_words: int) -> str:
    """The answer up to the end of its `max_words`-th word run (all of it if shorter).

    Keyword ranking is quadratic in the answer's words; this bounds it whatever the answer's
    length. The bound is training.maxLength: the model reads at most that many tokens of prompt,
    image and answer together (the image alone takes hundreds), and a run of letters or digits
    takes a token of its own but for rare tokens that span punctuation, so the words cut are
    words the model does not read. Stops at the cut: a 1 MB answer is not scanned whole.
    """
    for count, match in enumerate(WORD_RUN.finditer(answer), start=1):
        if count == max_words:
            return answer[: match.end()]
    return answer


def _view(ctx: StageContext) -> grounding.View:
    """imagePreference.imageSize's square, else the model's own view of an image."""
    spec = ctx.config.spec
    if spec.image_preference.image_size:
        return grounding.SquareView(spec.image_preference.image_size)
    # transformers (and torch with it) only here: the module itself stays light to import
    from mfpo_runtime.models.image_view import ModelView
    from mfpo_runtime.models.io import load_image_processor

    try:
        family, image_processor = load_image_processor(
            spec.model.uri, cache_dir=ctx.work_dir / "models", family=plain(spec.model.family)
        )
        view = ModelView(family, image_processor)
    except (BadInput, storage.StorageError, OSError, ValueError, TypeError) as err:
        raise BadInput(
            f"model.uri {spec.model.uri}: datagen noises images as the model sees them and "
            f"reads the model's image processor for that: {err} (or set imagePreference.imageSize)"
        ) from err
    log.info("datagen: images noised in the view of %s", view)
    return view


def _word_vectors(spec) -> keywords.EmbeddingVectors:
    """The base model's input embeddings as word vectors; the model itself is let go at once."""
    from mfpo_runtime.models import load_vlm  # torch and transformers only when asked for

    vlm = load_vlm(spec.model.uri, family=plain(spec.model.family))
    return keywords.EmbeddingVectors.from_model(vlm.model, vlm.processor.tokenizer)


def source_files(ctx: StageContext) -> formats.SourceFiles:
    """The files of data.uri this shard reads, and those it passes over (logged, and listed in
    the shard's manifest); bad input when data.uri holds files it cannot read."""
    data = ctx.config.spec.data
    try:
        files = formats.source_files(data.uri, data.format)
    except (FileNotFoundError, ValueError, TypeError, storage.StorageError) as err:
        raise BadInput(f"data.uri {data.uri} ({data.format}): {err}") from err
    log.info("datagen: reading %s", ", ".join(f.uri for f in files.read))
    for path, why in files.ignored:  # a folder's path ends in "/" ("" for data.uri's top)
        where = storage.join(data.uri, path) if path else data.uri
        log.info("datagen: passing over %s%s (%s)", where, "/" * (not path or path.endswith("/")), why)
    return files


def _samples(ctx: StageContext, shard: tuple[int, int], files: formats.SourceFiles):
    data = ctx.config.spec.data
    try:
        yield from formats.iter_samples(
            data.uri, data.format, shard=shard, max_samples=data.max_samples, files=files
        )
    except (FileNotFoundError, ValueError, TypeError, storage.StorageError) as err:
        raise BadInput(f"data.uri {data.uri} ({data.format}): {err}") from err


def _shard_total(ctx: StageContext, shard: tuple[int, int]) -> int | None:
    """The shard's record count for its progress bar; None (a bar without total) when the
    count cannot be read, and iterating the data then names the problem."""
    data = ctx.config.spec.data
    try:
        rows = formats.count_rows(data.uri, data.format)
    except (FileNotFoundError, ValueError, TypeError, storage.StorageError):
        return None
    return formats.shard_size(rows, shard, data.max_samples)


def _on_bad(bad: formats.BadRecord, counts: ShardCounts, ctx: StageContext) -> None:
    if ctx.config.spec.data.on_bad_record == "fail":
        raise BadInput(f"{ctx.config.spec.data.uri}: {bad.describe()} (data.onBadRecord: fail)")
    log.warning("skipping %s", bad.describe())
    counts.skipped += 1
    if len(counts.skips) < MAX_SKIPS_LISTED:
        counts.skips.append(bad.describe())
    ctx.metrics.inc("mfpo_datagen_skipped_records_total")


def _check_skipped(counts: ShardCounts, shard: tuple[int, int], ctx: StageContext) -> None:
    """Fail the shard when every record, or more than data.maxSkippedFraction, was skipped."""
    read = counts.records + counts.skipped + counts.ungrounded
    limit = ctx.config.spec.data.max_skipped_fraction
    if not counts.skipped or (counts.skipped < read and counts.skipped <= limit * read):
        return
    why = "every record" if counts.skipped == read else f"more than data.maxSkippedFraction {limit}"
    raise BadInput(
        f"datagen shard {shard[0]} of {shard[1]}: {counts.skipped} of {read} records of "
        f"{ctx.config.spec.data.uri} skipped ({why}); first: {counts.skips[0]}"
    )


def _warn_if_every_region_fell_back(counts: ShardCounts, shard: tuple[int, int], ctx: StageContext) -> None:
    """Grounding that found no region for any record makes every m' a whole-image noise: the
    paper's global-noise ablation, not MFPO. Typical: `annotation` on records without object
    masks (RLAIF-V, LLaVA). Said loudly; the run goes on, as fallbackWholeImage asks."""
    method = ctx.config.spec.image_preference.grounding.method
    if counts.records and counts.fallbacks == counts.records and method != "whole-image":
        log.warning(
            "datagen shard %d of %d: the %s grounder found no region in any of its %d records, so "
            "every dispreferred image is the whole image noised (the paper's global-noise ablation, "
            "not keyword-region noise); records of format %s carry no object masks for annotation: "
            "set imagePreference.grounding.method to grounding-sam or clipseg",
            *shard, method, counts.records, ctx.config.spec.data.format,
        )


def _warn_if_answers_are_not_english(counts: ShardCounts, shard: tuple[int, int], ctx: StageContext) -> None:
    """The keyword ranker reads English only: said once a shard when many answers give it no
    candidate or look like another language (their records get whole-image noise, or keywords
    that are no objects)."""
    answers = counts.records + counts.ungrounded
    if not answers:
        return
    if counts.no_keywords < WARN_SHARE * answers and counts.non_english < WARN_SHARE * answers:
        return
    log.warning(
        "datagen shard %d of %d: %d of %d chosen answers gave no keyword candidate and %d look "
        "non-English (fewer than %d%% of their words in the tagger's English lexicon): the keyword "
        "ranker reads English only (docs/own-data.md), so their records are noised over the whole "
        "image (fallback_reason %r) or at keywords that may name no object",
        *shard, counts.no_keywords, answers, counts.non_english, round(100 * keywords.ENGLISH_SHARE),
        grounding.NO_KEYWORDS,
    )


def _tally(found, counts: ShardCounts, ctx: StageContext) -> None:
    counts.records += 1
    ctx.metrics.inc("mfpo_datagen_records_total")
    if found.fallback:
        counts.fallbacks += 1
        name = FALLBACK_COUNTS[found.reason]
        setattr(counts, name, getattr(counts, name) + 1)
        ctx.metrics.inc("mfpo_datagen_grounding_fallbacks_total")
    if found.lost:
        counts.regions_lost += len(found.lost)
        ctx.metrics.inc("mfpo_datagen_regions_lost_total", len(found.lost))


def generate_shard(ctx: StageContext, shard: tuple[int, int], out_dir: Path) -> ShardCounts:
    """Enrich every record of the shard into out_dir (records.jsonl, manifest.json, images/)."""
    files = source_files(ctx)
    enricher = enricher_for(ctx)
    keep_freed_memory()
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    counts, records = ShardCounts(), []
    bar = progress_bar(
        total=None, desc=f"datagen {shard[0]}/{shard[1]}", unit="record", enabled=ctx.progress
    )
    if not bar.disable:  # counted only for a bar that is drawn: it reads the dataset once more
        bar.total = _shard_total(ctx, shard)
    for item in each_done(_samples(ctx, shard, files), bar):
        if ctx.stop_requested:
            raise StageInterrupted(
                f"datagen shard {shard[0]} of {shard[1]} stopped; it restarts from scratch"
            )
        if isinstance(item, formats.BadRecord):
            _on_bad(item, counts, ctx)
            continue
        answer = answer_head(item.record.chosen, enricher.answer_words)
        words = enricher.keywords_of(answer)
        counts.no_keywords += not words
        counts.non_english += not keywords.looks_english(answer)
        record, found = enricher.enrich(item, out_dir, words)
        if record is None:
            log.warning(
                "record %r: no region for its keywords %s and fallbackWholeImage is false: left out",
                item.record.id, words or f"(none: {grounding.NO_KEYWORDS})",
            )
            counts.ungrounded += 1
            continue
        records.append(record)
        _tally(found, counts, ctx)
    _check_skipped(counts, shard, ctx)
    _warn_if_every_region_fell_back(counts, shard, ctx)
    _warn_if_answers_are_not_english(counts, shard, ctx)
    write_records(
        records,
        out_dir,
        kind="image-preference",
        source=ctx.config.spec.data.uri,
        format=ctx.config.spec.data.format,
        shard=list(shard),
        grounding=ctx.config.spec.image_preference.grounding.method,
        counts=counts.outcome_metrics(),
        skips=counts.skips,
        source_files=files.manifest(),
    )
    return counts


def _published_counts(uri: str) -> ShardCounts:
    """Counts of an already published shard (crash between publish and the result document)."""
    manifest = storage.read_json(storage.join(uri, MANIFEST_FILE))
    return ShardCounts(
        **{k: int(v) for k, v in manifest["counts"].items()}, skips=manifest["skips"]
    )


def run(ctx: StageContext) -> StageOutcome:
    shard = ctx.shard or (0, 1)
    if shard[0] == 0:  # one shard is enough; its failure fails the whole datagen Job
        # Imported here: the benchmark modules it asks bring transformers, which a shard that
        # only noises images never needs otherwise.
        from mfpo_runtime.stages import inputs

        inputs.check_inputs(ctx.config.spec)
    uri = dataset_uri(ctx.config.run_uri, shard)
    if storage.is_complete(uri):
        log.info("shard %d of %d already published at %s", *shard, uri)
        counts = _published_counts(uri)
    else:
        out_dir = ctx.work_dir / "dataset"
        counts = generate_shard(ctx, shard, out_dir)
        storage.publish_dir(out_dir, uri)
    log.info("datagen shard %d of %d: %s", *shard, counts.outcome_metrics())
    return StageOutcome(
        metrics=counts.outcome_metrics(),
        outputs={"dataset": uri},
        details={"shard": list(shard), "skips": counts.skips},
    )
