"""The evaluation's readable outputs: a markdown report and a plot of the scores per stage.

Input: scores[policy][benchmark] = {"metrics": {...}, "flags": [...]} for the policies in run
order (base, align-1, ...). The report has one table per benchmark (metrics x policies), says
which direction is better, and warns about degenerate policies (a collapsed model looks least
hallucinating by CHAIR). The plot (matplotlib, Agg) has a row per benchmark and a panel per
better-direction with its key metrics across policies; it is drawn only when several policies
were evaluated.
Called by the eval stage (mfpo_runtime.stages.evaluate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Scores = dict[str, dict[str, dict[str, Any]]]

# Metrics drawn in the plot, per benchmark (others are in the tables and result documents).
KEY_METRICS = {
    "synthetic": [
        "chair_s", "chair_i", "recall", "well_formed",
        "counterprior.chair_s", "counterprior.chair_i", "counterprior.recall",
    ],
    "object-halbench": ["chair_s", "chair_i", "recall"],
    "amber": ["chair", "hal", "cog", "cover", "f1"],
    "pope": ["accuracy", "f1", "yes_ratio"],
}
LOWER_IS_BETTER = ("chair", "hal", "cog")
# Image reliance: an answer that changes with the image means the model looks at it (after
# text-only DPO the paper saw 9% change).
HIGHER_IS_BETTER = ("answer_change_rate", "object_change_rate")
# The graded reliance is MFPO's image term's own quantity (y_w's likelihood on the image against
# the image with its objects noised), measured on held-out images: a manipulation check, with
# no better direction; it also grows with how far training moved the model.
MANIPULATION_CHECKS = ("logp_drop_excess", "object_reliance_contrast")
MANIPULATION_NOTE = (
    "`logp_drop_excess` and `object_reliance_contrast` are a manipulation check, not a score: the "
    "drop of the reference answer's log-likelihood when the objects are noised, against an equal-area "
    "background, is what MFPO's image term optimises (measured here on held-out images). Higher means "
    "the term did what it optimises, not that the policy grounds its answers better."
)
# Not fractions: printed as numbers, not percentages.
RAW_METRICS = ("mean_length", "logp_drop", "object_reliance_contrast")


def better(metric: str) -> str:
    last = metric.rsplit(".", 1)[-1]
    if last in MANIPULATION_CHECKS:
        return "-"
    if last in HIGHER_IS_BETTER:
        return "higher"
    if any(last.startswith(m) for m in LOWER_IS_BETTER):
        return "lower"
    if last.startswith(RAW_METRICS) or last == "yes_ratio":
        return "-"
    return "higher"


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    last = metric.rsplit(".", 1)[-1]
    return f"{value:.3f}" if last.startswith(RAW_METRICS) else f"{100 * value:.1f}%"


def benchmarks_of(scores: Scores) -> list[str]:
    names: list[str] = []
    for per_policy in scores.values():
        names += [b for b in per_policy if b not in names]
    return names


def markdown(run: str, scores: Scores, *, plot_file: str | None = None) -> str:
    policies = list(scores)
    lines = [f"# Hallucination evaluation of run `{run}`", ""]
    lines += [f"Policies: {', '.join(policies)}. Rates are percentages of responses, mentions or objects.", ""]
    degenerate = [p for p in policies if any("degenerate" in r.get("flags", []) for r in scores[p].values())]
    if degenerate:
        warning = (
            f"> **Warning: degenerate outputs from {', '.join(degenerate)}.** Most answers are "
            "repetitions, not sentences: a low CHAIR here is a failed model, not a faithful one."
        )
        lines += [warning, ""]
    if plot_file:
        lines += [f"![scores per stage]({plot_file})", ""]
    for bench in benchmarks_of(scores):
        lines += _table(bench, policies, scores)
    return "\n".join(lines)


def _table(bench: str, policies: list[str], scores: Scores) -> list[str]:
    metrics: list[str] = []
    for policy in policies:
        metrics += [m for m in scores[policy].get(bench, {}).get("metrics", {}) if m not in metrics]
    lines = [f"## {bench}", "", f"| metric | better | {' | '.join(policies)} |",
             f"|---|---|{'---|' * len(policies)}"]  # fmt: skip
    for metric in metrics:
        cells = [format_value(metric, scores[p].get(bench, {}).get("metrics", {}).get(metric)) for p in policies]
        lines.append(f"| {metric} | {better(metric)} | {' | '.join(cells)} |")
    flags = [", ".join(scores[p].get(bench, {}).get("flags", [])) or "-" for p in policies]
    if any(f != "-" for f in flags):
        lines.append(f"| flags | | {' | '.join(flags)} |")
    if any(m.rsplit(".", 1)[-1] in MANIPULATION_CHECKS for m in metrics):
        lines += ["", MANIPULATION_NOTE]
    return [*lines, ""]


DIRECTIONS = {"lower": "lower is better", "higher": "higher is better"}


def panels(bench: str, scores: Scores, benchmark: str | None = None) -> dict[str, list[str]]:
    """The key metrics of entry `bench` (a label; `benchmark` its benchmark, the label by
    default) that have values, grouped by their better direction: a panel never mixes
    lower-is-better and higher-is-better metrics on one axis."""
    grouped: dict[str, list[str]] = {}
    for metric in KEY_METRICS.get(benchmark or bench, []):
        if any(scores[p].get(bench, {}).get("metrics", {}).get(metric) is not None for p in scores):
            grouped.setdefault(DIRECTIONS.get(better(metric), "no better direction"), []).append(metric)
    return grouped


def plot(scores: Scores, path: str | Path, benchmark_of: dict[str, str] | None = None) -> Path:
    """One row per benchmark, one panel per better-direction: its key metrics (in %) across
    the policies in run order, the legend beside the panel, never over the data."""
    import matplotlib

    matplotlib.use("Agg")  # headless: Jobs and CI have no display
    import matplotlib.pyplot as plt

    policies = list(scores)
    benchmark_of = benchmark_of or {}
    rows = [(bench, panels(bench, scores, benchmark_of.get(bench))) for bench in benchmarks_of(scores)]
    rows = [(bench, grouped) for bench, grouped in rows if grouped]
    columns = max((len(grouped) for _, grouped in rows), default=1)
    fig, axes = plt.subplots(max(1, len(rows)), columns, figsize=(6.2 * columns, 3.2 * max(1, len(rows))),
                             squeeze=False)  # fmt: skip
    for ax in axes.flat:
        ax.set_visible(False)
    for row, (bench, grouped) in enumerate(rows):
        for column, (direction, metrics) in enumerate(grouped.items()):
            ax = axes[row][column]
            ax.set_visible(True)
            for metric in metrics:
                values = [scores[p].get(bench, {}).get("metrics", {}).get(metric) for p in policies]
                ax.plot(policies, [100 * v if v is not None else float("nan") for v in values],
                        marker="o", label=metric)  # fmt: skip
            ax.set_title(f"{bench}: {direction}")
            ax.set_ylabel("%")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
