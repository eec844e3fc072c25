"""Statistics of the ablation benchmark: many runs, the same images, several seeds.

Objectives differ by little on small worlds, and a lower CHAIR bought with a lower recall is
no win. So variants are compared two ways, both on paired resamples:

- at equal steps and learning rate: the variant's CHAIRs minus full MFPO's, seeds averaged;
- at matched recall: each variant's frontier is the path base model -> its learning rates in
  increasing order (seed-mean points on the CHAIR-vs-recall plane); CHAIR is interpolated
  linearly where that path first reaches a recall level every variant reaches.

Intervals come from a two-level paired bootstrap: each round resamples the images (the same
draw for every run, so runs stay paired over images) and the seeds (the same draw for every
variant, so variants stay paired over seeds); 95% percentile intervals.

Metrics follow `eval.scores.chair` exactly (a test holds them to it); the per-image counts are
weighted by resample counts so that one round is a matrix product, not a loop over samples.
Called by benchmarks/ablation_report.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RATES = ("chair_s", "chair_i", "recall")


@dataclass(frozen=True)
class Counts:
    """CHAIR's per-image counts of one policy on one split, images in `ids` order."""

    ids: tuple[str, ...]
    naming: np.ndarray  # (N,) 1 when the answer names any object
    hallucinating: np.ndarray  # (N,) 1 when it names an object not in the image
    mentions: np.ndarray  # (N,) object mentions, repeats counted
    hallucinated: np.ndarray  # (N,) mentions of absent objects, repeats counted
    recalled: np.ndarray  # (N,) distinct present objects named
    truths: np.ndarray  # (N,) present objects


def counts_from_samples(samples: Sequence[dict], split: str) -> Counts:
    """Counts of one split from an eval result document's `samples` (sorted by id)."""
    rows = sorted((s for s in samples if s.get("split", "eval") == split), key=lambda s: str(s["id"]))
    if not rows:
        raise ValueError(f"no evaluated samples of split {split!r}")
    repeated = next((a["id"] for a, b in itertools.pairwise(rows) if str(a["id"]) == str(b["id"])), None)
    if repeated is not None:  # runs are paired image by image, by id
        raise ValueError(f"split {split!r}: two evaluated samples have the id {repeated!r}")

    def column(values) -> np.ndarray:
        return np.array(list(values), dtype=float)

    return Counts(
        ids=tuple(str(s["id"]) for s in rows),
        naming=column(bool(s["mentioned"]) for s in rows),
        hallucinating=column(bool(s["hallucinated"]) for s in rows),
        mentions=column(len(s["mentioned"]) for s in rows),
        hallucinated=column(len(s["hallucinated"]) for s in rows),
        recalled=column(len(set(s["mentioned"]) & set(s["truth"])) for s in rows),
        truths=column(len(s["truth"]) for s in rows),
    )


def rates(counts: Counts, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """CHAIRs, CHAIRi and recall under image weights (R, N) (resample counts); all ones if None."""
    w = np.ones((1, len(counts.ids))) if weights is None else np.atleast_2d(weights)

    def share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        top, bottom = w @ numerator, w @ denominator  # (R,)
        return np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)

    return {
        "chair_s": share(counts.hallucinating, counts.naming),
        "chair_i": share(counts.hallucinated, counts.mentions),
        "recall": share(counts.recalled, counts.truths),
    }


def seed_mean(per_seed: Sequence[Counts], image_w: np.ndarray, seed_w: np.ndarray) -> dict[str, np.ndarray]:
    """Rates averaged over seeds: image weights (R, N), seed weights (R, S) summing to S."""
    per = [rates(c, image_w) for c in per_seed]
    return {k: sum(seed_w[:, s] * per[s][k] for s in range(len(per))) / len(per) for k in RATES}


def both_naming_chair_s(
    per_seed: Sequence[Counts], reference: Sequence[Counts], image_w: np.ndarray, seed_w: np.ndarray
) -> dict[str, np.ndarray]:
    """CHAIRs of a variant and of the reference on the images that BOTH answer with an object.

    CHAIRs leaves out answers that name nothing, so a variant that abstains on the images it
    would hallucinate on looks better. Here the two are scored on one set of images: for seed
    s, those where the variant's run s and the reference's run s both name an object (seeds are
    paired as everywhere in the bootstrap); per-seed rates averaged over seeds under the seed
    weights. Returns {"variant", "reference", "share"}, each (R,): the two CHAIRs and the
    share of the images both name something in (image weights (R, N), seed weights (R, S)).
    """
    if len(per_seed) != len(reference):
        raise ValueError(f"{len(per_seed)} runs of the variant but {len(reference)} of the reference")
    for mine, theirs in zip(per_seed, reference):
        if mine.ids != theirs.ids:
            raise ValueError("both-naming CHAIRs needs the same images in the same order")

    def share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        top, bottom = image_w @ numerator, image_w @ denominator  # (R,)
        return np.divide(top, bottom, out=np.full_like(top, np.nan), where=bottom > 0)

    out = {"variant": [], "reference": [], "share": []}
    for mine, theirs in zip(per_seed, reference):
        both = mine.naming * theirs.naming  # (N,)
        out["variant"].append(share(mine.hallucinating * both, both))
        out["reference"].append(share(theirs.hallucinating * both, both))
        out["share"].append(share(both, np.ones_like(both)))
    seeds = len(per_seed)
    return {k: sum(seed_w[:, s] * v[s] for s in range(seeds)) / seeds for k, v in out.items()}


def resample_weights(images: int, seeds: int, rounds: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap multiplicities (R, N) for images and (R, S) for seeds; row 0 is the sample itself."""
    rng = np.random.default_rng(seed)
    image_w = np.stack([np.ones(images)] + [np.bincount(rng.integers(0, images, images), minlength=images)
                                            for _ in range(rounds)])  # fmt: skip
    seed_w = np.stack([np.ones(seeds)] + [np.bincount(rng.integers(0, seeds, seeds), minlength=seeds)
                                          for _ in range(rounds)])  # fmt: skip
    return image_w.astype(float), seed_w.astype(float)


def value_at_recall(recall: Sequence[float], value: Sequence[float], target: float) -> float:
    """`value` where the path (points in order) first reaches `target` recall, interpolated
    linearly on that segment; NaN when the path never reaches it."""
    for i in range(len(recall) - 1):
        r0, r1 = recall[i], recall[i + 1]
        if min(r0, r1) <= target <= max(r0, r1):
            if r0 == r1:
                return float(value[i])
            t = (target - r0) / (r1 - r0)
            return float(value[i] + t * (value[i + 1] - value[i]))
    if len(recall) == 1 and recall[0] == target:
        return float(value[0])
    return float("nan")


def common_recall(paths: dict[str, Sequence[float]]) -> float:
    """The lowest recall every path reaches, each running from the base model's recall down:
    the largest of the paths' minimum recalls."""
    return max(min(path) for path in paths.values())


def interval(draws: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap draws (NaN draws, a path not reaching, left out)."""
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)
