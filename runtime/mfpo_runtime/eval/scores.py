"""Hallucination metrics as pure functions over answers and ground truth: no model, no I/O.

- `chair`: CHAIR as in Object HalBench (Rohrbach et al. 2018; Yu et al. RLHF-V 2024);
- `binary`: accuracy / precision / recall / F1 of yes-no answers with a chosen positive class
  (POPE: "yes" positive; AMBER's discriminative task: "no" positive);
- `parse_yes_no`: POPE's answer rule (evaluate.py: "no"/"No"/"not" in the first sentence);
- `degeneracy`: why a generated answer is not a well-formed sentence (a collapsed model's
  "triangle triangle ..." names few objects and so looks least hallucinating by CHAIR).

Every score is a fraction in [0, 1] (the papers print percentages). Called by the benchmark
modules of mfpo_runtime.eval and by their tests, which work the expected values out by hand.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from mfpo_runtime.data.mentions import tokenize


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when there is nothing to count (e.g. no object mentioned)."""
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class ChairSample:
    """CHAIR's judgement of one response."""

    mentioned: list[str]  # canonical objects, in order, repeats kept
    hallucinated: list[str]  # the mentions not in the ground truth, repeats kept
    recalled: set[str]  # ground-truth objects the response names
    length: int  # words


def chair_sample(mentions: Sequence[str], truth: set[str], text: str) -> ChairSample:
    return ChairSample(
        mentioned=list(mentions),
        hallucinated=[m for m in mentions if m not in truth],
        recalled={m for m in mentions if m in truth},
        length=len(tokenize(text)),
    )


def chair(samples: Sequence[ChairSample], truths: Sequence[set[str]]) -> dict[str, float]:
    """CHAIRs, CHAIRi, object recall and mean length over a set of responses.

    chair_s: responses with a hallucinated object / responses that mention any object (a
      response naming nothing can't hallucinate and is left out);
    chair_s_all: the same over all responses (Rohrbach et al.'s code; the published numbers);
    chair_i: hallucinated mentions / all object mentions (repeats counted, as in their code);
    recall: ground-truth objects named / ground-truth objects (micro, over all responses).
    """
    if len(samples) != len(truths):
        raise ValueError(f"{len(samples)} responses but {len(truths)} ground-truth object sets")
    naming = [s for s in samples if s.mentioned]
    hallucinating = sum(1 for s in naming if s.hallucinated)
    return {
        "chair_s": ratio(hallucinating, len(naming)),
        "chair_s_all": ratio(hallucinating, len(samples)),
        "chair_i": ratio(sum(len(s.hallucinated) for s in samples), sum(len(s.mentioned) for s in samples)),
        "recall": ratio(sum(len(s.recalled) for s in samples), sum(len(t) for t in truths)),
        "mean_length": ratio(sum(s.length for s in samples), len(samples)),
        "mentioning_rate": ratio(len(naming), len(samples)),
    }


# POPE's evaluate.py reads these words, case-sensitively, as "no"; nothing else (not "isn't").
_POPE_NO_WORDS = {"No", "not", "no"}


def parse_yes_no(text: str) -> bool:
    """True for "yes", by POPE's evaluate.py: only the text before the first "." counts, commas
    are dropped, it is split on single spaces, and "No", "not" or "no" among the words means
    "no". Its quirks are kept on purpose so that scores match the original: "There isn't a
    dog" and "NO" read as "yes", "Yes, there is a chair. No other furniture." as "yes".
    """
    first_sentence = text.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return not any(w in _POPE_NO_WORDS for w in words)


def binary(predicted: Sequence[bool], labels: Sequence[bool], *, positive: bool = True) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of boolean answers (True = "yes"), and the yes-ratio.

    `positive` picks the positive class: True ("yes") for POPE, False ("no") for AMBER.
    """
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} answers but {len(labels)} labels")
    pairs = list(zip(predicted, labels))
    true_pos = sum(1 for p, y in pairs if p == positive and y == positive)
    predicted_pos = sum(1 for p, _ in pairs if p == positive)
    actual_pos = sum(1 for _, y in pairs if y == positive)
    precision = ratio(true_pos, predicted_pos)
    recall = ratio(true_pos, actual_pos)
    return {
        "accuracy": ratio(sum(1 for p, y in pairs if p == y), len(pairs)),
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * precision * recall, precision + recall),
        "yes_ratio": ratio(sum(1 for p in predicted if p), len(pairs)),
    }


# A run of the same 1-3 word n-gram this many times in a row is a collapse, not a sentence.
REPEAT_RUN = 3
# Above this share of the words, a single word means the answer is a repetition.
DOMINANT_WORD_SHARE = 0.5
MIN_WORDS_FOR_SHARE = 6


# Above this share of undecodable or control characters, the answer is byte soup.
GARBLED_SHARE = 0.1


def degeneracy(text: str) -> str | None:
    """Why an answer is degenerate ("empty", "garbled", "repetition", "dominant-word"), or None."""
    words = tokenize(text)
    if not any(w.isalpha() for w in words):
        return "empty"
    if _garbled_share(text) > GARBLED_SHARE:
        return "garbled"
    if _has_repeated_run(words):
        return "repetition"
    if len(words) >= MIN_WORDS_FOR_SHARE:
        top = Counter(words).most_common(1)[0][1]
        if top / len(words) > DOMINANT_WORD_SHARE:
            return "dominant-word"
    return None


def _garbled_share(text: str) -> float:
    visible = [c for c in text if not c.isspace()]
    bad = sum(1 for c in visible if c == "\ufffd" or unicodedata.category(c).startswith("C"))
    return ratio(bad, len(visible))


def _has_repeated_run(words: list[str]) -> bool:
    for n in (1, 2, 3):
        for start in range(len(words) - n * REPEAT_RUN + 1):
            gram = words[start : start + n]
            if all(words[start + k * n : start + (k + 1) * n] == gram for k in range(1, REPEAT_RUN)):
                return True
    return False


def well_formed_rate(texts: Sequence[str]) -> float:
    return ratio(sum(1 for t in texts if degeneracy(t) is None), len(texts))


# Below this well-formed rate, low CHAIR means a collapsed model, not a faithful one.
DEGENERATE_BELOW = 0.5


def degenerate_flags(metrics: dict[str, float], key: str = "well_formed") -> list[str]:
    """["degenerate"] when most answers are not sentences: the run failed, CHAIR is no win."""
    return ["degenerate"] if metrics.get(key, 1.0) < DEGENERATE_BELOW else []
