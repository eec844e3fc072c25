"""Object-mention extraction: synonyms, plurals, multi-word names, CHAIR's MSCOCO rules."""

from __future__ import annotations

import pytest
from mfpo_runtime.data.mentions import (
    MentionExtractor,
    coco_extractor,
    coco_synonyms,
    parse_synonym_lines,
    plural_forms,
    tokenize,
)

SMALL = {
    "dog": ["puppy", "hound"],
    "hot dog": ["frankfurter"],
    "teddy bear": [],
    "bear": [],
    "person": ["man", "woman", "child"],
}


def test_tokenize_lowercases_and_splits_punctuation_and_hyphens():
    assert tokenize("A Hot-Dog, two DOGS.") == ["a", "hot", "dog", "two", "dogs"]


@pytest.mark.parametrize(
    "word, expected",
    [
        ("dog", {"dog", "dogs"}),
        ("bus", {"bus", "buses"}),
        ("puppy", {"puppy", "puppies"}),
        ("monkey", {"monkey", "monkeys"}),
        ("knife", {"knife", "knifes", "knives"}),
        ("woman", {"woman", "womans", "women"}),
        ("child", {"child", "childs", "children"}),
        ("sheep", {"sheep", "sheeps"}),
    ],
)
def test_plural_forms(word, expected):
    assert plural_forms(word) == expected


def test_synonyms_and_plurals_map_to_the_canonical_name():
    extractor = MentionExtractor(SMALL)
    assert extractor.mentions("Two puppies and a hound chase the men.") == ["dog", "dog", "person"]
    assert extractor.objects("Children hug a dog") == {"person", "dog"}


def test_longest_match_first_for_multi_word_names():
    extractor = MentionExtractor(SMALL)
    assert extractor.mentions("a hot dog next to a teddy bear") == ["hot dog", "teddy bear"]
    assert extractor.mentions("hot dogs and bears") == ["hot dog", "bear"]
    assert extractor.mentions("a hot-dog") == ["hot dog"]


def test_no_objects_mentioned():
    extractor = MentionExtractor(SMALL)
    assert extractor.mentions("") == []
    assert extractor.objects("The sky is blue.") == set()


def test_words_inside_other_words_do_not_match():
    extractor = MentionExtractor(SMALL)
    assert extractor.objects("dogma doggerel bearing") == set()


def test_matches_report_synonym_and_position():
    extractor = MentionExtractor(SMALL)
    [first, second] = extractor.matches("the puppies saw a frankfurter")
    assert (first.canonical, first.synonym, first.start, first.length) == ("dog", "puppy", 1, 1)
    assert (second.canonical, second.synonym, second.start) == ("hot dog", "frankfurter", 4)


def test_a_synonym_listed_under_two_objects_is_rejected():
    with pytest.raises(ValueError, match="'pup'.*'dog'.*'seal'"):
        MentionExtractor({"dog": ["pup"], "seal": ["pup"]})


def test_canonical_of_a_category_name():
    extractor = MentionExtractor(SMALL)
    assert extractor.canonical("Puppy") == "dog"
    assert extractor.canonical("cat") is None


def test_coco_table_has_the_80_categories_in_coco_order():
    table = coco_synonyms()
    assert len(table) == 80
    names = list(table)
    assert names[:5] == ["person", "bicycle", "car", "motorcycle", "airplane"]
    assert names[-1] == "toothbrush"
    assert {"dining table", "potted plant", "cell phone", "hair drier", "tv"} <= set(names)
    assert "puppy" in table["dog"] and "sofa" in table["couch"]


def test_parse_synonym_lines_strips_whitespace_and_skips_blank_lines():
    assert parse_synonym_lines("cake,  cheesecake\n\nbison \n") == {"cake": ["cheesecake"], "bison": []}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A man rides motor bikes past a hot dog stand.", ["person", "motorcycle", "hot dog"]),
        ("Two baby elephants near a passenger jet.", ["elephant", "airplane"]),  # not person
        ("The toilet seat is up.", ["toilet"]),
        ("A seat beside the toilet.", ["toilet"]),  # 'seat' is no chair next to a toilet
        ("A seat and a table.", ["chair", "dining table"]),
        ("Puppies near the train tracks.", ["dog"]),  # a train track is not a train
        ("Women, children and people with knives, mice and wine glasses.",
         ["person", "person", "person", "knife", "mouse", "wine glass"]),
        ("An iPhone on the desk by the TV and a teddy bear.",
         ["cell phone", "dining table", "tv", "teddy bear"]),
        ("A bow tie.", ["tie"]),
        ("There is a sandwich on the sofa.", ["sandwich", "couch"]),
    ],
)  # fmt: skip
def test_coco_extractor_follows_chair_rules(text, expected):
    assert coco_extractor().mentions(text) == expected
