"""Why MFPO's answers name no object: the image term's margin by token class (issue 26).

    python benchmarks/names_nothing.py                  # the full profile's runs/ablations/full
    python benchmarks/names_nothing.py --profile quick

MFPO's image term raises log pi(y_w|m) - log pi(y_w|m') against the reference. With m' = the
scene with every named object noised away, one cheap way to make y_w unlikely on m' is to stop
before the object list: lower the article after "The image shows", raise "." or EOS. If the
policy learnt that, it shows in two places, measured here on every finished run of the ablation
benchmark at MFPO's learning rate and on the base model, on each world's evaluation images:

1. the margin log pi(y_w|m) - log pi(y_w|m') split by the token classes of y_w (the faithful
   caption; `eval.answer_tokens`: template, article, object, separator, period, EOS), with m'
   made exactly as each run's datagen made its training m' (the run's own spec through the
   datagen stage's `enricher_for`), and with MFPO's m' for every policy (one probe for all);
2. right after the template prefix, p(article) against p("." or EOS), on m and on m', on the
   images where the policy's own greedy answer (the eval stage's) names nothing and where it
   names something.

Writes <out>/names-nothing.md (tables) and names-nothing.json (every number). Reads only what
bench_ablations.py keeps: the worlds, the base model, each run's final policy
(`<run>/align-<stages>/policy`, base + LoRA adapters) and evaluation document.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from statistics import fmean

from bench_ablations import (
    PROFILES,
    REFERENCE,
    SPLITS,
    VARIANTS,
    Layout,
    PlannedRun,
    Profile,
    manifest,
    plan,
)
from mfpo_core import storage
from mfpo_core.contract import StageConfig, policy_uri, shard_uri
from mfpo_runtime.data import formats
from mfpo_runtime.data.images import decode
from mfpo_runtime.data.records import RECORDS_FILE, read_records
from mfpo_runtime.eval.answer_tokens import CLASSES, answer_token_scores
from mfpo_runtime.metrics import StageMetrics
from mfpo_runtime.stage import StageContext
from mfpo_runtime.stages import datagen

BASE = "base"


# ------------------------------------------------------------------------ the images


def evaluation_samples(layout: Layout, length: str, split: str, profile: Profile) -> list[formats.Sample]:
    """The split's first `profile.eval` records with images and masks: what the eval stage
    answered (`eval.common.limit` keeps the first maxSamples)."""
    uri = f"{layout.world(length)}/{split}"
    samples = [s for s in formats.iter_samples(uri, "synthetic", max_samples=profile.eval)]
    bad = [s for s in samples if isinstance(s, formats.BadRecord)]
    if bad:
        raise ValueError(f"{uri}: {bad[0].describe()}")
    return samples


def image_pairs(run: PlannedRun, profile: Profile, layout: Layout, samples: list, work: Path) -> dict[str, tuple]:
    """record id -> (m, m') as this run's datagen makes them from these records: the run's own
    spec through the datagen stage's enricher (keywords, grounding, noise, the model's view)."""
    spec = manifest(run, profile, layout, evaluate_base=False).spec
    # A scratch run of this process (its prefix is `work`'s, claimed by nobody): no stage runs.
    config = StageConfig(uid="names-nothing", runner="local", run=run.name, stage="datagen",
                         run_uri=f"file://{work}/run", spec=spec)  # fmt: skip
    ctx = StageContext(config=config, work_dir=work, metrics=StageMetrics.for_config(config), progress=False)
    enricher = datagen.enricher_for(ctx)
    out_dir = work / f"pairs-{run.variant.datagen_group}"
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    pairs = {}
    for sample in samples:
        record, _ = enricher.enrich(sample, out_dir)
        if record is None:
            raise ValueError(f"record {sample.record.id}: no region and no whole-image fallback")
        pairs[sample.record.id] = (decode(out_dir / record.image, record.image),
                                   decode(out_dir / record.perturbed_image, record.perturbed_image))  # fmt: skip
    return pairs


# ---------------------------------------------------------------------- the measures


def margins_and_choices(loaded, samples: list, pairs: dict[str, tuple]) -> list[dict]:
    """Per record: the margin log pi(y_w|m) - log pi(y_w|m') summed by token class, and
    p(article) / p(stop) after the template prefix on m and on m'."""
    questions = [s.record.question for s in samples]
    captions = [s.record.chosen for s in samples]
    clean = answer_token_scores(loaded, questions, [pairs[s.record.id][0] for s in samples], captions)
    noised = answer_token_scores(loaded, questions, [pairs[s.record.id][1] for s in samples], captions)
    rows = []
    for sample, on_m, on_m2 in zip(samples, clean, noised):
        m, m2 = on_m.by_class(), on_m2.by_class()
        rows.append({
            "id": sample.record.id,
            "margin": {c: m[c] - m2[c] for c in CLASSES},
            "object_logp_clean": _per_token(on_m, "object"),
            "p_article": on_m.p_article, "p_stop": on_m.p_stop, "p_stop_before_list": on_m.p_stop_before_list,
            "p_article_noised": on_m2.p_article, "p_stop_noised": on_m2.p_stop,
            "p_stop_before_list_noised": on_m2.p_stop_before_list,
        })  # fmt: skip
    return rows


def _per_token(scores, kind: str) -> float:
    values = [lp for lp, c in zip(scores.logps, scores.classes) if c == kind]
    return fmean(values) if values else math.nan


def names_nothing(run: PlannedRun, layout: Layout, split: str) -> dict[str, bool]:
    """record id -> True when the run's evaluated greedy answer names no object."""
    samples = storage.read_json(layout.result(run))["samples"]
    return {str(s["id"]): not s["mentioned"] for s in samples if s.get("split", "eval") == split}


# ------------------------------------------------------------ what each m' removes


def what_m_prime_removes(profile: Profile, layout: Layout) -> dict:
    """Per world and datagen group (one m' recipe), from its first finished run's training
    records: how many of the scene's objects the keywords name (and so the noise covers), and
    for the random region where it went (moved whole off the objects, or the blob of
    `grounding.place_off_objects` step 2; its share on the objects)."""
    out: dict = {}
    for length in profile.lengths:
        seen: dict[str, dict] = {}
        for run in plan(profile):
            group = run.variant.datagen_group
            dataset = Path(str(storage.local_path(shard_uri(layout.run_uri(run), 0, 1)))) / "dataset"
            if run.length != length or group in seen or not (dataset / RECORDS_FILE).is_file():
                continue
            records = read_records(dataset)
            several = [r for r in records if len(r.keywords or []) > 1]
            seen[group] = {
                "run": run.name, "top_k": run.variant.top_k, "noise_step": run.variant.noise_step,
                "grounding": run.variant.grounding, "records": len(records),
                "keywords": fmean(len(r.keywords or []) for r in records),
                "objects": fmean(len(r.objects or []) for r in records),
                "every_object": fmean(set(r.objects or []) <= set(r.keywords or []) for r in records),
                "overlapping": sum(1 for r in records if (r.region_overlap or 0) > 0),
                # a region moved whole keeps one box per keyword; the blob has one box
                "moved_whole": sum(1 for r in several if len(r.regions or []) == len(r.keywords or [])),
                "several_keywords": len(several),
            }  # fmt: skip
        out[length] = seen
    return out


NOISED = {"annotation": "keyword regions", "random-region": "their area off the objects",
          "whole-image": "whole image"}  # grounding method -> where m' is noised


def m_prime_markdown(removes: dict) -> list[str]:
    lines = ["## What each m' removes (the training records of each datagen recipe)", "",
             "| world | m' recipe | records | objects / record | keywords / record | keywords name every object | region on the objects | moved whole (of records with 2+ keywords) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for length, groups in removes.items():
        for g in groups.values():
            random = g["grounding"] == "random-region"
            lines.append(
                f"| {length} | {NOISED[g['grounding']]}, top-{g['top_k']} keywords, t = {g['noise_step']} | "
                f"{g['records']} | {g['objects']:.2f} | "
                f"{g['keywords']:.2f} | {g['every_object']:.0%} | {g['overlapping'] if random else '-'} | "
                f"{str(g['moved_whole']) + ' of ' + str(g['several_keywords']) if random else '-'} |"
            )
    return [*lines, ""]


# -------------------------------------------------------------------------- summary


GROUP_FIELDS = ("p_article", "p_stop", "p_stop_before_list", "p_article_noised", "p_stop_noised",
                "p_stop_before_list_noised", "object_logp_clean")


def summarise(rows: list[dict]) -> dict:
    """Means over (image, seed) rows: the margins by class and their total, the choice masses."""
    if not rows:
        return {"n": 0}
    out = {"n": len(rows)}
    out["margin"] = {c: fmean(r["margin"][c] for r in rows) for c in CLASSES}
    out["margin"]["total"] = sum(out["margin"].values())
    out |= {f: fmean(r[f] for r in rows if not math.isnan(r[f])) for f in GROUP_FIELDS}
    return out


def grouped(rows: list[dict], silent: list[bool]) -> dict:
    return {
        "all": summarise(rows),
        "names nothing": summarise([r for r, s in zip(rows, silent) if s]),
        "names something": summarise([r for r, s in zip(rows, silent) if not s]),
    }


# ---------------------------------------------------------------------------- driver


def analyse(profile: Profile, layout: Layout, log=print) -> dict:
    runs = [r for r in plan(profile) if r.lr == profile.mfpo_lr and storage.exists(layout.result(r))]
    if not any(r.variant.name == REFERENCE for r in runs):
        raise SystemExit(f"no finished MFPO run under {layout.out}: run bench_ablations.py first")
    from mfpo_runtime.models import load_vlm
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per loaded policy says nothing here
    results: dict = {}
    for length in profile.lengths:
        mine = [r for r in runs if r.length == length]
        reference_runs = {r.seed: r for r in mine if r.variant.name == REFERENCE}
        if not reference_runs:  # an interrupted benchmark: this world has no finished MFPO run yet
            log(f"{length} world: no finished MFPO run at its rate; left out", flush=True)
            continue
        for split in SPLITS:
            began = time.monotonic()
            samples = evaluation_samples(layout, length, split, profile)
            with tempfile.TemporaryDirectory(prefix="names-nothing-") as tmp:
                groups = {}
                for run in mine:
                    groups.setdefault(run.variant.datagen_group, run)
                pairs = {key: image_pairs(run, profile, layout, samples, Path(tmp) / key)
                         for key, run in groups.items()}  # fmt: skip
            probe = pairs[next(r for r in mine if r.variant.name == REFERENCE).variant.datagen_group]
            silent_ref = {seed: names_nothing(run, layout, split) for seed, run in reference_runs.items()}
            ids = [s.record.id for s in samples]
            table: dict = {}
            base = load_vlm(layout.base_model)
            base_rows = margins_and_choices(base, samples, probe)
            # The base model answers once; it is set beside each of MFPO's seeds.
            table[BASE] = {"by MFPO's answer": grouped(
                [r for _ in silent_ref for r in base_rows],
                [silent[i] for silent in silent_ref.values() for i in ids])}  # fmt: skip
            for variant in VARIANTS:
                vruns = sorted((r for r in mine if r.variant.name == variant.name), key=lambda r: r.seed)
                if not vruns:
                    continue
                probe_rows, own_rows, own_silent, ref_silent = [], [], [], []
                for run in vruns:
                    loaded = load_vlm(policy_uri(layout.run_uri(run), run.policy))
                    probe_rows += margins_and_choices(loaded, samples, probe)
                    if pairs[run.variant.datagen_group] is not probe:
                        own_rows += margins_and_choices(loaded, samples, pairs[run.variant.datagen_group])
                    silent = names_nothing(run, layout, split)
                    own_silent += [silent[i] for i in ids]
                    ref_silent += [silent_ref[run.seed][i] for i in ids] if run.seed in silent_ref else [False] * len(ids)
                table[variant.name] = {
                    "label": variant.label, "runs": len(vruns),
                    "by own answer": grouped(probe_rows, own_silent),
                    "by MFPO's answer": grouped(probe_rows, ref_silent),
                    "own m'": summarise(own_rows) if own_rows else None,
                }  # fmt: skip
            results.setdefault(length, {})[split] = {"images": len(samples), "variants": table}
            log(f"{length} world, {split}: {len(samples)} images, {len(table)} policies, "
                f"{time.monotonic() - began:.0f} s", flush=True)  # fmt: skip
    return results


# -------------------------------------------------------------------------- markdown


def _f(value, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _label(entry: dict, seeds: int) -> str:
    """The variant's label, with its number of runs when fewer than the profile's seeds finished."""
    return entry["label"] if entry["runs"] == seeds else f"{entry['label']} ({entry['runs']} of {seeds} seeds)"


def markdown(results: dict, profile_name: str, profile_seeds: int) -> str:
    lines = [f"# Why MFPO's answers name nothing ({profile_name} profile)", "",
             ("Per run at MFPO's learning rate, pooled over its seeds, on each split's evaluation images; the base "
              "model beside each of MFPO's seeds. y_w: the image's faithful caption. m': the image with MFPO's "
              "keyword regions noised (t = 500, as MFPO's datagen makes it) unless said otherwise."), ""]  # fmt: skip
    for length, splits in results.items():
        for split, result in splits.items():
            table = result["variants"]
            lines += [f"## {length} world, split `{split}` ({result['images']} images)", "",
                      ("Margin log π(y_w|m) − log π(y_w|m') by token class of y_w (mean per answer, nats; "
                       "'total' is the whole answer's):"), "",
                      f"| policy | {' | '.join(CLASSES)} | total |", f"|---|{'---|' * (len(CLASSES) + 1)}"]  # fmt: skip
            for name, entry in table.items():
                summary = entry["by MFPO's answer"]["all"] if name == BASE else entry["by own answer"]["all"]
                label = "base model" if name == BASE else _label(entry, profile_seeds)
                cells = [_f(summary["margin"][c]) for c in (*CLASSES, "total")]
                lines.append(f"| {label} | {' | '.join(cells)} |")
            own = [(_label(e, profile_seeds), e["own m'"]) for n, e in table.items() if n != BASE and e.get("own m'")]
            if own:
                lines += ["", "The same with each run's own m' (its datagen's region, keywords and step):", "",
                          f"| policy | {' | '.join(CLASSES)} | total |", f"|---|{'---|' * (len(CLASSES) + 1)}"]  # fmt: skip
                for label, summary in own:
                    lines.append(f"| {label} | {' | '.join(_f(summary['margin'][c]) for c in (*CLASSES, 'total'))} |")
            lines += ["", ("Stopping before the object list, following y_w's opening words: 'before list' = "
                           "1 − Π(1 − p(\".\" or EOS)) over the positions up to the first article; 'at list' = "
                           "p(article) / p(stop) right after the template prefix (\"The image shows\", \"There "
                           "are\"). On m for the images where the policy's own answer names nothing and where it "
                           "names something (n: images × seeds), and on m' for all:"), "",
                      "| policy | names nothing: n | before list, m | at list, m | names something: n | before list, m | at list, m | all: before list, m' | at list, m' |",
                      "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
            for name, entry in table.items():
                by = entry["by MFPO's answer" if name == BASE else "by own answer"]
                label = "base model (grouped by MFPO's answers)" if name == BASE else _label(entry, profile_seeds)
                silent, naming, every = by["names nothing"], by["names something"], by["all"]
                lines.append(f"| {label} | {silent['n']} | {_f(silent.get('p_stop_before_list'), 3)} | {_pair(silent)} | "
                             f"{naming['n']} | {_f(naming.get('p_stop_before_list'), 3)} | {_pair(naming)} | "
                             f"{_f(every.get('p_stop_before_list_noised'), 3)} | {_pair(every, noised=True)} |")  # fmt: skip
            lines += ["", ("On the images where MFPO's answer (same seed) names nothing against those where it names "
                           "something: each policy's chance of stopping before the list on m, and its mean log-prob "
                           "per token of y_w's object names on m (how sure it is of the objects):"), "",
                      "| policy | MFPO names nothing: before list | log-prob of names | MFPO names something: before list | log-prob of names |",
                      "|---|---|---|---|---|"]  # fmt: skip
            for name, entry in table.items():
                silent, naming = entry["by MFPO's answer"]["names nothing"], entry["by MFPO's answer"]["names something"]
                label = "base model" if name == BASE else _label(entry, profile_seeds)
                lines.append(f"| {label} | {_f(silent.get('p_stop_before_list'), 3)} | {_f(silent.get('object_logp_clean'))} | "
                             f"{_f(naming.get('p_stop_before_list'), 3)} | {_f(naming.get('object_logp_clean'))} |")  # fmt: skip
            lines.append("")
    return "\n".join(lines)


def _pair(summary: dict, *, noised: bool = False) -> str:
    if not summary.get("n"):
        return "-"
    suffix = "_noised" if noised else ""
    return f"{summary['p_article' + suffix]:.3f} / {summary['p_stop' + suffix]:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--out", default=None, help="the benchmark's output (default: runs/ablations/<profile>)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    layout = Layout(Path(args.out or f"runs/ablations/{args.profile}").resolve())
    began = time.monotonic()
    results = analyse(profile, layout)
    removes = what_m_prime_removes(profile, layout)
    (layout.out / "names-nothing.json").write_text(json.dumps({"m_prime": removes, "worlds": results}, indent=1))
    text = markdown(results, args.profile, len(profile.seeds))
    head, _, rest = text.partition("\n## ")
    (layout.out / "names-nothing.md").write_text("\n".join([head, *m_prime_markdown(removes)]) + "\n## " + rest)
    print(f"{time.monotonic() - began:.0f} s; report: {layout.out / 'names-nothing.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
