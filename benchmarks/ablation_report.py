"""Tables and frontier plots of the ablation benchmark (bench_ablations.py) from its runs'
evaluation documents; the statistics are `mfpo_runtime.eval.ablations`."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from statistics import fmean, pstdev

import numpy as np
from bench_ablations import REFERENCE, SPLITS, VARIANTS, Layout, PlannedRun, Profile
from mfpo_core import storage
from mfpo_core.contract import eval_result_uri
from mfpo_runtime.eval import ablations as stats
from mfpo_runtime.eval.answer_tokens import template_prefixes
from mfpo_runtime.eval.scores import degeneracy

RELIANCE = "logp_drop_excess"  # nats/token: drop with objects noised minus background noised
TEMPLATE_HEADS = template_prefixes()  # "The image shows", "There are", ...
RELIANCE_NOTE = (
    "'reliance excess' (`logp_drop_excess`, nats/token): the drop of the reference answer's "
    "log-likelihood when the objects are noised minus the drop when an equal-area background is: "
    "the image term's own quantity, measured on held-out images with the same kind of noise. A "
    "manipulation check (the term did what it optimises), not evidence of better grounding; it also "
    "grows with how far training moves the model."
)


def _load(runs: list[PlannedRun], layout: Layout) -> tuple[dict, dict]:
    """(documents by run name, the base model's document) for the runs that finished."""
    docs = {r.name: storage.read_json(layout.result(r)) for r in runs if storage.exists(layout.result(r))}
    base_uri = eval_result_uri(layout.run_uri(runs[0]), "base", "synthetic")
    return docs, storage.read_json(base_uri)


def write_report(runs: list[PlannedRun], layout: Layout, profile: Profile, *, rounds: int, meta: dict) -> None:
    docs, base = _load(runs, layout)
    sections, tables = [], {}
    for length in profile.lengths:
        mine = [r for r in runs if r.length == length and r.name in docs]
        for split, prefix in SPLITS.items():
            table = analyse(mine, docs, base, split, prefix, profile, rounds)
            tables[f"{length}/{split}"] = table
            sections.append(markdown_section(length, split, table))
        plot_frontiers(mine, docs, base, profile, layout.out / f"frontier-{length}.png")
    per_run = {name: {"metrics": d["metrics"], "flags": d.get("flags", [])} for name, d in docs.items()}
    (layout.out / "results.json").write_text(json.dumps({**meta, "tables": tables, "runs": per_run}, indent=1))
    header = [
        f"# Ablations on the synthetic world ({meta['profile']} profile)", "",
        (f"{len(docs)} of {len(runs)} planned runs finished{_missing(runs, docs)}; "
         f"{meta['environment']['threads']} threads; torch {meta['environment']['torch']}, "
         f"transformers {meta['environment']['transformers']}; {_took(meta)}. Intervals: 95% paired bootstrap over images and seeds ({rounds} rounds). They do not "
         "cover what every run shares: the captioner (one bootstrap), datagen's noise draw and the "
         "reliance measure's (one seed each), the world's scenes and the thread count."), "",
    ]  # fmt: skip
    (layout.out / "report.md").write_text("\n".join(header + sections))


def _missing(runs: list[PlannedRun], docs: dict) -> str:
    """' (missing: ...)' naming the planned runs without a final evaluation, or ''."""
    missing = [r.name for r in runs if r.name not in docs]
    return f" (missing: {', '.join(missing)})" if missing else ""


def _took(meta: dict) -> str:
    if meta.get("seconds_total") is None:  # --report-only of runs whose session left no timing
        return "run time not recorded (tables made with --report-only)"
    return f"{meta['seconds_total'] / 60:.1f} min this session"


def _grouped(runs: list[PlannedRun]) -> dict[tuple[str, float], list[PlannedRun]]:
    groups: dict[tuple[str, float], list[PlannedRun]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.seed):
        groups[(run.variant.name, run.lr)].append(run)
    return groups


def analyse(runs, docs, base, split, prefix, profile: Profile, rounds: int) -> dict:
    """Equal-step rows at MFPO's rate and matched-recall rows, with paired intervals."""
    groups = _grouped(runs)
    seeds = len(profile.seeds)
    complete = {key: [stats.counts_from_samples(docs[r.name]["samples"], split) for r in group]
                for key, group in groups.items() if len(group) == seeds}  # fmt: skip
    base_counts = stats.counts_from_samples(base["samples"], split)
    image_w, seed_w = stats.resample_weights(len(base_counts.ids), seeds, rounds)
    curves = {key: stats.seed_mean(per_seed, image_w, seed_w) for key, per_seed in complete.items()}
    base_rates = stats.rates(base_counts, image_w)
    reference = curves.get((REFERENCE, profile.mfpo_lr))
    rows = []
    for variant in VARIANTS:
        key = (variant.name, profile.mfpo_lr)
        if key not in curves:
            continue
        metric_docs = [docs[r.name]["metrics"] for r in groups[key]]
        row = {"variant": variant.name, "label": variant.label, "lr": profile.mfpo_lr, "seeds": seeds}
        for metric in ("chair_s", "chair_s_all", "mentioning_rate", "chair_i", "recall", "well_formed", RELIANCE):
            values = [m.get(prefix + metric, math.nan) for m in metric_docs]
            row[metric] = fmean(values)
            row[metric + "_sd"] = pstdev(values) if len(values) > 1 else 0.0
        if reference is not None and variant.name != REFERENCE:
            for metric in ("chair_s", "recall"):
                draws = curves[key][metric] - reference[metric]
                row[f"delta_{metric}"] = float(draws[0])
                row[f"delta_{metric}_ci"] = stats.interval(draws[1:])
        rows.append(row)
    base_metrics = {k: base["metrics"].get(prefix + k, math.nan) for k in ("mentioning_rate", "well_formed", RELIANCE)}
    return {"equal_steps": rows, "matched_recall": matched(curves, base_rates, profile),
            "per_rate": per_rate(groups, docs, prefix, seeds),
            "both_naming": both_naming(complete, image_w, seed_w),
            "silent": silent_answers(groups, docs, split, profile),
            "base": {**{k: float(v[0]) for k, v in base_rates.items()}, **base_metrics},
            "images": len(base_counts.ids)}  # fmt: skip


PER_RATE_METRICS = ("chair_s", "recall", "mentioning_rate", RELIANCE)


def per_rate(groups: dict, docs: dict, prefix: str, seeds: int) -> list[dict]:
    """Seed means of every variant run at several learning rates, one row per rate."""
    rates_of = defaultdict(list)
    for name, lr in groups:
        rates_of[name].append(lr)
    rows = []
    for variant in VARIANTS:
        rates = sorted(rates_of.get(variant.name, []))
        for lr in rates if len(rates) > 1 else []:
            if len(groups[(variant.name, lr)]) != seeds:
                continue
            metric_docs = [docs[r.name]["metrics"] for r in groups[(variant.name, lr)]]
            row = {"variant": variant.name, "label": variant.label, "lr": lr}
            row |= {m: fmean(d.get(prefix + m, math.nan) for d in metric_docs) for m in PER_RATE_METRICS}
            rows.append(row)
    return rows


def both_naming(complete: dict, image_w: np.ndarray, seed_w: np.ndarray) -> list[dict]:
    """Each variant against MFPO at the same rate on the images both answer with an object."""
    rows = []
    for (name, lr), per_seed in sorted(complete.items(), key=lambda item: (_order(item[0][0]), item[0][1])):
        reference = complete.get((REFERENCE, lr))
        if name == REFERENCE or reference is None:
            continue
        draws = stats.both_naming_chair_s(per_seed, reference, image_w, seed_w)
        delta = draws["variant"] - draws["reference"]
        rows.append({"variant": name, "lr": lr, "share": float(draws["share"][0]),
                     "chair_s": float(draws["variant"][0]), "reference_chair_s": float(draws["reference"][0]),
                     "delta_chair_s": float(delta[0]), "delta_chair_s_ci": stats.interval(delta[1:])})  # fmt: skip
    return rows


def _order(name: str) -> int:
    return next(i for i, v in enumerate(VARIANTS) if v.name == name)


SILENT_EXAMPLES = 3


def opening_words_only(answer: str) -> bool:
    """True for an answer that is the first words of a template and stops ("There.", "The image
    shows.", "The objects are."): a sentence cut before its object, which degeneracy passes."""
    words = answer.strip().rstrip(". ").split()
    return bool(words) and any(head.split()[: len(words)] == words for head in TEMPLATE_HEADS)


def silent_answers(groups: dict, docs: dict, split: str, profile: Profile) -> list[dict]:
    """Per variant at MFPO's rate: the answers that name no object (all seeds), how many of them
    are degenerate by `eval.scores.degeneracy`, how many are a template's opening words and a
    stop (`opening_words_only`), and the most frequent ones."""
    rows = []
    for variant in VARIANTS:
        runs = groups.get((variant.name, profile.mfpo_lr), [])
        if len(runs) != len(profile.seeds):  # a variant whose seeds have not all finished: no row
            continue
        samples = [s for r in runs for s in docs[r.name]["samples"] if s.get("split", "eval") == split]
        silent = [s["answer"].strip() for s in samples if not s["mentioned"]]
        rows.append({
            "variant": variant.name, "label": variant.label, "answers": len(samples), "silent": len(silent),
            "degenerate": sum(1 for a in silent if degeneracy(a) is not None),
            "template_only": sum(1 for a in silent if opening_words_only(a)),
            "examples": Counter(silent).most_common(SILENT_EXAMPLES),
        })  # fmt: skip
    return rows


def matched(curves: dict, base_rates: dict, profile: Profile) -> list[dict]:
    """CHAIRs and CHAIRi of every variant where its frontier (base -> rates) reaches r*, at two
    recalls: the lowest every traced frontier reaches (the far end of one of them, which some
    bootstrap draws do not reach) and midway between it and the base model's recall (inside
    every traced frontier's range). Frontiers that cross differ in sign between the two."""
    paths: dict[str, list[dict]] = defaultdict(list)
    for (name, lr), curve in sorted(curves.items(), key=lambda item: item[0][1]):
        paths[name].append(curve)
    paths = {name: [base_rates, *points] for name, points in paths.items()}
    if not paths:
        return []
    # r* comes from the traced frontiers (several rates); a one-rate variant whose single point
    # keeps the base recall would otherwise pin r* to the base model, where every CHAIR is equal.
    traced = {n: path for n, path in paths.items() if len(path) > 2}
    if not traced:  # one rate per variant (the quick profile): no frontier to match recall on
        return []
    lowest = stats.common_recall({n: [float(p["recall"][0]) for p in path] for n, path in traced.items()})
    midway = (lowest + float(base_rates["recall"][0])) / 2
    return [
        {"where": "lowest", **_at_recall(paths, lowest)},
        {"where": "midway", **_at_recall(paths, midway)},
    ]


def _at_recall(paths: dict[str, list[dict]], target: float) -> dict:
    draws = {}
    for name, path in paths.items():
        for metric in ("chair_s", "chair_i"):
            recall = np.stack([p["recall"] for p in path])  # (points, R+1)
            value = np.stack([p[metric] for p in path])
            draws[(name, metric)] = np.array([stats.value_at_recall(recall[:, r], value[:, r], target)
                                              for r in range(recall.shape[1])])  # fmt: skip
    rows = []
    for name, path in paths.items():
        row = {"variant": name, "points": len(path) - 1,
               # the share of bootstrap draws in which this path comes down to r* at all
               "reached": float(np.isfinite(draws[(name, "chair_s")][1:]).mean())}  # fmt: skip
        for metric in ("chair_s", "chair_i"):
            row[metric] = float(draws[(name, metric)][0])
            row[metric + "_ci"] = stats.interval(draws[(name, metric)][1:])
            if name != REFERENCE and (REFERENCE, metric) in draws:
                delta = draws[(name, metric)] - draws[(REFERENCE, metric)]
                row[f"delta_{metric}"] = float(delta[0])
                row[f"delta_{metric}_ci"] = stats.interval(delta[1:])
        rows.append(row)
    return {"recall": target, "rows": rows}


def _ci(value: float, ci: tuple[float, float] | None) -> str:
    if ci is None or math.isnan(value):
        return "-"
    return f"{value:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def markdown_section(length: str, split: str, table: dict) -> str:
    base = table["base"]
    lines = [
        (f"## {length} world, split `{split}` ({table['images']} images; base CHAIRs {base['chair_s']:.3f}, "
         f"CHAIRi {base['chair_i']:.3f}, recall {base['recall']:.3f})"), "",
        ("At equal steps and MFPO's learning rate (mean ± sd over seeds; Δ = variant − MFPO). CHAIRs: answers "
         "with a hallucinated object / answers naming any object; 'CHAIRs all': the same / every answer "
         "(Rohrbach et al.'s published definition, which an answer naming nothing lowers); 'names': the share "
         "of answers naming an object:"), "",
        "| variant | CHAIRs | CHAIRs all | names | CHAIRi | recall | well-formed | reliance excess (manipulation check) | Δ CHAIRs [95% CI] | Δ recall [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    if not table["equal_steps"]:
        lines.append("| (no variant has every seed finished at MFPO's rate here) | | | | | | | | | |")
    for row in table["equal_steps"]:
        lines.append(
            f"| {row['label']} | {row['chair_s']:.3f} ± {row['chair_s_sd']:.3f} | {row['chair_s_all']:.3f} | "
            f"{row['mentioning_rate']:.2f} | {row['chair_i']:.3f} | "
            f"{row['recall']:.3f} ± {row['recall_sd']:.3f} | {row['well_formed']:.2f} | {row[RELIANCE]:.3f} | "
            f"{_ci(row.get('delta_chair_s', math.nan), row.get('delta_chair_s_ci'))} | "
            f"{_ci(row.get('delta_recall', math.nan), row.get('delta_recall_ci'))} |"
        )
    lines += ["", RELIANCE_NOTE]
    lines += _per_rate_lines(table)
    lines += _both_naming_lines(table)
    lines += _silent_lines(table)
    matches = table["matched_recall"]
    if not matches:
        lines += ["", ("Matched recall: needs several learning rates per frontier variant, every seed finished "
                       "(the full profile).")]
    for match in matches:
        where = ("the lowest recall every traced frontier reaches (the far end of one of them)"
                 if match["where"] == "lowest" else "midway between that and the base model's recall")
        lines += ["", (f"At matched recall {match['recall']:.3f}, {where}; interpolated on each path base model -> "
                       "rates; a one-rate variant whose recall stays above it is not comparable there; intervals "
                       "over the bootstrap draws that reach it:"),
                  "", "| variant | rates on path | CHAIRs [95% CI] | CHAIRi | Δ CHAIRs vs MFPO [95% CI] |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for row in match["rows"]:
            if math.isnan(row["chair_s"]):
                lines.append(f"| {row['variant']} | {row['points']} | not reached: recall stays above | - | - |")
                continue
            ci = row["chair_s_ci"]
            partly = f" (reached in {row['reached']:.0%} of draws)" if row.get("reached", 1.0) < 0.995 else ""
            lines.append(
                f"| {row['variant']} | {row['points']} | {row['chair_s']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]{partly} | "
                f"{row['chair_i']:.3f} | {_ci(row.get('delta_chair_s', math.nan), row.get('delta_chair_s_ci'))} |"
            )
    return "\n".join(lines) + "\n"


def _per_rate_lines(table: dict) -> list[str]:
    rows = table.get("per_rate", [])
    if not rows:
        return []
    base = table["base"]
    lines = ["", "Per learning rate (mean over seeds; the frontiers' points; base model first):", "",
             "| variant | learning rate | CHAIRs | recall | names | reliance excess |", "|---|---|---|---|---|---|",
             (f"| base model | - | {base['chair_s']:.3f} | {base['recall']:.3f} | {base['mentioning_rate']:.2f} | "
              f"{base[RELIANCE]:.3f} |")]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['label']} | {row['lr']:g} | {row['chair_s']:.3f} | {row['recall']:.3f} | "
                     f"{row['mentioning_rate']:.2f} | {row[RELIANCE]:.3f} |")  # fmt: skip
    return lines


def _both_naming_lines(table: dict) -> list[str]:
    rows = table.get("both_naming", [])
    if not rows:
        return []
    lines = ["", ("CHAIRs on the images that both the variant and MFPO (same rate, same seed) answer with an "
                  "object: CHAIRs leaves out an answer that names nothing, which favours the variant that "
                  "abstains on hard images; here both are scored on one set of images (Δ = variant − MFPO, "
                  "95% paired bootstrap):"), "",
             "| variant | learning rate | images both name | CHAIRs variant | CHAIRs MFPO | Δ CHAIRs [95% CI] |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        if math.isnan(row["chair_s"]):
            lines.append(f"| {row['variant']} | {row['lr']:g} | 0.00 | - | - | - |")
            continue
        lines.append(f"| {row['variant']} | {row['lr']:g} | {row['share']:.2f} | {row['chair_s']:.3f} | "
                     f"{row['reference_chair_s']:.3f} | {_ci(row['delta_chair_s'], row['delta_chair_s_ci'])} |")  # fmt: skip
    return lines


def _silent_lines(table: dict) -> list[str]:
    rows = table.get("silent", [])
    if not rows:
        return ["", "Answers that name no object: no variant has every seed finished at MFPO's rate here."]
    if not any(r["silent"] for r in rows):
        return ["", "Every answer at MFPO's rate names an object."]
    lines = ["", ("Answers that name no object, at MFPO's rate over all seeds: how many, how many are degenerate "
                  "(`eval.scores.degeneracy`: no word, garbled, repetition), how many are a template's opening "
                  "words and a stop (\"There.\", \"The image shows.\": a sentence cut before its object, which "
                  "the degeneracy check passes), and the most frequent:"), "",
             "| variant | name nothing / answers | degenerate | opening words only | most frequent |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        examples = "; ".join(f"{_quoted(text)} ×{count}" for text, count in row["examples"]) or "-"
        lines.append(f"| {row['label']} | {row['silent']} / {row['answers']} | {row['degenerate']} | "
                     f"{row['template_only']} | {examples} |")  # fmt: skip
    return lines


def _quoted(text: str) -> str:
    return "`" + (text.replace("|", "\\|").replace("`", "'") or " ") + "`"


def plot_frontiers(runs, docs, base, profile: Profile, path: Path) -> None:
    """CHAIRs against recall per variant: base -> each rate (seed mean, sd as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SPLITS), figsize=(6 * len(SPLITS), 4.5), squeeze=False)
    groups = _grouped(runs)
    for ax, (split, prefix) in zip(axes[0], SPLITS.items()):
        b = base["metrics"]
        ax.plot([b[prefix + "recall"]], [b[prefix + "chair_s"]], "k*", markersize=12, label="base")
        for variant in VARIANTS:
            keys = sorted(k for k in groups if k[0] == variant.name and len(groups[k]) == len(profile.seeds))
            if not keys:
                continue
            points = [[docs[r.name]["metrics"] for r in groups[k]] for k in keys]
            xs = [fmean(m[prefix + "recall"] for m in p) for p in points]
            ys = [fmean(m[prefix + "chair_s"] for m in p) for p in points]
            xerr = [pstdev([m[prefix + "recall"] for m in p]) for p in points]
            yerr = [pstdev([m[prefix + "chair_s"] for m in p]) for p in points]
            line = ax.errorbar([b[prefix + "recall"], *xs], [b[prefix + "chair_s"], *ys], xerr=[0, *xerr],
                               yerr=[0, *yerr], marker="o", capsize=3, label=variant.label)  # fmt: skip
            line[0].set_markevery(list(range(1, len(xs) + 1)))
        ax.set_title(split)
        ax.set_xlabel("object recall (higher is better)")
        ax.set_ylabel("CHAIRs (lower is better)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
