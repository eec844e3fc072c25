"""AMBER (Wang et al. 2023): generative CHAIR / Cover / Hal / Cog and discriminative yes-no scores.

Data, in AMBER's own formats (`bench.uri` is the directory; options override each file):

    query_all.json     [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."}, ...]
    annotations.json   [{"id": 1, "type": "generative", "truth": [...], "hallu": [...]},
                        {"id": 1005, "type": "discriminative-hallucination", "truth": "yes"}, ...]
    relation.json      {"word": ["associated word", ...]}: the object vocabulary and associations
    safe_words.txt     words never counted as hallucinations
    images/            the images named by the queries

Generative scores follow AMBER's inference.py: the nouns of a response are its words tagged
NN* (AMBER: nltk.pos_tag), lemmatised (AMBER: WordNet; here a plural of a vocabulary word maps
to that word), kept when they are in the vocabulary (relation.json's words); like AMBER's, the
match is case-sensitive, so a capitalised "Dogs" at a sentence start is no noun of the list.
  chair = hallucinated nouns / nouns, the safe words counted in the denominator (AMBER's
          chair_num) but never hallucinated; a noun is hallucinated unless it is a truth object
          or associated with one;
  cover = truth objects named / truth objects;  hal = responses with a hallucinated noun /
  responses;  cog = "hallu" objects (the human-like hallucination targets) named / "hallu" objects.
The part-of-speech tagger is TextBlob's Pattern tagger, whose lexicon ships in its PyPI wheel:
NLTK's perceptron tagger, AMBER's, is a run-time download. The two disagree on some words (the
Pattern tagger reads "a watch" as no noun). AMBER's optional spaCy similarity (>0.8) is left out:
it needs a 600 MB vector download.
Discriminative scores: AMBER compares the response with "Yes" / "No" and leaves reducing a free
answer to the user; we reduce it with POPE's rule (`scores.parse_yes_no`). Accuracy, precision,
recall, F1 with "no" as the positive class, overall and per dimension: existence
(discriminative-hallucination), attribute (state + number + action pooled), state, number,
action, relation. AMBER computes F1 from percentages rounded to 0.1 with 1e-4 added to the
denominator; ours is unrounded.
"""

from __future__ import annotations

from typing import Any

from mfpo_core import storage
from mfpo_core.contract import BadInput

from mfpo_runtime.data.mentions import plural_forms
from mfpo_runtime.eval import scores
from mfpo_runtime.eval.common import (
    BenchmarkEnv,
    BenchmarkResult,
    data_uri,
    file_uri,
    image_problem,
    listed_uris,
    load_image,
    read_json,
    require,
    yes_no,
)
from mfpo_runtime.eval.config import Benchmark
from mfpo_runtime.eval.generation import Policy

QUERY_FILES = ("query_all.json", "query_generative.json", "query_discriminative.json")


# AMBER's annotation type -> its dimension and, for attributes, its sub-dimension.
ATTRIBUTE_KINDS = {
    "discriminative-attribute-state": "state",
    "discriminative-attribute-number": "number",
    "discriminative-attribute-action": "action",
}


def dimensions(kind: str) -> tuple[str, ...]:
    """The dimensions an annotation type is scored under (inference.py's if/elif on the type)."""
    if kind == "discriminative-hallucination":
        return ("existence",)
    if kind in ATTRIBUTE_KINDS:
        return ("attribute", ATTRIBUTE_KINDS[kind])
    return ("relation",)  # AMBER's else branch: every other discriminative type


def tag_words(text: str) -> list[tuple[str, str]]:
    """(word, Penn Treebank tag) pairs, by TextBlob's Pattern tagger (see the module doc)."""
    from textblob.en.taggers import PatternTagger  # lazily: only generative AMBER needs it

    return [(word, tag) for word, tag in PatternTagger().tag(text)]


class AmberVocabulary:
    """AMBER's object words and their associations (relation.json) plus its safe words."""

    def __init__(self, association: dict[str, list[str]], safe_words: set[str]):
        self.association = association
        self.safe_words = safe_words
        self.words = {w for key, values in association.items() for w in (key, *values)}
        # A plural of a vocabulary word -> the word (WordNet's lemma for the words AMBER lists).
        self._singular = {
            form: word for word in sorted(self.words) for form in plural_forms(word) if form != word
        }

    def lemma(self, word: str) -> str:
        return word if word in self.words else self._singular.get(word, word)

    def nouns(self, text: str) -> list[str]:
        """The vocabulary nouns of a response, in order, repeats kept (AMBER's after_process_nouns)."""
        lemmas = [self.lemma(word) for word, tag in tag_words(text) if tag.startswith("NN")]
        return [n for n in lemmas if n in self.words]

    def expand(self, objects: list[str]) -> dict[str, str]:
        """word -> the annotated object it counts for. As in AMBER, the associated words of
        every object come before the objects themselves, and the first match wins."""
        owner: dict[str, str] = {}
        for obj in objects:
            for word in self.association.get(obj, []):
                owner.setdefault(word, obj)
        for obj in objects:
            owner.setdefault(obj, obj)
        return owner


def generative_sample(answer: str, truth: list[str], hallu: list[str], vocab: AmberVocabulary) -> dict[str, Any]:
    """AMBER's judgement of one generative response."""
    safe_owner, hallu_owner = vocab.expand(truth), vocab.expand(hallu)
    nouns = vocab.nouns(answer)
    covered, cognitive, hallucinated = set(), set(), []
    for noun in nouns:
        if noun in vocab.safe_words:
            continue  # counted among the nouns (CHAIR's denominator), never hallucinated
        if noun in safe_owner:
            covered.add(safe_owner[noun])
            continue
        if noun in hallu_owner:
            cognitive.add(hallu_owner[noun])
        hallucinated.append(noun)
    return {"nouns": nouns, "hallucinated": hallucinated, "covered": sorted(covered),
            "cognitive": sorted(cognitive), "truth": list(truth), "hallu": list(hallu)}  # fmt: skip


def generative_scores(samples: list[dict[str, Any]]) -> dict[str, float]:
    ratio = scores.ratio
    return {
        "chair": ratio(sum(len(s["hallucinated"]) for s in samples), sum(len(s["nouns"]) for s in samples)),
        "cover": ratio(sum(len(s["covered"]) for s in samples), sum(len(s["truth"]) for s in samples)),
        "hal": ratio(sum(1 for s in samples if s["hallucinated"]), len(samples)),
        "cog": ratio(sum(len(s["cognitive"]) for s in samples), sum(len(s["hallu"]) for s in samples)),
    }


DIMENSIONS = ("existence", "attribute", "state", "number", "action", "relation")


def discriminative_scores(predicted: list[bool], labels: list[bool], kinds: list[str]) -> dict[str, float]:
    """Overall and per-dimension scores; "no" (False) is the positive class, as in AMBER."""
    overall = scores.binary(predicted, labels, positive=False)
    metrics = {k: overall[k] for k in ("accuracy", "precision", "recall", "f1")}
    for dim in DIMENSIONS:
        rows = [i for i, kind in enumerate(kinds) if dim in dimensions(kind)]
        if rows:
            part = scores.binary([predicted[i] for i in rows], [labels[i] for i in rows], positive=False)
            metrics |= {f"{dim}.{k}": part[k] for k in ("accuracy", "precision", "recall", "f1")}
    return metrics


def _load_vocabulary(base: str, bench: Benchmark) -> AmberVocabulary:
    relation_uri = file_uri(base, bench.options.relation)
    association = read_json(relation_uri, "AMBER relation file")
    if not isinstance(association, dict):
        raise BadInput(f"the AMBER relation file {relation_uri} must map words to word lists")
    safe_uri = file_uri(base, bench.options.safe_words)
    safe = set()
    if storage.exists(safe_uri):
        safe = {line.strip() for line in storage.read_text(safe_uri).splitlines() if line.strip()}
    return AmberVocabulary(association, safe)


def _queries_uri(base: str, bench: Benchmark) -> str:
    if bench.options.queries:
        return file_uri(base, bench.options.queries)
    for name in QUERY_FILES:
        if storage.exists(storage.join(base, name)):
            return storage.join(base, name)
    raise BadInput(f"AMBER at {base}: none of {QUERY_FILES} found (or set option queries)")


def required_inputs(bench: Benchmark, base: str) -> list[str]:
    """What reading AMBER at `base` would miss: its query, annotation, vocabulary and
    safe-word files and its images directory (each named by its option)."""
    try:
        files = [("queries", _queries_uri(base, bench))]
    except BadInput as err:
        return [str(err)]
    options = bench.options
    files += [("annotations", file_uri(base, options.annotations)), ("relation", file_uri(base, options.relation)),
              ("safeWords", file_uri(base, options.safe_words)), ("imageDir", file_uri(base, options.image_dir))]  # fmt: skip
    missing = [f"AMBER at {base}: {uri} (amber.{option}) does not exist" for option, uri in files if not storage.exists(uri)]
    if missing:
        return missing
    try:  # the queries and annotations as evaluate reads them: ids, truths, images
        generative, discriminative = _read_tasks(base, bench)
    except BadInput as err:
        return [str(err)]
    image_dir = file_uri(base, options.image_dir)
    listed = listed_uris(image_dir)  # one listing, not one request per query
    return [p for q, _ in generative + discriminative
            if (p := image_problem(image_dir, q.get("image"), f"AMBER id {q['id']}", listed))]  # fmt: skip


def _split_tasks(queries, annotations, queries_uri, bench):
    by_id: dict = {}
    for number, annotation in enumerate(annotations):
        key = require(annotation, "id", "AMBER annotations")
        if key in by_id:  # a second annotation of an id would replace the first unseen
            raise BadInput(f"AMBER annotations [{number}]: id {key!r} is annotated twice")
        by_id[key] = annotation
    generative, discriminative = [], []
    for number, query in enumerate(queries):
        where = f"{queries_uri}[{number}]"
        ann = by_id.get(require(query, "id", where))
        if ann is None:
            raise BadInput(f"{where}: id {query['id']} has no annotation")
        (generative if ann["type"] == "generative" else discriminative).append((query, ann))
    cap = bench.max_samples
    return (generative[:cap], discriminative[:cap]) if cap else (generative, discriminative)


def _read_tasks(base: str, bench: Benchmark):
    """(generative, discriminative) lists of (query, annotation); BadInput names what is wrong,
    a discriminative truth that is not yes or no included (`common.yes_no`)."""
    queries_uri = _queries_uri(base, bench)
    queries = read_json(queries_uri, "AMBER query file")
    annotations = read_json(file_uri(base, bench.options.annotations), "AMBER annotations")
    generative, discriminative = _split_tasks(queries, annotations, queries_uri, bench)
    for _, ann in discriminative:
        yes_no(ann.get("truth"), f"AMBER annotation id {ann['id']}", "truth")
    return generative, discriminative


def evaluate(policy: Policy, bench: Benchmark, env: BenchmarkEnv) -> BenchmarkResult:
    base = data_uri(bench, env)
    generative, discriminative = _read_tasks(base, bench)
    if not generative and not discriminative:
        raise BadInput(f"AMBER at {base}: no queries to evaluate")
    image_dir = file_uri(base, bench.options.image_dir)
    tasks = generative + discriminative
    images = [load_image(image_dir, require(q, "image", f"AMBER id {q['id']}"), f"AMBER id {q['id']}")
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
        labels = [yes_no(ann["truth"], f"AMBER annotation id {ann['id']}", "truth") for _, ann in discriminative]
        metrics |= discriminative_scores(predicted, labels, [ann["type"] for _, ann in discriminative])
        samples += [{"id": q["id"], "answer": a, "yes": p, "truth": ann["truth"]}
                    for (q, ann), a, p in zip(discriminative, disc_answers, predicted)]  # fmt: skip
    if generative and discriminative:
        # AMBER Score = (1 - CHAIR + F1) / 2, the paper's single number.
        metrics["amber_score"] = (1.0 - metrics["chair"] + metrics["f1"]) / 2
    return BenchmarkResult(metrics=metrics, samples=samples, flags=scores.degenerate_flags(metrics))
