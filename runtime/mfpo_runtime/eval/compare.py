"""Paired comparison of two runs evaluated on the same samples, with bootstrap intervals.

Differences between objectives are small on small benchmarks: a single number per run says
little. Both runs' evaluations hold per-sample answers for the same images, so the difference
is estimated on paired resamples (the same sample indices for both runs in every round) and
reported with its 95% percentile interval.

    python -m mfpo_runtime.eval.compare --baseline "text DPO=<run uri>" \\
        --candidate "MFPO=<run uri>" --policy align-3 --benchmark synthetic

Reads `<run uri>/eval/results/<policy>/<benchmark>.json` (written by the eval stage) and the
base model's results from the candidate run. Called by `mfpo demo` as a subprocess.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from mfpo_core import storage
from mfpo_core.contract import BadInput

from mfpo_runtime.eval.scores import ChairSample, chair, chair_sample

METRICS = ("chair_s", "chair_i", "recall")


@dataclass(frozen=True)
class Judged:
    """One response reduced to what CHAIR needs, keyed by (split, sample id)."""

    key: tuple[str, str]
    sample: ChairSample
    truth: set[str]


def load_judged(run_uri: str, policy: str, benchmark: str) -> dict[tuple[str, str], Judged]:
    uri = storage.join(run_uri, "eval", "results", policy, f"{benchmark}.json")
    if not storage.exists(uri):
        raise BadInput(f"no evaluation of {policy} on {benchmark} at {uri}")
    judged = {}
    for number, row in enumerate(storage.read_json(uri).get("samples", [])):
        if "mentioned" not in row or "truth" not in row:
            raise BadInput(f"{uri} sample {number}: no per-object judgement (mentioned, truth) to compare")
        key = (row.get("split", ""), str(row["id"]))
        truth = set(row["truth"])
        judged[key] = Judged(key, chair_sample(row["mentioned"], truth, row.get("answer", "")), truth)
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


def compare(
    baseline: tuple[str, str], candidate: tuple[str, str], *, policy: str, benchmark: str, rounds: int = 2000
) -> str:
    """A table per split: base, baseline run, candidate run, and candidate - baseline [95% CI]."""
    (a_name, a_uri), (b_name, b_uri) = baseline, candidate
    a, b = load_judged(a_uri, policy, benchmark), load_judged(b_uri, policy, benchmark)
    base = load_judged(b_uri, "base", benchmark)
    shared = sorted(set(a) & set(b) & set(base))
    if not shared:
        raise BadInput(f"{a_uri} and {b_uri} share no evaluated samples on {benchmark}")
    lines = [
        (
            f"{benchmark}, {policy}: paired over the same samples; "
            f"{b_name} - {a_name} with a 95% bootstrap interval ({rounds} resamples)"
        ),
        f"  {'split':<28}{'metric':<9}{'base':>8}{a_name:>12}{b_name:>12}   {b_name + ' - ' + a_name}",
    ]
    for split in sorted({key[0] for key in shared}):
        keys = [k for k in shared if k[0] == split]
        rows = {name: [runs[k] for k in keys] for name, runs in (("base", base), ("a", a), ("b", b))}
        for metric in METRICS:
            values = {name: chair([j.sample for j in items], [j.truth for j in items])[metric] for name, items in rows.items()}
            delta, low, high = paired_bootstrap(rows["a"], rows["b"], metric, rounds=rounds)
            lines.append(
                f"  {split + f' (n={len(keys)})':<28}{metric:<9}{values['base']:>8.3f}{values['a']:>12.3f}"
                f"{values['b']:>12.3f}   {delta:+.3f} [{low:+.3f}, {high:+.3f}]"
            )
    return "\n".join(lines)


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
    parser.add_argument("--benchmark", default="synthetic")
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        print(compare(args.baseline, args.candidate, policy=args.policy, benchmark=args.benchmark, rounds=args.rounds))
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
