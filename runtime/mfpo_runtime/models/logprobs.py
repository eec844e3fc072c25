"""Summed answer log-probs of a vision-language model, one sequence per row of an `encode(...)`
batch: what the evaluation scores answers with and what the packed MFPO step
(`train.packing`) is held to in the tests.

The LM head runs only on answer positions: (N, H) @ (H, V) with N answer tokens, instead of
materialising (rows, T, V) logits.

Called by `eval.generation`, `train.logprobs` and the benchmark.
"""

from __future__ import annotations

import torch
from torch import nn

# Keys of an `encode(...)` batch that are not model inputs.
NON_MODEL_KEYS = frozenset({"response_mask", "labels", "ref_logps"})


def unwrap(model: nn.Module) -> nn.Module:
    """The *ForConditionalGeneration module under peft / DeepSpeed wrappers (LoRA layers stay in)."""
    while True:
        if hasattr(model, "get_base_model"):  # peft.PeftModel
            model = model.get_base_model()
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):  # DeepSpeed / DDP
            model = model.module
        else:
            return model


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}


def answer_token_logps(
    model: nn.Module, batch: dict[str, torch.Tensor], mm_encoder_outputs: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each answer token and the row it belongs to: ((N,), (N,)).

    Token t is predicted from position t-1, so logits[:, :-1] pair with input_ids[:, 1:];
    `response_mask` (B, T) marks the answer tokens (incl. EOS), padding and prompt are 0.
    """
    lm = unwrap(model)
    inputs = model_inputs(batch)
    if mm_encoder_outputs is not None:
        inputs.pop("pixel_values", None)
        inputs["mm_encoder_outputs"] = mm_encoder_outputs
    hidden = lm.model(**inputs, use_cache=False).last_hidden_state  # (B, T, H)
    targets = batch["input_ids"][:, 1:]  # (B, T-1)
    mask = batch["response_mask"][:, 1:].bool()  # (B, T-1)
    answer_hidden = hidden[:, :-1][mask]  # (N, H)
    logits = lm.lm_head(answer_hidden).float()  # (N, V)
    token_logps = torch.gather(logits.log_softmax(-1), 1, targets[mask].unsqueeze(1)).squeeze(1)  # (N,)
    rows = torch.arange(mask.size(0), device=mask.device).unsqueeze(1).expand_as(mask)[mask]  # (N,)
    return token_logps, rows


def sequence_logps(
    model: nn.Module, batch: dict[str, torch.Tensor], mm_encoder_outputs: dict | None = None
) -> torch.Tensor:
    """Summed log-probs of the answer tokens of each row of an `encode(...)` batch: (B,)."""
    token_logps, rows = answer_token_logps(model, batch, mm_encoder_outputs)
    batch_size = batch["input_ids"].size(0)
    out = torch.zeros(batch_size, dtype=token_logps.dtype, device=token_logps.device)
    return out.index_add(0, rows, token_logps)  # (B,)
