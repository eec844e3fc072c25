"""Keyword ranking of a chosen answer: the multipartite-graph PageRank of MFPO (paper, Sec. 3.1),
over the object noun phrases of the answer.

The keywords are what the grounder is asked to find and the noise then covers, so each must name
an object of the picture. The method is MultipartiteRank (Boudin 2018, "Unsupervised Keyphrase
Extraction with Multipartite Graphs", NAACL; pke's `unsupervised/graph_based/multipartiterank.py`)
with MFPO's edge weights:

1. Candidates (Boudin: the longest sequences of adjectives and nouns, by part of speech). The
   answer is tagged by TextBlob's Pattern tagger (the one AMBER uses here: its lexicon ships in
   the wheel), then a few contextual repairs fix its known misreadings of caption text
   (`repair_tags`). A candidate is the noun sequence of a noun phrase (its last `MAX_COMPOUND`
   nouns): compounds stay whole ("fire truck", "coffee table", "traffic light"); adjectives,
   participles and numbers are left out of the keyword ("a brown horse" -> "horse": see
   below). Left out entirely: noun
   phrases whose head noun names the picture or a place in it (`PICTURE_WORDS`: "image",
   "background", "left", "objects"), the place the whole picture shows (`SETTING_WORDS`:
   "kitchen", "city"; grounding it noises the whole image, the paper's global-noise ablation),
   no thing at all (`ABSTRACT_WORDS`: "atmosphere", "day", "color", "picnic"), a quantity
   before "of" (`PARTITIVE_WORDS`: "a herd of cows" -> "cows"), or an object said to be absent
   ("no people", "without a hat"). A candidate is identified by its nouns with the head noun
   singular ("horses" and "horse" are one candidate); its keyword is its singular surface form
   if the answer uses one, else its first surface form ("cows").
2. Topics (Boudin: hierarchical clustering of candidates by word overlap). Candidates with the
   same head noun are one topic ("fire truck", "truck"): one object kind, however modified.
3. The graph (Boudin: a complete multipartite graph, edges only between candidates of different
   topics, weight sum 1/gap over occurrence pairs, gap the word distance less the earlier
   phrase's extra length). The weights here are MFPO's:

       w_ij = sum_{l_i, l_j} 1 / (1 + |l_i - l_j|^phi)  +  gamma * max(cos(v_i, v_j), 0)

   over every pair of occurrence positions (l = word index of the phrase's first noun, Boudin's
   offset) plus gamma times the cosine of the candidates' vectors: with phi = 1 and gamma = 0
   this is Boudin's weight with 1 + distance for his gap.
4. Boudin's weight adjustment: within a topic of several candidates, edges into its first
   occurring candidate gain alpha * exp(1 / (1 + l_first)) times the weights of the topic's
   other candidates to the same node (so "fire truck" said first outranks a later "truck");
   alpha = 1.1, pke's default (`KeywordParams.alpha`, not an API field).
5. PageRank (damping d), with MFPO's positional decay as the random surfer's prior: a
   candidate's share is sum_l exp(-lambda * l) over its occurrences, normalised (early and
   frequent mentions matter more; Boudin's surfer jumps uniformly). Boudin returns the n best
   candidates; here the best candidate of each topic, top-K overall (TopicRank's rule), so two
   forms of one object never take two of the K regions.

The paper's hyper-parameters keep their meaning: `phi`, `gamma`, `decay` (lambda), `damping`
and `top_k` of `api.KeywordSpec`. Measured (benchmarks/keyword_precision.py): 0.977 of the top
3 name a hand-labelled object on 57 free-form answers, against 0.509 for the ranker before,
whose candidates were every content word; 0.960 on 25 answers a tester brought with their own
photographs and similar ones (0.824 before repair rule 6, the possessive, the pattern words and
the control characters below).

English only: the tagger, its lexicon and the candidate grammar are English. An answer in a
script without spaces (Chinese) or another alphabet (Arabic) gives no candidate, hence the
whole-image fallback; one in another Latin-script language gives wrong ones (its articles and
verbs read as nouns). `english_share` is the cheap sign datagen counts and warns about.
Control and format characters (Unicode Cc, Cf, Zl, Zp: NUL, U+200B, U+2028) are read as spaces
and the typographic apostrophe as "'" (`text_for_ranking`); the record's text is not changed.

Adjectives: the keyword is the object's nouns ("horse", not "brown horse"). A text-prompted
segmenter grounds the object class either way, and an adjective can only cost a match: the
Grounding-DINO grounder (`grounding.GroundingSamGrounder.detect`) keeps a box for a keyword only
when every keyword word is in the box's label, which holds only the prompt words whose scores
pass the text threshold; a colour word the tagger misreads, or one that describes another
instance, loses the object; size words ("small", "tall") are relative. Annotations resolve
either form.

Word vectors (the semantic term): `HashingVectors` (default) needs no model: character n-grams
hashed into a fixed space (fastText's subword idea) make surface forms of one word similar and
unrelated words near-orthogonal, deterministically. `EmbeddingVectors` uses a model's own input
embeddings (tokenizer + embedding matrix). A multi-word candidate is embedded as one string.

Cost: tagging is linear in the answer; the graph is quadratic in the candidates (the edge sums
are over occurrence pairs), PageRank a fixed number of matrix-vector products on it.

Called by the datagen stage and the benchmarks. Pure text code: numpy and textblob.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# ------------------------------------------------------------------ word lists


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Head nouns that never name a groundable object. Each list is closed and short; a word is in it
# because, as the head of a noun phrase in a description of a picture, it names:

# the picture itself, its parts and directions in it ("on the left side of the image", "in the
# background", "the objects are ..."): grounding them finds nothing or everything.
PICTURE_WORDS = _words(
    "image images picture pictures photo photos photograph photography pic snapshot shot frame "
    "scene scenery view object objects item items thing things background foreground side sides "
    "left right top bottom center centre middle front back rear corner corners edge edges border "
    "area areas part parts portion section region spot distance horizon surroundings space "
    "position location place direction perspective angle focus composition close-up closeup "
    "detail details end ends"
)
# a place the whole picture shows: the grounder's region would be the whole image (the paper's
# global-noise ablation, not a keyword region). Surfaces inside a picture (road, street, field,
# beach, grass, sky, water) are not here: they are bounded regions.
SETTING_WORDS = _words(
    "room kitchen bedroom bathroom office restaurant cafe market supermarket mall city town "
    "village downtown neighborhood neighbourhood countryside landscape park zoo farm airport "
    "campsite savanna harbor harbour site setting environment interior exterior outdoors "
    "indoors"
)
# no thing at all: qualities, colours as nouns, patterns on a surface ("a cat with brown
# stripes": the cat is the object), moods, times, weather, events and activities.
ABSTRACT_WORDS = _words(
    "stripe stripes pattern patterns polka dot dots "
    "color colour colors colours shade shades hue tone tint atmosphere ambiance ambience mood "
    "vibe feel feeling sense style design texture appearance look variety moment time day "
    "night morning afternoon evening sunset sunrise dusk dawn daytime nighttime season summer "
    "winter autumn weather rain sunshine sunlight daylight event party celebration ceremony "
    "festival picnic performance concert game match race competition trick ride trip journey "
    "activity activities action meal breakfast brunch lunch dinner supper traffic attention "
    "interest purpose idea life beauty quality condition state size shape height amount "
    "number presence absence red blue green yellow white black brown gray grey pink purple "
    "one ones other others something anything everything nothing someone anyone everyone "
    "somebody anybody everybody nobody rest kind type sort way lot lots first last few many "
    "several all none"
)
# quantities and groups: in "a herd of cows", "a pair of scissors", "a stack of papers" the
# object is what follows "of". (Containers are objects: "a bowl of apples" keeps the bowl.)
PARTITIVE_WORDS = _words(
    "group groups herd herds flock flocks pack swarm school bunch bunches bundle cluster pair "
    "pairs couple set stack stacks pile piles heap row rows line lines column number variety "
    "assortment collection array selection range series lot lots plenty dozen dozens handful "
    "piece pieces slice slices sprig mound roll bit part portion kind type sort amount layer "
    "strip"
)
NOT_OBJECTS = PICTURE_WORDS | SETTING_WORDS | ABSTRACT_WORDS
# A compound keeps its last nouns up to this many ("chocolate birthday cake" is 3): a longer
# run of nouns is unknown words the tagger defaulted to nouns, and a grounder's prompt is short.
MAX_COMPOUND = 4
NEGATIONS = frozenset({"no", "not", "without", "nor", "never"})

# ------------------------------------------------------------------ part of speech

NOUN = {"NN", "NNS", "NNP", "NNPS"}
# Tags that may stand between a determiner and its head noun.
MODIFIER = {"JJ", "JJR", "JJS", "VBN", "VBG", "RB", "CD"}
DETERMINERS = {"a", "an", "the", "this", "these", "those", "each", "every", "another", "both"}
DETERMINERS |= {"some", "any", "no", "all", "my", "your", "his", "her", "its", "our", "their"}
BE = frozenset({"be", "is", "are", "was", "were", "been", "being", "am"})
SINGULAR_DETERMINERS = {"a", "an", "one", "this", "each", "every", "another"}
AUXILIARIES = _words(
    "be is are was were been being am have has had having do does did can could will would "
    "shall should may might must"
)
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([A-Z])(?=[a-z])")
# What may follow an intransitive verb where a noun compound would go on (repair rule 6): a
# preposition or subordinator, a particle, an adverb, "to", or the clause's punctuation (the
# Pattern tagger tags ";" ":" and "-" as ":").
CLAUSE_GOES_ON = frozenset({"IN", "RP", "RB", "TO", ",", ".", ":"})
# Plural nouns English puts before another noun ("sports car", "sales counter", "glasses
# case"): a noun after them is their compound's head, not their verb (repair rule 6).
ATTRIBUTIVE_PLURALS = _words(
    "sports arms sales savings goods clothes glasses news parts drinks kids customs games "
    "communications electronics arts jeans pants trousers shorts overalls"
)


def is_letter_word(word: str) -> bool:
    """Letters, maybe joined by - or ' ("t-shirt"), at least one of them ASCII: a word of a
    language written in Latin letters ("crème brûlée"). The grounders are prompted in English;
    a token of another script (the tagger does not split unspaced scripts) is never a keyword."""
    parts = word.replace("'", "-").split("-")
    return all(p.isalpha() for p in parts) and any(c.isascii() for c in word)


@dataclass(frozen=True)
class Token:
    word: str  # lower-cased
    tag: str  # Penn Treebank tag, after `repair_tags`
    position: int  # index among the answer's words (punctuation not counted)


# Unicode categories that are no part of any word (Cc: control characters such as NUL; Cf:
# format characters such as U+200B or the ZWJ of emoji; Zl, Zp: U+2028, U+2029). The tagger's
# tokenizer splits on spaces and punctuation only, so "cat\x00" would be one unknown token and
# the cat would be lost.
NOT_TEXT_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
APOSTROPHE = "\u2019"  # RIGHT SINGLE QUOTATION MARK, Unicode's preferred apostrophe ("man’s")


def text_for_ranking(answer: str) -> str:
    """The answer as the tagger reads it: characters of NOT_TEXT_CATEGORIES as spaces, the
    typographic apostrophe as "'" (so that "man’s hat" is read as "man's hat"). For keyword
    ranking only: the record's own text is never changed."""
    if answer.isprintable() and APOSTROPHE not in answer:  # the common case, at C speed
        return answer
    spaced = "".join(" " if unicodedata.category(c) in NOT_TEXT_CATEGORIES else c for c in answer)
    return spaced.replace(APOSTROPHE, "'")


def tag_words(answer: str) -> list[tuple[str, str]]:
    """(word, tag) pairs by TextBlob's Pattern tagger (imported on first use: importing textblob
    loads nltk, about half a second; the lexicon loads on the first answer).

    Sentence-initial capitals are lowered first: the tagger reads an unknown capitalised word
    as a proper noun ("Blue towels" -> NNP NNS)."""
    from textblob.en import tag  # what textblob's PatternTagger.tag calls

    text = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).lower(), text_for_ranking(answer))
    return [(word, pos) for word, pos in tag(text)]


def _lexicon() -> dict[str, str]:
    """The Pattern tagger's English lexicon (word -> its most frequent Penn tag, 94k words from
    the Brown corpus and the Penn Treebank, textblob/en/en-lexicon.txt); loaded on first use."""
    from textblob.en import lexicon

    return lexicon


_LETTER_RUN = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")  # letters of any script


def english_share(answer: str) -> float:
    """The share of the answer's words (runs of letters, any script) that the tagger's English
    lexicon knows; 0.0 for an answer without a letter. A cheap sign of the answer's language:
    the tagger and the candidate grammar are English, and on another language they give no
    candidate or wrong ones (articles and verbs inside noun phrases). Measured: at least 0.89
    on 101 of the 102 English answers of tests/fixtures/keyword_answers*.jsonl (0.53 on the
    one that is half Arabic and Hebrew), at most 0.28 on descriptions in German, French,
    Spanish, Italian, Dutch and Portuguese, 0 on Chinese, Arabic and emoji alone
    (tests/runtime/data/test_keywords.py)."""
    words = _LETTER_RUN.findall(text_for_ranking(answer))
    if not words:
        return 0.0
    lexicon = _lexicon()
    known = sum(1 for w in words if _english_tag(lexicon.get(w) or lexicon.get(w.lower())))
    return known / len(words)


def _english_tag(tag: str | None) -> bool:
    """A lexicon tag of an English word: not FW, which the lexicon gives the foreign words of
    its corpora ("une", "sur", "est", "la")."""
    return tag is not None and tag != "FW"


ENGLISH_SHARE = 0.6  # below it an answer "looks non-English" (see english_share's figures)


def looks_english(answer: str) -> bool:
    return english_share(answer) >= ENGLISH_SHARE


@functools.lru_cache(maxsize=1 << 12)
def has_verb_reading(word: str) -> bool:
    """Whether English uses `word` as a verb, by the lexicon: the word is tagged VB/VBP, or one
    of its regular inflections (`verb_inflections`: "shines", "branched", "shining") is tagged
    as that inflection. The lexicon keeps one tag a word, its most frequent ("shine" NN, "branch"
    NN), so the inflections say it."""
    lexicon = _lexicon()
    if lexicon.get(word) in {"VB", "VBP"}:
        return True
    return any(lexicon.get(form) in tags for form, tags in verb_inflections(word).items())


def verb_inflections(word: str) -> dict[str, set[str]]:
    """The regular third-person, past and -ing forms of a base verb, with their Penn tags
    (English spelling rules: "branch" -> "branches", "shine" -> "shined", "shining", "stop" ->
    "stopped", "carry" -> "carries"). A one-syllable word ending consonant-vowel-consonant
    doubles its consonant ("car" -> "carred", never "cared", which is "care"'s)."""
    consonant_y = re.search("[^aeiou]y$", word) is not None
    if re.search("(s|x|z|ch|sh|o)$", word):
        third = f"{word}es"
    else:
        third = f"{word[:-1]}ies" if consonant_y else f"{word}s"
    if word.endswith("e"):
        past, ing = f"{word}d", f"{word if word.endswith(('ee', 'ye', 'oe')) else word[:-1]}ing"
    elif consonant_y:
        past, ing = f"{word[:-1]}ied", f"{word}ing"
    elif len(re.findall("[aeiou]+", word)) == 1 and re.search("[^aeiou][aeiou][^aeiouwxy]$", word):
        past, ing = f"{word}{word[-1]}ed", f"{word}{word[-1]}ing"
    else:
        past, ing = f"{word}ed", f"{word}ing"
    return {third: {"VBZ"}, past: {"VBD", "VBN"}, ing: {"VBG"}}


def repair_tags(tagged: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Contextual repairs of the Pattern tagger's misreadings in descriptions of pictures.

    The tagger gives every known word its most frequent tag (a newswire lexicon: "sink", "shed",
    "monitor" VB; "net", "platter" JJ) and its context rules miss these, which English grammar
    settles (Brill-style rules, written by hand because no tagger with a better model ships
    without a download):

    1. A word tagged VB/VBP/VBZ/JJ/MD that ends a determiner phrase whose other words are only
       modifiers is its head noun: "the sink .", "a net .", "the stands behind", "a watering
       can has" (a modal only when no verb follows: "a bee can be seen" keeps its modal); a
       VB/VBP/MD there before a noun is a compound's first noun: "the lead singer". (Not an
       adjective before "to": "a cat next to".)
    2. A VB/VBP/MD right after a singular noun that a determiner introduces cannot be that
       noun's verb (no agreement; unless the noun ends a coordination, "a man and a woman
       walk"): it is a compound's noun, "a teddy bear ,", "a fruit stand at", "a trash can
       sits", "a concrete skate park".
    3. A noun followed by a determiner or an object pronoun, right after a noun, verb, modal,
       "to" or adverb, is a verb: "the image features a", "buildings line both", "to kick the".
    4. A plural noun ending a phrase that a singular determiner opens, after a noun, is a verb:
       "a zebra grazes on".
    5. An -ing word tagged noun after a form of "be", or after a plural noun and followed by a
       preposition or determiner, is a participle: "a woman is cooking", "zebras drinking from".
    6. The last noun of a noun run right after a plural noun, in its base form, which English
       uses as a verb (`has_verb_reading`), before a preposition, particle, adverb, "to" or the
       end of a clause, is that plural subject's verb: "floodlights shine at", "blood vessels
       branch out". Not when a singular determiner opens the run ("a glasses case on": the
       run's head agrees with it) or the plural is one English puts before a noun
       (`ATTRIBUTIVE_PLURALS`: "the sports field at").

    The possessive "'s" (tokenized as "'" POS, "s") and the plural possessive "'" after a noun
    open the phrase that follows, as a determiner does, for rule 1 ("the man's watch is": a
    noun, not a verb); not for an adjective or a modal, which "'s" as "is" also precedes ("the
    man's tall").
    """
    words = [w.lower() for w, _ in tagged]
    tags = [t for _, t in tagged]
    n = len(tags)
    for i in range(1, n):  # "man" "'" "s": the "s" is the possessive's, not a pronoun
        if words[i] == "s" and tags[i - 1] == "POS":
            tags[i] = "POS"

    def ends_phrase(i: int) -> bool:
        return i + 1 >= n or not (
            tags[i + 1] in NOUN or tags[i + 1] in MODIFIER or tags[i + 1] == "POS"
        )

    def opener(i: int, passable: set[str]) -> int | None:
        """Index of the determiner that opens the phrase ending at i (`passable` tags between)."""
        j = i - 1
        while j >= 0 and tags[j] in passable and not is_opener(j):
            j -= 1
        return j if j >= 0 and is_opener(j) else None

    def is_opener(j: int) -> bool:  # a determiner, a possessive or a number ("two bears")
        return words[j] in DETERMINERS or tags[j] in {"PRP$", "CD"} or possessive(j)

    def possessive(j: int) -> bool:  # "the man 's" / "the girls '": after a noun
        k = j - 1 if words[j] == "s" else j
        return tags[j] == "POS" and k > 0 and tags[k - 1] in NOUN

    repaired: set[int] = set()
    # Rules 1 and 2 right to left: a phrase's head is settled before the words before it
    # ("two brown bears are": "bears" becomes the head, so "brown" stays its adjective).
    for i in reversed(range(n)):
        word, pos = words[i], tags[i]
        if word in AUXILIARIES and pos != "MD" or not is_letter_word(word):
            continue
        modal_then_verb = pos == "MD" and i + 1 < n and tags[i + 1] in {"VB", "RB"}
        verb_like = pos in {"VB", "VBP", "MD"} and not modal_then_verb
        before_noun = i + 1 < n and tags[i + 1] in NOUN
        if not (pos in {"VB", "VBZ", "JJ"} or verb_like):
            continue
        if not (ends_phrase(i) or verb_like and before_noun):
            continue
        if pos == "JJ" and i + 1 < n and words[i + 1] == "to":  # "next to", "close to"
            continue
        start = opener(i, MODIFIER)
        if start is not None and possessive(start) and pos in {"JJ", "MD"}:
            continue  # "the man's tall": "'s" is "is"
        if start is not None and i > 0 and tags[i - 1] not in NOUN:  # rule 1
            tags[i] = "NNS" if pos == "VBZ" else "NN"
            repaired.add(i)
        elif verb_like and i > 0 and tags[i - 1] == "NN":  # rule 2
            start = opener(i - 1, MODIFIER | NOUN)
            coordinated = start is not None and start > 0 and tags[start - 1] == "CC"
            if start is not None and not coordinated:
                tags[i] = "NN"
                repaired.add(i)
    # Rules 3 to 5 left to right, on the nouns the tagger gave.
    for i in range(1, n):
        word, pos = words[i], tags[i]
        if i in repaired:
            continue
        if pos in NOUN and i + 1 < n:
            after = words[i + 1] in DETERMINERS or tags[i + 1] in {"PRP", "PRP$"}
            before = tags[i - 1] in NOUN or tags[i - 1][:2] in {"VB", "MD", "TO", "RB"}
            if after and words[i + 1] != "that" and before:  # rule 3
                tags[i] = "VBZ" if pos == "NNS" else "VB"
                continue
        if pos == "NNS" and tags[i - 1] == "NN" and ends_phrase(i):  # rule 4
            start = opener(i, MODIFIER | NOUN)
            singular_opener = start is not None and words[start] in SINGULAR_DETERMINERS
            if singular_opener and words[i - 1] not in PARTITIVE_WORDS:
                tags[i] = "VBZ"
                continue
        if pos == "NN" and word.endswith("ing"):  # rule 5
            progressive = words[i - 1] in BE
            after_plural = (
                tags[i - 1] == "NNS" and i + 1 < n and tags[i + 1] in {"IN", "DT", "PRP", "PRP$"}
            )
            if progressive or after_plural:
                tags[i] = "VBG"
                continue
        if pos == "NN" and tags[i - 1] == "NNS" and (i + 1 == n or tags[i + 1] in CLAUSE_GOES_ON):
            start = opener(i, MODIFIER | NOUN)  # rule 6
            singular_opener = start is not None and words[start] in SINGULAR_DETERMINERS
            attributive = words[i - 1] in ATTRIBUTIVE_PLURALS
            if not singular_opener and not attributive and has_verb_reading(word):
                tags[i] = "VBP"
    return list(zip([w for w, _ in tagged], tags))


def tokens(answer: str) -> list[Token]:
    """The answer's tagged words (repaired), lower-cased, with their word positions."""
    out, position = [], 0
    for word, pos in repair_tags(tag_words(answer)):
        is_word = any(c.isalnum() for c in word)
        out.append(Token(word.lower(), pos, position if is_word else -1))
        position += is_word
    return out


# ------------------------------------------------------------------ candidates


def singular(word: str, tag: str = "NNS") -> str:
    """The singular of a plural noun (TextBlob's inflection rules); other words unchanged."""
    return _singularize(word) if tag in {"NNS", "NNPS"} else word


@functools.lru_cache(maxsize=1 << 14)
def _singularize(word: str) -> str:
    from textblob.en.inflect import singularize

    return singularize(word)


@dataclass
class Candidate:
    """An object noun phrase: its nouns, where it occurs, and the form a grounder is given."""

    key: tuple[str, ...]  # its nouns, the head singular: ("fire", "truck")
    positions: list[int] = field(default_factory=list)  # word index of each occurrence's first noun
    forms: list[str] = field(default_factory=list)  # surface forms, in order

    @property
    def head(self) -> str:
        return self.key[-1]

    @property
    def keyword(self) -> str:
        """The singular form if the answer uses one, else the first form."""
        singular_form = " ".join(self.key)
        return singular_form if singular_form in self.forms else self.forms[0]


def noun_phrases(toks: Sequence[Token]) -> list[tuple[int, int, bool]]:
    """Every maximal run of nouns, as (start, end) indices into `toks`, with whether the phrase
    it heads is negated ("no other surfers", "without a hat")."""
    runs: list[tuple[int, int, bool]] = []
    i = 0
    while i < len(toks):
        if toks[i].tag not in NOUN or toks[i].position < 0:
            i += 1
            continue
        end = i
        while end < len(toks) and toks[end].tag in NOUN and toks[end].position >= 0:
            end += 1
        k = i - 1  # back over the phrase's modifiers and determiner
        while k >= 0 and toks[k].word not in NEGATIONS:
            if toks[k].tag not in MODIFIER and toks[k].word not in DETERMINERS:
                break
            k -= 1
        runs.append((i, end, k >= 0 and toks[k].word in NEGATIONS))
        i = end
    return runs


def candidates(answer: str) -> dict[tuple[str, ...], Candidate]:
    """The answer's object noun phrases, keyed by their nouns (head singular), in order."""
    toks = tokens(answer)
    found: dict[tuple[str, ...], Candidate] = {}
    for start, end, negated in noun_phrases(toks):
        run, head = toks[max(start, end - MAX_COMPOUND) : end], toks[end - 1]
        lemma = singular(head.word, head.tag)
        partitive = lemma in PARTITIVE_WORDS and end < len(toks) and toks[end].word == "of"
        if negated or partitive or lemma in NOT_OBJECTS or head.word in NOT_OBJECTS:
            continue
        if not all(is_letter_word(t.word) for t in run):
            continue
        key = (*(t.word for t in run[:-1]), lemma)
        candidate = found.setdefault(key, Candidate(key))
        candidate.positions.append(run[0].position)
        candidate.forms.append(" ".join(t.word for t in run))
    return found


# ------------------------------------------------------------------ word vectors


class WordVectors(Protocol):
    def __call__(self, words: Sequence[str]) -> np.ndarray:
        """Unit-norm vectors, shape (len(words), D)."""


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


@dataclass(frozen=True)
class HashingVectors:
    """Character n-gram (3..5, with word boundary marks) counts hashed into `dim` buckets."""

    dim: int = 512
    min_n: int = 3
    max_n: int = 5

    def __call__(self, words: Sequence[str]) -> np.ndarray:
        counts = [_ngram_counts(word.lower(), self.dim, self.min_n, self.max_n) for word in words]
        return _normalise(np.array(counts, dtype=np.float32).reshape(len(words), self.dim))


@functools.lru_cache(maxsize=1 << 16)
def _ngram_counts(word: str, dim: int, min_n: int, max_n: int) -> np.ndarray:
    """The hashed n-gram counts of one word, (D,) float32; cached: answers repeat their words."""
    row = np.zeros(dim, dtype=np.float32)
    marked = f"<{word}>"
    for n in range(min_n, max_n + 1):
        for start in range(len(marked) - n + 1):
            row[zlib.crc32(marked[start : start + n].encode()) % dim] += 1.0
    row.flags.writeable = False
    return row


class EmbeddingVectors:
    """Mean input-embedding of a word's tokens, from a model's tokenizer and embedding matrix."""

    def __init__(self, tokenize: Callable[[str], list[int]], embeddings: np.ndarray) -> None:
        self._tokenize = tokenize
        self._embeddings = embeddings  # (V, D)

    @classmethod
    def from_model(cls, model, tokenizer) -> EmbeddingVectors:
        weight = model.get_input_embeddings().weight.detach().float().cpu().numpy()  # (V, D)
        return cls(lambda w: tokenizer(" " + w, add_special_tokens=False)["input_ids"], weight)

    def __call__(self, words: Sequence[str]) -> np.ndarray:
        rows = []
        for word in words:
            ids = [i for i in self._tokenize(word) if 0 <= i < len(self._embeddings)]
            rows.append(
                self._embeddings[ids].mean(axis=0) if ids else np.zeros(self._embeddings.shape[1])
            )
        return _normalise(np.asarray(rows, dtype=np.float32))


# ------------------------------------------------------------------ the graph


@dataclass(frozen=True)
class KeywordParams:
    """The paper's hyper-parameters (mirrors api.KeywordSpec), and Boudin's alpha."""

    top_k: int = 3
    phi: float = 1.0
    gamma: float = 0.5
    decay: float = 0.05
    damping: float = 0.85
    alpha: float = 1.1  # Boudin's weight adjustment (pke's default); 0 switches it off


def positional_influence(left: Sequence[int], right: Sequence[int], phi: float) -> float:
    """sum over occurrence pairs of 1 / (1 + |l_i - l_j|^phi)."""
    return sum(1.0 / (1.0 + abs(a - b) ** phi) for a in left for b in right)


def edge_weights(
    found: Sequence[Candidate], vectors: np.ndarray, topic: Sequence[int], params: KeywordParams
) -> np.ndarray:
    """(C, C) weights w[i, j] of the edge i -> j: MFPO's weight between candidates of different
    topics, 0 inside a topic, then Boudin's adjustment towards each topic's first candidate."""
    count = len(found)
    cosine = vectors @ vectors.T  # (C, C)
    weights = np.zeros((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            if topic[i] != topic[j]:
                w = positional_influence(found[i].positions, found[j].positions, params.phi)
                weights[i, j] = weights[j, i] = w + params.gamma * max(float(cosine[i, j]), 0.0)
    if params.alpha > 0:
        weights = boost_first_candidates(weights, found, topic, params.alpha)
    return weights


def boost_first_candidates(
    weights: np.ndarray, found: Sequence[Candidate], topic: Sequence[int], alpha: float
) -> np.ndarray:
    """Boudin's weight adjustment (pke `MultipartiteRank.weight_adjustment`): for a topic of
    several candidates, every edge end -> first gains alpha * exp(1 / (1 + l_first)) times the
    summed weights from the topic's other candidates to `end`."""
    adjusted = weights.copy()
    members: dict[int, list[int]] = {}
    for index, label in enumerate(topic):
        members.setdefault(label, []).append(index)
    for variants in members.values():
        if len(variants) < 2:
            continue
        first = min(variants, key=lambda v: found[v].positions[0])
        others = [v for v in variants if v != first]
        position = math.exp(1.0 / (1.0 + found[first].positions[0]))
        boosters = weights[others].sum(axis=0)  # (C,) from the other variants to each node
        for end in np.flatnonzero(weights[first] > 0):
            if boosters[end] > 0:
                adjusted[end, first] += alpha * position * boosters[end]
    return adjusted


def positional_prior(found: Sequence[Candidate], decay: float) -> np.ndarray:
    """sum over occurrences of exp(-lambda * l), normalised to a distribution: (C,)."""
    raw = np.array([sum(math.exp(-decay * p) for p in c.positions) for c in found])
    return raw / raw.sum()


MAX_ITERATIONS, CHECK_EVERY, TOLERANCE = 200, 8, 1e-12  # TOLERANCE: L1 change over 8 steps


def pagerank(weights: np.ndarray, *, damping: float, prior: np.ndarray) -> np.ndarray:
    """Personalised PageRank of the weighted directed graph `weights` (C, C): the stationary
    distribution of the Google matrix G = d * P + (1 - d) * 1 prior^T, where P is `weights`
    row-normalised and a node without out-edges jumps by the prior (networkx's `google_matrix`
    rules; written out in numpy because building a networkx graph per answer cost more than
    the whole ranking, and nx.pagerank needs scipy, which the runtime image does not carry)."""
    out = weights.sum(axis=1, keepdims=True)  # (C, 1)
    transition = np.where(out > 0, weights / np.where(out > 0, out, 1.0), prior[None, :])  # (C, C)
    google = damping * transition + (1.0 - damping) * prior[None, :]  # (C, C)
    rank = np.full(len(prior), 1.0 / len(prior))  # (C,)
    for _ in range(MAX_ITERATIONS // CHECK_EVERY):  # power iteration: O(C^2) a step
        previous = rank
        for _ in range(CHECK_EVERY):  # the convergence test costs more than a step
            rank = rank @ google
        if np.abs(rank - previous).sum() < TOLERANCE:
            break
    return rank / rank.sum()


def score_keywords(
    answer: str, *, params: KeywordParams = KeywordParams(), vectors: WordVectors | None = None
) -> list[tuple[str, float]]:
    """Every topic's best candidate (its keyword) with its PageRank score, best first."""
    found = list(candidates(answer).values())
    if not found:
        return []
    vecs = (vectors or HashingVectors())([c.keyword for c in found])  # (C, D)
    heads = {head: label for label, head in enumerate(dict.fromkeys(c.head for c in found))}
    topic = [heads[c.head] for c in found]
    weights = edge_weights(found, vecs, topic, params)
    rank = pagerank(weights, damping=params.damping, prior=positional_prior(found, params.decay))
    # Ties broken by first position: earlier mention first, deterministic.
    order = sorted(range(len(found)), key=lambda i: (-rank[i], found[i].positions[0]))
    best, seen = [], set()
    for i in order:
        if topic[i] not in seen:
            seen.add(topic[i])
            best.append((found[i].keyword, float(rank[i])))
    return best


def rank_keywords(
    answer: str,
    *,
    top_k: int = 3,
    phi: float = 1.0,
    gamma: float = 0.5,
    decay: float = 0.05,
    damping: float = 0.85,
    vectors: WordVectors | None = None,
) -> list[str]:
    """The top-K keywords of an answer, best first (at most one per object kind)."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    params = KeywordParams(top_k=top_k, phi=phi, gamma=gamma, decay=decay, damping=damping)
    return [word for word, _ in score_keywords(answer, params=params, vectors=vectors)[:top_k]]
