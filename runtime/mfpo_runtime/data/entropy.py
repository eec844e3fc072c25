"""Semantic entropy and the easy-to-hard curriculum bins (MFPO paper, Sec. 3.3).

For each training prompt the reference model samples K answers; answers that mean the same
thing fall into one group (a pluggable equivalence), and the discrete semantic entropy is

    SE = - sum_g p_g log p_g,   p_g = |g| / K            (Kuhn et al. 2023; natural log)

Low entropy = the model answers consistently = easy. Records are then split into N equal-size
curriculum bins by entropy rank (quantiles): bin 1 holds the lowest entropies.

Called by the score stage (`mfpo_runtime.stages.score`). The equivalences and the binning are
pure; `sample_answers` runs the model through `mfpo_runtime.models.generate`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

Equivalence = Callable[[str], Hashable]  # answer -> its meaning class

_PUNCTUATION = re.compile(r"[^\w\s]")


def exact_meaning(answer: str) -> str:
    """`exact`: the same text once case, punctuation and spacing are normalised."""
    return " ".join(_PUNCTUATION.sub(" ", answer.lower()).split())


def object_set_meaning(extract: Callable[[str], set[str]]) -> Equivalence:
    """`object-set`: two answers mean the same when they mention the same set of objects."""
    return lambda answer: frozenset(extract(answer))


def equivalence_for(name: str, data_format: str) -> Equivalence:
    """The equivalence named in spec.curriculum.equivalence, for a dataset format.

    object-set uses the mention extractor (`data.mentions`): the synthetic world's synonyms for the
    synthetic format, COCO's (RLAIF-V and LLaVA data are mostly COCO images) otherwise.
    """
    if name == "exact":
        return exact_meaning
    if name != "object-set":
        raise ValueError(f"unknown equivalence {name!r}: expected object-set or exact")
    from mfpo_runtime.data import mentions  # imported late: only object-set needs it

    extractor = (
        mentions.synthetic_extractor() if data_format == "synthetic" else mentions.coco_extractor()
    )
    return object_set_meaning(extractor.objects)


def semantic_entropy(answers: Sequence[str], meaning: Equivalence) -> float:
    """Discrete semantic entropy (nats) of sampled answers grouped by `meaning`."""
    if not answers:
        raise ValueError("semantic entropy needs at least one sampled answer")
    counts = Counter(meaning(answer) for answer in answers)
    total = len(answers)
    return -sum(c / total * math.log(c / total) for c in counts.values())


def curriculum_bins(entropies: Sequence[float], stages: int) -> list[int]:
    """Bin (1..stages) per record: equal-frequency split of the entropy ranking.

    Ranked by (entropy, position) so ties stay in input order and every bin gets
    len // stages or one more record; bins are monotone in entropy.
    """
    if stages < 1:
        raise ValueError(f"curriculum needs at least one stage, got {stages}")
    order = sorted(range(len(entropies)), key=lambda i: (entropies[i], i))
    bins = [0] * len(entropies)
    for rank, index in enumerate(order):
        bins[index] = 1 + rank * stages // len(entropies)
    return bins


def sample_answers(
    loaded,
    questions: Sequence[str],
    images: Sequence,
    *,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> list[list[str]]:
    """`samples` sampled answers per prompt from the model, one batched generate call."""
    from mfpo_runtime.models import generate  # imported late: torch only when scoring

    repeated_q = [q for q in questions for _ in range(samples)]
    repeated_i = [img for img in images for _ in range(samples)]
    flat = generate(
        loaded,
        repeated_q,
        repeated_i,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        seed=seed,
    )
    return [list(flat[i * samples : (i + 1) * samples]) for i in range(len(questions))]
