"""Keyword ranking: multipartite-graph PageRank on sentences whose answer is known."""

import numpy as np
import pytest
from mfpo_runtime.data import keywords
from mfpo_runtime.data.keywords import HashingVectors, KeywordParams, rank_keywords


def test_repeated_early_object_ranks_first():
    answer = "The image shows a red apple next to a banana. The apple is on a wooden table."
    assert rank_keywords(answer, top_k=1) == ["apple"]
    assert "banana" in rank_keywords(answer, top_k=3)


def test_two_objects_both_kept_and_function_words_excluded():
    assert rank_keywords("There is a cat and a dog in the image.", top_k=5) == ["cat", "dog"]


def test_plural_and_singular_are_one_candidate():
    words = rank_keywords("Two cats are sleeping on a sofa, and one cat has a collar.", top_k=5)
    assert words[0] == "cat"
    assert "cats" not in words


def test_positional_decay_prefers_the_earlier_word_between_equals():
    # Symmetric two-word graph: only the prior (exp(-lambda * l)) separates them.
    assert rank_keywords("horse zebra", top_k=1, decay=0.5) == ["horse"]
    assert rank_keywords("zebra horse", top_k=1, decay=0.5) == ["zebra"]


def test_no_content_words_gives_no_keywords():
    assert rank_keywords("There is one of them.", top_k=3) == []
    assert rank_keywords("", top_k=3) == []


def test_top_k_is_validated():
    with pytest.raises(ValueError, match="top_k"):
        rank_keywords("a cat", top_k=0)


def test_positional_influence_by_hand():
    # positions {0, 2} vs {1}: 1/(1+1) + 1/(1+1) = 1.0 with phi = 1; phi = 2 gives the same.
    assert keywords.positional_influence([0, 2], [1], 1.0) == pytest.approx(1.0)
    assert keywords.positional_influence([0], [3], 2.0) == pytest.approx(1 / 10)


def test_graph_is_multipartite_and_weights_follow_the_formula():
    positions = {"cat": [1], "cats": [4], "dog": [2]}
    vectors = np.eye(3, dtype=np.float32)  # orthogonal: semantic term 0
    params = KeywordParams(phi=1.0, gamma=0.5)
    graph = keywords.keyword_graph(positions, vectors, [0, 0, 1], params)
    assert not graph.has_edge("cat", "cats")  # same topic: no edge
    assert graph["cat"]["dog"]["weight"] == pytest.approx(1 / 2)
    assert graph["cats"]["dog"]["weight"] == pytest.approx(1 / 3)


def test_semantic_term_adds_gamma_times_cosine():
    vectors = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)  # cosine 0.6
    graph = keywords.keyword_graph({"a": [0], "b": [1]}, vectors, [0, 1], KeywordParams(gamma=0.5))
    assert graph["a"]["b"]["weight"] == pytest.approx(0.5 + 0.5 * 0.6)


def test_positional_prior_by_hand():
    prior = keywords.positional_prior({"a": [0], "b": [1]}, decay=1.0)
    e = np.exp(-1.0)
    assert prior["a"] == pytest.approx(1 / (1 + e))
    assert prior["b"] == pytest.approx(e / (1 + e))


def test_pagerank_matches_networkx_python_reference():
    import networkx as nx
    from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python

    graph = nx.Graph()
    graph.add_weighted_edges_from(
        [("a", "b", 1.0), ("b", "c", 2.0), ("a", "c", 0.5), ("c", "d", 1.0)]
    )
    prior = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    ours = keywords.pagerank(graph, damping=0.85, prior=prior)
    reference = _pagerank_python(graph, alpha=0.85, personalization=prior, tol=1e-12, max_iter=1000)
    for node in graph:
        assert ours[node] == pytest.approx(reference[node], abs=1e-8)


def test_hashing_vectors_make_surface_forms_close():
    vec = HashingVectors()(["table", "tables", "banana"])
    assert vec[0] @ vec[1] > 0.6
    assert vec[0] @ vec[2] < 0.3


def test_embedding_vectors_average_token_embeddings():
    table = {"cat": [0], "dog": [1, 2]}
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 4.0]], dtype=np.float32)
    vectors = keywords.EmbeddingVectors(lambda w: table[w], embeddings)(["cat", "dog"])
    np.testing.assert_allclose(vectors, [[1.0, 0.0], [0.0, 1.0]])


# Rankings and PageRank scores computed by the code before issue 14 (per-word n-gram counts
# are now cached): the same words in the same order, the same scores.
PREVIOUS_CODE = {
    "The image shows a red apple next to a banana on a wooden table, and a cup behind them.": [
        ("wooden", "0x1.88dd4423e8ccap-3"),
        ("table", "0x1.84ecbac24fa73p-3"),
        ("apple", "0x1.6a9e10d784a15p-3"),
        ("red", "0x1.4e1b0715afea1p-3"),
        ("banana", "0x1.4dfd0af054df1p-3"),
        ("cup", "0x1.d6ffbc787c43bp-4"),
    ],
    "There are two cats on the sofa; one cat sleeps while a dog watches the cats from the "
    "carpet.": [
        ("cat", "0x1.40ad676d5e472p-2"),
        ("sleeps", "0x1.41b0709fd1a85p-3"),
        ("dog", "0x1.31047d6f9f945p-3"),
        ("watches", "0x1.2f5ce18f8c938p-3"),
        ("sofa", "0x1.19702c5aa11b0p-3"),
        ("carpet", "0x1.86466a57490d5p-4"),
    ],
}


@pytest.mark.parametrize("answer", sorted(PREVIOUS_CODE))
def test_ranking_equals_the_previous_code(answer):
    expected = PREVIOUS_CODE[answer]
    for _ in range(2):  # cold and warm n-gram cache
        got = keywords.score_keywords(answer)
        assert [w for w, _ in got] == [w for w, _ in expected]
        assert [s for _, s in got] == pytest.approx(
            [float.fromhex(h) for _, h in expected], rel=1e-12
        )


def test_cached_ngram_rows_are_shared_read_only_and_case_folded():
    vectors = keywords.HashingVectors()
    first, again = vectors(["Apple", "pear"]), vectors(["apple", "pear"])
    np.testing.assert_array_equal(first, again)
    row = keywords._ngram_counts("apple", 512, 3, 5)
    assert row is keywords._ngram_counts("apple", 512, 3, 5)
    assert not row.flags.writeable  # a caller cannot corrupt the cache
