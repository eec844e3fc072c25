"""Build a tiny vision-language model of a real class from a config, and save it.

`build_tiny_model` trains the tokenizer (unless given one), builds the family's tiny config,
initialises the model from a seed and saves model + processor with `save_pretrained`, so that
`from_pretrained` (and `load_vlm`) reload it like any Hugging Face checkpoint. No download.
Called by the bootstrap, the test fixtures and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast, ProcessorMixin

from mfpo_runtime.data import scenes
from mfpo_runtime.models.families import FAMILIES, Family, TinySize, family
from mfpo_runtime.models.tokenizer import train_tokenizer


def chat_corpus() -> Iterator[str]:
    """The world's sentences, also inside every family's chat prompt (the tokenizer's corpus)."""
    sentences = list(scenes.text_corpus())
    yield from sentences
    for fam in FAMILIES.values():
        for index, answer in enumerate(sentences):
            question = scenes.QUESTIONS[index % len(scenes.QUESTIONS)]
            yield fam.prompt_template.format(question=question) + fam.answer_prefix + answer


def tokenizer_for(
    fam: Family, tokenizer: PreTrainedTokenizerFast | None
) -> PreTrainedTokenizerFast:
    """A copy of the (trained) tokenizer whose EOS is the family's end-of-answer token."""
    tok = train_tokenizer(chat_corpus()) if tokenizer is None else tokenizer
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tok.backend_tokenizer,
        bos_token=tok.bos_token,
        eos_token=fam.eos_token,
        pad_token=tok.pad_token,
        unk_token=tok.unk_token,
        extra_special_tokens={"image_token": fam.image_token},
        padding_side="right",
    )
    return tok


def build_tiny(
    family_name: str,
    *,
    seed: int = 0,
    size: TinySize | None = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A freshly initialised tiny model of the family and its processor (in memory)."""
    fam = family(family_name)
    size = size or TinySize()
    tok = tokenizer_for(fam, tokenizer)
    config = fam.build_config(size, tok)
    with torch.random.fork_rng(devices=[]):  # weight init draws from the global generator
        torch.manual_seed(seed)
        model = fam.model_class(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model, fam.build_processor(size, tok)


def build_tiny_model(
    family: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = TinySize.image_size,
    tokenizer: PreTrainedTokenizerFast | None = None,
    size: TinySize | None = None,
) -> Path:
    """Build a tiny model (see `TinySize`; `image_size` overrides its image size) and save
    model + processor under `out_dir`; returns the directory."""
    if size is None:
        size = TinySize(image_size=image_size)
    model, processor = build_tiny(family, seed=seed, size=size, tokenizer=tokenizer)
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
