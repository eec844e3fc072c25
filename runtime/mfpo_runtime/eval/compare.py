"""Paired comparison of two runs evaluated on the same samples, with bootstrap intervals.

Differences between objectives are small on small benchmarks: a single number per run says
little. Both runs' evaluations hold per-sample answers for the same images, so the difference
is estimated on paired resamples (the same sample indices for both runs in every round) and
reported with its 95% percentile interval.

    python -m mfpo_runtime.eval.compare --baseline "text DPO=<run uri>" \\
        --candidate "MFPO=<run uri>" --policy align-3 --benchmark synthetic --out comparison/

prints the table and, with --out, writes report.md (values, differences with intervals, a
plain better / worse / no difference per metric, both splits, every metric explained) and
tradeoff.png (CHAIRs against recall per policy); with --tracking-uri also under comparison/ of
both runs' MLflow runs (spec.tracking, docs/tracking.md).

Reads `<run uri>/eval/results/<policy>/<label>.json` (an entry's label: its benchmark's name unless set) (written by the eval stage) and the
base model's results from the candidate run. Called by `mfpo demo` as a subprocess.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mfpo_core import storage
from mfpo_core.contract import BadInput, eval_result_uri

from mfpo_runtime.eval.scores import ChairSample, chair, chair_sample
from mfpo_runtime.tracking import log_to_tracked_runs

METRICS = ("chair_s", "chair_i", "recall")


@dataclass(frozen=True)
class Judged:
    """One response reduced to what CHAIR needs, keyed by (split, sample id)."""

    key: tuple[str, str]
    sample: ChairSample
    truth: set[str]
    number: int = -1  # its index among the result document's samples


def load_judged(run_uri: str, policy: str, benchmark: str) -> dict[tuple[str, str], Judged]:
    uri = eval_result_uri(run_uri, policy, benchmark)
    if not storage.exists(uri):
        raise BadInput(f"no evaluation of {policy} on {benchmark} at {uri}")
    judged = {}
    for number, row in enumerate(storage.read_json(uri).get("samples", [])):
        if "mentioned" not in row or "truth" not in row:
            raise BadInput(f"{uri} sample {number}: no per-object judgement (mentioned, truth) to compare")
        key = (row.get("split", ""), str(row["id"]))
        if key in judged:  # the pairing is by id: a second sample would replace the first
            raise BadInput(
                f"{uri} samples {judged[key].number} and {number} have the same id {key[1]!r}"
                + (f" in split {key[0]!r}" if key[0] else "")
                + ": paired comparison needs one sample an id (check the benchmark's ids)"
            )
        truth = set(row["truth"])
        judged[key] = Judged(key, chair_sample(row["mentioned"], truth, row.get("answer", "")), truth, number)
    return judged


def paired_bootstrap(
    a: Sequence[Judged], b: Sequence[Judged], metric: str, *, rounds: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(b - a, 2.5th percentile, 97.5th percentile) of `metric` over paired resamples."""
    if [j.key for j in a] != [j.key for j in b]:
        raise ValueError("paired bootstrap needs the same samples in the same order")

    def score(items: Sequence[Judged], index: np.ndarray) -> float:
        picked = [items[i] for i in index]
        return chair([j.sample for j in picked], [j.truth for j in picked])[metric]

    everything = np.arange(len(a))
    delta = score(b, everything) - score(a, everything)
    rng = np.random.default_rng(seed)
    draws = [score(b, idx) - score(a, idx) for idx in rng.integers(0, len(a), size=(rounds, len(a)))]
    low, high = np.percentile(draws, [2.5, 97.5])
    return delta, float(low), float(high)


# What each compared metric counts and which direction is better (the report explains each once).
EXPLAINED = {
    "chair_s": (
        "lower",
        ("CHAIRs: share of answers naming an object that is not in the image (answers that name "
        "no object left out)"),
    ),
    "chair_i": ("lower", "CHAIRi: share of all object mentions that are not in the image"),
    "recall": ("higher", "recall: share of the image's objects that the answers name"),
}


@dataclass(frozen=True)
class Row:
    """One metric on one split: the three policies' values and candidate - baseline [95% CI]."""

    split: str
    n: int
    metric: str
    base: float
    baseline: float
    candidate: float
    delta: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """better / worse for the candidate when the interval excludes 0, by the metric's
        direction; otherwise no difference (none this sample can tell apart from chance)."""
        if self.low <= 0.0 <= self.high:
            return "no difference"
        lower_is_better = EXPLAINED[self.metric][0] == "lower"
        return "better" if (self.delta < 0) == lower_is_better else "worse"


@dataclass(frozen=True)
class Comparison:
    benchmark: str
    policy: str
    baseline: str
    candidate: str
    rounds: int
    rows: list[Row]

    def splits(self) -> list[str]:
        return list(dict.fromkeys(row.split for row in self.rows))

    def row(self, split: str, metric: str) -> Row:
        return next(r for r in self.rows if r.split == split and r.metric == metric)


def comparison(
    baseline: tuple[str, str], candidate: tuple[str, str], *, policy: str, benchmark: str, rounds: int = 2000
) -> Comparison:
    """Per split and metric: base, baseline run, candidate run, candidate - baseline [95% CI]."""
    (a_name, a_uri), (b_name, b_uri) = baseline, candidate
    a, b = load_judged(a_uri, policy, benchmark), load_judged(b_uri, policy, benchmark)
    base = load_judged(b_uri, "base", benchmark)
    shared = sorted(set(a) & set(b) & set(base))
    if not shared:
        raise BadInput(f"{a_uri} and {b_uri} share no evaluated samples on {benchmark}")
    rows = []
    for split in sorted({key[0] for key in shared}):
        keys = [k for k in shared if k[0] == split]
        picked = {name: [runs[k] for k in keys] for name, runs in (("base", base), ("a", a), ("b", b))}
        values = {
            name: chair([j.sample for j in items], [j.truth for j in items])
            for name, items in picked.items()
        }
        for metric in METRICS:
            delta, low, high = paired_bootstrap(picked["a"], picked["b"], metric, rounds=rounds)
            rows.append(Row(split, len(keys), metric, values["base"][metric], values["a"][metric],
                            values["b"][metric], delta, low, high))  # fmt: skip
    return Comparison(benchmark, policy, a_name, b_name, rounds, rows)


def compare(
    baseline: tuple[str, str], candidate: tuple[str, str], *, policy: str, benchmark: str, rounds: int = 2000
) -> str:
    """The comparison as a plain-text table (what `mfpo demo` prints)."""
    return text_table(comparison(baseline, candidate, policy=policy, benchmark=benchmark, rounds=rounds))


def text_table(c: Comparison) -> str:
    a_name, b_name = c.baseline, c.candidate
    lines = [
        (
            f"{c.benchmark}, {c.policy}: paired over the same samples; "
            f"{b_name} - {a_name} with a 95% bootstrap interval ({c.rounds} resamples)"
        ),
        f"  {'split':<28}{'metric':<9}{'base':>8}{a_name:>12}{b_name:>12}   {b_name + ' - ' + a_name}",
    ]
    for r in c.rows:
        lines.append(
            f"  {r.split + f' (n={r.n})':<28}{r.metric:<9}{r.base:>8.3f}{r.baseline:>12.3f}"
            f"{r.candidate:>12.3f}   {r.delta:+.3f} [{r.low:+.3f}, {r.high:+.3f}]  {r.verdict}"
        )
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown(c: Comparison, *, plot_file: str | None = None) -> str:
    """report.md: the trade-off plot, then per split each metric's values, the candidate's
    difference with its 95% interval and a plain verdict; each metric explained once."""
    a_name, b_name = c.baseline, c.candidate
    lines = [
        f"# {b_name} against {a_name}: {c.benchmark}, policy {c.policy}",
        "",
        (f"Both runs answered the same images; each difference ({b_name} - {a_name}) comes with a "
        f"95% paired bootstrap interval ({c.rounds} resamples). **better** / **worse**: the "
        f"interval excludes 0 and {b_name} moved in that metric's good / bad direction; **no "
        "difference**: the interval includes 0 (these samples cannot tell the two apart)."),
        "",
    ]
    if plot_file:
        lines += [f"![CHAIRs against recall per policy]({plot_file})", ""]
    for split in c.splits():
        n = c.row(split, METRICS[0]).n
        lines += [
            f"## {split} (n={n})",
            "",
            f"| metric | better | base | {a_name} | {b_name} | {b_name} - {a_name} [95% CI] | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for metric in METRICS:
            r = c.row(split, metric)
            interval = f"{100 * r.delta:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}] points"
            lines.append(
                f"| {metric} | {EXPLAINED[metric][0]} | {_pct(r.base)} | {_pct(r.baseline)} | "
                f"{_pct(r.candidate)} | {interval} | {r.verdict} |"
            )
        lines.append("")
    lines += ["## The metrics", ""]
    lines += [f"- `{m}` ({direction} is better): {text}." for m, (direction, text) in EXPLAINED.items()]
    lines.append("")
    return "\n".join(lines)


def plot(c: Comparison, path: str | Path) -> Path:
    """The trade-off at a glance: per split, CHAIRs (down is better) against recall (right is
    better) for base, baseline and candidate; the good corner is bottom right."""
    import matplotlib

    matplotlib.use("Agg")  # headless: Jobs and CI have no display
    import matplotlib.pyplot as plt

    splits = c.splits()
    fig, axes = plt.subplots(1, len(splits), figsize=(4.8 * len(splits), 4.2), squeeze=False)
    policies = (("base", "base", "tab:gray"), ("baseline", c.baseline, "tab:blue"),
                ("candidate", c.candidate, "tab:red"))  # fmt: skip
    for ax, split in zip(axes[0], splits):
        chair_s, recall = c.row(split, "chair_s"), c.row(split, "recall")
        labels: dict[tuple[float, float], list[str]] = {}  # policies on one point share a label
        for field_name, label, colour in policies:
            x, y = 100 * getattr(recall, field_name), 100 * getattr(chair_s, field_name)
            ax.scatter([x], [y], s=60, color=colour, zorder=3)
            labels.setdefault((round(x, 6), round(y, 6)), []).append(label)
        for (x, y), names in labels.items():
            right = x > 60  # labels of points on the right run leftwards, inside the panel
            ax.annotate(" = ".join(names), (x, y), textcoords="offset points",
                        xytext=(-7 if right else 7, 7), ha="right" if right else "left",
                        fontsize=9)  # fmt: skip
        ax.set_title(f"{split} (n={chair_s.n})")
        ax.set_xlabel("recall, % (higher is better)")
        ax.set_ylabel("CHAIRs, % (lower is better)")
        ax.set_xlim(-5, 105)  # the same scale on every split
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{c.benchmark}, {c.policy}: hallucination against coverage (better: bottom right)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(c: Comparison, out_dir: str | Path) -> Path:
    """report.md and tradeoff.png in out_dir; the markdown last, once its plot exists."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(c, out / "tradeoff.png")
    report = out / "report.md"
    report.write_text(markdown(c, plot_file="tradeoff.png"))
    return report


def _named(text: str) -> tuple[str, str]:
    name, sep, uri = text.partition("=")
    if not sep or not name or not uri:
        raise argparse.ArgumentTypeError(f"expected NAME=URI, got {text!r}")
    return name, uri


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mfpo_runtime.eval.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=_named, required=True, help="NAME=RUN_URI")
    parser.add_argument("--candidate", type=_named, required=True, help="NAME=RUN_URI")
    parser.add_argument("--policy", required=True, help="policy evaluated in both runs, e.g. align-3")
    parser.add_argument("--benchmark", default="synthetic", help="the entry's label (its benchmark's name unless set)")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--out", help="a directory for report.md and tradeoff.png (the plot of CHAIRs against recall)")
    parser.add_argument("--tracking-uri", metavar="URL",
                        help="with --out: log report.md and tradeoff.png under comparison/ of both runs' MLflow runs")
    parser.add_argument("--experiment", default="mfpo", help="the runs' MLflow experiment (spec.tracking.mlflow)")
    parser.add_argument("--namespace", default="default", help="the runs' namespace (the MLflow runs' mfpo.namespace tag)")
    args = parser.parse_args(argv)
    try:
        result = comparison(args.baseline, args.candidate, policy=args.policy, benchmark=args.benchmark, rounds=args.rounds)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text_table(result))
    if args.out:
        print(f"report: {write_report(result, args.out)}")
        if args.tracking_uri:
            runs = [args.baseline[1].rstrip("/"), args.candidate[1].rstrip("/")]
            reached = log_to_tracked_runs(args.tracking_uri, args.experiment, args.namespace, runs,
                                          Path(args.out), "comparison")  # fmt: skip
            print(f"comparison logged to {len(reached)} MLflow run(s) at {args.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
