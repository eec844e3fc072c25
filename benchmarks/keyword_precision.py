"""Keyword precision on free-form answers: the ranker before issue 25 and the current one, side by side.

    python benchmarks/keyword_precision.py [--misses] [--vectors hashed,model,none]

The answers are tests/fixtures/keyword_answers.jsonl (57 RLAIF-V / LLaVA-detailed style answers,
their visible objects labelled by hand before the ranker was changed; rules in
keyword_answers.md), keyword_answers_heldout.jsonl (written after tuning, only measured) and
keyword_answers_own_data.jsonl (25 answers: a tester's own-data answers and similar ones, labelled
before the grammar repairs they motivated were written).

Precision of the top 3: over all answers, the share of returned keywords (at most 3 each) that
name a labelled object. A keyword NAMES a labelled object when

- its head noun (last word) is the labelled object's head noun, up to plural inflection
  (`mentions.plural_forms`: "horse" names "horses", "person"/"people"), or
- the keyword and the labelled object fall in the same category of CHAIR's COCO synonym table
  (runtime/mfpo_runtime/data/coco_synonyms.txt; the whole phrase, else its head noun):
  "puppy" names "dog", "sedan" names "car".

So "brown horse" and "horse" name the labelled "horse"; "dirt" (of "dirt road"), "brown",
"riding", "image" and "background" name nothing. Beside precision it prints keywords per answer
(a ranker that returned nothing would score a vacuous 1.0) and the CPU milliseconds per answer.

Word vectors (issue 25 point 4, `imagePreference.keywords.wordVectors`): `hashed` (character
n-grams), `model` (input embeddings of a model: here the tiny test LLaVA built from its config,
random weights and a tokenizer trained on the synthetic world: no pretrained model can be loaded
on this machine) and `none` (gamma = 0: no semantic term at all).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mfpo_runtime.data import keywords, mentions

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures"
SETS = {
    "tuning": "keyword_answers.jsonl",
    "held-out": "keyword_answers_heldout.jsonl",
    "own-data": "keyword_answers_own_data.jsonl",
}
TOP_K = 3


@dataclass(frozen=True)
class Answer:
    id: str
    answer: str
    objects: list[str]


def load_answers(path: Path) -> list[Answer]:
    answers = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not row.get("answer") or not row.get("objects"):
            raise ValueError(f"{path}:{number}: a record needs a non-empty answer and objects")
        answers.append(Answer(row["id"], row["answer"], list(row["objects"])))
    return answers


def head(phrase: str) -> str:
    tokens = mentions.tokenize(phrase)
    return tokens[-1] if tokens else ""


def coco_category(phrase: str) -> str | None:
    coco = mentions.coco_extractor()
    return coco.canonical(phrase) or coco.canonical(head(phrase))


def names(keyword: str, objects: Sequence[str]) -> bool:
    """Whether `keyword` names one of the labelled `objects` (see the module doc)."""
    kw_head, kw_category = head(keyword), coco_category(keyword)
    for name in objects:
        obj_head = head(name)
        if kw_head in mentions.plural_forms(obj_head) or obj_head in mentions.plural_forms(kw_head):
            return True
        if kw_category is not None and kw_category == coco_category(name):
            return True
    return False


@dataclass
class Score:
    named: int = 0
    returned: int = 0
    answers: int = 0
    cpu_seconds: float = 0.0

    @property
    def precision(self) -> float:
        return self.named / self.returned if self.returned else 0.0


Ranker = Callable[[str], list[str]]


def score(ranker: Ranker, answers: Sequence[Answer], misses: list | None = None) -> Score:
    result = Score(answers=len(answers))
    for item in answers[:2]:
        ranker(item.answer)  # warm-up: the tagger's lexicon loads on first use
    for item in answers:
        start = time.process_time()
        words = ranker(item.answer)[:TOP_K]
        result.cpu_seconds += time.process_time() - start
        hits = [names(word, item.objects) for word in words]
        result.named += sum(hits)
        result.returned += len(words)
        if misses is not None and not all(hits):
            misses.append((item.id, words, [w for w, hit in zip(words, hits) if not hit]))
    return result


# The ranker before issue 25 (content words, not noun phrases): main before the rewrite.
RANKER_BEFORE = ("5960f0d", "runtime/mfpo_runtime/data/keywords.py")


def previous_ranker() -> Ranker:
    sys.path.insert(0, str(Path(__file__).parent))
    from at_revision import module_at

    before = module_at(*RANKER_BEFORE)

    return lambda text: before.rank_keywords(text, top_k=TOP_K)


def current_ranker(vectors: keywords.WordVectors | None = None, gamma: float = 0.5) -> Ranker:
    return lambda text: keywords.rank_keywords(text, top_k=TOP_K, gamma=gamma, vectors=vectors)


def tiny_model_vectors(tmp: str) -> keywords.EmbeddingVectors:
    """Input embeddings of the tiny test LLaVA (random weights): what `model` means here."""
    from mfpo_runtime.models import load_vlm
    from mfpo_runtime.models.build import build_tiny_model

    path = build_tiny_model("llava", Path(tmp) / "tiny-llava")
    vlm = load_vlm(str(path))
    return keywords.EmbeddingVectors.from_model(vlm.model, vlm.processor.tokenizer)


def rankers(settings: Sequence[str], tmp: str) -> dict[str, Ranker]:
    out = {"before issue 25 (hashed)": previous_ranker()}
    for setting in settings:
        if setting == "hashed":
            out["current, hashed"] = current_ranker()
        elif setting == "model":
            out["current, model (tiny)"] = current_ranker(tiny_model_vectors(tmp))
        elif setting == "none":
            out["current, none (gamma 0)"] = current_ranker(gamma=0.0)
        else:
            raise SystemExit(f"--vectors: unknown setting {setting!r} (hashed, model, none)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--misses", action="store_true", help="list the keywords that name no object"
    )
    parser.add_argument("--vectors", default="hashed", help="comma-separated: hashed, model, none")
    args = parser.parse_args()
    sets = {
        name: load_answers(FIXTURES / file)
        for name, file in SETS.items()
        if (FIXTURES / file).exists()
    }
    with tempfile.TemporaryDirectory() as tmp:
        ranked = rankers([s.strip() for s in args.vectors.split(",") if s.strip()], tmp)
        print(f"precision of the top {TOP_K} keywords (share naming a labelled object)")
        print(
            f"{'ranker':<28}" + "".join(f"{name + f' ({len(a)})':>34}" for name, a in sets.items())
        )
        missed: dict[str, list] = {}
        for label, ranker in ranked.items():
            cells = []
            for set_name, answers in sets.items():
                misses: list = []
                s = score(ranker, answers, misses)
                missed[f"{label} / {set_name}"] = misses
                cells.append(
                    f"{s.precision:6.3f} ({s.named}/{s.returned}) "
                    f"{s.returned / s.answers:4.2f}/ans {1000 * s.cpu_seconds / s.answers:5.2f} ms"
                )
            print(f"{label:<28}" + "".join(f"{c:>34}" for c in cells))
    if args.misses:
        for label, misses in missed.items():
            print(f"\n{label}: {len(misses)} answers with a miss")
            for record_id, words, wrong in misses:
                print(f"  {record_id}: {words}  not objects: {wrong}")


if __name__ == "__main__":
    main()
