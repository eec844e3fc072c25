"""The align stage maps the run spec onto the typed `train.config` the trainer, the policy
set-up and the loss read: every training field arrives, enums as their values."""

from __future__ import annotations

from dataclasses import fields

from mfpo_core.api import LoraSpec, MFPORunSpec, TermWeights, TrainingSpec
from mfpo_runtime.stages.align import train_config
from mfpo_runtime.train.config import (
    LoopConfig,
    LoraSettings,
    ObjectiveConfig,
    PolicyConfig,
    TrainConfig,
)
from mfpo_runtime.train.losses import TERMS, MFPOLoss


def test_every_training_and_lora_field_has_its_typed_field():
    assert [f.name for f in fields(LoopConfig)] == list(TrainingSpec.model_fields)
    assert [f.name for f in fields(LoraSettings)] == list(LoraSpec.model_fields)


def test_spec_maps_onto_the_train_config():
    spec = MFPORunSpec.model_validate({
        "model": {"uri": "s3://models/llava", "family": "qwen2-vl", "finetune": "full", "mergeAdapters": True,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "targetModules": ".*q_proj$"}},
        "data": {"uri": "file:///unused", "format": "synthetic"},
        "storage": {"uri": "file:///unused", "endpoint": "minio:9000"},
        "curriculum": {"reference": "previous"},
        "objective": {"beta": 0.2, "eta": 0.5, "weights": {"text": 1.0, "image": 2.0, "anchor": 0.0}},
        "training": {"epochs": 2, "maxSteps": 9, "learningRate": 1e-4, "lrScheduler": "linear", "warmupRatio": 0.1,
                     "weightDecay": 0.01, "maxGradNorm": 0.5, "batchSize": 4, "gradientAccumulation": 2,
                     "precision": "fp16", "deepspeedStage": 2, "gradientCheckpointing": True,
                     "checkpointEverySteps": 3, "referenceMode": "precomputed", "maxLength": 256, "seed": 7},
    })
    assert train_config(spec) == TrainConfig(
        policy=PolicyConfig(base_uri="s3://models/llava", family="qwen2-vl", finetune="full",
                            lora=LoraSettings(r=4, alpha=8, dropout=0.1, target_modules=".*q_proj$"),
                            merge_adapters=True, reference="previous"),
        loop=LoopConfig(epochs=2, max_steps=9, learning_rate=1e-4, lr_scheduler="linear", warmup_ratio=0.1,
                        weight_decay=0.01, max_grad_norm=0.5, batch_size=4, gradient_accumulation=2,
                        precision="fp16", deepspeed_stage=2, gradient_checkpointing=True,
                        checkpoint_every_steps=3, reference_mode="precomputed", max_length=256, seed=7),
        objective=ObjectiveConfig(beta=0.2, eta=0.5, weights={"text": 1.0, "image": 2.0, "anchor": 0.0}),
    )
    assert type(train_config(spec).loop.precision) is str


def test_the_loss_terms_are_the_api_weights():
    assert TERMS == tuple(TermWeights.model_fields)


def test_the_loss_takes_the_objective_config():
    loss = MFPOLoss.from_config(ObjectiveConfig(beta=0.2, eta=0.5, weights={"text": 1.0, "image": 2.0, "anchor": 0.0}))
    assert (loss.beta, loss.eta, loss.weights) == (0.2, 0.5, (1.0, 2.0, 0.0))


def test_every_seed_the_api_accepts_seeds_torch_in_every_stage():
    """The stages seed torch with seed * 100_003 + a batch or epoch number (score's sampling,
    the trainer's data order); torch.manual_seed takes at most 2**64 - 1 (ValueError "Overflow
    when unpacking long long" beyond), so the API bounds seeds (2**32 - 1, numpy's range)."""
    import pytest
    import torch
    from mfpo_core.api import SEED_MAX, ImagePreferenceSpec
    from pydantic import ValidationError

    torch.manual_seed(SEED_MAX * 100_003 + 10**6)  # the largest seed, a million batches on
    torch.manual_seed(2**64 - 1)
    with pytest.raises(ValueError, match="Overflow"):  # what an unbounded seed reached
        torch.manual_seed(2**64)
    for model, field in ((TrainingSpec, "seed"), (ImagePreferenceSpec, "seed")):
        model.model_validate({field: SEED_MAX})
        with pytest.raises(ValidationError):
            model.model_validate({field: SEED_MAX + 1})
