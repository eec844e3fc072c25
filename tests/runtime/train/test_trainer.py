"""The trainer loop on a tiny LLaVA: resume equivalence, SIGTERM, references, validation."""

from pathlib import Path

import pytest
import torch
from mfpo_core.contract import BadInput, StageInterrupted
from mfpo_runtime.metrics import StageMetrics
from mfpo_runtime.stages.align import train_config
from mfpo_runtime.train import checkpoints
from mfpo_runtime.train import policy as policies
from mfpo_runtime.train.data import collate, load_bin, sample_indices
from mfpo_runtime.train.losses import MFPOLoss
from mfpo_runtime.train.reference import PrecomputedReference, precompute
from mfpo_runtime.train.trainer import TrainJob, autocast_for, forward_loss, train, validate
from torch.testing import assert_close


def make_job(spec, run_dir: Path, work: Path, stop=lambda: False, metrics=None) -> TrainJob:
    policy = policies.prepare(train_config(spec), 1, None)
    work.mkdir(parents=True, exist_ok=True)
    return TrainJob(
        config=train_config(spec), model=policy.model, reference=policy.reference, processor=policy.processor,
        family=policy.family, training_set=load_bin(run_dir / "score" / "dataset", 1),
        stage_uri=f"file://{run_dir}/align-1", work_dir=work, stop_requested=stop, metrics=metrics,
    )


def lora_weights(job):
    return {n: p.detach().clone() for n, p in job.model.named_parameters() if p.requires_grad}


@pytest.mark.slow
def test_killed_and_resumed_stage_ends_with_the_same_weights(tiny_llava_dir, run_dir, spec_for, tmp_path):
    # LoRA dropout on: the continuation must also restore the RNG to match.
    spec = spec_for(tiny_llava_dir, epochs=2, batchSize=1, gradientAccumulation=2)
    spec.model.lora.dropout = 0.2
    whole = make_job(spec, run_dir, tmp_path / "a")
    summary = train(whole)
    assert summary["steps"] == 4

    other_run = tmp_path / "b-run"
    (other_run / "score").mkdir(parents=True)
    (other_run / "score" / "dataset").symlink_to(run_dir / "score" / "dataset")
    metrics = StageMetrics("ns", "r", "align-1", 1)  # its step counter tells when to stop
    labels = {"namespace": "ns", "run": "r", "stage": "align-1", "attempt": "1"}
    steps = lambda: metrics.registry.get_sample_value("mfpo_train_steps_total", labels) or 0
    first = make_job(spec, other_run, tmp_path / "b1", stop=lambda: steps() >= 2, metrics=metrics)
    with pytest.raises(StageInterrupted, match="step 2"):
        train(first)
    assert checkpoints.latest_step(first.stage_uri) == 2
    resumed = make_job(spec, other_run, tmp_path / "b2")  # a new process: fresh model and adapter
    resumed_summary = train(resumed)
    # Tolerance: the same float32 ops in the same order; only summation order noise allowed.
    for name, value in lora_weights(whole).items():
        assert_close(lora_weights(resumed)[name], value, atol=1e-6, rtol=1e-5)
    assert resumed_summary["steps"] == 4
    assert_close(resumed_summary["objective"], summary["objective"], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_checkpoints_are_pruned_and_incomplete_ones_ignored(tiny_llava_dir, run_dir, spec_for, tmp_path):
    spec = spec_for(tiny_llava_dir, epochs=2, batchSize=2)  # 4 records: 2 steps per epoch
    job = make_job(spec, run_dir, tmp_path / "w")
    train(job)
    assert checkpoints.completed_steps(job.stage_uri) == [3, 4]
    marker = run_dir / "align-1" / "checkpoints" / "step-00000004" / "_COMPLETE"
    marker.unlink()  # as if killed mid-upload
    assert checkpoints.latest_step(job.stage_uri) == 3


def test_precomputed_reference_gives_the_online_loss(tiny_llava_dir, run_dir, spec_for, tmp_path):
    spec = spec_for(tiny_llava_dir)
    job = make_job(spec, run_dir, tmp_path / "w")
    with torch.no_grad():  # move the adapter off zero so that policy != reference
        for name, param in job.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    indices = sample_indices(len(job.training_set), 0, 0, 2)
    batch = collate(job.training_set, indices, job.processor, job.family, 512)
    online = forward_loss(job, MFPOLoss(beta=0.5), batch, autocast_for("fp32", job.device, False))

    stored = precompute(job.reference, [batch])
    assert set(stored[0]) == {"chosen", "rejected", "perturbed"}
    records = [job.training_set.records[i].model_copy(update={"ref_logps": v}) for i, v in zip(indices, stored)]
    job.training_set = type(job.training_set)(job.training_set.root, [*records])
    job.reference = PrecomputedReference()
    batch = collate(job.training_set, [0, 1], job.processor, job.family, 512)
    offline = forward_loss(job, MFPOLoss(beta=0.5), batch, autocast_for("fp32", job.device, False))
    assert_close(offline.objective, online.objective, atol=1e-5, rtol=1e-5)
    assert_close(offline.rewards.image_margin, online.rewards.image_margin, atol=1e-5, rtol=1e-5)
    assert online.objective.item() != pytest.approx(3 * 0.6931, abs=1e-3)  # the reference differs


def test_training_publishes_every_metric(tiny_llava_dir, run_dir, spec_for, tmp_path):
    spec = spec_for(tiny_llava_dir, maxSteps=1)
    metrics = StageMetrics("ns", "r", "align-1", 1)
    summary = train(make_job(spec, run_dir, tmp_path / "w", metrics=metrics))
    sample = metrics.registry.get_sample_value
    labels = {"namespace": "ns", "run": "r", "stage": "align-1", "attempt": "1"}
    assert sample("mfpo_train_steps_total", labels) == 1.0
    for term in ("text", "image", "anchor"):
        assert sample("mfpo_train_loss", {**labels, "term": term}) == pytest.approx(summary[f"loss.{term}"])
    for modality in ("text", "image"):
        assert sample("mfpo_train_reward_margin", {**labels, "modality": modality}) is not None
        assert sample("mfpo_train_reward_accuracy_ratio", {**labels, "modality": modality}) is not None
    for name in ("objective", "reward_chosen", "reward_rejected", "reward_perturbed",
                 "modality_balance_ratio", "samples_per_second", "tokens_per_second", "learning_rate"):
        assert sample(f"mfpo_train_{name}", labels) is not None, name
    assert sample("mfpo_train_learning_rate", labels) == pytest.approx(5e-3)
    assert summary["samples_per_second"] > 0


@pytest.mark.parametrize(
    "training,model,message",
    [
        ({"precision": "fp16"}, {}, "fp16 needs a CUDA device"),
        ({"deepspeedStage": 3, "referenceMode": "online"}, {"finetune": "full"}, "deepspeedStage 3"),
    ],
)
def test_unsupported_combinations_are_named(tiny_llava_dir, spec_for, training, model, message):
    spec = spec_for(tiny_llava_dir, **training)
    for key, value in model.items():
        setattr(spec.model, key, value)
    with pytest.raises(BadInput, match=message):
        validate(train_config(spec), device="cpu")


def test_lora_regex_matching_nothing_is_bad_input(tiny_llava_dir, spec_for):
    spec = spec_for(tiny_llava_dir)
    spec.model.lora.target_modules = r".*no_such_module$"
    with pytest.raises(BadInput, match="matches no module"):
        policies.prepare(train_config(spec), 1, None)


def test_missing_bin_is_bad_input(run_dir):
    with pytest.raises(BadInput, match="no record has bin 7"):
        load_bin(run_dir / "score" / "dataset", 7)
