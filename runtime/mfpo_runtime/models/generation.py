"""Batched answer generation for every family (greedy or sampled, seedable).

Called by the score stage (sampled answers for semantic entropy), the evaluation and the
bootstrap's measurements.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from mfpo_runtime.models.inputs import encode_prompts
from mfpo_runtime.models.io import LoadedVLM


def model_inputs(batch: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Move a batch to the model's device; pixel inputs take the model's dtype."""
    device, dtype = model.device, model.dtype
    return {
        k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
        for k, v in batch.items()
    }


@torch.no_grad()
def generate(
    vlm: LoadedVLM,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    *,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int | None = None,
) -> list[str]:
    """One answer per (question, image), decoded without special tokens."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    tokenizer = vlm.processor.tokenizer
    # Decoder-only generation continues from the last position: pad prompts on the left.
    batch = encode_prompts(vlm.processor, vlm.family, questions, images, padding_side="left")
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    options = (
        sampling
        if do_sample
        else {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
    )
    with torch.random.fork_rng(devices=[]):  # a seed must not disturb the caller's RNG stream
        if seed is not None:
            torch.manual_seed(seed)
        output = vlm.model.generate(
            **model_inputs(batch, vlm.model),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=vlm.model.generation_config.eos_token_id,
            **options,
        )
    new_tokens = output[:, batch["input_ids"].shape[1] :]  # (B, new)
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
