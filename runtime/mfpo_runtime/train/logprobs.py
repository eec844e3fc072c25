"""Summed answer log-probs of vision-language models, batched for MFPO.

Each MFPO sample needs three sequences: (y_w | t, m), (y_l | t, m) and (y_w | t, m'). They are
encoded as one triple batch of 3B rows in that order (`triple_texts_and_images`), then packed
into 2B rows that score the shared prefix (m, t) once (`train.packing`); the policy runs one
forward over them per step, the reference one more (or none, when precomputed).

Savings over calling `model(**batch).logits` on 3B rows:
- prefix sharing: y_w|m and y_l|m share one row's image and prompt tokens;
- the LM head runs only on answer positions: (N, H) @ (H, V) with N answer tokens, instead of
  materialising (rows, T, V) logits, most of which belong to prompt and image tokens;
- the image encoder runs once per step on the 2B distinct images (m and m'), and its output is
  reused by the reference forward when the encoder is frozen (LoRA on the language model, the
  default), through transformers' `mm_encoder_outputs` argument.

Called by the trainer, the reference module, the evaluation (`sequence_logps`) and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from mfpo_runtime.models.layout import IMAGE_PATH_MARKERS, image_rows
from mfpo_runtime.train.packing import PACKED_KEYS, PAD, PREFIX, packed_triple_logps

# Keys of an `encode(...)` batch that are not model inputs.
NON_MODEL_KEYS = frozenset({"response_mask", "labels", "ref_logps"}) | PACKED_KEYS


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


# ----------------------------------------------------------------- the MFPO triple batch


@dataclass(frozen=True)
class TripleLogps:
    """Summed answer log-probs of one triple batch, each (B,)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    perturbed: torch.Tensor

    @classmethod
    def split(cls, logps: torch.Tensor) -> TripleLogps:
        chosen, rejected, perturbed = logps.chunk(3)  # rows are [chosen | rejected | perturbed]
        return cls(chosen, rejected, perturbed)

    def stacked(self) -> torch.Tensor:  # (B, 3)
        return torch.stack([self.chosen, self.rejected, self.perturbed], dim=1)


def triple_texts_and_images(questions, chosen, rejected, images, perturbed_images):
    """Arguments for one `encode` call of 3B rows: [chosen|m, rejected|m, chosen|m']."""
    return (
        [*questions, *questions, *questions],
        [*images, *images, *perturbed_images],
        [*chosen, *rejected, *chosen],
    )


def image_path_frozen(model: nn.Module) -> bool:
    """True when no parameter of the vision tower / projector trains: its output can be shared."""
    return not any(
        p.requires_grad for n, p in unwrap(model).named_parameters() if any(m in n for m in IMAGE_PATH_MARKERS)
    )


@torch.no_grad()
def shared_image_features(model: nn.Module, packed: dict[str, torch.Tensor]) -> dict:
    """Encode the 2B distinct images of a packed triple batch once: `mm_encoder_outputs` for its rows.

    Only valid while `image_path_frozen(model)`: the features carry no gradient.
    """
    rows = packed["segment_ids"].size(0)
    features = unwrap(model).model.get_image_features(**image_rows(packed, list(range(rows))), return_dict=True)
    return {"image": BaseModelOutputWithPooling(pooler_output=list(features.pooler_output))}


def triple_logps(
    model: nn.Module, packed: dict[str, torch.Tensor], mm_encoder_outputs: dict | None = None
) -> TripleLogps:
    """One forward over a packed triple batch (`train.packing.pack_triples`); returns the chosen,
    rejected and perturbed summed log-probs."""
    return TripleLogps.split(packed_triple_logps(unwrap(model), packed, mm_encoder_outputs))


def count_tokens(packed: dict[str, torch.Tensor]) -> int:
    """Tokens of the 3B sequences a packed batch scores (the shared prefixes counted twice)."""
    segments = packed["segment_ids"]
    shared_prefixes = segments[: segments.size(0) // 2] == PREFIX
    return int((segments != PAD).sum() + shared_prefixes.sum())
