"""Keyword ranking: object noun phrases ranked by MultipartiteRank with MFPO's edge weights.

The references: the hand-labelled answers of tests/fixtures/keyword_answers.jsonl (precision of
the top 3, measured by benchmarks/keyword_precision.py), Boudin's MultipartiteRank as pke
implements it (weight adjustment worked by hand below), networkx's PageRank, and the synthetic
world's own object lists.
"""

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from mfpo_runtime.data import keywords, scenes
from mfpo_runtime.data.keywords import Candidate, HashingVectors, KeywordParams, rank_keywords

BENCH = Path(__file__).parents[3] / "benchmarks" / "keyword_precision.py"
FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.fixture(scope="module")
def precision():
    spec = importlib.util.spec_from_file_location("keyword_precision", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ keywords are objects


def test_adjectives_and_verbs_are_never_keywords():
    answer = "The image shows a man riding a brown horse on a dirt road next to a wooden fence."
    words = rank_keywords(answer, top_k=10)
    assert set(words) == {"man", "horse", "dirt road", "fence"}
    assert not {"brown", "riding", "wooden", "image", "dirt"} & set(words)


def test_compound_nouns_stay_whole():
    answer = "A red fire truck is parked next to a traffic light, near a coffee table."
    assert set(rank_keywords(answer, top_k=5)) == {"fire truck", "traffic light", "coffee table"}


def test_meta_words_of_captions_are_never_keywords():
    answer = (
        "The main objects in the image are a cup and a donut. In the background, on the left "
        "side of the picture, there is a lamp; the overall atmosphere of the scene is calm."
    )
    assert set(rank_keywords(answer, top_k=10)) == {"cup", "donut", "lamp"}


def test_settings_quantities_and_absent_objects_are_not_keywords():
    answer = (
        "In this kitchen, a herd of cows is painted on a pair of mugs next to a bowl of apples. "
        "There are no people, and the dog is without a collar."
    )
    assert set(rank_keywords(answer, top_k=10)) == {"cows", "mugs", "bowl", "apples", "dog"}


@pytest.mark.parametrize("template", range(len(scenes.ANSWER_TEMPLATES)))
def test_synthetic_world_answers_rank_exactly_their_objects(template):
    # Every scene of up to 3 objects and every 7th of 4, in each answer template ("The objects
    # are ..." too): the keywords are the objects, all of them, nothing else.
    scenes_of = [itertools.combinations(scenes.OBJECTS, count) for count in (1, 2, 3)]
    scenes_of.append(itertools.islice(itertools.combinations(scenes.OBJECTS, 4), 0, None, 7))
    for names in itertools.chain(*scenes_of):
        answer = scenes.caption(list(names), template)
        assert set(rank_keywords(answer, top_k=4)) == set(names), answer


def test_repeated_early_object_ranks_first():
    answer = "The image shows a red apple next to a banana. The apple is on a wooden table."
    assert rank_keywords(answer, top_k=1) == ["apple"]
    assert set(rank_keywords(answer, top_k=3)) == {"apple", "banana", "table"}


def test_plural_and_singular_are_one_candidate_given_as_the_singular():
    words = rank_keywords("Two cats are sleeping on a sofa, and one cat has a collar.", top_k=5)
    assert words[0] == "cat" and "cats" not in words
    # A plural alone stays as written: the surface form the grounder sees.
    assert set(rank_keywords("Three cows graze in a field.", top_k=5)) == {"cows", "field"}


def test_one_topic_per_head_noun_and_the_first_variant_is_kept():
    # "fire truck" said first: Boudin's weight adjustment boosts it over the later "truck".
    words = rank_keywords("A fire truck is parked on a street. The truck is red.", top_k=5)
    assert words.count("fire truck") == 1 and "truck" not in words


def test_positional_decay_prefers_the_earlier_word_between_equals():
    # Symmetric two-candidate graph: only the prior (exp(-lambda * l)) separates them.
    assert rank_keywords("a horse and a zebra", top_k=1, decay=0.5) == ["horse"]
    assert rank_keywords("a zebra and a horse", top_k=1, decay=0.5) == ["zebra"]


def test_no_object_gives_no_keywords():
    assert rank_keywords("There is one of them.", top_k=3) == []
    assert rank_keywords("", top_k=3) == []


def test_only_words_of_latin_letters_are_keywords():
    # The grounders are prompted in English; the tagger leaves an unspaced script in one token.
    assert rank_keywords("一只猫坐在沙发上。", top_k=3) == []
    assert rank_keywords("Кот и собака. A cat.", top_k=3) == ["cat"]
    # (The tagger reads an unknown hyphenated word as an adjective; rule 1 recovers the noun
    # where it ends its phrase.)
    assert set(rank_keywords("A t-shirt and a crème brûlée.", top_k=3)) == {
        "t-shirt",
        "crème brûlée",
    }


def test_a_run_of_unknown_words_keeps_its_last_nouns():
    words = rank_keywords("A cat near " + " ".join(["qzxv"] * 40) + ".", top_k=3)
    assert "cat" in words and all(len(w.split()) <= keywords.MAX_COMPOUND for w in words)


def test_top_k_is_validated():
    with pytest.raises(ValueError, match="top_k"):
        rank_keywords("a cat", top_k=0)


# ------------------------------------------------------------------ the tagger's repairs


@pytest.mark.parametrize(
    ("text", "word", "tag"),
    [
        ("The dog sleeps next to the sink.", "sink", "NN"),  # rule 1: lexicon says VB
        ("A fisherman is untangling a net.", "net", "NN"),  # rule 1: lexicon says JJ
        ("They watch from the stands behind her.", "stands", "NNS"),  # rule 1: VBZ
        ("A watering can has been left.", "can", "NN"),  # rule 1: a modal with no verb after
        ("A bee can be seen.", "can", "MD"),  # ... and a modal before a verb
        ("The lead singer is holding a microphone.", "lead", "NN"),  # rule 1: compound's noun
        ("One bear has a fish in its mouth.", "bear", "NN"),  # rule 1: a number opens it
        ("Two brown bears are standing in a river.", "bears", "NNS"),  # rule 1: VBZ
        ("A teddy bear, a fruit stand at the corner.", "stand", "NN"),  # rule 2
        ("A man and a woman walk on the beach.", "walk", "VB"),  # rule 2: coordination
        ("The image features a boat.", "features", "VBZ"),  # rule 3
        ("Tall buildings line both sides of the street.", "line", "VB"),  # rule 3
        ("A boy is about to kick the ball.", "kick", "VB"),  # rule 3
        ("A zebra grazes on the dry grass.", "grazes", "VBZ"),  # rule 4
        ("Three zebras drinking from a pond.", "drinking", "VBG"),  # rule 5
        ("A woman is cooking in a kitchen.", "cooking", "VBG"),  # rule 5
    ],
)
def test_tag_repairs(text, word, tag):
    tags = {t.word: t.tag for t in keywords.tokens(text)}
    assert tags[word] == tag


def test_word_positions_skip_punctuation():
    toks = keywords.tokens("A cat, a dog.")
    assert [(t.word, t.position) for t in toks if t.position >= 0] == [
        ("a", 0), ("cat", 1), ("a", 2), ("dog", 3)
    ]  # fmt: skip


# ------------------------------------------------------------------ the graph, by hand


def test_positional_influence_by_hand():
    # positions {0, 2} vs {1}: 1/(1+1) + 1/(1+1) = 1.0 with phi = 1; phi = 2 gives the same.
    assert keywords.positional_influence([0, 2], [1], 1.0) == pytest.approx(1.0)
    assert keywords.positional_influence([0], [3], 2.0) == pytest.approx(1 / 10)


def _candidates(*positions: list[int]) -> list[Candidate]:
    return [Candidate((f"c{i}",), list(p), [f"c{i}"]) for i, p in enumerate(positions)]


def test_graph_is_multipartite_and_weights_follow_the_formula():
    found = _candidates([1], [4], [2])  # c0, c1 one topic; c2 another
    vectors = np.eye(3, dtype=np.float32)  # orthogonal: semantic term 0
    weights = keywords.edge_weights(found, vectors, [0, 0, 1], KeywordParams(alpha=0.0))
    assert weights[0, 1] == weights[1, 0] == 0  # same topic: no edge
    assert weights[0, 2] == weights[2, 0] == pytest.approx(1 / 2)
    assert weights[1, 2] == weights[2, 1] == pytest.approx(1 / 3)


def test_semantic_term_adds_gamma_times_cosine():
    vectors = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)  # cosine 0.6
    weights = keywords.edge_weights(
        _candidates([0], [1]), vectors, [0, 1], KeywordParams(gamma=0.5)
    )
    assert weights[0, 1] == pytest.approx(0.5 + 0.5 * 0.6)


def test_weight_adjustment_follows_pke_by_hand():
    # pke MultipartiteRank.weight_adjustment: topic {c0 (first, offset 1), c1}; for every edge
    # c0 -> end, the edge end -> c0 gains alpha * exp(1 / (1 + 1)) * w(c1, end).
    found = _candidates([1], [4], [2], [6])
    base = np.array(
        [[0, 0, 2.0, 1.0], [0, 0, 3.0, 0.5], [2.0, 3.0, 0, 0], [1.0, 0.5, 0, 0]]
    )  # topics {c0, c1} (c0 first, offset 1) and {c2, c3} (c2 first, offset 2)
    adjusted = keywords.boost_first_candidates(base, found, [0, 0, 1, 1], alpha=1.1)
    boost0, boost2 = 1.1 * math.exp(1 / 2), 1.1 * math.exp(1 / 3)
    expected = base.copy()
    expected[2, 0] += boost0 * base[1, 2]  # into c0 from c2, boosted by w(c1, c2)
    expected[3, 0] += boost0 * base[1, 3]
    expected[0, 2] += boost2 * base[3, 0]  # into c2 from c0, boosted by w(c3, c0)
    expected[1, 2] += boost2 * base[3, 1]
    np.testing.assert_allclose(adjusted, expected)


def test_positional_prior_by_hand():
    prior = keywords.positional_prior(_candidates([0], [1]), decay=1.0)
    e = np.exp(-1.0)
    np.testing.assert_allclose(prior, [1 / (1 + e), e / (1 + e)])


def test_pagerank_matches_networkx_python_reference():
    import networkx as nx
    from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python

    weights = np.array(
        [[0, 1.0, 0.5, 0], [1.0, 0, 2.0, 0], [0.5, 4.0, 0, 1.0], [0, 0, 0, 0]]
    )  # directed, and node 3 has no out-edge (it jumps by the prior)
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    ours = keywords.pagerank(weights, damping=0.85, prior=prior)
    graph = nx.from_numpy_array(weights, create_using=nx.DiGraph)
    personal = dict(enumerate(prior))
    reference = _pagerank_python(
        graph, alpha=0.85, personalization=personal, tol=1e-13, max_iter=1000
    )
    np.testing.assert_allclose(ours, [reference[i] for i in range(4)], atol=1e-8)


# ------------------------------------------------------------------ word vectors


def test_hashing_vectors_make_surface_forms_close():
    vec = HashingVectors()(["table", "tables", "banana"])
    assert vec[0] @ vec[1] > 0.6
    assert vec[0] @ vec[2] < 0.3


def test_embedding_vectors_average_token_embeddings():
    table = {"cat": [0], "dog": [1, 2]}
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 4.0]], dtype=np.float32)
    vectors = keywords.EmbeddingVectors(lambda w: table[w], embeddings)(["cat", "dog"])
    np.testing.assert_allclose(vectors, [[1.0, 0.0], [0.0, 1.0]])


def test_cached_ngram_rows_are_shared_read_only_and_case_folded():
    vectors = keywords.HashingVectors()
    first, again = vectors(["Apple", "pear"]), vectors(["apple", "pear"])
    np.testing.assert_array_equal(first, again)
    row = keywords._ngram_counts("apple", 512, 3, 5)
    assert row is keywords._ngram_counts("apple", 512, 3, 5)
    assert not row.flags.writeable  # a caller cannot corrupt the cache


# ------------------------------------------------------------------ precision on labelled answers


def test_names_is_head_noun_or_coco_synonym(precision):
    assert precision.names("brown horse", ["horse"]) and precision.names("horses", ["horse"])
    assert precision.names("puppy", ["dog"]) and precision.names("people", ["man"])
    assert not precision.names("dirt", ["dirt road"]) and not precision.names("brown", ["horse"])


@pytest.mark.parametrize("setting", ["hashed", "none", "model"])
def test_top3_precision_on_the_labelled_answers(precision, setting, request):
    """Issue 25 points 2 and 4: >= 0.9 of the top 3 name a labelled object, whatever the word
    vectors (`model` is the tiny test LLaVA's embeddings: random weights); an answer with three
    or more labelled objects gets three keywords (no precision bought by returning nothing)."""
    vectors, gamma = None, 0.5
    if setting == "none":
        gamma = 0.0
    elif setting == "model":
        from mfpo_runtime.models import load_vlm

        vlm = load_vlm(str(request.getfixturevalue("tiny_llava_dir")))
        vectors = keywords.EmbeddingVectors.from_model(vlm.model, vlm.processor.tokenizer)
    answers = precision.load_answers(FIXTURES / "keyword_answers.jsonl")
    assert len(answers) >= 50
    ranker = precision.current_ranker(vectors, gamma=gamma)
    score = precision.score(ranker, answers)
    assert score.precision >= 0.9, score
    for item in answers:
        if len(item.objects) >= 3:
            assert len(ranker(item.answer)) == 3, item.id


# ------------------------------------------------------------------ own data: free-form English


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Bright floodlights shine at the bottom of the frame.", ["floodlights"]),
        ("Red blood vessels branch out from it across the orange retina.", ["blood vessels", "retina"]),
        ("Candles flicker on a birthday cake.", ["candles", "birthday cake"]),
        ("Two horses graze in a field while clouds drift across the sky.", ["horses", "field", "clouds", "sky"]),
        # a noun after a plural that English puts before nouns, or after a singular determiner,
        # is the compound's head
        ("The sports field at the school is green.", ["sports field", "school"]),
        ("A glasses case lies on the table.", ["glasses case", "table"]),
    ],
)
def test_a_verb_after_a_plural_noun_is_not_glued_onto_it(answer, expected):
    """The tagger's lexicon keeps one tag a word, its most frequent ("shine NN", "branch NN"):
    after a plural subject the word is its verb, which the lexicon's inflections ("shines VBZ",
    "branched VBN") show English has."""
    assert sorted(rank_keywords(answer, top_k=10)) == sorted(expected)
    assert keywords.has_verb_reading("shine") and keywords.has_verb_reading("branch")
    assert not keywords.has_verb_reading("car")


def test_a_possessive_opens_the_phrase_that_follows_it():
    """'s splits two noun phrases, owner and owned: "the man's watch" is a watch (a word the
    lexicon tags VB, so it was dropped); "'s" as "is" before an adjective is no possessive."""
    assert rank_keywords("The man's watch is on the table.", top_k=10) == ["watch", "man", "table"]
    assert set(rank_keywords("A man\u2019s hat and the girls' dresses.", top_k=10)) == {"man", "hat", "girls", "dresses"}
    assert rank_keywords("The man's tall.", top_k=10) == ["man"]
    assert rank_keywords("It's a cat.", top_k=10) == ["cat"]


@pytest.mark.parametrize("character", ["\x00", "\x1c", "\x7f", "\x85", "\u200b", "\u200d", "\u2060", "\ufeff", "\u2028", "\u2029"])
def test_control_and_format_characters_are_spaces_to_the_ranker(character):
    """Unicode's Cc, Cf, Zl and Zp characters are no part of a word (the Unicode Character
    Database, via unicodedata): "A tabby cat\\0 lies" lost its cat to the token "cat\\0"."""
    import unicodedata

    assert unicodedata.category(character) in {"Cc", "Cf", "Zl", "Zp"}
    answer = f"A tabby cat{character} lies on a carpet."
    assert rank_keywords(answer) == ["cat", "carpet"]
    assert answer == f"A tabby cat{character} lies on a carpet."  # the text itself is kept


FOREIGN = {
    "de": "Eine getigerte Katze liegt auf einem grauen Teppich und schaut nach links.",
    "fr": "L'image montre une tasse de café blanche posée sur une soucoupe sur une table en bois.",
    "es": "La imagen muestra un hombre montando un caballo marrón en un camino de tierra.",
    "it": "Un gatto tigrato è sdraiato su un tappeto grigio e guarda verso sinistra.",
    "nl": "Een gestreepte kat ligt op een grijs tapijt en kijkt naar links.",
    "pt": "Um gato malhado está deitado sobre um tapete cinza e olha para a esquerda.",
    "zh": "一只橘色的虎斑猫躺在灰色的地毯上，向左看。",
    "ar": "فنجان قهوة أبيض على صحن فوق طاولة خشبية.",
    "emoji": "☕ 🍽️ 🥄",
}


def test_answers_in_other_languages_look_non_english(precision):
    """The ranker is English only; the cheap sign datagen counts and warns about is the share of
    an answer's words in the tagger's English lexicon. Every English labelled answer passes but
    the one that is half Arabic and Hebrew; descriptions in six other languages do not."""
    english = [
        item
        for name in ("keyword_answers.jsonl", "keyword_answers_heldout.jsonl", "keyword_answers_own_data.jsonl")
        for item in precision.load_answers(FIXTURES / name)
    ]
    assert len(english) == 102
    failing = [item.id for item in english if not keywords.looks_english(item.answer)]
    assert failing == ["od-008"]
    assert all(keywords.english_share(item.answer) >= 0.85 for item in english if item.id != "od-008")
    for language, answer in FOREIGN.items():
        assert keywords.english_share(answer) < 0.3, language
        assert not keywords.looks_english(answer), language
    assert rank_keywords(FOREIGN["zh"]) == rank_keywords(FOREIGN["emoji"]) == []
    assert keywords.looks_english("Yes.") and keywords.looks_english("Two books.")


def test_top3_precision_on_the_own_data_answers(precision):
    """The third labelled set: a tester's own answers and similar ones, labelled before the
    repairs above were written (main's ranker: 0.824); the first two sets do not move."""
    scores = {
        name: precision.score(precision.current_ranker(), precision.load_answers(FIXTURES / name))
        for name in ("keyword_answers_own_data.jsonl", "keyword_answers.jsonl", "keyword_answers_heldout.jsonl")
    }
    own, tuning, held_out = scores.values()
    assert own.answers == 25 and own.precision >= 0.95, own
    assert tuning.precision >= 167 / 171 and held_out.precision >= 59 / 60, scores  # 0.977, 0.983
