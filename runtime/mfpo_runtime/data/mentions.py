"""Object mentions in free text, mapped to canonical object names through synonym tables.

The hallucination metrics (CHAIR, AMBER's generative scores, the synthetic benchmark) and the
semantic-entropy equivalence ("same set of mentioned objects") all need the same thing: which
objects does this answer name? `MentionExtractor` answers it by rules, as the original CHAIR
code does (Rohrbach et al. 2018, "Object Hallucination in Image Captioning"):

- lower-case, split on anything that is not a letter or digit ("hot-dog" == "hot dog");
- every synonym is also matched in its plural forms (regular rules plus the irregular nouns the
  tables use), where CHAIR lemmatises with NLTK/WordNet instead; we avoid NLTK because its
  corpora are a download, and the tables are closed, so generating plurals is exact for them;
- longest match first, so "hot dog" is one hot dog and not a dog, "teddy bear" is not a bear;
- phrase rules replace a phrase by another word before lookup ("baby elephant" -> "elephant",
  so the "baby" does not fire "person"; "train track" -> not an object);
- suppression rules drop a surface word when another object is mentioned ("seat" is not a chair
  when the text mentions a toilet).

Callers: mfpo_runtime.eval (all benchmarks), the semantic-entropy equivalence (`data.entropy`).
Pure text code: no torch, no I/O except reading the packaged COCO synonym list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_TOKEN = re.compile(r"[a-z0-9]+")

# Irregular plurals of words that occur in the synonym tables (last word of a phrase).
_IRREGULAR_PLURALS = {
    "person": "people",
    "child": "children",
    "grandchild": "grandchildren",
    "mouse": "mice",
    "goose": "geese",
    "ox": "oxen",
    "foot": "feet",
    "tooth": "teeth",
    "sheep": "sheep",
    "fish": "fish",
    "deer": "deer",
    "cattle": "cattle",
    "bison": "bison",
    "buffalo": "buffaloes",
    "scissors": "scissors",
}

# Rohrbach et al.'s hard-coded CHAIR rules for MSCOCO (utils/chair.py): phrases read as one word.
_COCO_DOUBLE_WORDS = [
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
    "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
    "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
    "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
    "stove top oven", "home plate", "train track",
]  # fmt: skip
# 'baby bird' is a bird, not a person; 'passenger jet' is a jet, not a person.
_COCO_ANIMAL_WORDS = [
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "animal", "cub",
]  # fmt: skip
_COCO_VEHICLE_WORDS = ["jet", "train"]


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; punctuation and hyphens separate words."""
    return _TOKEN.findall(text.lower())


def plural_forms(word: str) -> set[str]:
    """Plural surface forms of a singular English noun (both variants where usage varies)."""
    forms = {word}
    if word in _IRREGULAR_PLURALS:
        forms.add(_IRREGULAR_PLURALS[word])
    if word.endswith("man") and word not in ("human",):  # man/woman/policeman/gentleman -> -men
        forms.add(word[:-3] + "men")
    if re.search(r"(s|x|z|ch|sh)$", word):
        forms.add(word + "es")
    elif re.search(r"[^aeiou]y$", word):
        forms.add(word[:-1] + "ies")
    else:
        forms.add(word + "s")
    if word.endswith("o"):
        forms.add(word + "es")  # tomatoes, but pianos: keep both
    if word.endswith("fe"):
        forms.add(word[:-2] + "ves")  # knife -> knives
    elif word.endswith("f"):
        forms.add(word[:-1] + "ves")  # calf -> calves
    return forms


def phrase_forms(phrase: str) -> set[tuple[str, ...]]:
    """Token tuples of a (multi-word) phrase, singular and with its last word pluralised."""
    tokens = tokenize(phrase)
    if not tokens:
        return set()
    return {(*tokens[:-1], last) for last in plural_forms(tokens[-1])}


@dataclass(frozen=True)
class Mention:
    """One object mention: the canonical object, the listed synonym it matched, its place."""

    canonical: str
    synonym: str  # the table entry (singular) that matched, e.g. "puppy" for "puppies"
    start: int  # token index of the first word
    length: int  # tokens covered


class MentionExtractor:
    """Finds the objects a text names, by longest match over a synonym table.

    `synonyms` maps each canonical name to its surface forms (the canonical name itself is
    always one; plurals are added). `phrases` maps a phrase to the word it stands for before
    lookup (a word absent from the table makes the phrase a non-object). `suppressed_by` maps a
    synonym to a canonical object whose mention cancels it ("seat" -> "toilet").
    """

    def __init__(
        self,
        synonyms: Mapping[str, Iterable[str]],
        *,
        phrases: Mapping[str, str] | None = None,
        suppressed_by: Mapping[str, str] | None = None,
    ) -> None:
        if not synonyms:
            raise ValueError("MentionExtractor needs at least one object in its synonym table")
        self.categories = [_normalise(name) for name in synonyms]
        self._synonym_of: dict[tuple[str, ...], tuple[str, str]] = {}
        self._build_table(synonyms)
        self._add_phrases(phrases or {})
        self._suppressed_by = {_normalise(k): _normalise(v) for k, v in (suppressed_by or {}).items()}
        self._longest = max(len(key) for key in self._synonym_of)

    def _build_table(self, synonyms: Mapping[str, Iterable[str]]) -> None:
        listed: dict[tuple[str, ...], tuple[str, str]] = {}
        generated: dict[tuple[str, ...], tuple[str, str]] = {}
        for canonical, forms in synonyms.items():
            canonical = _normalise(canonical)
            for synonym in dict.fromkeys([canonical, *(_normalise(f) for f in forms)]):
                if not synonym:
                    continue
                key = tuple(tokenize(synonym))
                previous = listed.get(key)
                if previous and previous[0] != canonical:
                    raise ValueError(
                        f"synonym {synonym!r} is listed under both {previous[0]!r} and {canonical!r}"
                    )
                listed[key] = (canonical, synonym)
                for form in phrase_forms(synonym):
                    generated.setdefault(form, (canonical, synonym))
        # A listed form always wins over a generated plural of another entry.
        self._synonym_of = {**generated, **listed}

    def _add_phrases(self, phrases: Mapping[str, str]) -> None:
        for phrase, replacement in phrases.items():
            target = self._synonym_of.get(tuple(tokenize(replacement)))
            for form in phrase_forms(phrase):
                # None marks a phrase that names no object (e.g. "train track").
                self._synonym_of[form] = target  # type: ignore[assignment]

    def canonical(self, name: str) -> str | None:
        """The canonical object a single name stands for (e.g. a COCO category), else None."""
        hit = self._synonym_of.get(tuple(tokenize(name)))
        return hit[0] if hit else None

    def matches(self, text: str) -> list[Mention]:
        """Every object mention in reading order, longest match first, rules applied."""
        tokens = tokenize(text)
        found: list[Mention] = []
        i = 0
        while i < len(tokens):
            for length in range(min(self._longest, len(tokens) - i), 0, -1):
                key = tuple(tokens[i : i + length])
                if key in self._synonym_of:
                    hit = self._synonym_of[key]
                    if hit is not None:
                        found.append(Mention(hit[0], hit[1], i, length))
                    i += length
                    break
            else:
                i += 1
        named = {m.canonical for m in found}
        return [m for m in found if self._suppressed_by.get(m.synonym) not in named]

    def mentions(self, text: str) -> list[str]:
        """Canonical names of every mention, in order, repeats kept (CHAIRi counts them)."""
        return [m.canonical for m in self.matches(text)]

    def objects(self, text: str) -> set[str]:
        """The set of canonical objects the text names."""
        return set(self.mentions(text))


def _normalise(name: str) -> str:
    return " ".join(tokenize(name))


def parse_synonym_lines(text: str) -> dict[str, list[str]]:
    """CHAIR's synonyms.txt format: one category per line, `canonical, synonym, ...`."""
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = [w.strip() for w in line.split(",") if w.strip()]
        if words:
            table[words[0]] = words[1:]
    return table


@lru_cache(maxsize=1)
def coco_synonyms() -> dict[str, list[str]]:
    """The 80 MSCOCO categories and their synonyms, as in Rohrbach et al.'s data/synonyms.txt."""
    text = resources.files("mfpo_runtime.data").joinpath("coco_synonyms.txt").read_text()
    return parse_synonym_lines(text)


def coco_phrases() -> dict[str, str]:
    """CHAIR's MSCOCO phrase rules: double words, baby/adult animals, passenger vehicles."""
    phrases = {word: word for word in _COCO_DOUBLE_WORDS}
    for animal in _COCO_ANIMAL_WORDS:
        phrases[f"baby {animal}"] = animal
        phrases[f"adult {animal}"] = animal
    for vehicle in _COCO_VEHICLE_WORDS:
        phrases[f"passenger {vehicle}"] = vehicle
    phrases["bow tie"] = "tie"
    phrases["toilet seat"] = "toilet"
    return phrases


@lru_cache(maxsize=1)
def coco_extractor() -> MentionExtractor:
    """CHAIR's extractor for the 80 COCO categories (Object HalBench, AMBER's COCO-like nouns)."""
    return MentionExtractor(
        coco_synonyms(), phrases=coco_phrases(), suppressed_by={"seat": "toilet"}
    )


def synthetic_extractor() -> MentionExtractor:
    """The extractor of the synthetic scenes world (its exact object vocabulary)."""
    from mfpo_runtime.data import scenes  # lazily: the world module is heavier (PIL, numpy)

    return MentionExtractor(scenes.OBJECT_SYNONYMS)
