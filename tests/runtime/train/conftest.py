"""Tiny models built from configs for the train tests (no tokenizer needed: batches are built by
hand with image placeholder tokens where the processor would put them)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

VOCAB = 96
IMAGE_TOKEN = VOCAB - 1
PAD = 0
IMAGE_SIZE = 16
PATCH = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2  # CLS dropped by the default feature strategy


def tiny_llava(seed: int = 0) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            image_size=IMAGE_SIZE, patch_size=PATCH,
        ),
        text_config=LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=PAD,
        ),
        image_token_index=IMAGE_TOKEN,
        projector_hidden_act="gelu",
    )
    return LlavaForConditionalGeneration(config).eval()


def hand_batch(prompts: list[list[int]], answers: list[list[int]], seed: int = 0) -> dict:
    """Right-padded rows [image tokens, prompt, answer] with a response mask over the answer."""
    rows = [[IMAGE_TOKEN] * IMAGE_TOKENS + p + a for p, a in zip(prompts, answers)]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), PAD)
    attention = torch.zeros_like(input_ids)
    response = torch.zeros_like(input_ids)
    for i, (row, a) in enumerate(zip(rows, answers)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        response[i, len(row) - len(a) : len(row)] = 1
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(len(rows), 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    return {"input_ids": input_ids, "attention_mask": attention, "pixel_values": pixels,
            "response_mask": response}


@pytest.fixture
def llava():
    return tiny_llava()


@pytest.fixture
def make_batch():
    return hand_batch
