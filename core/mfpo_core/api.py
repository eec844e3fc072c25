"""The MFPORun custom resource: spec and status as typed models.

This module is the single source of truth for the API. `crds/` is generated from it
(`python -m mfpo_operator.crd`), the operator validates bodies with it, the local runner
validates manifests with it, and the runtime reads its stage configs through it.
Defaults are the MFPO paper's (Jiang et al., arXiv 2410.15334): beta 0.1, eta 0,
term weights 1:1:1, noise step 500 of a 1000-step DDPM schedule, three curriculum stages.

Pure: pydantic only, no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "mfpo.dev"
VERSION = "v1alpha1"
KIND = "MFPORun"
PLURAL = "mfporuns"
SINGULAR = "mfporun"
SHORT_NAMES = ["mfpo"]
API_VERSION = f"{GROUP}/{VERSION}"


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON form, as stored in the Kubernetes object."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def immutable(message: str) -> dict[str, Any]:
    """CEL rule for a field that must not change once set (KubeRay's `self == oldSelf`)."""
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": message}]}


# ---------------------------------------------------------------------------- model


class ModelFamily(str, Enum):
    """Vision-language model classes the runtime knows how to align."""

    llava = "llava"  # LlavaForConditionalGeneration (LLaVA-1.5)
    llava_next = "llava-next"  # LlavaNextForConditionalGeneration
    qwen2_vl = "qwen2-vl"  # Qwen2VLForConditionalGeneration


class FinetuneMethod(str, Enum):
    lora = "lora"
    full = "full"


class LoraSpec(ApiModel):
    """LoRA adapter settings (peft)."""

    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: str = Field(
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$",
        description=(
            "Regular expression over module names that receive adapters. The default hits "
            "only the language model: a plain list such as [q_proj, v_proj] would also hit "
            "the CLIP vision tower."
        ),
    )

    @field_validator("target_modules")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"targetModules is not a valid regular expression: {err}") from err
        return value


class ModelSpec(ApiModel):
    """The base vision-language model to align."""

    uri: str = Field(
        ...,
        min_length=1,
        description=(
            "Where the base model lies in Hugging Face format: a storage URI (s3://bucket/path "
            "or file:///path) or a local directory. Never downloaded from a hub at run time."
        ),
        json_schema_extra=immutable("model.uri is immutable once the run exists"),
    )
    family: ModelFamily = Field(ModelFamily.llava, description="Model class.")
    finetune: FinetuneMethod = Field(FinetuneMethod.lora, description="LoRA adapters or full fine-tune.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="Used when finetune is lora.")
    merge_adapters: bool = Field(
        False,
        description="Publish each stage's policy with adapters merged into the weights (else the adapter only).",
    )


# ----------------------------------------------------------------------------- data


class DataFormat(str, Enum):
    """Text-preference dataset formats the datagen stage reads."""

    rlaif_v = "rlaif-v"  # RLAIF-V / RLHF-V records: question, chosen, rejected, image (parquet or JSONL)
    llava = "llava"  # LLaVA-style conversation JSON with chosen/rejected answers
    synthetic = "synthetic"  # the synthetic scenes world (written by `python -m mfpo_runtime.data.scenes`)


class BadRecordPolicy(str, Enum):
    fail = "fail"  # stop the stage with a bad-input error naming the record
    skip = "skip"  # skip it and count it in the stage's metrics


class DataSpec(ApiModel):
    """The text-preference dataset (prompt, image, chosen, rejected)."""

    uri: str = Field(..., min_length=1, description="Storage URI of the dataset (file or directory).")
    format: DataFormat = Field(DataFormat.rlaif_v, description="Record format.")
    on_bad_record: BadRecordPolicy = Field(
        BadRecordPolicy.fail, description="What to do with a record that cannot be read."
    )
    max_samples: int | None = Field(None, ge=1, description="Use at most this many records (all if unset).")
    max_skipped_fraction: float = Field(
        0.1, ge=0.0, le=1.0,
        description="With onBadRecord: skip, a datagen shard fails when more than this fraction of its records is skipped.",
    )  # fmt: skip


# ------------------------------------------------------------- image preferences


class KeywordSpec(ApiModel):
    """Keyword ranking: multipartite-graph PageRank over the chosen answer (paper, Sec. 3.1)."""

    top_k: int = Field(3, ge=1, le=64, description="Keywords kept per answer.")
    phi: float = Field(1.0, gt=0.0, description="Exponent of positional influence 1/(1+|l_i-l_j|^phi).")
    gamma: float = Field(0.5, ge=0.0, description="Weight of semantic cosine similarity in edge weights.")
    decay: float = Field(0.05, ge=0.0, description="Positional decay lambda in exp(-lambda*l_i).")
    damping: float = Field(0.85, gt=0.0, lt=1.0, description="PageRank damping factor.")
    word_vectors: Literal["hashed", "model"] = Field(
        "hashed",
        description=(
            "Word vectors of the semantic similarity: hashed character n-grams (no model needed), "
            "or the base model's own input embeddings (the paper's choice; datagen then loads it)."
        ),
    )


class GroundingMethod(str, Enum):
    annotation = "annotation"  # ground-truth masks from the dataset (COCO, the synthetic world)
    clipseg = "clipseg"  # CLIPSeg text-prompted segmentation (transformers)
    grounding_sam = "grounding-sam"  # Grounding-DINO boxes refined by SAM (transformers)
    whole_image = "whole-image"  # no grounding: noise the whole image (the paper's global-noise ablation)
    random_region = "random-region"  # annotation regions moved to a random place, same area (paper's random-region ablation)


class GroundingSpec(ApiModel):
    """Grounding each keyword to an image region."""

    method: GroundingMethod = Field(GroundingMethod.annotation, description="Segmenter.")
    model_uri: str | None = Field(None, description="Storage URI of the segmenter (clipseg, grounding-sam).")
    sam_uri: str | None = Field(None, description="Storage URI of the SAM model (grounding-sam).")
    threshold: float = Field(0.4, gt=0.0, lt=1.0, description="Mask/box score threshold.")
    fallback_whole_image: bool = Field(
        True, description="Noise the whole image when no region is found (paper's fallback); else skip the sample."
    )

    @model_validator(mode="after")
    def _model_needed(self) -> GroundingSpec:
        if self.method in (GroundingMethod.clipseg, GroundingMethod.grounding_sam) and not self.model_uri:
            raise ValueError(f"grounding.modelUri is required when grounding.method is {self.method}")
        if self.method == GroundingMethod.grounding_sam and not self.sam_uri:
            raise ValueError("grounding.samUri is required when grounding.method is grounding-sam")
        return self


class NoiseSpec(ApiModel):
    """DDPM forward noise inside the grounded regions: m' = sqrt(abar_t) R + sqrt(1-abar_t) eps."""

    step: int = Field(500, ge=0, description="Diffusion step t (paper's best: 500).")
    schedule_steps: int = Field(1000, ge=1, description="Length T of the DDPM schedule.")
    schedule: Literal["linear", "cosine"] = Field("linear", description="Beta schedule.")
    beta_start: float = Field(1e-4, gt=0.0, description="Linear schedule start.")
    beta_end: float = Field(0.02, gt=0.0, description="Linear schedule end.")

    @model_validator(mode="after")
    def _step_in_schedule(self) -> NoiseSpec:
        if self.step >= self.schedule_steps:
            raise ValueError(
                f"imagePreference.noise.step ({self.step}) must be below scheduleSteps ({self.schedule_steps})"
            )
        return self


class ImagePreferenceSpec(ApiModel):
    """Construction of dispreferred images (the datagen stage)."""

    keywords: KeywordSpec = Field(default_factory=KeywordSpec)
    grounding: GroundingSpec = Field(default_factory=GroundingSpec)
    noise: NoiseSpec = Field(default_factory=NoiseSpec)
    shards: int = Field(1, ge=1, le=1024, description="Parallel datagen shards (one Indexed Job).")
    image_size: int | None = Field(None, ge=16, description="Resize images to this square size (model's if unset).")
    seed: int = Field(0, ge=0, description="Seed of the noise.")


# ------------------------------------------------------------------- curriculum


class ReferencePolicy(str, Enum):
    base = "base"  # every stage's reference is the base model
    previous = "previous"  # stage k's reference is stage k-1's policy


class CurriculumSpec(ApiModel):
    """Easy-to-hard curriculum by semantic entropy (the score stage)."""

    stages: int = Field(3, ge=1, le=16, description="Number of alignment stages (entropy bins).")
    entropy_samples: int = Field(5, ge=2, le=64, description="Sampled answers per prompt for semantic entropy.")
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Sampling temperature for entropy.")
    max_new_tokens: int = Field(32, ge=1, le=1024, description="Length of each sampled answer.")
    equivalence: Literal["object-set", "exact"] = Field(
        "object-set", description="When two answers mean the same: same set of mentioned objects, or same text."
    )
    reference: ReferencePolicy = Field(ReferencePolicy.base, description="Reference policy of each stage.")


# -------------------------------------------------------------------- objective


class TermWeights(ApiModel):
    text: float = Field(1.0, ge=0.0, description="Weight of L_text (DPO on chosen vs rejected answers).")
    image: float = Field(1.0, ge=0.0, description="Weight of L_image (chosen on original vs perturbed image).")
    anchor: float = Field(1.0, ge=0.0, description="Weight of L_anchor (chosen reward against eta).")

    @model_validator(mode="after")
    def _not_all_zero(self) -> TermWeights:
        if self.text == 0 and self.image == 0 and self.anchor == 0:
            raise ValueError("objective.weights: at least one of text, image, anchor must be positive")
        return self


class ObjectiveSpec(ApiModel):
    """The three-term MFPO objective."""

    beta: float = Field(0.1, gt=0.0, le=10.0, description="Inverse temperature of the implicit reward.")
    eta: float = Field(0.0, description="Anchor margin (paper's best: 0).")
    weights: TermWeights = Field(default_factory=TermWeights)


# --------------------------------------------------------------------- training


class Precision(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class ReferenceMode(str, Enum):
    online = "online"  # reference log-probs computed each step (adapters disabled, or a frozen copy)
    precomputed = "precomputed"  # computed once per stage and stored with the data


class TrainingSpec(ApiModel):
    """Optimisation of each alignment stage."""

    epochs: int = Field(1, ge=1, le=100)
    max_steps: int | None = Field(None, ge=1, description="Stop each stage after this many optimizer steps.")
    learning_rate: float = Field(5e-6, gt=0.0, le=1.0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field("cosine")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    batch_size: int = Field(1, ge=1, le=4096, description="Micro-batch per device.")
    gradient_accumulation: int = Field(8, ge=1, le=4096)
    precision: Precision = Field(Precision.bf16)
    deepspeed_stage: Literal[0, 2, 3] = Field(0, description="DeepSpeed ZeRO stage; 0 is plain DDP/single device.")
    gradient_checkpointing: bool = Field(False)
    checkpoint_every_steps: int = Field(50, ge=1, description="Save a resumable checkpoint every N optimizer steps.")
    reference_mode: ReferenceMode = Field(ReferenceMode.online)
    max_length: int = Field(1024, ge=16, description="Prompt+answer tokens kept (answers truncated beyond).")
    seed: int = Field(0, ge=0)


# ------------------------------------------------------------------- evaluation


class BenchmarkName(str, Enum):
    synthetic = "synthetic"  # the synthetic scenes world, exact ground truth
    object_halbench = "object-halbench"  # CHAIR on COCO
    amber = "amber"
    pope = "pope"


class BenchmarkSpec(ApiModel):
    name: BenchmarkName
    uri: str | None = Field(
        None, description="Storage URI of the benchmark's data (synthetic: the evaluation split written by `python -m mfpo_runtime.data.scenes`)."
    )
    max_samples: int | None = Field(None, ge=1)
    options: dict[str, str] = Field(default_factory=dict, description="Benchmark-specific options (e.g. POPE split).")


class EvaluationSpec(ApiModel):
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [BenchmarkSpec(name=BenchmarkName.synthetic)], min_length=1
    )
    evaluate_base: bool = Field(True, description="Also evaluate the base model, for before/after scores.")
    every_stage: bool = Field(False, description="Evaluate every stage's policy, not only the last.")
    max_new_tokens: int = Field(64, ge=1, le=4096)
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(1.0, gt=0.0, le=5.0)
    batch_size: int = Field(8, ge=1, le=1024)


# -------------------------------------------------------- resources & scheduling


class Toleration(ApiModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class ResourcesSpec(ApiModel):
    """Where and how big each stage Job is."""

    gpus_per_node: int = Field(1, ge=0, le=16, description="nvidia.com/gpu per pod (0: CPU only).")
    nodes: int = Field(1, ge=1, le=512, description="Pods per alignment stage (torchrun multi-node).")
    cpu: str = Field("4", description="CPU request per pod.")
    memory: str = Field("32Gi", description="Memory request per pod.")
    shm_size: str = Field("8Gi", description="Size of the memory-backed /dev/shm.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: dict[str, Any] | None = Field(
        None, description="Pod affinity, passed through.", json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    priority_class_name: str | None = None
    queue_name: str | None = Field(None, description="Kueue LocalQueue; Jobs are created suspended for Kueue.")
    service_account_name: str | None = None
    active_deadline_seconds: int | None = Field(None, ge=60, description="Per-attempt time limit.")
    ttl_seconds_after_finished: int = Field(86400, ge=0)


class StorageSpec(ApiModel):
    """Where datasets, checkpoints and results live. Credentials never appear here."""

    uri: str = Field(
        ...,
        pattern=r"^(s3|file)://.+",
        description="Run prefix: s3://bucket/prefix (MinIO) or file:///path. Each run writes under <uri>/<run name>/.",
        json_schema_extra=immutable("storage.uri is immutable once the run exists"),
    )
    endpoint: str | None = Field(None, description="S3 endpoint host:port (MinIO); from the environment if unset.")
    secure: bool = Field(True, description="Use TLS to the endpoint.")
    secret_name: str | None = Field(
        None,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, injected into stage pods as environment.",
    )
    delete_on_run_deletion: bool = Field(False, description="Delete the run's artifacts when the MFPORun is deleted.")


class RetrySpec(ApiModel):
    max_attempts: int = Field(3, ge=1, le=100, description="Attempts per stage, the first included.")
    backoff_seconds: float = Field(30.0, ge=0.0, description="Delay before the second attempt.")
    backoff_multiplier: float = Field(2.0, ge=1.0, le=10.0)
    max_backoff_seconds: float = Field(600.0, ge=0.0)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before starting `attempt` (1-based); 0 for the first."""
        if attempt <= 1:
            return 0.0
        return min(self.backoff_seconds * self.backoff_multiplier ** (attempt - 2), self.max_backoff_seconds)


class MFPORunSpec(ApiModel):
    """The whole MFPO recipe for one model: datagen, score, align-1..N, eval."""

    model: ModelSpec
    data: DataSpec
    storage: StorageSpec
    image_preference: ImagePreferenceSpec = Field(default_factory=ImagePreferenceSpec)
    curriculum: CurriculumSpec = Field(default_factory=CurriculumSpec)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    retries: RetrySpec = Field(default_factory=RetrySpec)
    runtime_image: str = Field("ghcr.io/mfpo/runtime:0.1.0", description="Image of every stage pod.")
    suspend: bool = Field(False, description="Pause the run: no new stage starts; running attempts are stopped.")

    def stage_names(self) -> list[str]:
        """The run's stages in order: datagen, score, align-1..N, eval."""
        return ["datagen", "score", *[f"align-{k}" for k in range(1, self.curriculum.stages + 1)], "eval"]


# ----------------------------------------------------------------------- status


class RunPhase(str, Enum):
    pending = "Pending"
    running = "Running"
    suspended = "Suspended"
    succeeded = "Succeeded"
    failed = "Failed"


class StagePhase(str, Enum):
    pending = "Pending"  # not started
    running = "Running"  # an attempt is live
    backoff = "BackOff"  # the last attempt failed; the next waits for its backoff
    succeeded = "Succeeded"
    failed = "Failed"  # permanently: bad input or attempts exhausted


class StageStatus(ApiModel):
    name: str
    phase: StagePhase = StagePhase.pending
    attempts: int = Field(0, ge=0, description="Attempts started so far.")
    job: str | None = Field(None, description="Name of the Job (or local process) of the latest attempt.")
    start_time: datetime | None = Field(None, description="When the first attempt started.")
    completion_time: datetime | None = Field(None, description="When the stage succeeded or failed permanently.")
    last_failure_time: datetime | None = Field(None, description="When the latest attempt failed.")
    outputs: dict[str, str] = Field(default_factory=dict, description="Artifact URIs from the result summary.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Metrics from the result summary.")
    message: str | None = Field(None, description="Why the latest attempt failed, or the stage's summary.")
    reason: str | None = Field(
        None,
        description=(
            "Machine-readable cause of the phase: Started, Succeeded, BackOff, Disrupted, Vanished, "
            "Suspended, BadInput, AttemptsExhausted (set by the planner)."
        ),
    )
    disrupted_attempts: list[int] = Field(
        default_factory=list,
        description=(
            "Attempt numbers stopped from outside (preemption, eviction, suspend, a deleted Job): "
            "they do not count against retries.maxAttempts."
        ),
    )
    retried_from: int = Field(
        0, ge=0, description="Attempts made before the latest manual retry; maxAttempts counts those after it."
    )


class Condition(ApiModel):
    """A Kubernetes-style condition (type, status, reason, message, lastTransitionTime)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class MFPORunStatus(ApiModel):
    model_config = ConfigDict(extra="ignore")  # kopf writes its own keys into status

    phase: RunPhase = RunPhase.pending
    current_stage: str | None = None
    progress: str | None = Field(None, description="Stages succeeded over stages, e.g. 2/6.")
    stages: list[StageStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    retry_token: str | None = Field(
        None, description="Value of the mfpo.dev/retry annotation last seen; a new value retries a failed run."
    )

    def stage(self, name: str) -> StageStatus | None:
        return next((s for s in self.stages if s.name == name), None)


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(..., pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    namespace: str | None = None


class MFPORun(ApiModel):
    """A whole manifest, as `kubectl apply -f` and `mfpo run` read it."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    api_version: Literal["mfpo.dev/v1alpha1"]
    kind: Literal["MFPORun"]
    metadata: ObjectMeta
    spec: MFPORunSpec
    status: MFPORunStatus | None = None
