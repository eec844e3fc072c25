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

Called by the trainer, the reference module and the benchmark. The unpacked scorer of one
sequence per row (`sequence_logps`) is `models.logprobs`, shared with the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from mfpo_runtime.models.layout import IMAGE_PATH_MARKERS, image_rows
from mfpo_runtime.models.logprobs import answer_token_logps, sequence_logps, unwrap
from mfpo_runtime.train.packing import PAD, PREFIX, packed_triple_logps

__all__ = [  # the unpacked scorers live in models.logprobs (eval uses them too)
    "TripleLogps",
    "answer_token_logps",
    "count_tokens",
    "image_path_frozen",
    "sequence_logps",
    "shared_image_features",
    "triple_logps",
    "triple_texts_and_images",
    "unwrap",
]

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
