"""Model inputs for every family: chat prompts and batched (prompt, image, answer) encodings.

`encode` is what the trainer's log-probs, the score stage and the evaluation feed the model:
the processor expands each prompt's image placeholder into image tokens and builds the pixel
inputs; answers are tokenized on their own and appended with the family's EOS, so
`response_mask` marks exactly the answer tokens (never a prompt or image token, whatever the
tokenizer would merge across the seam). Sequences are right-padded.

Called by `models.generation`, `mfpo_runtime.train`, the data and eval stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from transformers import ProcessorMixin

from mfpo_runtime.models.families import family as family_named

# Token-aligned keys the processors return, and what an appended answer token gets in each.
_ANSWER_FILL = {"input_ids": None, "attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 0}


def prompt_text(family: str, question: str) -> str:
    """The chat prompt with the image placeholder, ending where the answer starts."""
    if not question or not question.strip():
        raise ValueError("question must be a non-empty string")
    return family_named(family).prompt_template.format(question=question.strip())


def _check_batch(questions: Sequence[str], images: Sequence[Image.Image], answers) -> None:
    if not questions:
        raise ValueError("encode needs at least one question")
    if len(images) != len(questions):
        raise ValueError(
            f"{len(questions)} questions but {len(images)} images: one image per question"
        )
    if answers is not None and len(answers) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")


def encode_prompts(
    processor: ProcessorMixin,
    family: str,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    *,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Prompt-only inputs (left padding is what `generate` needs)."""
    _check_batch(questions, images, None)
    prompts = [prompt_text(family, q) for q in questions]
    batch = processor(
        text=prompts,
        images=[image.convert("RGB") for image in images],
        return_tensors="pt",
        padding=True,
        padding_side=padding_side,
    )
    return dict(batch)


def encode(
    processor: ProcessorMixin,
    family: str,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    answers: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Batched model inputs, right-padded; with answers, a `response_mask` (B, T) marks each
    answer's tokens and its EOS."""
    _check_batch(questions, images, answers)
    batch = encode_prompts(processor, family, questions, images)
    if answers is None:
        return batch
    fam = family_named(family)
    tokenizer = processor.tokenizer
    answer_ids = [
        tokenizer(fam.answer_prefix + a, add_special_tokens=False)["input_ids"]
        + [tokenizer.convert_tokens_to_ids(fam.eos_token)]
        for a in answers
    ]
    return _append_answers(batch, answer_ids, tokenizer.pad_token_id)


def _append_answers(
    batch: dict[str, torch.Tensor], answer_ids: list[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()  # right padding: prompt first
    total = max(p + len(a) for p, a in zip(prompt_lengths, answer_ids))
    size = len(answer_ids)
    out = {k: v for k, v in batch.items() if k not in _ANSWER_FILL}
    for key in (k for k in _ANSWER_FILL if k in batch):
        pad = pad_id if key == "input_ids" else 0
        out[key] = torch.full((size, total), pad, dtype=batch[key].dtype)  # (B, T)
    response_mask = torch.zeros((size, total), dtype=torch.bool)  # (B, T)
    for i, (length, ids) in enumerate(zip(prompt_lengths, answer_ids)):
        end = length + len(ids)
        for key in (k for k in _ANSWER_FILL if k in batch):
            out[key][i, :length] = batch[key][i, :length]
            fill = ids if key == "input_ids" else _ANSWER_FILL[key]
            out[key][i, length:end] = torch.as_tensor(fill, dtype=batch[key].dtype)
        response_mask[i, length:end] = True
    out["response_mask"] = response_mask
    return out
