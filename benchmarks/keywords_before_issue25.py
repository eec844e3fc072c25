"""The keyword ranker as it was before issue 25 (a frozen copy of runtime/mfpo_runtime/data/keywords.py
at main 3c01d8c), kept so that benchmarks/keyword_precision.py and bench_datagen.py can measure it
side by side with the current one. Its candidates are every content word of the answer.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import networkx as nx
import numpy as np

WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")

# Function words and answer scaffolding never name an image region. Hand-written (a short
# English list) rather than NLTK's corpus: no download at run time.
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "it",
        "its",
        "it's",
        "they",
        "them",
        "their",
        "theirs",
        "he",
        "him",
        "his",
        "she",
        "her",
        "hers",
        "we",
        "us",
        "our",
        "ours",
        "you",
        "your",
        "yours",
        "i",
        "me",
        "my",
        "mine",
        "one",
        "ones",
        "some",
        "any",
        "each",
        "every",
        "all",
        "both",
        "either",
        "neither",
        "no",
        "none",
        "not",
        "nor",
        "and",
        "or",
        "but",
        "so",
        "yet",
        "if",
        "then",
        "than",
        "as",
        "of",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "to",
        "into",
        "onto",
        "upon",
        "over",
        "under",
        "above",
        "below",
        "between",
        "among",
        "through",
        "during",
        "before",
        "after",
        "about",
        "against",
        "with",
        "within",
        "without",
        "along",
        "across",
        "around",
        "behind",
        "beside",
        "besides",
        "near",
        "off",
        "out",
        "up",
        "down",
        "toward",
        "towards",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "also",
        "too",
        "very",
        "just",
        "only",
        "quite",
        "rather",
        "really",
        "more",
        "most",
        "much",
        "many",
        "few",
        "less",
        "least",
        "other",
        "another",
        "such",
        "same",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "while",
        "because",
        "although",
        "though",
        "whether",
        "again",
        "still",
        "even",
        "ever",
        "never",
        "always",
        "often",
        "sometimes",
        "s",
        "t",
        "can't",
        "don't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "there's",
        "here's",
        "what's",
        "image",
        "picture",
        "photo",
        "photograph",
        "scene",
        "shows",
        "show",
        "shown",
        "showing",
        "see",
        "seen",
        "seeing",
        "visible",
        "appears",
        "appear",
        "appearing",
        "looks",
        "look",
        "looking",
        "depicts",
        "depicted",
        "features",
        "featuring",
        "contains",
        "containing",
        "located",
        "placed",
        "sitting",
        "standing",
        "lying",
        "seems",
        "seem",
        "something",
        "thing",
        "things",
        "overall",
        "likely",
        "possibly",
        "perhaps",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "several",
        "next",
        "front",
        "top",
        "bottom",
        "left",
        "right",
        "side",
        "middle",
        "center",
        "centre",
        "background",
        "foreground",
        "part",
    ]
)


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


@dataclass(frozen=True)
class KeywordParams:
    """The paper's hyper-parameters (mirrors api.KeywordSpec)."""

    top_k: int = 3
    phi: float = 1.0
    gamma: float = 0.5
    decay: float = 0.05
    damping: float = 0.85
    topic_similarity: float = 0.6  # cosine above which two candidates are one topic


def singular(word: str) -> str:
    """A naive English singular (cats -> cat, boxes -> box, berries -> berry)."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def candidates(answer: str) -> dict[str, list[int]]:
    """Content words of the answer (lower-cased) -> their word positions (0-based).

    A plural is folded into its singular when both occur ("cat ... cats" is one candidate);
    a plural alone stays as written, since it is the surface form a grounder will see.
    """
    positions: dict[str, list[int]] = defaultdict(list)
    for index, match in enumerate(WORD.finditer(answer)):
        word = match.group(0).lower()
        if word not in FUNCTION_WORDS and len(word) > 1:
            positions[word].append(index)
    for word in [w for w in positions if singular(w) != w and singular(w) in positions]:
        positions[singular(word)] = sorted(positions[singular(word)] + positions.pop(word))
    return dict(positions)


def topics(words: Sequence[str], vectors: np.ndarray, threshold: float) -> list[int]:
    """Topic id per candidate: connected components of the cosine > threshold graph."""
    similar = nx.Graph()
    similar.add_nodes_from(range(len(words)))
    cosine = vectors @ vectors.T  # (W, W)
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if cosine[i, j] > threshold:
                similar.add_edge(i, j)
    topic = [0] * len(words)
    for label, component in enumerate(nx.connected_components(similar)):
        for node in component:
            topic[node] = label
    return topic


def positional_influence(left: Sequence[int], right: Sequence[int], phi: float) -> float:
    """sum over occurrence pairs of 1 / (1 + |l_i - l_j|^phi)."""
    return sum(1.0 / (1.0 + abs(a - b) ** phi) for a in left for b in right)


def keyword_graph(
    positions: dict[str, list[int]], vectors: np.ndarray, topic: list[int], params: KeywordParams
) -> nx.Graph:
    """The weighted multipartite graph: no edge inside a topic."""
    words = list(positions)
    cosine = vectors @ vectors.T  # (W, W)
    graph = nx.Graph()
    graph.add_nodes_from(words)
    for i, a in enumerate(words):
        for j in range(i + 1, len(words)):
            if topic[i] == topic[j]:
                continue
            b = words[j]
            weight = positional_influence(positions[a], positions[b], params.phi)
            weight += params.gamma * max(float(cosine[i, j]), 0.0)
            graph.add_edge(a, b, weight=weight)
    return graph


def positional_prior(positions: dict[str, list[int]], decay: float) -> dict[str, float]:
    """sum over occurrences of exp(-lambda * l), normalised to a distribution."""
    raw = {word: sum(math.exp(-decay * p) for p in where) for word, where in positions.items()}
    total = sum(raw.values())
    return {word: value / total for word, value in raw.items()}


def pagerank(graph: nx.Graph, *, damping: float, prior: dict[str, float]) -> dict[str, float]:
    """Personalised PageRank: networkx builds the Google matrix, numpy finds its stationary
    distribution (nx.pagerank itself needs scipy, which the runtime image does not carry)."""
    nodes = list(graph)
    google = nx.google_matrix(
        graph, alpha=damping, personalization=prior, nodelist=nodes, weight="weight"
    )
    rank = np.full(len(nodes), 1.0 / len(nodes))  # (W,)
    for _ in range(200):
        updated = rank @ google
        if np.abs(updated - rank).sum() < 1e-12:
            break
        rank = updated
    return dict(zip(nodes, (updated / updated.sum()).tolist()))


def score_keywords(
    answer: str, *, params: KeywordParams = KeywordParams(), vectors: WordVectors | None = None
) -> list[tuple[str, float]]:
    """Every topic's best candidate with its PageRank score, best first."""
    positions = candidates(answer)
    if not positions:
        return []
    words = list(positions)
    vecs = (vectors or HashingVectors())(words)  # (W, D)
    topic = topics(words, vecs, params.topic_similarity)
    graph = keyword_graph(positions, vecs, topic, params)
    prior = positional_prior(positions, params.decay)
    rank = pagerank(graph, damping=params.damping, prior=prior)
    # Ties broken by first position: earlier mention first, deterministic.
    order = sorted(words, key=lambda w: (-rank[w], positions[w][0]))
    best, seen = [], set()
    for word in order:
        if topic[words.index(word)] not in seen:
            seen.add(topic[words.index(word)])
            best.append((word, rank[word]))
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
    """The top-K keywords of an answer, best first (at most one per topic)."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    params = KeywordParams(top_k=top_k, phi=phi, gamma=gamma, decay=decay, damping=damping)
    return [word for word, _ in score_keywords(answer, params=params, vectors=vectors)[:top_k]]
