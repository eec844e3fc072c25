"""Token classes of the world's captions, and the per-token scores of a tiny model of each family
held to the model's own forward pass (the issue-26 analysis, benchmarks/names_nothing.py)."""

from __future__ import annotations

import pytest
import torch
from mfpo_runtime.data import scenes
from mfpo_runtime.eval import answer_tokens
from mfpo_runtime.eval.answer_tokens import (
    NotACaption,
    answer_token_scores,
    caption_char_classes,
    token_classes,
)
from mfpo_runtime.models import encode, load_vlm
from mfpo_runtime.models.families import FAMILIES
from mfpo_runtime.models.logprobs import sequence_logps
from mfpo_runtime.models.tokenizer import train_tokenizer

T, A, O, S, P, E = "template", "article", "object", "separator", "period", "eos"


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()  # the tiny models' tokenizer, trained on the world's text


def test_template_prefixes_are_the_world_templates_opening_words():
    assert answer_tokens.template_prefixes() == [
        "The image shows", "The objects are", "I can see", "There are", "There is",
    ]  # fmt: skip
    # Every caption the world writes starts with one of them.
    for template in range(len(scenes.ANSWER_TEMPLATES)):
        for names in (["sun"], ["sun", "cloud"], ["house", "car", "umbrella"]):
            text = scenes.caption(names, template)
            assert any(text.startswith(p + " ") for p in answer_tokens.template_prefixes())


def test_characters_of_a_caption_by_hand():
    text = "I can see a sun and an umbrella."
    got = caption_char_classes(text)
    assert len(got) == len(text)
    words = {"I can see": T, " a": A, " sun": O, " and": S, " an": A, " umbrella": O, ".": P}
    expected = [kind for word, kind in words.items() for _ in word]
    assert got == expected


@pytest.mark.parametrize("prefix", [" ", ""])  # LLaVA's answer prefix, Qwen2-VL's
def test_tokens_of_each_template_by_hand(tokenizer, prefix):
    lead = [T] if prefix else []  # the tokenizer keeps the answer prefix " " as a token of its own
    cases = {
        scenes.caption(["sun", "cloud", "umbrella"], 0): [T, T, T, A, O, S, A, O, S, A, O, P, E],
        scenes.caption(["tree"], 1): [T, T, A, O, P, E],  # "There is a tree."
        scenes.caption(["tree", "bird"], 1): [T, T, A, O, S, A, O, P, E],  # "There are ..."
        scenes.caption(["umbrella"], 2): [T, T, T, A, O, P, E],
        scenes.caption(["cup", "donut", "kite"], 3): [T, T, T, A, O, S, A, O, S, A, O, P, E],
    }
    for caption, classes in cases.items():
        assert token_classes(tokenizer, prefix, caption) == lead + classes, caption


def test_a_name_of_several_words_and_a_foreign_merge_are_kept_apart():
    assert caption_char_classes("There is a pine tree.")[-10:] == [O] * 9 + [P]

    class MergingTokenizer:  # a tokenizer that merges "sun." into one token
        def __call__(self, text, **_):
            return {"offset_mapping": [(0, 9), (9, 11), (11, 16)]}  # "I can see", " a", " sun."

    assert token_classes(MergingTokenizer(), "", "I can see a sun.") == [T, A, answer_tokens.MIXED, E]


@pytest.mark.parametrize(
    "text",
    ["The image shows.", "The image shows a.", "Hello a sun.", "The image shows a sun a cloud.",
     "The image shows sun.", "The image shows a sun", "The image shows a sun, and a cloud."],
)  # fmt: skip
def test_what_is_not_a_caption_is_named(text):
    with pytest.raises(NotACaption, match="The image shows|Hello"):
        caption_char_classes(text)


def test_choice_ids_are_articles_and_stops(tokenizer):
    ids = answer_tokens.choice_ids(tokenizer, "</s>")
    assert {tokenizer.convert_tokens_to_string([t]) for t in tokenizer.convert_ids_to_tokens(ids["article"])} == {
        " a", " an"}  # fmt: skip
    stops = tokenizer.convert_ids_to_tokens(ids["stop"])
    assert "</s>" in stops and {tokenizer.convert_tokens_to_string([t]).strip() for t in stops} == {".", "</s>"}


@pytest.mark.parametrize("tiny_model_dir", ["llava", "qwen2-vl"], indirect=True)
def test_scores_match_the_models_own_forward(tiny_model_dir, scene_images):
    """Per-token log-probs sum to the evaluation's `sequence_logps`; p(article) and p(stop) at
    the first article equal the softmax of the model's own logits there (model(**inputs))."""
    vlm = load_vlm(str(tiny_model_dir))
    questions = ["Describe the image.", "What do you see in this image?"]
    captions = [scenes.caption(["sun", "cloud"], 0), scenes.caption(["umbrella"], 2)]
    got = answer_token_scores(vlm, questions, scene_images[:2], captions, batch_size=1)
    batch = encode(vlm.processor, vlm.family, questions, scene_images[:2], captions)
    with torch.no_grad():
        totals = sequence_logps(vlm.model, batch)
        inputs = {k: v for k, v in batch.items() if k != "response_mask"}
        probs = vlm.model(**inputs).logits.float().softmax(-1)  # (B, T, V)
    tok = vlm.processor.tokenizer
    fam = FAMILIES[vlm.family]
    for row, scores in enumerate(got):
        assert sum(scores.logps) == pytest.approx(float(totals[row]), abs=1e-4)
        assert sum(scores.by_class().values()) == pytest.approx(float(totals[row]), abs=1e-4)
        assert scores.classes == token_classes(tok, fam.answer_prefix, captions[row])
        start = int(batch["response_mask"][row].nonzero()[0])  # the answer's first token
        at = start + scores.classes.index("article") - 1  # logits there predict the first article
        article = [tok.convert_tokens_to_ids(t) for t in ("Ġa", "Ġan")]
        stop = [tok.convert_tokens_to_ids(t) for t in (".", fam.eos_token)]
        assert scores.p_article == pytest.approx(float(probs[row, at, article].sum()), abs=1e-5)
        assert scores.p_stop == pytest.approx(float(probs[row, at, stop].sum()), abs=1e-5)
        positions = range(start - 1, start - 1 + len(scores.classes))  # predicting each answer token
        assert scores.p_stops == pytest.approx([float(probs[row, p, stop].sum()) for p in positions], abs=1e-5)
        keep = 1.0
        for p in positions[: scores.classes.index("article") + 1]:
            keep *= 1.0 - float(probs[row, p, stop].sum())
        assert scores.p_stop_before_list == pytest.approx(1.0 - keep, abs=1e-5)
