"""The align-k stage: one curriculum stage of MFPO training.

Stage k trains on the records of `<run_uri>/score/dataset` whose `bin == k`, starting from
stage k-1's published policy (the base model for k = 1), against the reference the spec
names (curriculum.reference: base or previous), and publishes its policy with
`storage.publish_dir` to `contract.policy_uri(run_uri, "align-k")`. Resumable checkpoints go
to `<stage_uri>/checkpoints/`. With referenceMode precomputed the reference log-probs are
computed once, stored at `<stage_uri>/reference/ref_logps.json` (published; reused by a
resumed attempt) and attached to the records as `ref_logps`.

Called by `mfpo_runtime.stage` (`mfpo-stage --config ...`) as `run(ctx)`.
"""

from __future__ import annotations

import json
import logging

import torch
from mfpo_core import storage
from mfpo_core.contract import BadInput, policy_uri, stage_uri

from mfpo_runtime.stage import StageContext, StageOutcome
from mfpo_runtime.train import data as train_data
from mfpo_runtime.train import policy as policies
from mfpo_runtime.train import trainer
from mfpo_runtime.train.logprobs import image_path_frozen, shared_image_features
from mfpo_runtime.train.reference import precompute

log = logging.getLogger("mfpo.align")


def init_distributed(device: torch.device, world_size: int) -> None:
    if world_size > 1 and not torch.distributed.is_initialized():
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")


def previous_policy(run_uri: str, k: int) -> str | None:
    if k == 1:
        return None
    uri = policy_uri(run_uri, f"align-{k - 1}")
    if not storage.is_complete(uri):
        raise BadInput(f"align-{k} starts from align-{k - 1}'s policy, but {uri} is not published")
    return uri


def with_reference_logps(ctx: StageContext, job: trainer.TrainJob, policy) -> train_data.TrainingSet:
    """Records with ref_logps: read from a previous attempt, or computed once and published."""
    uri = storage.join(ctx.config.stage_uri, "reference")
    if storage.is_complete(uri):
        values = storage.read_json(storage.join(uri, "ref_logps.json"))
    else:
        reference = policies.reference_for_precompute(policy, ctx.config.spec, job.device.type)
        values = dict(zip((r.id for r in job.training_set.records), _precompute(job, reference)))
        local = ctx.work_dir / "reference"
        local.mkdir(parents=True, exist_ok=True)
        (local / "ref_logps.json").write_text(json.dumps(values))
        if job.rank == 0:
            storage.publish_dir(local, uri)
    records = [r.model_copy(update={"ref_logps": values[r.id]}) for r in job.training_set.records]
    return train_data.TrainingSet(job.training_set.root, records)


def _precompute(job: trainer.TrainJob, reference) -> list[dict[str, float]]:
    t = job.spec.training
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


def run(ctx: StageContext) -> StageOutcome:
    cfg = ctx.config
    spec, k = cfg.spec, cfg.align_index
    rank, world_size = trainer.world()
    device = trainer.device_for(spec, rank)
    trainer.validate(spec, device=device.type, world_size=world_size)
    init_distributed(device, world_size)

    dataset_uri = storage.join(stage_uri(cfg.run_uri, "score"), "dataset")
    if not storage.exists(dataset_uri):
        raise BadInput(f"align-{k} needs the score stage's dataset at {dataset_uri}; it does not exist")
    dataset_dir = storage.materialize(dataset_uri, ctx.work_dir / "data")
    training_set = train_data.load_bin(dataset_dir, k)
    policy = policies.prepare(spec, k, previous_policy(cfg.run_uri, k), device=str(device))

    job = trainer.TrainJob(
        spec=spec, model=policy.model, reference=policy.reference, processor=policy.processor,
        family=policy.family, training_set=training_set, stage_uri=cfg.stage_uri, work_dir=ctx.work_dir,
        device=device, metrics=ctx.metrics, stop_requested=lambda: ctx.stop_requested,
        world_size=world_size, rank=rank, progress=ctx.progress,
    )
    if spec.training.reference_mode == "precomputed":
        job.training_set = with_reference_logps(ctx, job, policy)
    summary = trainer.train(job)

    target = policy_uri(cfg.run_uri, cfg.stage)
    lineage = policies.publish_policy(policy, spec, target, ctx.work_dir) if rank == 0 else None
    return StageOutcome(
        metrics={**summary, "records": float(len(training_set))},
        outputs={"policy": target, "checkpoints": storage.join(cfg.stage_uri, "checkpoints")},
        details={"lineage": json.loads(lineage.to_json()) if lineage else {}, "bin": k},
    )
