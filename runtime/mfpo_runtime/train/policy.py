"""Policies across the curriculum: what stage k starts from, its reference, and what it publishes.

A policy is described by its lineage, the same document `mfpo_runtime.models.load_vlm` reads
as `mfpo_policy.json`: {"family", "base": <HF model dir URI>, "adapters": [<adapter URI>, ...]}
(adapters applied in order and merged). With LoRA:

- reference = base: every stage keeps training ONE adapter on the base weights (stage k loads
  stage k-1's adapter, trainable); adapters disabled = the base model.
- reference = previous: stage k merges stages 1..k-1's adapters into the weights in memory and
  adds a fresh adapter; adapters disabled = the previous stage's policy.

With full fine-tuning the policy is the previous stage's whole model and the reference a frozen
copy of the base or the previous stage. The vision tower stays frozen in both (LLaVA practice).

`save_policy` writes the trained policy into a local directory: the processor, `adapter/` (LoRA)
and either `mfpo_policy.json` (eval applies the adapters) or, with mergeAdapters / full
fine-tuning, a whole merged HF model (plus `mfpo_lineage.json`, which load_vlm ignores, so the
next stage still knows the adapters).

Works on a `TrainConfig` and on local paths: `stages.align` reads the previous stage's lineage,
fetches the adapter it continues (`continued_adapter`) and publishes what `save_policy` wrote.
Models themselves are loaded by URI through `mfpo_runtime.models.load_vlm`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mfpo_core.contract import BadInput
from mfpo_core.storage import StorageError
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from mfpo_runtime.models.layout import VISION_TOWER_MARKERS
from mfpo_runtime.train.config import LoraSettings, TrainConfig
from mfpo_runtime.train.reference import (
    AdapterReference,
    FrozenModelReference,
    PrecomputedReference,
    Reference,
)

POLICY_FILE = "mfpo_policy.json"
LINEAGE_FILE = "mfpo_lineage.json"  # same content, written beside merged weights


@dataclass
class Lineage:
    family: str
    base: str
    adapters: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"family": self.family, "base": self.base, "adapters": self.adapters}, indent=2)

    @classmethod
    def from_doc(cls, doc: dict) -> Lineage:
        """From the content of a published policy's `POLICY_FILE` or `LINEAGE_FILE`."""
        return cls(doc["family"], doc["base"], list(doc.get("adapters", [])))


@dataclass
class StagePolicy:
    """The model to train in one stage, its reference, and how to describe the result."""

    model: nn.Module
    reference: Reference
    processor: object
    family: str
    lineage: Lineage  # of the starting point; the stage's own adapter is appended on publish
    continues_adapter: bool  # True: the stage's adapter replaces the last one in the lineage


def _load(uri: str, dtype: torch.dtype, device: str, family: str | None = None):
    """The model at `uri`; BadInput when it cannot be loaded or is not of `family`."""
    from mfpo_runtime.models import ModelLoadError, load_vlm  # late: models pulls in processors

    try:
        return load_vlm(uri, dtype=dtype, device=device, family=family)
    except (OSError, ValueError, StorageError, ModelLoadError) as err:
        raise BadInput(f"cannot load the model at {uri}: {err}") from err


def _merged_model(base: str, adapters: list[str], family: str, dtype, device: str):
    """Base weights with `adapters` merged in, through the lineage format load_vlm reads."""
    if not adapters:
        return _load(base, dtype, device, family)
    descriptor = Path(tempfile.mkdtemp(prefix="mfpo-lineage-"))
    (descriptor / POLICY_FILE).write_text(Lineage(family, base, adapters).to_json())
    return _load(str(descriptor), dtype, device, family)


def lora_config(lora: LoraSettings) -> LoraConfig:
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules, bias="none",
    )


def _check_targets(model: nn.Module, regex: str) -> None:
    pattern = re.compile(regex)
    if not any(pattern.fullmatch(name) for name, _ in model.named_modules()):
        raise BadInput(f"model.lora.targetModules {regex!r} matches no module of the model")


def freeze_vision(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        if any(marker in name for marker in VISION_TOWER_MARKERS):
            param.requires_grad_(False)


def start_lineage(config: TrainConfig, previous: Lineage | None) -> Lineage:
    """Stage k's starting point: stage k-1's lineage, or the base model for k = 1."""
    return previous or Lineage(config.policy.family, config.policy.base_uri, [])


def continued_adapter(config: TrainConfig, previous: Lineage | None) -> str | None:
    """The URI of the adapter stage k keeps training (LoRA with reference = base after stage 1),
    which the caller fetches to a local directory for `prepare`; None when the stage starts a
    fresh adapter or trains the whole model."""
    lineage = start_lineage(config, previous)
    p = config.policy
    if p.finetune == "full" or p.reference == "previous" or not lineage.adapters:
        return None
    return lineage.adapters[-1]


def prepare(
    config: TrainConfig, stage_index: int, previous: Lineage | None, *,
    adapter_dir: Path | None = None, device: str = "cpu",
) -> StagePolicy:
    """Load stage k's starting policy and reference. previous: stage k-1's lineage (None for
    k = 1); adapter_dir: a local copy of `continued_adapter(config, previous)` when it is not None."""
    dtype = torch.float32
    p = config.policy
    lineage = start_lineage(config, previous)
    precomputed = config.loop.reference_mode == "precomputed"
    if p.finetune == "full":
        return _prepare_full(config, lineage, precomputed, dtype, device)
    if continued_adapter(config, previous) is None:
        # merge everything so far into the weights, train a fresh adapter on top
        loaded = _merged_model(lineage.base, lineage.adapters, p.family, dtype, device)
        _check_targets(loaded.model, p.lora.target_modules)
        torch.manual_seed(config.loop.seed + stage_index)  # the fresh adapter's init is reproducible
        model = get_peft_model(loaded.model, lora_config(p.lora))
        continues = False
    else:
        # reference = base: keep training the single adapter of the previous stage
        if adapter_dir is None:
            raise ValueError("prepare: stage continues an adapter but no adapter_dir was given")
        loaded = _load(lineage.base, dtype, device, p.family)
        model = PeftModel.from_pretrained(loaded.model, str(adapter_dir), is_trainable=True)
        continues = True
    reference = PrecomputedReference() if precomputed else AdapterReference(model)
    return StagePolicy(model, reference, loaded.processor, p.family, lineage, continues)


def _prepare_full(config: TrainConfig, lineage: Lineage, precomputed, dtype, device) -> StagePolicy:
    # A whole-model stage publishes itself as the base of its lineage: stage k starts there.
    start, family = lineage.base, config.policy.family
    loaded = _load(start, dtype, device, family)
    freeze_vision(loaded.model)
    if precomputed:
        reference: Reference = PrecomputedReference()
    else:
        ref_uri = start if config.policy.reference == "previous" else config.policy.base_uri
        reference = FrozenModelReference(_load(ref_uri, dtype, device, family).model)
    return StagePolicy(loaded.model, reference, loaded.processor, lineage.family, Lineage(lineage.family, start), False)


def reference_for_precompute(policy: StagePolicy, config: TrainConfig, device: str = "cpu") -> Reference:
    """The on-line reference used once to precompute a stage's ref_logps."""
    p = config.policy
    if p.finetune == "full":
        ref_uri = policy.lineage.base if p.reference == "previous" else p.base_uri
        return FrozenModelReference(_load(ref_uri, torch.float32, device).model)
    return AdapterReference(policy.model)


def save_policy(
    policy: StagePolicy, config: TrainConfig, local: Path, *, target_uri: str, adapter_uri: str
) -> Lineage:
    """Write the trained policy into the empty directory `local`, to be published at
    `target_uri` (its adapter at `adapter_uri`); returns its lineage."""
    if local.exists():
        shutil.rmtree(local)
    local.mkdir(parents=True)
    policy.processor.save_pretrained(local)
    if config.policy.finetune == "full":
        policy.model.save_pretrained(local)
        lineage = Lineage(policy.family, target_uri, [])
        (local / LINEAGE_FILE).write_text(lineage.to_json())
        return lineage
    policy.model.save_pretrained(local / "adapter")
    kept = policy.lineage.adapters[:-1] if policy.continues_adapter else policy.lineage.adapters
    lineage = Lineage(policy.family, policy.lineage.base, [*kept, adapter_uri])
    if config.policy.merge_adapters:
        # training is over: merge in place (the in-memory weights already hold `kept`)
        policy.model.merge_and_unload().save_pretrained(local)
        (local / LINEAGE_FILE).write_text(lineage.to_json())
    else:
        (local / POLICY_FILE).write_text(lineage.to_json())
    return lineage
