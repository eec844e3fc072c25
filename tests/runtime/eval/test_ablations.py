"""Statistics of the ablation benchmark: CHAIR from counts, paired two-level bootstrap,
matched-recall interpolation, worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mfpo_runtime.eval import ablations
from mfpo_runtime.eval.scores import chair, chair_sample

# Three answers about three images (the shape the eval stage writes per sample).
SAMPLES = [
    {"split": "eval", "id": "b", "mentioned": ["sun", "cloud"], "hallucinated": ["cloud"], "truth": ["sun"]},
    {"split": "eval", "id": "a", "mentioned": ["car", "car", "house"], "hallucinated": [], "truth": ["car", "house"]},
    {"split": "eval", "id": "c", "mentioned": [], "hallucinated": [], "truth": ["kite", "star"]},
    {"split": "eval-counterprior", "id": "a", "mentioned": ["fish"], "hallucinated": ["fish"], "truth": ["boat"]},
]  # fmt: skip


def test_rates_equal_eval_scores_chair():
    counts = ablations.counts_from_samples(SAMPLES, "eval")
    assert counts.ids == ("a", "b", "c")
    rows = [s for s in SAMPLES if s["split"] == "eval"]
    truths = [set(s["truth"]) for s in rows]
    expected = chair([chair_sample(s["mentioned"], t, "") for s, t in zip(rows, truths)], truths)
    got = ablations.rates(counts)
    for metric in ablations.RATES:
        assert got[metric][0] == pytest.approx(expected[metric])
    # By hand: 1 of 2 naming answers hallucinates; 1 of 5 mentions; 3 of 5 objects recalled.
    assert (got["chair_s"][0], got["chair_i"][0], got["recall"][0]) == pytest.approx((0.5, 0.2, 0.6))


def test_weights_are_resample_multiplicities():
    counts = ablations.counts_from_samples(SAMPLES, "eval")
    # Images a, a, b (c left out): CHAIRs 1/3, CHAIRi 1/(3+3+2), recall (2+2+1)/(2+2+1).
    got = ablations.rates(counts, np.array([[2.0, 1.0, 0.0]]))
    assert (got["chair_s"][0], got["chair_i"][0], got["recall"][0]) == pytest.approx((1 / 3, 1 / 8, 1.0))


def test_seed_mean_weights_seeds():
    counts = ablations.counts_from_samples(SAMPLES, "eval")
    other = ablations.counts_from_samples(
        [{**s, "hallucinated": []} for s in SAMPLES if s["split"] == "eval"], "eval"
    )
    ones = np.ones((2, 3))
    mean = ablations.seed_mean([counts, other], ones, np.array([[1.0, 1.0], [2.0, 0.0]]))
    assert mean["chair_s"] == pytest.approx([0.25, 0.5])  # (0.5 + 0) / 2; seed 0 drawn twice


def test_resample_weights_are_paired_draws_with_the_sample_first():
    image_w, seed_w = ablations.resample_weights(5, 3, rounds=200, seed=1)
    assert image_w.shape == (201, 5) and seed_w.shape == (201, 3)
    assert (image_w[0] == 1).all() and (seed_w[0] == 1).all()
    assert (image_w.sum(axis=1) == 5).all() and (seed_w.sum(axis=1) == 3).all()
    assert len({tuple(r) for r in image_w[1:]}) > 50


def test_value_at_recall_interpolates_on_the_first_crossing():
    # base (0.9, 0.30) -> (0.7, 0.10) -> (0.5, 0.05): at recall 0.8 halfway on the first segment.
    assert ablations.value_at_recall([0.9, 0.7, 0.5], [0.30, 0.10, 0.05], 0.8) == pytest.approx(0.20)
    assert ablations.value_at_recall([0.9, 0.7, 0.5], [0.30, 0.10, 0.05], 0.6) == pytest.approx(0.075)
    assert ablations.value_at_recall([0.9, 0.7], [0.3, 0.1], 0.9) == pytest.approx(0.3)
    assert math.isnan(ablations.value_at_recall([0.9, 0.8], [0.3, 0.2], 0.5))
    # Bootstrap rounds pass numpy columns.
    assert ablations.value_at_recall(np.array([0.9, 0.7]), np.array([0.3, 0.1]), 0.8) == pytest.approx(0.2)
    assert ablations.value_at_recall(np.array([0.8]), np.array([0.3]), 0.8) == pytest.approx(0.3)
    assert ablations.common_recall({"a": [0.9, 0.7, 0.5], "b": [0.9, 0.8]}) == 0.8


def test_interval_leaves_out_paths_that_never_reach():
    low, high = ablations.interval(np.array([np.nan, *np.linspace(0, 1, 101)]))
    assert (low, high) == pytest.approx((0.025, 0.975))
    assert all(math.isnan(v) for v in ablations.interval(np.array([np.nan])))


def test_a_split_without_samples_is_named():
    with pytest.raises(ValueError, match="eval-other"):
        ablations.counts_from_samples(SAMPLES, "eval-other")


def test_counts_refuse_two_samples_with_one_id():
    """Policies are paired image by image, by sample id (sorted): two samples with one id would
    pair with whichever sorts first."""
    from mfpo_runtime.eval.ablations import counts_from_samples

    sample = {"split": "eval", "mentioned": ["cat"], "hallucinated": [], "truth": ["cat"]}
    with pytest.raises(ValueError, match=r"split 'eval': two evaluated samples have the id 'b'"):
        counts_from_samples([{**sample, "id": "b"}, {**sample, "id": "a"}, {**sample, "id": "b"}], "eval")


def _counts(naming, hallucinating):
    n = len(naming)
    zeros = np.zeros(n)
    return ablations.Counts(ids=tuple("abcd"[:n]), naming=np.array(naming, float),
                            hallucinating=np.array(hallucinating, float), mentions=zeros,
                            hallucinated=zeros, recalled=zeros, truths=zeros)  # fmt: skip


def test_both_naming_chair_s_scores_both_on_one_set_of_images():
    """Seed 0: the variant is silent on image b (where MFPO hallucinates), so by CHAIRs it looks
    better (0/3 against MFPO's 2/4); on the images both name (a, c, d) it is 0/3 against 1/3.
    Seed 1: both name a and b only: 1/2 against 0/2. Seed mean: 0.25 against 1/6."""
    variant = [_counts([1, 0, 1, 1], [0, 0, 0, 0]), _counts([1, 1, 0, 1], [1, 0, 0, 1])]
    mfpo = [_counts([1, 1, 1, 1], [0, 1, 1, 0]), _counts([1, 1, 1, 0], [0, 0, 1, 0])]
    ones = np.ones((1, 4))
    got = ablations.both_naming_chair_s(variant, mfpo, ones, np.ones((1, 2)))
    assert got["variant"] == pytest.approx([(0 / 3 + 1 / 2) / 2])
    assert got["reference"] == pytest.approx([(1 / 3 + 0 / 2) / 2])
    assert got["share"] == pytest.approx([(3 / 4 + 2 / 4) / 2])
    # Resample weights: image b twice, d left out; seed 0 drawn twice.
    got = ablations.both_naming_chair_s(variant, mfpo, np.array([[1.0, 2.0, 1.0, 0.0]]), np.array([[2.0, 0.0]]))
    assert got["variant"] == pytest.approx([0.0])  # seed 0: a, c both named; b silent for the variant
    assert got["reference"] == pytest.approx([0.5])  # seed 0 on a, c: c hallucinates
    # No image both name: NaN, never a division by zero.
    silent = [_counts([0, 0, 0, 0], [0, 0, 0, 0])]
    assert np.isnan(ablations.both_naming_chair_s(silent, mfpo[:1], ones, np.ones((1, 1)))["variant"][0])


def test_both_naming_chair_s_refuses_unpaired_runs():
    with pytest.raises(ValueError, match="runs of the variant"):
        ablations.both_naming_chair_s([_counts([1], [0])], [], np.ones((1, 1)), np.ones((1, 1)))
    other = ablations.Counts(("z",), *(np.ones(1) for _ in range(6)))
    with pytest.raises(ValueError, match="same images"):
        ablations.both_naming_chair_s([_counts([1], [0])], [other], np.ones((1, 1)), np.ones((1, 1)))
