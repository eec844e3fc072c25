"""Semantic entropy and curriculum bins, worked by hand."""

import math

import pytest
from mfpo_runtime.data import entropy


def test_all_answers_equal_gives_zero():
    assert entropy.semantic_entropy(["A cat.", "a cat", "A  cat!"], entropy.exact_meaning) == 0.0


def test_two_even_groups_give_log_two():
    answers = ["cat", "cat", "dog", "dog"]
    assert entropy.semantic_entropy(answers, entropy.exact_meaning) == pytest.approx(math.log(2))


def test_uneven_groups_by_hand():
    # groups of 3, 1, 1 out of 5: -(0.6 ln 0.6 + 2 * 0.2 ln 0.2)
    answers = ["x", "x", "x", "y", "z"]
    expected = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))
    assert entropy.semantic_entropy(answers, entropy.exact_meaning) == pytest.approx(expected)


def test_object_set_equivalence_groups_paraphrases():
    objects = {"cat", "dog", "sofa"}
    extract = lambda text: {w.strip(".,").rstrip("s") for w in text.lower().split()} & objects
    meaning = entropy.object_set_meaning(extract)
    answers = ["A cat and a dog.", "There is a dog and a cat.", "Two cats, one dog", "A sofa."]
    # {cat, dog} x3, {sofa} x1
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert entropy.semantic_entropy(answers, meaning) == pytest.approx(expected)


def test_empty_sample_list_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        entropy.semantic_entropy([], entropy.exact_meaning)


def test_bins_split_by_rank_into_equal_thirds():
    entropies = [0.9, 0.1, 0.5, 0.3, 0.7, 0.0]
    # ranks: 0.0->0, 0.1->1, 0.3->2, 0.5->3, 0.7->4, 0.9->5; bins 1,1,2,2,3,3
    assert entropy.curriculum_bins(entropies, 3) == [3, 1, 2, 2, 3, 1]


def test_bins_with_ties_stay_balanced_and_monotone():
    entropies = [0.0] * 5 + [1.0]
    bins = entropy.curriculum_bins(entropies, 3)
    assert bins == [1, 1, 2, 2, 3, 3]


def test_uneven_counts_and_single_stage():
    assert entropy.curriculum_bins([0.5, 0.2, 0.9, 0.1], 3) == [2, 1, 3, 1]
    assert entropy.curriculum_bins([0.5, 0.2], 1) == [1, 1]
    assert entropy.curriculum_bins([], 3) == []


def test_unknown_equivalence_is_named():
    with pytest.raises(ValueError, match="object-set or exact"):
        entropy.equivalence_for("loose", "synthetic")
