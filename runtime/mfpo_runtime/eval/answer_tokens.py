"""Where a policy puts the likelihood of an answer: the tokens of a world caption by class.

The synthetic world's answers are `scenes.ANSWER_TEMPLATES` filled with an object list:
"<template prefix> a sun, a cloud and an umbrella." Each token of such an answer, as the model
reads it (`models.encode`: the family's answer prefix, the answer, then EOS), belongs to one
class:

    template   the answer prefix and the template's words before the list ("The image shows",
               "There are")
    article    "a" / "an" before an object
    object     an object's name (one or more tokens)
    separator  "," and "and" between objects
    period     the final "."
    eos        the end-of-sequence token the answer ends with

`answer_token_scores` runs a policy on (question, image, answer) rows and returns, per row, each
answer token's log-probability and class, the probability of stopping ("." or EOS) at every
position, and at the first article (the position right after the template prefix) the mass of
an article against that of stopping: a policy that has learnt to end the answer before its
object list shows there. Used by
benchmarks/names_nothing.py to split the image term's margin log pi(y_w|m) - log pi(y_w|m') by
token class. Pure Python except `answer_token_scores` (torch).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mfpo_runtime.data import scenes

CLASSES = ("template", "article", "object", "separator", "period", "eos")
ARTICLES = ("a", "an")
SEPARATORS = (",", "and")
# A token that covers characters of two classes (no tokenizer of this project makes one; a
# foreign tokenizer could merge "sun." into one token): counted apart, never silently merged.
MIXED = "mixed"


class NotACaption(ValueError):
    """The text is not one of the world's captions (a template prefix, an object list, '.')."""


def template_prefixes() -> list[str]:
    """The words before the object list of every answer template, longest first ('There is'
    and 'There are' both: the verb follows the number of objects)."""
    prefixes = set()
    for template in scenes.ANSWER_TEMPLATES:
        head = template.split("{objects}")[0].rstrip()
        prefixes |= {head.replace("{verb}", verb) for verb in ("is", "are")}
    return sorted(prefixes, key=lambda p: (-len(p), p))  # longest first, then alphabetical


_PIECE = re.compile(r"\s*(,|[^\s,]+)")  # a list word or comma with the whitespace before it


def caption_char_classes(caption: str) -> list[str]:
    """The class of every character of a world caption (whitespace belongs to the word after it,
    as byte-level and SentencePiece tokenizers attach it). Raises NotACaption otherwise."""
    stripped = caption.lstrip()
    prefix = next((p for p in template_prefixes() if stripped.startswith(p + " ")), None)
    if prefix is None:
        raise NotACaption(f"{caption!r} starts with none of the templates {template_prefixes()}")
    list_start = len(caption) - len(stripped) + len(prefix)
    period = len(caption.rstrip()) - 1
    if caption[period] != ".":
        raise NotACaption(f"{caption!r} does not end with '.'")
    classes = ["template"] * list_start
    expected = "article"  # what the list's grammar allows next: article, object, more
    for piece in _PIECE.finditer(caption, list_start, period):
        word = piece.group(1)
        if word in SEPARATORS and expected == "more":
            kind, expected = "separator", "article"
        elif expected == "article" and word in ARTICLES:
            kind, expected = "article", "object"
        elif expected in ("object", "more") and word not in ARTICLES + SEPARATORS:
            kind, expected = "object", "more"  # "more": another word of the name, or a separator
        else:
            raise NotACaption(f"{caption!r}: {word!r} where the object list expects {expected!r}")
        classes += [kind] * (piece.end() - piece.start())
    if expected != "more":
        raise NotACaption(f"{caption!r}: the object list must end with an object's name")
    return classes + ["period"] * (len(caption) - len(classes))  # "." and whitespace around it


def token_classes(tokenizer, answer_prefix: str, caption: str) -> list[str]:
    """The class of each token `models.encode` gives the model for `caption` (the answer prefix
    and caption tokenized together, then EOS), in order; the last is always 'eos'."""
    text = answer_prefix + caption
    chars = ["template"] * len(answer_prefix) + caption_char_classes(caption)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for start, end in encoded["offset_mapping"]:
        span = {chars[i] for i in range(start, end) if not text[i].isspace()}
        if not span:  # whitespace alone (the answer prefix " "): its characters' class
            span = {chars[i] for i in range(start, end)}
        out.append(span.pop() if len(span) == 1 else MIXED)
    return [*out, "eos"]


def choice_ids(tokenizer, eos_token: str) -> dict[str, list[int]]:
    """Token ids of the two ways on after a template prefix: an article (the word 'a' or 'an',
    with the space before it that a tokenizer attaches to a word) and a stop ('.', or EOS)."""
    article, stop = [], [tokenizer.convert_tokens_to_ids(eos_token)]
    for token, index in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token])
        if text.startswith(" ") and text.strip() in ARTICLES:
            article.append(index)
        elif text.strip() == ".":
            stop.append(index)
    if not article:
        raise ValueError("the tokenizer has no token for 'a' or 'an'")
    return {"article": sorted(article), "stop": sorted(set(stop))}


@dataclass(frozen=True)
class TokenScores:
    """One answer as the policy scored it."""

    logps: list[float]  # log pi(token | prompt, image, tokens before), every answer token + EOS
    classes: list[str]  # CLASSES (or MIXED), one per token
    p_article: float  # at the first article: pi(article) summed over `choice_ids`
    p_stop: float  # the same position: pi('.') + pi(EOS)
    p_stops: list[float]  # pi('.') + pi(EOS) at every answer token's position, in order

    @property
    def p_stop_before_list(self) -> float:
        """The chance of ending the answer before its first article, following y_w's opening
        words: 1 - prod(1 - p_stop) over the positions up to the first article ("There." stops
        where "is" was due, "The image shows." where the article was)."""
        keep = 1.0
        for p_stop in self.p_stops[: self.classes.index("article") + 1]:
            keep *= 1.0 - p_stop
        return 1.0 - keep

    def by_class(self) -> dict[str, float]:
        """Summed log-prob of the answer's tokens of each class (0.0 for a class it lacks)."""
        sums = dict.fromkeys(CLASSES, 0.0)
        for logp, kind in zip(self.logps, self.classes):
            sums[kind] = sums.get(kind, 0.0) + logp
        return sums


def answer_token_scores(
    loaded, questions: Sequence[str], images: Sequence, captions: Sequence[str], *, batch_size: int = 20
) -> list[TokenScores]:
    """Per caption, the policy's per-token log-probs, token classes and the article / stop mass
    after the template prefix (`loaded`: a models.LoadedVLM)."""
    import torch

    from mfpo_runtime import models
    from mfpo_runtime.models.families import family as family_named
    from mfpo_runtime.models.logprobs import model_inputs, unwrap

    fam = family_named(loaded.family)
    tokenizer = loaded.processor.tokenizer
    ids = choice_ids(tokenizer, fam.eos_token)
    model = loaded.model
    device = next(model.parameters()).device
    out: list[TokenScores] = []
    for start in range(0, len(captions), batch_size):
        rows = range(start, min(start + batch_size, len(captions)))
        batch = models.encode(loaded.processor, loaded.family, [questions[i] for i in rows],
                              [images[i] for i in rows], [captions[i] for i in rows])  # fmt: skip
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            lm = unwrap(model)
            hidden = lm.model(**model_inputs(batch), use_cache=False).last_hidden_state  # (B, T, H)
            mask = batch["response_mask"][:, 1:].bool()  # (B, T-1): positions predicting answer tokens
            log_probs = lm.lm_head(hidden[:, :-1][mask]).float().log_softmax(-1)  # (N, V)
        targets = batch["input_ids"][:, 1:][mask]  # (N,)
        token_logps = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
        p_article = log_probs[:, ids["article"]].exp().sum(-1)  # (N,)
        p_stop = log_probs[:, ids["stop"]].exp().sum(-1)  # (N,)
        counts = mask.sum(dim=1).tolist()
        offset = 0
        for i, count in zip(rows, counts):
            classes = token_classes(tokenizer, fam.answer_prefix, captions[i])
            if len(classes) != count:
                raise ValueError(f"caption {captions[i]!r}: {len(classes)} classified tokens, {count} encoded")
            first_article = classes.index("article")
            at = offset + first_article
            out.append(TokenScores(token_logps[offset : offset + count].tolist(), classes,
                                   float(p_article[at]), float(p_stop[at]),
                                   p_stop[offset : offset + count].tolist()))  # fmt: skip
            offset += count
    return out
