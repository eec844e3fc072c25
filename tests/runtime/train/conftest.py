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


# ----------------------------------------------------------- align-stage fixtures

def make_curriculum(world_train, out_dir, *, bins: int = 2, count: int = 8):
    """A score-stage-like dataset from the world's train split: perturbed images (global noise,
    enough for training tests) and bins 1..`bins` in turn."""
    import numpy as np
    from mfpo_runtime.data.records import read_records, write_records
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for i, record in enumerate(read_records(world_train)[:count]):
        image = Image.open(world_train / record.image).convert("RGB")
        image.save(out_dir / record.image)
        pixels = np.asarray(image, dtype=np.float32)
        noised = np.clip(0.7 * pixels + 0.3 * rng.normal(128, 64, pixels.shape), 0, 255).astype(np.uint8)
        perturbed = f"images/{record.id}-perturbed.png"
        Image.fromarray(noised).save(out_dir / perturbed)
        records.append(record.model_copy(update={
            "perturbed_image": perturbed, "bin": i % bins + 1, "entropy": float(i), "masks": None,
        }))
    write_records(records, out_dir, kind="curriculum")
    return out_dir


@pytest.fixture
def run_dir(tmp_path, world_dir):
    """A run prefix holding score/dataset with two bins of 4 records each."""
    make_curriculum(world_dir / "train", tmp_path / "run" / "score" / "dataset")
    return tmp_path / "run"


def align_spec(model_dir, **training):
    from mfpo_core.api import MFPORunSpec

    base = {"batchSize": 2, "gradientAccumulation": 1, "precision": "fp32", "learningRate": 5e-3,
            "lrScheduler": "constant", "warmupRatio": 0.0, "checkpointEverySteps": 1, "maxLength": 512}
    return MFPORunSpec.model_validate({
        "model": {"uri": str(model_dir), "family": "llava", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"uri": "file:///unused", "format": "synthetic"},
        "storage": {"uri": "file:///unused"},
        "curriculum": {"stages": 2},
        "training": {**base, **training},
        "resources": {"gpusPerNode": 0},
    })


@pytest.fixture
def spec_for():
    return align_spec
