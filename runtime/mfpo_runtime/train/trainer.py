"""The MFPO training loop of one align stage, written out: setup, forward, loss, step,
checkpoint, log (torchtune / nanochat style, not a subclass of a Hugging Face trainer).

Each optimizer step takes `gradientAccumulation` micro-batches of `batchSize` samples per
process. A micro-batch is one triple batch (3B rows); the policy runs one forward over it,
the reference one more without gradient (or none when precomputed), and the three-term loss
(`losses.MFPOLoss`) is back-propagated. Multi-process (torchrun) and ZeRO-2/3 go through a
DeepSpeed engine; a single process with deepspeedStage 0 uses plain torch.

Called by `mfpo_runtime.stages.align` (and the benchmark, for single steps).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from mfpo_core.contract import BadInput, StageInterrupted
from torch import nn
from transformers import get_scheduler

from mfpo_runtime.metrics import StageMetrics
from mfpo_runtime.progress import progress_bar
from mfpo_runtime.train import checkpoints
from mfpo_runtime.train.checkpoints import TrainState
from mfpo_runtime.train.config import TrainConfig
from mfpo_runtime.train.data import TrainingSet, collate, sample_indices
from mfpo_runtime.train.logprobs import (
    count_tokens,
    image_path_frozen,
    shared_image_features,
    triple_logps,
)
from mfpo_runtime.train.losses import TERMS, MFPOLoss, MFPOLossOutput, PreferenceLogps
from mfpo_runtime.train.reference import Reference

log = logging.getLogger("mfpo.train")


# ------------------------------------------------------------------ validation


def device_for(gpus_per_node: int, rank: int = 0) -> torch.device:
    """The device a run's resources.gpusPerNode asks for. 0: the CPU, even where CUDA is present.
    gpusPerNode > 0: this process's GPU (LOCAL_RANK under torchrun), and a clear error where
    the machine has no such GPU, rather than a silent CPU run of a GPU-sized job."""
    gpus = gpus_per_node
    if gpus == 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BadInput(
            f"resources.gpusPerNode is {gpus} but this machine has no usable CUDA device "
            "(torch.cuda.is_available() is false): set resources.gpusPerNode: 0 to run on the CPU"
        )
    index = int(os.environ.get("LOCAL_RANK", rank))
    if index >= torch.cuda.device_count():
        raise BadInput(
            f"process {index} of resources.gpusPerNode {gpus} has no GPU: this machine shows "
            f"{torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    return torch.device("cuda", index)


def validate(config: TrainConfig, *, device: str, world_size: int = 1) -> None:
    """Refuse combinations this trainer cannot run, naming them by their spec fields (raised
    before any loading)."""
    t, m = config.loop, config.policy
    if t.precision == "fp16" and device == "cpu":
        raise BadInput("training.precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if t.deepspeed_stage == 3 and m.finetune == "full" and t.reference_mode == "online":
        raise BadInput(
            "training.deepspeedStage 3 with model.finetune full and training.referenceMode online is "
            "not supported: the frozen reference copy would be replicated unpartitioned on every rank; "
            "use referenceMode precomputed or finetune lora"
        )
    if world_size > 1 and t.deepspeed_stage == 0 and device == "cpu" and t.precision != "fp32":
        raise BadInput("multi-process CPU training (gloo) needs training.precision fp32")
    if m.finetune == "full" and m.merge_adapters:
        log.info("model.mergeAdapters has no effect with finetune full: the policy is always whole")


# --------------------------------------------------------------------- precision


def autocast_for(precision: str, device: torch.device, deepspeed: bool) -> Callable:
    """A no-argument factory of the autocast context for forwards (DeepSpeed casts itself)."""
    if precision == "fp32" or deepspeed:
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------ step stats


@dataclass
class StepStats:
    """Means over the micro-batches of one optimizer step, for logging and the stage summary."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, out: MFPOLossOutput) -> None:
        r = out.rewards
        for name, value in {
            "objective": out.objective,
            **{f"loss.{term}": loss.mean() for term, loss in out.terms.items()},
            "reward.chosen": r.chosen.mean(),
            "reward.rejected": r.rejected.mean(),
            "reward.perturbed": r.perturbed.mean(),
            "reward_margin.text": r.text_margin.mean(),
            "reward_margin.image": r.image_margin.mean(),
            "reward_accuracy.text": (r.text_margin > 0).float().mean(),
            "reward_accuracy.image": (r.image_margin > 0).float().mean(),
        }.items():
            self.values.setdefault(name, []).append(float(value.detach()))

    def means(self) -> dict[str, float]:
        means = {k: sum(v) / len(v) for k, v in self.values.items()}
        means["modality_balance"] = modality_balance(means["reward_margin.image"], means["reward_margin.text"])
        return means


def modality_balance(image_margin: float, text_margin: float) -> float:
    """Image reward margin over text reward margin; 0 while the text margin is still ~0."""
    return image_margin / text_margin if abs(text_margin) > 1e-12 else 0.0


SUMMARY_KEYS = (
    *(f"loss.{term}" for term in TERMS), "objective",
    "reward_margin.text", "reward_margin.image", "reward_accuracy.text", "reward_accuracy.image",
)


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """Stage summary: means over the last quarter of the steps (at least one)."""
    tail = history[-max(1, len(history) // 4):]
    out = {k: sum(h[k] for h in tail) / len(tail) for k in SUMMARY_KEYS}
    out["modality_balance"] = modality_balance(out["reward_margin.image"], out["reward_margin.text"])
    timed = [h for h in history if h.get("seconds")]
    samples = sum(h["samples"] for h in timed)
    seconds = sum(h["seconds"] for h in timed)
    out["samples_per_second"] = samples / seconds if seconds else 0.0
    out["tokens_per_second"] = sum(h["tokens"] for h in timed) / seconds if seconds else 0.0
    out["steps"] = float(len(history))
    return out


# -------------------------------------------------------------------- the loop


@dataclass
class TrainJob:
    """Everything one stage's loop needs, already set up (see `stages.align`)."""

    config: TrainConfig
    model: nn.Module  # the policy: a peft model (LoRA) or the whole model (full)
    reference: Reference
    processor: object
    family: str
    training_set: TrainingSet
    stage_uri: str  # checkpoints go under <stage_uri>/checkpoints/
    work_dir: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    metrics: StageMetrics | None = None
    stop_requested: Callable[[], bool] = lambda: False
    world_size: int = 1
    rank: int = 0
    progress: bool = False  # a tqdm bar on rank 0 (local runs); Jobs log every tenth instead


@dataclass
class Loop:
    """The mutable parts of a running loop (kept apart from the job's inputs)."""

    optimizer: torch.optim.Optimizer
    scheduler: object
    state: TrainState
    engine: object | None = None  # DeepSpeed engine
    scaler: object | None = None  # fp16 GradScaler (plain torch on CUDA)
    history: list[dict[str, float]] = field(default_factory=list)


def total_steps(job: TrainJob) -> int:
    t = job.config.loop
    per_step = t.batch_size * t.gradient_accumulation * job.world_size
    steps = max(1, (t.epochs * len(job.training_set)) // per_step)
    return min(steps, t.max_steps) if t.max_steps else steps


def build_optimizer(job: TrainJob, steps: int):
    t = job.config.loop
    params = [p for p in job.model.parameters() if p.requires_grad]
    if not params:
        raise BadInput("no trainable parameter: check model.lora.targetModules against the model's modules")
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    scheduler = get_scheduler(
        t.lr_scheduler, optimizer, num_warmup_steps=math.ceil(t.warmup_ratio * steps), num_training_steps=steps
    )
    return optimizer, scheduler


def deepspeed_config(job: TrainJob) -> dict:
    t = job.config.loop
    return {
        "train_micro_batch_size_per_gpu": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation,
        "gradient_clipping": t.max_grad_norm,
        "zero_optimization": {"stage": t.deepspeed_stage},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": t.precision == "bf16"},
        "fp16": {"enabled": t.precision == "fp16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def setup_loop(job: TrainJob) -> Loop:
    torch.manual_seed(job.config.loop.seed + job.rank)
    steps = total_steps(job)
    optimizer, scheduler = build_optimizer(job, steps)
    loop = Loop(optimizer, scheduler, TrainState(total_steps=steps))
    t = job.config.loop
    if t.gradient_checkpointing:
        job.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if job.world_size > 1 or t.deepspeed_stage > 0:
        import deepspeed

        loop.engine, loop.optimizer, _, loop.scheduler = deepspeed.initialize(
            model=job.model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(job)
        )
    elif t.precision == "fp16":
        loop.scaler = torch.amp.GradScaler(job.device.type)
    job.model.train()
    return loop


def resume(job: TrainJob, loop: Loop) -> None:
    """Continue from the newest complete checkpoint of this stage, if any."""
    step = checkpoints.latest_step(job.stage_uri)
    if step is None:
        return
    state, local = checkpoints.fetch(
        job.stage_uri, step, job.work_dir / f"resume-{step}", rank=job.rank, all_ranks=loop.engine is not None
    )
    checkpoints.load_rank_files(
        local, model=job.model, optimizer=loop.optimizer, scheduler=loop.scheduler, engine=loop.engine
    )
    loop.state = state
    loop.history = checkpoints.read_history(job.stage_uri, step)
    log.info("resumed %s from step %d (%d samples seen)", job.stage_uri, step, state.samples_seen)


def save_checkpoint(job: TrainJob, loop: Loop) -> str:
    local = job.work_dir / f"ckpt-{loop.state.step:08d}"
    checkpoints.save_rank_files(
        local / f"rank-{job.rank:05d}",
        model=job.model, optimizer=loop.optimizer, scheduler=loop.scheduler, engine=loop.engine,
    )
    barrier = torch.distributed.barrier if torch.distributed.is_initialized() else (lambda: None)
    uri = checkpoints.publish(
        job.stage_uri, loop.state, local, rank=job.rank, barrier=barrier, history=loop.history
    )
    if job.rank == 0:
        checkpoints.prune(job.stage_uri)
    return uri


def micro_batch(job: TrainJob, loop: Loop, micro: int) -> dict:
    """The micro-batch `micro` of the current step for this rank, on the device."""
    t = job.config.loop
    per_micro = t.batch_size * job.world_size
    start = loop.state.samples_seen + micro * per_micro + job.rank * t.batch_size
    indices = sample_indices(len(job.training_set), t.seed, start, t.batch_size)
    batch = collate(job.training_set, indices, job.processor, job.family, t.max_length)
    return {k: v.to(job.device) for k, v in batch.items()}


def forward_loss(job: TrainJob, loss_fn: MFPOLoss, batch: dict, autocast) -> MFPOLossOutput:
    """Policy forward (one, over 3B rows), reference log-probs, the three-term loss."""
    model = job.model
    features = shared_image_features(model, batch) if image_path_frozen(model) else None
    with autocast():
        policy = triple_logps(model, batch, features)
    ref = job.reference.logps(batch, features)
    return loss_fn(
        PreferenceLogps(policy.chosen, policy.rejected, policy.perturbed, ref.chosen, ref.rejected, ref.perturbed)
    )


def optimizer_step(job: TrainJob, loop: Loop, loss_fn: MFPOLoss, autocast) -> dict[str, float]:
    """Gradient accumulation over the step's micro-batches, then clip, step, schedule."""
    t = job.config.loop
    stats, tokens, started = StepStats(), 0, time.perf_counter()
    for micro in range(t.gradient_accumulation):
        batch = micro_batch(job, loop, micro)
        out = forward_loss(job, loss_fn, batch, autocast)
        if loop.engine is not None:
            loop.engine.backward(out.objective)  # DeepSpeed divides by the accumulation itself
            loop.engine.step()
        else:
            loss = out.objective / t.gradient_accumulation
            (loop.scaler.scale(loss) if loop.scaler else loss).backward()
        stats.add(out)
        tokens += count_tokens(batch)
    lr = loop.scheduler.get_last_lr()[0]
    if loop.engine is None:
        if loop.scaler:
            loop.scaler.unscale_(loop.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in job.model.parameters() if p.requires_grad], t.max_grad_norm)
        if loop.scaler:
            loop.scaler.step(loop.optimizer)
            loop.scaler.update()
        else:
            loop.optimizer.step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    means = mean_over_ranks(stats.means()) if job.world_size > 1 else stats.means()
    samples = t.batch_size * t.gradient_accumulation * job.world_size
    loop.state.step += 1
    loop.state.samples_seen += samples
    return {**means, "lr": lr, "seconds": seconds, "samples": samples, "tokens": tokens * job.world_size}


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The same step statistics on every rank: averaged over the process group."""
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    means = dict(zip(keys, (tensor / torch.distributed.get_world_size()).tolist()))
    means["modality_balance"] = modality_balance(means["reward_margin.image"], means["reward_margin.text"])
    return means


def train(job: TrainJob) -> dict[str, float]:
    """Run (or resume) the stage's loop to its last step; returns the stage summary metrics.

    Saves a checkpoint every `checkpointEverySteps` steps and at the end; when a stop is
    requested (SIGTERM) saves one at once and raises StageInterrupted.
    """
    validate(job.config, device=job.device.type, world_size=job.world_size)
    loss_fn = MFPOLoss.from_config(job.config.objective)
    loop = setup_loop(job)
    resume(job, loop)
    if job.metrics is not None:
        job.metrics.replay_train_steps(loop.history)  # those the tracker lacks, if any
    autocast = autocast_for(job.config.loop.precision, job.device, loop.engine is not None)
    every = job.config.loop.checkpoint_every_steps
    log_every = max(1, loop.state.total_steps // 10)
    bar = progress_bar(
        total=loop.state.total_steps, initial=loop.state.step, desc=job.stage_uri.rsplit("/", 1)[-1],
        unit="step", enabled=job.progress and job.rank == 0,
    )  # fmt: skip
    while loop.state.step < loop.state.total_steps:
        if job.stop_requested():
            uri = save_checkpoint(job, loop)
            raise StageInterrupted(f"stopped at step {loop.state.step}; checkpoint {uri}")
        step = optimizer_step(job, loop, loss_fn, autocast)
        loop.history.append({k: v for k, v in step.items()})
        if job.metrics is not None:
            job.metrics.train_step(loop.state.step, step)
        bar.update(1)
        bar.set_postfix(objective=f"{step['objective']:.3f}", text=f"{step['reward_margin.text']:.3f}",
                        image=f"{step['reward_margin.image']:.3f}")  # fmt: skip
        if loop.state.step % log_every == 0 or loop.state.step == loop.state.total_steps:
            log.info(
                "step %d/%d objective %.4f margins text %.4f image %.4f",
                loop.state.step, loop.state.total_steps, step["objective"],
                step["reward_margin.text"], step["reward_margin.image"],
            )
        if loop.state.step % every == 0 or loop.state.step == loop.state.total_steps:
            save_checkpoint(job, loop)
    bar.close()
    job.model.eval()
    return summarize(loop.history)


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
