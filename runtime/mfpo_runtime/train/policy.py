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

Publication (`publish_policy`) writes to `contract.policy_uri(run_uri, stage)`: the processor,
`adapter/` (LoRA) and either `mfpo_policy.json` (eval applies the adapters) or, with
mergeAdapters / full fine-tuning, a whole merged HF model (plus `mfpo_lineage.json`, which
load_vlm ignores, so the next stage still knows the adapters).

Called by `mfpo_runtime.stages.align`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mfpo_core import storage
from mfpo_core.api import MFPORunSpec
from mfpo_core.contract import BadInput
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from mfpo_runtime.train.reference import (
    AdapterReference,
    FrozenModelReference,
    PrecomputedReference,
    Reference,
)

POLICY_FILE = "mfpo_policy.json"
LINEAGE_FILE = "mfpo_lineage.json"  # same content, written beside merged weights
VISION_MARKERS = ("vision_tower", "visual.")


@dataclass
class Lineage:
    family: str
    base: str
    adapters: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"family": self.family, "base": self.base, "adapters": self.adapters}, indent=2)

    @classmethod
    def read(cls, policy_uri: str) -> Lineage:
        """The lineage of a published policy (descriptor or merged dir with its lineage file)."""
        for name in (POLICY_FILE, LINEAGE_FILE):
            uri = storage.join(policy_uri, name)
            if storage.exists(uri):
                doc = storage.read_json(uri)
                return cls(doc["family"], doc["base"], list(doc.get("adapters", [])))
        raise BadInput(f"{policy_uri} has neither {POLICY_FILE} nor {LINEAGE_FILE}: not a policy of this runtime")


@dataclass
class StagePolicy:
    """The model to train in one stage, its reference, and how to describe the result."""

    model: nn.Module
    reference: Reference
    processor: object
    family: str
    lineage: Lineage  # of the starting point; the stage's own adapter is appended on publish
    continues_adapter: bool  # True: the stage's adapter replaces the last one in the lineage


def _load(uri: str, dtype: torch.dtype, device: str):
    from mfpo_runtime.models import load_vlm  # late import: models pulls in processors

    try:
        return load_vlm(uri, dtype=dtype, device=device)
    except (OSError, ValueError, storage.StorageError) as err:
        raise BadInput(f"cannot load the model at {uri}: {err}") from err


def _merged_model(base: str, adapters: list[str], family: str, dtype, device: str):
    """Base weights with `adapters` merged in, through the lineage format load_vlm reads."""
    if not adapters:
        return _load(base, dtype, device)
    descriptor = Path(tempfile.mkdtemp(prefix="mfpo-lineage-"))
    (descriptor / POLICY_FILE).write_text(Lineage(family, base, adapters).to_json())
    return _load(str(descriptor), dtype, device)


def lora_config(spec: MFPORunSpec) -> LoraConfig:
    lora = spec.model.lora
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
        if any(marker in name for marker in VISION_MARKERS):
            param.requires_grad_(False)


def prepare(
    spec: MFPORunSpec, stage_index: int, previous_policy: str | None, *, device: str = "cpu"
) -> StagePolicy:
    """Load stage k's starting policy and reference (previous_policy: policy URI of stage k-1)."""
    dtype = torch.float32
    base = spec.model.uri
    family = spec.model.family
    lineage = Lineage.read(previous_policy) if previous_policy else Lineage(family, base, [])
    by_previous = spec.curriculum.reference == "previous"
    precomputed = spec.training.reference_mode == "precomputed"
    if spec.model.finetune == "full":
        return _prepare_full(spec, previous_policy, lineage, by_previous, precomputed, dtype, device)
    if by_previous or not lineage.adapters:
        # merge everything so far into the weights, train a fresh adapter on top
        loaded = _merged_model(lineage.base, lineage.adapters, family, dtype, device)
        _check_targets(loaded.model, spec.model.lora.target_modules)
        torch.manual_seed(spec.training.seed + stage_index)  # the fresh adapter's init is reproducible
        model = get_peft_model(loaded.model, lora_config(spec))
        continues = False
    else:
        # reference = base: keep training the single adapter of the previous stage
        loaded = _load(lineage.base, dtype, device)
        model = PeftModel.from_pretrained(
            loaded.model, str(storage.materialize(lineage.adapters[-1])), is_trainable=True
        )
        continues = True
    reference = PrecomputedReference() if precomputed else AdapterReference(model)
    return StagePolicy(model, reference, loaded.processor, family, lineage, continues)


def _prepare_full(spec, previous_policy, lineage, by_previous, precomputed, dtype, device) -> StagePolicy:
    start = previous_policy or spec.model.uri
    loaded = _load(start, dtype, device)
    freeze_vision(loaded.model)
    if precomputed:
        reference: Reference = PrecomputedReference()
    else:
        ref_uri = start if by_previous else spec.model.uri
        reference = FrozenModelReference(_load(ref_uri, dtype, device).model)
    return StagePolicy(loaded.model, reference, loaded.processor, lineage.family, Lineage(lineage.family, start), False)


def reference_for_precompute(policy: StagePolicy, spec: MFPORunSpec, device: str = "cpu") -> Reference:
    """The on-line reference used once to precompute a stage's ref_logps."""
    if spec.model.finetune == "full":
        by_previous = spec.curriculum.reference == "previous"
        ref_uri = policy.lineage.base if by_previous else spec.model.uri
        return FrozenModelReference(_load(ref_uri, torch.float32, device).model)
    return AdapterReference(policy.model)


def publish_policy(policy: StagePolicy, spec: MFPORunSpec, target_uri: str, work_dir: Path) -> Lineage:
    """Write the trained policy to `target_uri` atomically; returns its lineage."""
    local = work_dir / "policy"
    if local.exists():
        shutil.rmtree(local)
    local.mkdir(parents=True)
    policy.processor.save_pretrained(local)
    if spec.model.finetune == "full":
        policy.model.save_pretrained(local)
        lineage = Lineage(policy.family, target_uri, [])
        (local / LINEAGE_FILE).write_text(lineage.to_json())
        storage.publish_dir(local, target_uri)
        return lineage
    adapter_uri = storage.join(target_uri, "adapter")
    policy.model.save_pretrained(local / "adapter")
    kept = policy.lineage.adapters[:-1] if policy.continues_adapter else policy.lineage.adapters
    lineage = Lineage(policy.family, policy.lineage.base, [*kept, adapter_uri])
    if spec.model.merge_adapters:
        # training is over: merge in place (the in-memory weights already hold `kept`)
        policy.model.merge_and_unload().save_pretrained(local)
        (local / LINEAGE_FILE).write_text(lineage.to_json())
    else:
        (local / POLICY_FILE).write_text(lineage.to_json())
    storage.publish_dir(local, target_uri)
    return lineage
