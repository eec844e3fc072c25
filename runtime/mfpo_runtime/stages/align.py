"""The align-k stage: one curriculum stage of MFPO training.

Stage k trains on the records of `<run_uri>/score/dataset` whose `bin == k`, starting from
stage k-1's published policy (the base model for k = 1), against the reference the spec
names (curriculum.reference: base or previous), and publishes its policy with
`storage.publish_dir` to `contract.policy_uri(run_uri, "align-k")`. Resumable checkpoints go
to `<stage_uri>/checkpoints/`. With referenceMode precomputed the reference log-probs are
computed once, stored at `<stage_uri>/reference/ref_logps.json` (published; reused by a
resumed attempt) and attached to the records as `ref_logps`.

The only reader of the run spec for training: `train_config` maps it onto `train.config`, and
this module does the stage's storage I/O (the dataset, the previous policy's lineage and
adapter, the reference log-probs, the published policy); `train/` works on local paths.
Checkpoints are the exception: `train.checkpoints` publishes and fetches them itself, since the
loop saves them mid-stage (and on SIGTERM) under `<stage_uri>/checkpoints/`.

Called by `mfpo_runtime.stage` (`mfpo-stage --config ...`) as `run(ctx)`.
"""

from __future__ import annotations

import json
import logging

import torch
from mfpo_core import storage
from mfpo_core.api import MFPORunSpec
from mfpo_core.contract import BadInput, StageResult, policy_uri, result_uri, stage_uri

from mfpo_runtime.data.records import first_duplicate_id
from mfpo_runtime.stage import StageContext, StageOutcome
from mfpo_runtime.stages import plain
from mfpo_runtime.train import data as train_data
from mfpo_runtime.train import policy as policies
from mfpo_runtime.train import trainer
from mfpo_runtime.train.config import (
    LoopConfig,
    LoraSettings,
    ObjectiveConfig,
    PolicyConfig,
    TrainConfig,
)
from mfpo_runtime.train.logprobs import image_path_frozen, shared_image_features
from mfpo_runtime.train.reference import precompute

log = logging.getLogger("mfpo.align")


def init_distributed(device: torch.device, world_size: int) -> None:
    if world_size > 1 and not torch.distributed.is_initialized():
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")


def train_config(spec: MFPORunSpec) -> TrainConfig:
    """What training reads of a run's spec (model, curriculum.reference, training, objective)."""
    m, t = spec.model, spec.training
    lora = LoraSettings(m.lora.r, m.lora.alpha, m.lora.dropout, m.lora.target_modules)
    policy = PolicyConfig(
        base_uri=m.uri, family=plain(m.family), finetune=plain(m.finetune), lora=lora,
        merge_adapters=m.merge_adapters, reference=plain(spec.curriculum.reference),
    )
    loop = LoopConfig(
        epochs=t.epochs, max_steps=t.max_steps, learning_rate=t.learning_rate, lr_scheduler=t.lr_scheduler,
        warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        batch_size=t.batch_size, gradient_accumulation=t.gradient_accumulation, precision=plain(t.precision),
        deepspeed_stage=t.deepspeed_stage, gradient_checkpointing=t.gradient_checkpointing,
        checkpoint_every_steps=t.checkpoint_every_steps, reference_mode=plain(t.reference_mode),
        max_length=t.max_length, seed=t.seed,
    )
    objective = ObjectiveConfig(spec.objective.beta, spec.objective.eta, spec.objective.weights.model_dump())
    return TrainConfig(policy, loop, objective)


def previous_lineage(run_uri: str, k: int) -> policies.Lineage | None:
    """The lineage of stage k-1's published policy; None for stage 1 (it starts from the base)."""
    if k == 1:
        return None
    uri = policy_uri(run_uri, f"align-{k - 1}")
    if not storage.is_complete(uri):
        raise BadInput(f"align-{k} starts from align-{k - 1}'s policy, but {uri} is not published")
    for name in (policies.POLICY_FILE, policies.LINEAGE_FILE):
        if storage.exists(storage.join(uri, name)):
            return policies.Lineage.from_doc(storage.read_json(storage.join(uri, name)))
    raise BadInput(
        f"{uri} has neither {policies.POLICY_FILE} nor {policies.LINEAGE_FILE}: not a policy of this runtime"
    )


def prepare_policy(config: TrainConfig, k: int, previous: policies.Lineage | None, device: str):
    """Stage k's policy, with the adapter it continues (if any) fetched to a local directory."""
    adapter = policies.continued_adapter(config, previous)
    adapter_dir = storage.materialize(adapter) if adapter else None
    return policies.prepare(config, k, previous, adapter_dir=adapter_dir, device=device)


def publish_policy(policy: policies.StagePolicy, config: TrainConfig, target: str, work_dir) -> policies.Lineage:
    """Save the trained policy locally and publish it at `target` atomically."""
    local = work_dir / "policy"
    adapter_uri = storage.join(target, "adapter")
    lineage = policies.save_policy(policy, config, local, target_uri=target, adapter_uri=adapter_uri)
    storage.publish_dir(local, target)
    return lineage


def with_reference_logps(ctx: StageContext, job: trainer.TrainJob, policy) -> train_data.TrainingSet:
    """Records with ref_logps: read from a previous attempt, or computed once and published.

    Keyed by record id: records that share one would train against one record's values, so
    they are refused (bad input), and so are published values that miss a record."""
    records = job.training_set.records
    duplicate = first_duplicate_id(records)
    if duplicate is not None:
        raise BadInput(
            f"{job.training_set.root}: records #{duplicate[0]} and #{duplicate[1]} share the id "
            f"{records[duplicate[0]].id!r}; training.referenceMode precomputed keys each record's "
            "reference log-probs by its id, so ids must be unique"
        )
    uri = storage.join(ctx.config.stage_uri, "reference")
    if storage.is_complete(uri):
        values = storage.read_json(storage.join(uri, "ref_logps.json"))
        missing = [r.id for r in records if r.id not in values]
        if missing:
            raise BadInput(
                f"the reference log-probs published at {uri} hold no value for {len(missing)} of "
                f"the stage's {len(records)} records (first: {missing[0]!r}): they were computed "
                "for other data; delete them to compute them again"
            )
    else:
        reference = policies.reference_for_precompute(policy, job.config, job.device.type)
        values = dict(zip((r.id for r in records), _precompute(job, reference)))
        local = ctx.work_dir / "reference"
        local.mkdir(parents=True, exist_ok=True)
        (local / "ref_logps.json").write_text(json.dumps(values))
        if job.rank == 0:
            storage.publish_dir(local, uri)
    updated = [r.model_copy(update={"ref_logps": values[r.id]}) for r in records]
    return train_data.TrainingSet(job.training_set.root, updated)


def _precompute(job: trainer.TrainJob, reference) -> list[dict[str, float]]:
    t = job.config.loop
    size = len(job.training_set)
    starts = range(0, size, t.batch_size)
    batches = (
        {k: v.to(job.device) for k, v in train_data.collate(
            job.training_set, list(range(s, min(s + t.batch_size, size))), job.processor, job.family, t.max_length
        ).items()}
        for s in starts
    )
    share = (lambda b: shared_image_features(job.model, b)) if image_path_frozen(job.model) else None
    return precompute(reference, batches, share)


def steps_before(run_uri: str, k: int) -> int:
    """Optimizer steps of align-1..k-1 (their result documents): where align-k's steps start
    on the tracker's curriculum-wide step axis."""
    total = 0
    for j in range(1, k):
        uri = result_uri(run_uri, f"align-{j}")
        if storage.exists(uri):
            total += int(StageResult.model_validate(storage.read_json(uri)).metrics.get("steps", 0))
    return total


def track_policy(ctx: StageContext, local_policy, lineage: policies.Lineage, target: str) -> None:
    """The run's final policy as an MLflow logged model: the published directory (processor,
    adapter/ in peft's format, mfpo_policy.json) without whole merged or fully fine-tuned
    weights, which stay in storage only (the tag mfpo.policy_uri names them)."""
    cfg = ctx.config
    whole_weights = cfg.spec.model.finetune == "full" or cfg.spec.model.merge_adapters
    logged = local_policy
    if whole_weights:
        logged = ctx.work_dir / "policy-logged"
        logged.mkdir(exist_ok=True)
        for path in local_policy.iterdir():
            if path.is_file() and not path.name.endswith((".safetensors", ".bin")):
                (logged / path.name).write_bytes(path.read_bytes())
    tags = {"mfpo.stage": cfg.stage, "mfpo.policy_uri": target, "mfpo.family": lineage.family,
            "mfpo.finetune": plain(cfg.spec.model.finetune), "mfpo.base_uri": lineage.base}  # fmt: skip
    ctx.tracker.log_model(logged, name=f"{cfg.run}-policy", tags=tags)


def run(ctx: StageContext) -> StageOutcome:
    cfg = ctx.config
    config, k = train_config(cfg.spec), cfg.align_index
    rank, world_size = trainer.world()
    device = trainer.device_for(cfg.spec.resources.gpus_per_node, rank)
    trainer.validate(config, device=device.type, world_size=world_size)
    init_distributed(device, world_size)

    dataset_uri = storage.join(stage_uri(cfg.run_uri, "score"), "dataset")
    if not storage.exists(dataset_uri):
        raise BadInput(f"align-{k} needs the score stage's dataset at {dataset_uri}; it does not exist")
    dataset_dir = storage.materialize(dataset_uri, ctx.work_dir / "data")
    training_set = train_data.load_bin(dataset_dir, k)
    policy = prepare_policy(config, k, previous_lineage(cfg.run_uri, k), str(device))

    job = trainer.TrainJob(
        config=config, model=policy.model, reference=policy.reference, processor=policy.processor,
        family=policy.family, training_set=training_set, stage_uri=cfg.stage_uri, work_dir=ctx.work_dir,
        device=device, metrics=ctx.metrics, stop_requested=lambda: ctx.stop_requested,
        world_size=world_size, rank=rank, progress=ctx.progress,
    )
    if config.loop.reference_mode == "precomputed":
        job.training_set = with_reference_logps(ctx, job, policy)
    if ctx.tracker is not None:
        ctx.tracker.step_offset = steps_before(cfg.run_uri, k)
    summary = trainer.train(job)

    target = policy_uri(cfg.run_uri, cfg.stage)
    lineage = publish_policy(policy, config, target, ctx.work_dir) if rank == 0 else None
    if ctx.tracker is not None and lineage is not None and k == cfg.spec.curriculum.stages:
        track_policy(ctx, ctx.work_dir / "policy", lineage, target)
    return StageOutcome(
        metrics={**summary, "records": float(len(training_set))},
        outputs={"policy": target, "checkpoints": storage.join(cfg.stage_uri, "checkpoints")},
        details={"lineage": json.loads(lineage.to_json()) if lineage else {}, "bin": k},
    )
