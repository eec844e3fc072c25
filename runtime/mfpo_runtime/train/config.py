"""What training needs to know, as small frozen configs (torchtune-style), not the run spec.

`stages.align` maps a run's spec onto these (`align.train_config`); the trainer, the policy
set-up and the loss read only them, so a benchmark or a test builds a `TrainConfig` directly.
No field has a default: the API types hold the defaults (the paper's where it names one), in
one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ObjectiveConfig:
    """The MFPO objective (Eq. 5-8): implicit-reward beta, anchor margin eta, and the weight of
    each term by its name in `losses.TERMS`."""

    beta: float
    eta: float
    weights: Mapping[str, float]


@dataclass(frozen=True)
class LoraSettings:
    """peft LoRA adapter settings; `target_modules` is a regex peft full-matches module names."""

    r: int
    alpha: int
    dropout: float
    target_modules: str


@dataclass(frozen=True)
class PolicyConfig:
    """Where stage k starts and what it trains: the base model, the method, its reference."""

    base_uri: str
    family: str
    finetune: Literal["lora", "full"]
    lora: LoraSettings
    merge_adapters: bool
    reference: Literal["base", "previous"]  # the curriculum's reference policy


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation loop of one stage (per-process batch sizes)."""

    epochs: int
    max_steps: int | None
    learning_rate: float
    lr_scheduler: str
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    batch_size: int
    gradient_accumulation: int
    precision: Literal["fp32", "bf16", "fp16"]
    deepspeed_stage: int
    gradient_checkpointing: bool
    checkpoint_every_steps: int
    reference_mode: Literal["online", "precomputed"]
    max_length: int
    seed: int


@dataclass(frozen=True)
class TrainConfig:
    """Everything one align stage's training reads."""

    policy: PolicyConfig
    loop: LoopConfig
    objective: ObjectiveConfig
