"""Metric math on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import pytest
from mfpo_runtime.eval import scores
from mfpo_runtime.eval.scores import (
    ChairSample,
    binary,
    chair,
    chair_sample,
    degeneracy,
    parse_yes_no,
)


def test_chair_hand_worked():
    # Response 1 names dog (true) and cat (hallucinated); response 2 names dog twice (true);
    # response 3 names nothing; response 4 names a car twice (hallucinated twice).
    truths = [{"dog", "person"}, {"dog"}, {"bench"}, {"person"}]
    samples = [
        chair_sample(["dog", "cat"], truths[0], "a dog and a cat"),
        chair_sample(["dog", "dog"], truths[1], "a dog , the dog"),
        chair_sample([], truths[2], "nothing here"),
        chair_sample(["car", "car"], truths[3], "car car"),
    ]
    got = chair(samples, truths)
    assert got["chair_s"] == pytest.approx(2 / 3)  # 2 hallucinating of 3 naming responses
    assert got["chair_s_all"] == pytest.approx(2 / 4)
    assert got["chair_i"] == pytest.approx(3 / 6)  # cat, car, car of 6 mentions
    assert got["recall"] == pytest.approx(2 / 5)  # dog (r1), dog (r2) of 2+1+1+1 truth objects
    assert got["mean_length"] == pytest.approx((5 + 4 + 2 + 2) / 4)  # words; "," is none
    assert got["mentioning_rate"] == pytest.approx(3 / 4)


def test_chair_with_no_object_mentioned_anywhere_is_zero_not_an_error():
    got = chair([chair_sample([], {"dog"}, "the sky")], [{"dog"}])
    assert got["chair_s"] == 0.0 and got["chair_i"] == 0.0 and got["recall"] == 0.0


def test_chair_sample_records_hallucinations_and_recall():
    sample = chair_sample(["dog", "cat", "cat"], {"dog", "tree"}, "dog cat cats")
    assert sample == ChairSample(["dog", "cat", "cat"], ["cat", "cat"], {"dog"}, 3)


def test_chair_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="1 responses but 2"):
        chair([chair_sample([], set(), "")], [set(), set()])


# Expected values follow POPE's evaluate.py line by line (first sentence: text.split('.')[0];
# text.replace(',', ''); words = text.split(' '); 'No' in words or 'not' in words or 'no' in
# words -> 'no'), as copied in llava-rlhf/LLaVA-RLHF Eval/summarize_eval_pope.py.
@pytest.mark.parametrize(
    "text, expected",
    [("Yes", True), ("Yes, there is a dog.", True), ("No", False), ("no.", False),
     ("There is not a dog.", False), ("No, there is no dog.", False), ("I see a dog", True),
     ("Yes, there is a chair. No other furniture is visible.", True),  # only the first sentence
     ("There isn't a dog", True), ("NO, none.", True),  # neither "isn't" nor "NO" is a POPE word
     ("There is a dog, not a cat", False)],
)  # fmt: skip
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_binary_with_yes_positive_hand_worked():
    predicted = [True, True, False, False, True]
    labels = [True, False, False, True, True]
    got = binary(predicted, labels, positive=True)
    # TP = 2 (rows 0, 4), predicted yes = 3, actual yes = 3, correct = 3.
    assert got["accuracy"] == pytest.approx(3 / 5)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["yes_ratio"] == pytest.approx(3 / 5)


def test_binary_with_no_positive_as_amber():
    predicted = [False, False, True, True]
    labels = [False, True, False, True]
    got = binary(predicted, labels, positive=False)
    # "no" answers: rows 0, 1; truly "no": rows 0, 2; TP = row 0.
    assert got["precision"] == pytest.approx(1 / 2)
    assert got["recall"] == pytest.approx(1 / 2)
    assert got["f1"] == pytest.approx(1 / 2)
    assert got["accuracy"] == pytest.approx(2 / 4)


def test_binary_all_yes_has_zero_precision_for_no_and_no_division_error():
    got = binary([True, True], [False, True], positive=False)
    assert got["precision"] == 0.0 and got["recall"] == 0.0 and got["f1"] == 0.0


@pytest.mark.parametrize(
    "text, reason",
    [
        ("The image shows a sun and a cloud.", None),
        ("triangle triangle triangle triangle", "repetition"),
        ("a sun a sun a sun", "repetition"),
        ("", "empty"),
        ("... 123", "empty"),
        ("sun cloud sun tree sun sun sun", "repetition"),
        ("sun cloud sun tree sun boat sun", "dominant-word"),
        ("I can see a tree, a bird and a house.", None),
    ],
)
def test_degeneracy(text, reason):
    assert degeneracy(text) == reason


def test_well_formed_rate_and_degenerate_flag():
    texts = ["A dog.", "dog dog dog dog", "", "A cat on a mat."]
    assert scores.well_formed_rate(texts) == pytest.approx(2 / 4)
    assert scores.degenerate_flags({"well_formed": 0.25}) == ["degenerate"]
    assert scores.degenerate_flags({"well_formed": 0.5}) == []


def test_byte_soup_is_garbled():
    assert degeneracy("gT\ufffd\x13ease\ufffd birdsw") == "garbled"
    assert degeneracy("A café with a chair.") is None  # accents are letters, not garbage
