"""AMBER (Wang et al. 2023): generative CHAIR / Cover / Hal / Cog and discriminative yes-no scores.

Data, in AMBER's own formats (`bench.uri` is the directory; options override each file):

    query_all.json     [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."}, ...]
    annotations.json   [{"id": 1, "type": "generative", "truth": [...], "hallu": [...]},
                        {"id": 1005, "type": "discriminative-hallucination", "truth": "yes"}, ...]
    relation.json      {"word": ["associated word", ...]}: the object vocabulary and associations
    safe_words.txt     words never counted as hallucinations
    images/            the images named by the queries

Generative scores follow AMBER's inference.py, with nouns found by matching AMBER's vocabulary
(relation.json's words, plurals included) where AMBER POS-tags with NLTK and lemmatises:
  chair = hallucinated nouns / nouns (a noun is hallucinated unless it is a truth object or
          associated with one); cover = truth objects named / truth objects;
  hal = responses with a hallucinated noun / responses;
  cog = "hallu" objects (the human-like hallucination targets) named / "hallu" objects.
AMBER's optional spaCy similarity (>0.8) is left out: it needs a 600 MB vector download.
Discriminative scores: accuracy, precision, recall, F1 with "no" as the positive class, overall
and per dimension (existence = discriminative-hallucination, attribute-*, relation).
"""

from __future__ import annotations

from typing import Any

from mfpo_core import storage
from mfpo_core.api import BenchmarkSpec
from mfpo_core.contract import BadInput

from mfpo_runtime.data.mentions import MentionExtractor
from mfpo_runtime.eval import scores
from mfpo_runtime.eval.common import (
    BenchmarkEnv,
    BenchmarkResult,
    data_uri,
    file_uri,
    load_image,
    read_json,
    require,
)
from mfpo_runtime.eval.generation import Policy

QUERY_FILES = ("query_all.json", "query_generative.json", "query_discriminative.json")


def dimension(kind: str) -> str:
    """AMBER's discriminative dimension of an annotation type."""
    if kind == "discriminative-hallucination":
        return "existence"
    if kind.startswith("discriminative-attribute"):
        return "attribute"
    return "relation"


class AmberVocabulary:
    """AMBER's object words and their associations (relation.json) plus its safe words."""

    def __init__(self, association: dict[str, list[str]], safe_words: set[str]):
        self.association = association
        self.safe_words = safe_words
        words = {w for key, values in association.items() for w in (key, *values)}
        # Each word stands for itself: AMBER compares nouns to words, not to categories.
        self.extractor = MentionExtractor({w: [] for w in sorted(words)})

    def nouns(self, text: str) -> list[str]:
        return self.extractor.mentions(text)

    def expand(self, objects: list[str]) -> dict[str, str]:
        """word -> the annotated object it counts for (the object itself or an associated word)."""
        owner: dict[str, str] = {}
        for obj in objects:
            for word in self.association.get(obj, []):
                owner.setdefault(word, obj)
        for obj in objects:
            owner[obj] = obj  # an object named directly counts for itself
        return owner


def generative_sample(answer: str, truth: list[str], hallu: list[str], vocab: AmberVocabulary) -> dict[str, Any]:
    """AMBER's judgement of one generative response."""
    safe_owner, hallu_owner = vocab.expand(truth), vocab.expand(hallu)
    nouns = [n for n in vocab.nouns(answer) if n not in vocab.safe_words]
    covered, cognitive, hallucinated = set(), set(), []
    for noun in nouns:
        if noun in safe_owner:
            covered.add(safe_owner[noun])
            continue
        if noun in hallu_owner:
            cognitive.add(hallu_owner[noun])
        hallucinated.append(noun)
    return {"nouns": nouns, "hallucinated": hallucinated, "covered": sorted(covered),
            "cognitive": sorted(cognitive), "truth": sorted(set(truth)), "hallu": sorted(set(hallu))}  # fmt: skip


def generative_scores(samples: list[dict[str, Any]]) -> dict[str, float]:
    ratio = scores.ratio
    return {
        "chair": ratio(sum(len(s["hallucinated"]) for s in samples), sum(len(s["nouns"]) for s in samples)),
        "cover": ratio(sum(len(s["covered"]) for s in samples), sum(len(s["truth"]) for s in samples)),
        "hal": ratio(sum(1 for s in samples if s["hallucinated"]), len(samples)),
        "cog": ratio(sum(len(s["cognitive"]) for s in samples), sum(len(s["hallu"]) for s in samples)),
    }


def discriminative_scores(predicted: list[bool], labels: list[bool], dims: list[str]) -> dict[str, float]:
    """Overall and per-dimension scores; "no" (False) is the positive class, as in AMBER."""
    overall = scores.binary(predicted, labels, positive=False)
    metrics = {k: overall[k] for k in ("accuracy", "precision", "recall", "f1")}
    for dim in ("existence", "attribute", "relation"):
        rows = [i for i, d in enumerate(dims) if d == dim]
        if rows:
            part = scores.binary([predicted[i] for i in rows], [labels[i] for i in rows], positive=False)
            metrics[f"{dim}.accuracy"], metrics[f"{dim}.f1"] = part["accuracy"], part["f1"]
    return metrics


def _load_vocabulary(base: str, bench: BenchmarkSpec) -> AmberVocabulary:
    relation_uri = file_uri(base, bench.options.relation)
    association = read_json(relation_uri, "AMBER relation file")
    if not isinstance(association, dict):
        raise BadInput(f"the AMBER relation file {relation_uri} must map words to word lists")
    safe_uri = file_uri(base, bench.options.safe_words)
    safe = set()
    if storage.exists(safe_uri):
        safe = {line.strip() for line in storage.read_text(safe_uri).splitlines() if line.strip()}
    return AmberVocabulary(association, safe)


def _queries_uri(base: str, bench: BenchmarkSpec) -> str:
    if bench.options.queries:
        return file_uri(base, bench.options.queries)
    for name in QUERY_FILES:
        if storage.exists(storage.join(base, name)):
            return storage.join(base, name)
    raise BadInput(f"AMBER at {base}: none of {QUERY_FILES} found (or set option queries)")


def _split_tasks(queries, annotations, queries_uri, bench):
    by_id = {require(a, "id", "AMBER annotations"): a for a in annotations}
    generative, discriminative = [], []
    for number, query in enumerate(queries):
        where = f"{queries_uri}[{number}]"
        ann = by_id.get(require(query, "id", where))
        if ann is None:
            raise BadInput(f"{where}: id {query['id']} has no annotation")
        (generative if ann["type"] == "generative" else discriminative).append((query, ann))
    cap = bench.max_samples
    return (generative[:cap], discriminative[:cap]) if cap else (generative, discriminative)


def evaluate(policy: Policy, bench: BenchmarkSpec, env: BenchmarkEnv) -> BenchmarkResult:
    base = data_uri(bench, env)
    queries_uri = _queries_uri(base, bench)
    queries = read_json(queries_uri, "AMBER query file")
    annotations = read_json(file_uri(base, bench.options.annotations), "AMBER annotations")
    generative, discriminative = _split_tasks(queries, annotations, queries_uri, bench)
    if not generative and not discriminative:
        raise BadInput(f"AMBER at {base}: no queries to evaluate")
    image_dir = file_uri(base, bench.options.image_dir)
    tasks = generative + discriminative
    images = [load_image(image_dir, require(q, "image", f"{queries_uri} id {q['id']}"), f"AMBER id {q['id']}")
              for q, _ in tasks]  # fmt: skip
    answers = policy.answer([require(q, "query", f"AMBER id {q['id']}") for q, _ in tasks], images)
    metrics: dict[str, float] = {}
    samples: list[dict[str, Any]] = []
    gen_answers, disc_answers = answers[: len(generative)], answers[len(generative) :]
    if generative:
        vocab = _load_vocabulary(base, bench)
        judged = [generative_sample(a, ann["truth"], ann.get("hallu", []), vocab)
                  for a, (_, ann) in zip(gen_answers, generative)]  # fmt: skip
        metrics |= generative_scores(judged)
        metrics["well_formed"] = scores.well_formed_rate(gen_answers)
        samples += [{"id": q["id"], "answer": a, **j} for (q, _), a, j in zip(generative, gen_answers, judged)]
    if discriminative:
        predicted = [scores.parse_yes_no(a) for a in disc_answers]
        labels = [str(ann["truth"]).lower() == "yes" for _, ann in discriminative]
        metrics |= discriminative_scores(predicted, labels, [dimension(ann["type"]) for _, ann in discriminative])
        samples += [{"id": q["id"], "answer": a, "yes": p, "truth": ann["truth"]}
                    for (q, ann), a, p in zip(discriminative, disc_answers, predicted)]  # fmt: skip
    if generative and discriminative:
        # AMBER Score = (1 - CHAIR + F1) / 2, the paper's single number.
        metrics["amber_score"] = (1.0 - metrics["chair"] + metrics["f1"]) / 2
    return BenchmarkResult(metrics=metrics, samples=samples, flags=scores.degenerate_flags(metrics))
