"""Reference-policy log-probs for MFPO, three ways.

- `AdapterReference`: LoRA training; the reference is the same model with its adapters disabled
  (peft's `disable_adapter()`), so no second copy is held in memory. With a fresh adapter on
  top of the base it is the base model; on top of the merged previous stage, the previous stage.
- `FrozenModelReference`: full fine-tuning; a separate frozen copy of the reference weights.
- `PrecomputedReference`: the log-probs were computed once per stage (`precompute`) and stored
  with the records (`PreferenceRecord.ref_logps`); the step reads them from the batch. TRL
  refuses this for vision datasets; here it gives the same loss as on-line (tested).

Called by the trainer each step and by the align stage before training (precompute).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from typing import Protocol

import torch
from torch import nn

from mfpo_runtime.train.logprobs import TripleLogps, triple_logps

# Keys of `PreferenceRecord.ref_logps`, and the column order of a batch's "ref_logps" (B, 3).
REF_KEYS = ("chosen", "rejected", "perturbed")


class Reference(Protocol):
    """Gives the reference's summed answer log-probs for a triple batch."""

    def logps(self, triple_batch: dict, mm_encoder_outputs: dict | None) -> TripleLogps: ...


class AdapterReference:
    """The policy model with its LoRA adapters switched off."""

    def __init__(self, peft_model: nn.Module, autocast=nullcontext) -> None:
        self.model = peft_model
        self.autocast = autocast

    @torch.no_grad()
    def logps(self, triple_batch: dict, mm_encoder_outputs: dict | None) -> TripleLogps:
        with self.model.disable_adapter(), self.autocast():
            return triple_logps(self.model, triple_batch, mm_encoder_outputs)


class FrozenModelReference:
    """A separate frozen model (full fine-tuning). Image features are never shared with the
    policy here, since its image path may train."""

    def __init__(self, model: nn.Module, autocast=nullcontext) -> None:
        self.model = model.eval().requires_grad_(False)
        self.autocast = autocast

    @torch.no_grad()
    def logps(self, triple_batch: dict, mm_encoder_outputs: dict | None) -> TripleLogps:
        with self.autocast():
            return triple_logps(self.model, triple_batch, None)


class PrecomputedReference:
    """Reads `ref_logps` (B, 3) that the collator put into the batch from the records."""

    def logps(self, triple_batch: dict, mm_encoder_outputs: dict | None) -> TripleLogps:
        if "ref_logps" not in triple_batch:
            raise KeyError("batch has no ref_logps: records were not precomputed for this stage")
        ref = triple_batch["ref_logps"]  # (B, 3)
        return TripleLogps(ref[:, 0], ref[:, 1], ref[:, 2])


def as_record_values(logps: TripleLogps) -> list[dict[str, float]]:
    """One {"chosen", "rejected", "perturbed"} dict per sample, for `PreferenceRecord.ref_logps`."""
    return [dict(zip(REF_KEYS, row)) for row in logps.stacked().double().tolist()]


def as_batch_tensor(values: Iterable[dict[str, float]]) -> torch.Tensor:
    """Stack records' ref_logps into a (B, 3) float tensor in REF_KEYS order."""
    return torch.tensor([[v[k] for k in REF_KEYS] for v in values], dtype=torch.float32)


def precompute(reference: Reference, batches: Iterable[dict], shared_features=None) -> list[dict[str, float]]:
    """Reference log-probs of every sample, in batch order (one pass, no gradient).

    `shared_features(batch)` gives the batch's `mm_encoder_outputs` (or None) exactly as the
    training step would, so the stored values equal the on-line ones.
    """
    values: list[dict[str, float]] = []
    for batch in batches:
        features = shared_features(batch) if shared_features else None
        values.extend(as_record_values(reference.logps(batch, features)))
    return values
