"""The MFPORun custom resource: spec and status as typed models.

This module is the single source of truth for the API. `crds/` and the API reference
docs/api.md are generated from it (`python -m mfpo_operator.crd --write`), so every field's
description here is what `kubectl explain` prints. The operator validates bodies with it,
the local runner validates manifests with it, and the runtime reads its stage configs through it.
Defaults are the MFPO paper's (Jiang et al., arXiv 2410.15334): beta 0.1, eta 0,
term weights 1:1:1, noise step 500 of a 1000-step DDPM schedule, three curriculum stages.

Pure: pydantic only, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from mfpo_core import k8s, uris
from mfpo_core.k8s import Toleration  # noqa: F401 (api.Toleration: the type of resources.tolerations)
from mfpo_core.stages import stage_names

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


def immutable(message: str) -> Callable[[dict[str, Any]], None]:
    """CEL rule for a field that must not change once set (KubeRay's `self == oldSelf`), added
    to the rules its type already states."""

    def add_rule(schema: dict[str, Any]) -> None:
        rules = schema.get("x-kubernetes-validations", [])
        schema["x-kubernetes-validations"] = [*rules, {"rule": "self == oldSelf", "message": message}]

    return add_rule


# The API server's quantity grammar (k8s.io/apimachinery/pkg/api/resource/quantity.go):
#   <quantity> ::= <signedNumber><suffix>;  <number> ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
#   <suffix> ::= Ki | Mi | Gi | Ti | Pi | Ei | n | u | m | "" | k | M | G | T | P | E | e<int> | E<int>
# (ParseQuantity reads an exponent as an integer: "1e3.5" fails there). No "-" sign: the API
# server rejects negative resource requests ("must be greater than or equal to 0").
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
QUANTITY_EXAMPLES = "e.g. 32Gi, 500m, 1e3 or 4"


def _quantity(value: Any) -> Any:
    """A quantity as the API server reads one: a non-negative integer or a string of the
    grammar above; kept as its string, the form Job manifests take."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and re.fullmatch(QUANTITY_PATTERN, value):
        return value
    raise ValueError(f"must be a Kubernetes quantity ({QUANTITY_EXAMPLES}), not {value!r}")


# A resource.Quantity in a CRD: int-or-string, the only anyOf a structural schema allows
# (exactly [integer, string]). The pattern applies to strings only; CEL bounds the integers.
Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-validations": [
                {"rule": "type(self) == string || self >= 0", "message": "a quantity must not be negative"}
            ],
        }
    ),
]


# Memory-like quantities hold bytes: the API server takes "512m" (0.512 bytes: m is milli) and
# only warns ("fractional byte value "512m" is invalid, must be an integer", pkg/api/pod/warnings.go),
# then the kubelet rounds it up to 1 byte: a memory limit no process starts in, a /dev/shm every
# write overflows. `byte_quantity` refuses a value that is not a whole number of bytes (exactly:
# k8s.parse_quantity), or lies outside the field's bounds. The CRD says the same in CEL with
# Kubernetes' quantity library (quantity(), compareTo(), sub(), asApproximateFloat(); Kubernetes
# 1.29+): the value minus the integer part of its float approximation is 0 or 1 exactly when it
# is whole (the approximation is within 1 of it below 2^53 bytes, hence the maximum of 1Pi =
# 2^50; a quantity holds nanos at most, so a fractional difference is never 0.0 or 1.0 as a float).
BYTE_QUANTITY_MAX = "1Pi"


def _bytes(amount: Any) -> str:
    return f"{amount.normalize():f}"


def _byte_quantity_check(what: str, minimum: str, maximum: str, why: str) -> Callable[[Any], str]:
    low, high = k8s.parse_quantity(minimum), k8s.parse_quantity(maximum)

    def check(value: Any) -> str:
        text = _quantity(value)
        try:
            amount = k8s.parse_quantity(text)
        except k8s.QuantityError as err:
            raise ValueError(f"{text} is not a quantity the API server reads: {err}") from None
        if amount != amount.to_integral_value():
            number = text.removeprefix("+")
            if number.endswith("m"):
                raise ValueError(f"{text} is {_bytes(amount)} bytes (the suffix m means milli); write {number[:-1]}Mi")
            raise ValueError(f"{text} is {_bytes(amount)} bytes, not a whole number of bytes; write one, e.g. in Ki or Mi")
        if amount < low:
            raise ValueError(f"{text} is {_bytes(amount)} bytes, below the minimum {what} of {minimum}: {why}")
        if amount > high:
            raise ValueError(f"{text} is {_bytes(amount)} bytes, above the maximum {what} of {maximum}")
        return text

    return check


def byte_quantity_schema(what: str, minimum: str) -> dict[str, Any]:
    """The CRD's half of a quantity of bytes of at least `minimum` (at most BYTE_QUANTITY_MAX)."""
    low, high = k8s.parse_quantity(minimum), k8s.parse_quantity(BYTE_QUANTITY_MAX)
    # Each quantity(self) is priced at a full 3 MiB string's traversal (an int-or-string has no
    # maxLength): four of them cost about 1.3 million of a rule's 10 million.
    rule = (
        f"type(self) == int ? self >= {int(low)} && self <= {int(high)} : "
        f"quantity(self).compareTo(quantity('{minimum}')) >= 0 "
        f"&& quantity(self).compareTo(quantity('{BYTE_QUANTITY_MAX}')) <= 0 "
        "&& quantity(self).sub(int(quantity(self).asApproximateFloat())).asApproximateFloat() in [0.0, 1.0]"
    )
    message = (
        f"{what} must be a whole number of bytes from {minimum} to {BYTE_QUANTITY_MAX}, e.g. 32Gi "
        "(the suffix m means milli: 512m is 0.512 bytes; write 512Mi)"
    )
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-validations": [{"rule": rule, "message": message}],
    }


# Importing a stage's libraries (torch, transformers, peft, the stage modules) alone peaks at
# 390 MiB resident (`/usr/bin/time -v python -c "import mfpo_runtime.stages..."`, CPU torch), and
# the memory limit is the request: below 512Mi no stage starts.
MEMORY_MIN = "512Mi"
MEMORY_MIN_WHY = "a stage's libraries alone take about 390 MiB before it reads anything, and the memory limit is the request"
# Every container gets a 64 MiB /dev/shm without this volume (Docker's and containerd's
# default); less only makes DataLoader workers and NCCL fail with "Bus error".
SHM_MIN = "64Mi"
SHM_MIN_WHY = "every container gets 64 MiB of /dev/shm without it; less only makes DataLoader workers and NCCL fail"
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_byte_quantity_check("memory", MEMORY_MIN, BYTE_QUANTITY_MAX, MEMORY_MIN_WHY)),
    WithJsonSchema(byte_quantity_schema("memory", MEMORY_MIN)),
]
ShmQuantity = Annotated[
    str,
    BeforeValidator(_byte_quantity_check("shmSize", SHM_MIN, BYTE_QUANTITY_MAX, SHM_MIN_WHY)),
    WithJsonSchema(byte_quantity_schema("shmSize", SHM_MIN)),
]


# A Secret's name, as the API server checks it (IsDNS1123Subdomain, at most 253 characters).
DNS_SUBDOMAIN_PATTERN = k8s.DNS1123_SUBDOMAIN_PATTERN
S3_INPUT_ENDPOINT_HINT = "there is no default endpoint; write s3.amazonaws.com to use AWS S3"

# What `storage.parse` reads, and nothing else (nothing is fetched from a hub or over HTTP at
# run time): s3://<bucket>[/<key>], file:///<absolute path> (or file://localhost/...),
# file://./<path> and file://../<path> (relative to the manifest's directory), or a plain local
# path without ':'; never a '?', '#', control character, empty or dot segment, which the storage
# layer cannot address faithfully (the rule and its sources: `mfpo_core.uris`).
STORAGE_URI_PATTERN = uris.STORAGE_URI_PATTERN
STORAGE_PREFIX_PATTERN = uris.STORAGE_PREFIX_PATTERN  # spec.storage.uri: no plain path
S3_BUCKET_FORBIDDEN_PATTERN = uris.S3_BUCKET_FORBIDDEN_PATTERN
S3_BUCKET_MESSAGE = uris.S3_BUCKET_MESSAGE
STORAGE_URI_HINT = uris.STORAGE_URI_HINT
MAX_URI_LENGTH = 1024


def _uri_check(*, prefix: bool) -> Callable[[str], str]:
    """pydantic's half of a URI rule (the CRD's: `_uri_schema`), in words that name the rule."""

    def check(value: str) -> str:
        problem = uris.storage_uri_problem(value, prefix=prefix)
        if problem:
            raise ValueError(problem)
        return value

    return check


def _uri_schema(pattern: str) -> dict[str, Any]:
    """The CRD's half: the same pattern, and the bucket rule in CEL."""
    bucket_rule = {"rule": f"!self.matches({k8s.cel_string(S3_BUCKET_FORBIDDEN_PATTERN)})", "message": S3_BUCKET_MESSAGE}
    return {"type": "string", "minLength": 1, "maxLength": MAX_URI_LENGTH, "pattern": pattern,
            "x-kubernetes-validations": [bucket_rule]}  # fmt: skip


# A URI or local path the stages read through `storage`.
StorageUri = Annotated[
    str,
    Field(min_length=1, max_length=MAX_URI_LENGTH),
    AfterValidator(_uri_check(prefix=False)),
    WithJsonSchema(_uri_schema(STORAGE_URI_PATTERN)),
]
# spec.storage.uri, the run's prefix: a URI, never a bare path.
StoragePrefixUri = Annotated[
    str,
    Field(min_length=1, max_length=MAX_URI_LENGTH),
    AfterValidator(_uri_check(prefix=True)),
    WithJsonSchema(_uri_schema(STORAGE_PREFIX_PATTERN)),
]
# An http(s) server the stages call (the judge, MLflow): a host, no user:password@, no query or
# fragment (the stages append their API's paths to it).
HTTP_URL_PATTERN = uris.HTTP_BASE_URL_PATTERN
# Seeds: numpy's seed range; the stages add a per-epoch or per-record offset to it for torch.
SEED_MAX = 2**32 - 1


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


# A model is read from storage, never downloaded: nothing reaches a hub at run time. Where a
# model is named, a relative plain path is refused: in a cluster it would be relative to the
# stage pod's working directory, and its likely meaning is a Hugging Face id
# (`llava-hf/llava-1.5-7b-hf`), which `transformers` would otherwise read as one. Absolute paths,
# file:// (file://./<dir>: next to the manifest) and s3:// remain.
MODEL_LOCATION_RULE = {
    "rule": "self.startsWith('s3://') || self.startsWith('file://') || self.startsWith('/')",
    "message": (
        "a model is read from storage, never downloaded: give an s3:// or file:// URI (or an absolute path), "
        "not a relative path or a Hugging Face id; download the model into storage first (docs/own-data.md#the-model)"
    ),
}


def _model_location(value: str | None) -> str | None:
    if value is None or value.startswith(("s3://", "file://", "/")):
        return value
    raise ValueError(
        f"{value} is a relative path, which names no model's location: a model is read from storage and "
        "never downloaded, so a Hugging Face id such as llava-hf/llava-1.5-7b-hf is not one. Download the "
        "model into storage first (`hf download <id> --local-dir DIR`, then copy DIR to the bucket: "
        "docs/own-data.md#the-model) and give its s3:// or file:/// URI (file://./DIR for a directory next "
        "to the manifest)"
    )


def _model_uri_schema() -> dict[str, Any]:
    schema = _uri_schema(STORAGE_URI_PATTERN)
    return {**schema, "x-kubernetes-validations": [*schema.get("x-kubernetes-validations", []), MODEL_LOCATION_RULE]}


# Where a model lies: a storage URI or an absolute path, in pydantic and in the CRD.
ModelUri = Annotated[StorageUri, AfterValidator(_model_location), WithJsonSchema(_model_uri_schema())]

# Data and benchmarks follow the model's rule, for the model's reason: a relative plain path
# (`prefs/train.jsonl`) would be relative to the stage pod's working directory in a cluster,
# and to the shell's directory under `mfpo run`, so one manifest would name different data
# depending on where it runs. `file://./<path>` says "next to the manifest" (`mfpo run` and
# `mfpo validate` resolve it against the manifest's directory).
DATA_LOCATION_RULE = {
    "rule": MODEL_LOCATION_RULE["rule"],
    "message": (
        "a relative path would be relative to the stage's working directory, not to the manifest: give "
        "file://./<path> (next to the manifest), file:///<absolute path>, an absolute path or s3://<bucket>/<key>"
    ),
}


def _data_location(value: str | None) -> str | None:
    if value is None or value.startswith(("s3://", "file://", "/")):
        return value
    raise ValueError(
        f"{value} is a relative path, which would be relative to the stage's working directory (the pod's in "
        "a cluster, the shell's under `mfpo run`), not to the manifest: write "
        f"file://./{value.removeprefix('./')} for a path next to the manifest, or an absolute path, "
        "file:///<absolute path> or s3://<bucket>/<key>"
    )


def _data_uri_schema() -> dict[str, Any]:
    schema = _uri_schema(STORAGE_URI_PATTERN)
    return {**schema, "x-kubernetes-validations": [*schema.get("x-kubernetes-validations", []), DATA_LOCATION_RULE]}


# Where data or a benchmark lies: a storage URI or an absolute path, in pydantic and in the CRD.
DataUri = Annotated[StorageUri, AfterValidator(_data_location), WithJsonSchema(_data_uri_schema())]


class ModelSpec(ApiModel):
    """The base vision-language model to align."""

    uri: ModelUri = Field(
        ...,
        description=(
            "Where the base model lies in Hugging Face format: a storage URI (s3://bucket/path, "
            "file:///path, file://./path next to the manifest) or an absolute local directory. Never "
            "downloaded from a hub at run time: a relative path such as a Hugging Face id is refused."
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

    uri: DataUri = Field(
        ...,
        description=(
            "Storage URI of the dataset (file or directory): s3://, file:///<absolute path>, "
            "file://./<path> (next to the manifest) or an absolute path; a relative path is refused. A "
            "file by its name (any case): .parquet, .jsonl, .json (a list), .jsonl.gz, .json.gz. A "
            "directory is read whole, subdirectories too, in path order; images, hidden files and "
            "README/LICENSE/dataset metadata are passed over and listed, any other file refuses "
            "it, as do files of several splits. Record ids must be unique across the dataset."
        ),
    )
    format: DataFormat = Field(DataFormat.rlaif_v, description="Record format.")
    on_bad_record: BadRecordPolicy = Field(
        BadRecordPolicy.fail, description="What to do with a record that cannot be read."
    )
    max_samples: int | None = Field(
        None, ge=1, le=k8s.INT32_MAX, description="Use at most this many records (all if unset)."
    )
    max_skipped_fraction: float = Field(
        0.1, ge=0.0, le=1.0,
        description="With onBadRecord: skip, a datagen shard fails when more than this fraction of its records is skipped.",
    )  # fmt: skip


# ------------------------------------------------------------- image preferences


class KeywordSpec(ApiModel):
    """Keyword ranking: multipartite-graph PageRank over the answer's object nouns (paper, 3.1).
    English only (an English part-of-speech tagger): an answer in another language gives no
    keyword, and its record the whole-image fallback (fallback_reason "no keyword candidates"),
    or wrong ones; datagen counts such answers (no_keywords, non_english) and warns."""

    top_k: int = Field(3, ge=1, le=64, description="Keywords kept per answer.")
    phi: float = Field(1.0, gt=0.0, description="Exponent of positional influence 1/(1+|l_i-l_j|^phi).")
    gamma: float = Field(0.5, ge=0.0, description="Weight of semantic cosine similarity in edge weights.")
    decay: float = Field(0.05, ge=0.0, description="Positional decay lambda in exp(-lambda*l_i).")
    damping: float = Field(0.85, gt=0.0, lt=1.0, description="PageRank damping factor.")
    word_vectors: Literal["hashed", "model"] = Field(
        "hashed",
        description=(
            "Word vectors of the semantic similarity (gamma's term): hashed character n-grams (no "
            "model needed), or the base model's own input embeddings (datagen then loads it). "
            "Chosen by measurement: top-3 keyword precision on 57 hand-labelled free-form answers "
            "is 0.977 hashed, 0.977 with gamma 0 and 0.971 with the tiny test LLaVA's embeddings "
            "(no pretrained model could be measured): the objects come from part of speech, the "
            "vectors only reorder them (benchmarks/keyword_precision.py; docs/own-data.md)."
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
    model_uri: ModelUri | None = Field(
        None, description="Storage URI of the segmenter (clipseg, grounding-sam); as model.uri, never a hub id."
    )
    sam_uri: ModelUri | None = Field(
        None, description="Storage URI of the SAM model (grounding-sam); as model.uri, never a hub id."
    )
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


MAX_SCHEDULE_STEPS = 10_000
MAX_NOISE_EXPONENT = 700.0  # abar_t >= exp(-700) > 0 in float64


class NoiseSpec(ApiModel):
    """DDPM forward noise inside the grounded regions: m' = sqrt(abar_t) R + sqrt(1-abar_t) eps."""

    step: int = Field(500, ge=0, description="Diffusion step t (paper's best: 500).")
    schedule_steps: int = Field(
        1000, ge=1, le=MAX_SCHEDULE_STEPS, description="Length T of the DDPM schedule (the runtime builds all T betas)."
    )
    schedule: Literal["linear", "cosine"] = Field("linear", description="Beta schedule.")
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0, description="Linear schedule start: a variance in (0, 1).")
    beta_end: float = Field(0.02, gt=0.0, lt=1.0, description="Linear schedule end: a variance in (0, 1).")

    @model_validator(mode="after")
    def _step_in_schedule(self) -> NoiseSpec:
        if self.step >= self.schedule_steps:
            raise ValueError(
                f"imagePreference.noise.step ({self.step}) must be below scheduleSteps ({self.schedule_steps})"
            )
        return self

    @model_validator(mode="after")
    def _alpha_bar_stays_positive(self) -> NoiseSpec:
        """abar_t = prod (1 - beta_s) over s <= t, and -log(1 - b) <= b / (1 - b): with every beta
        at most b = max(betaStart, betaEnd), abar_t >= exp(-T * b / (1 - b)). Bounding
        T * b / (1 - b) by 700 keeps every abar_t above exp(-700), a normal float64 (exp(-708)
        is the smallest), so abar_t stays in (0, 1] and m' keeps sqrt(abar_t) of the image. The
        cosine schedule clips its betas at 0.999 and stays positive (its abar_t is f(t)/f(0))."""
        if self.schedule != "linear":
            return self
        largest = max(self.beta_start, self.beta_end)
        if self.schedule_steps * largest > MAX_NOISE_EXPONENT * (1.0 - largest):
            raise ValueError(
                f"imagePreference.noise: scheduleSteps * b / (1 - b) with b = max(betaStart, betaEnd) must be at most "
                f"{MAX_NOISE_EXPONENT:g} (here {self.schedule_steps * largest / (1.0 - largest):.4g}): else alpha-bar "
                "underflows to 0 and the region holds no trace of the image"
            )
        return self


# Above every supported model's input: Qwen2-VL resizes to at most max_pixels (transformers'
# default 28*28*1280, about 1002 x 1002; the released checkpoints' 12845056 = 3584 x 3584),
# LLaVA-1.5 reads 336 x 336 and LLaVA-NeXT at most 1008 on a side (its anyres grids).
MAX_IMAGE_SIZE = 4096


class ImagePreferenceSpec(ApiModel):
    """Construction of dispreferred images (the datagen stage)."""

    keywords: KeywordSpec = Field(default_factory=KeywordSpec)
    grounding: GroundingSpec = Field(default_factory=GroundingSpec)
    noise: NoiseSpec = Field(default_factory=NoiseSpec)
    shards: int = Field(1, ge=1, le=1024, description="Parallel datagen shards (one Indexed Job).")
    image_size: int | None = Field(
        None, ge=16, le=MAX_IMAGE_SIZE,
        description=(
            "Resize every image to this square before noising. Unset (recommended): the model's own view of "
            "each image (its image processor's resize and crop or pad, any-res grid, dynamic resolution), so "
            f"the noise reaches the model at the step set; see docs/own-data.md. At most {MAX_IMAGE_SIZE}, "
            "above every supported model's input."
        ),
    )  # fmt: skip
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the noise.")


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
    """Weights of the three terms of the objective: L = text*L_text + image*L_image + anchor*L_anchor."""

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
    weights: TermWeights = Field(
        default_factory=TermWeights, description="Weights of L_text, L_image and L_anchor (paper: 1, 1, 1)."
    )


# --------------------------------------------------------------------- training


class Precision(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class ReferenceMode(str, Enum):
    online = "online"  # reference log-probs computed each step (adapters disabled, or a frozen copy)
    precomputed = "precomputed"  # computed once per stage and stored with the data


MAX_STEPS = 10_000_000
# The longest context of the supported families: Qwen2-VL's 32768 (LLaVA-1.5's is 4096).
MAX_SEQUENCE_LENGTH = 32_768


class TrainingSpec(ApiModel):
    """Optimisation of each alignment stage."""

    epochs: int = Field(1, ge=1, le=100, description="Passes over each stage's data.")
    max_steps: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="Stop each stage after this many optimizer steps."
    )
    learning_rate: float = Field(5e-6, gt=0.0, le=1.0, description="Peak learning rate (AdamW).")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field(
        "cosine", description="Learning-rate decay after the warmup."
    )
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Share of each stage's steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradients are clipped to this norm.")
    batch_size: int = Field(1, ge=1, le=4096, description="Micro-batch per device.")
    gradient_accumulation: int = Field(
        8, ge=1, le=4096, description="Micro-batches per optimizer step (per device)."
    )
    precision: Precision = Field(Precision.bf16, description="Numeric precision of training.")
    deepspeed_stage: Literal[0, 2, 3] = Field(0, description="DeepSpeed ZeRO stage; 0 is plain DDP/single device.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, more time."
    )
    checkpoint_every_steps: int = Field(
        50, ge=1, le=MAX_STEPS, description="Save a resumable checkpoint every N optimizer steps."
    )
    reference_mode: ReferenceMode = Field(
        ReferenceMode.online, description="When the reference policy's log-probabilities are computed."
    )
    max_length: int = Field(
        1024, ge=16, le=MAX_SEQUENCE_LENGTH,
        description="Prompt+answer tokens kept (answers truncated beyond); at most the longest context of the supported models.",
    )  # fmt: skip
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of data order, dropout and sampling.")


# ------------------------------------------------------------------- evaluation


class BenchmarkName(str, Enum):
    """Hallucination benchmarks the eval stage runs."""

    synthetic = "synthetic"  # the synthetic scenes world, exact ground truth
    object_halbench = "object-halbench"  # CHAIR on COCO
    amber = "amber"
    pope = "pope"


class SyntheticSplit(str, Enum):
    """Splits of the synthetic scenes world (what `python -m mfpo_runtime.data.scenes` writes)."""

    eval = "eval"  # held-out scenes of the training distribution
    eval_counterprior = "eval-counterprior"  # objects without their usual partner
    train = "train"  # the training scenes themselves (how well the policy fits them)


def _distinct(values: list[Any]) -> list[Any]:
    """A list of set semantics: the API server refuses a duplicate in a list whose
    x-kubernetes-list-type is set ("Duplicate value"), and so does this twin."""
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise ValueError(f"{getattr(value, 'value', value)!r} is listed twice: list each split once")
        seen.append(value)
    return values


# One split each, in the benchmark's own names: a list with set semantics (the CRD's twin of _distinct).
SET_LIST: JsonDict = {"x-kubernetes-list-type": "set"}


class SyntheticOptions(ApiModel):
    """Options of the synthetic benchmark (name: synthetic)."""

    splits: Annotated[list[SyntheticSplit], AfterValidator(_distinct)] | None = Field(
        None,
        min_length=1,
        max_length=len(SyntheticSplit),
        description=(
            "Splits of the world to evaluate, each once: eval holds scenes of the training distribution, "
            "eval-counterprior objects without their usual partner, train the training scenes. Unset: eval "
            "and eval-counterprior when uri is the world's root (a directory per split), or the one split "
            "uri's dataset is. A split the data lacks fails the run's first stage."
        ),
        json_schema_extra=SET_LIST,
    )
    reliance: bool = Field(
        True, description="Measure the answers' reliance on the image (noised images: more generation)."
    )
    noise_seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the noise added for the reliance measures.")
    heavy_noise_step: int = Field(
        900, ge=0, le=999, description="DDPM step (of 1000) of the whole-image noise behind answerChangeRate."
    )
    region_noise_step: int = Field(
        500, ge=0, le=999, description="DDPM step (of 1000) of the object/background noise of the graded reliance."
    )


class PopeSplit(str, Enum):
    """POPE's ways of picking the absent objects it asks about."""

    random = "random"
    popular = "popular"
    adversarial = "adversarial"


class PopeOptions(ApiModel):
    """Options of POPE (name: pope)."""

    splits: Annotated[list[PopeSplit], AfterValidator(_distinct)] = Field(
        # values, not members: the CRD generator writes this default into the schema
        default_factory=lambda: [split.value for split in PopeSplit],  # type: ignore[arg-type]
        min_length=1,
        max_length=len(PopeSplit),
        description=(
            "POPE splits to evaluate, each once (files *<split>.json or *<split>.jsonl under uri, as POPE's "
            "coco_pope_<split>.json). A split without its file fails the run's first stage."
        ),
        json_schema_extra=SET_LIST,
    )
    image_dir: StorageUri = Field("images", description="Images directory, relative to uri or a storage URI.")


class Judge(str, Enum):
    """Who finds the objects an answer mentions."""

    rules = "rules"  # CHAIR's word and synonym lists
    llm = "llm"  # an OpenAI-compatible chat endpoint (judgeUrl, judgeModel)


# A key of a Secret, as the API server checks it (apimachinery's IsConfigMapKey): at most 253 of
# alphanumerics, '-', '_' and '.', and neither '.', '..' nor starting with '..'.
SECRET_KEY_PATTERN = r"^([-_a-zA-Z0-9][-._a-zA-Z0-9]*|\.[-_a-zA-Z0-9][-._a-zA-Z0-9]*)$"
# The one environment variable of the eval pod that holds the judge's API key (from
# objectHalbench.judgeSecretRef); only the judge reads it, and no other credential reaches it.
JUDGE_KEY_VARIABLE = "MFPO_JUDGE_API_KEY"


ONE_JUDGE_KEY_MESSAGE = (
    f"evaluation.benchmarks: every objectHalbench.judgeSecretRef must name the same Secret key (the eval "
    f"stage has one {JUDGE_KEY_VARIABLE})"
)


class SecretKeyRef(ApiModel):
    """One key of a Secret in the run's namespace (core/v1 SecretKeySelector without optional)."""

    name: k8s.DNS1123Subdomain = Field(..., description="Name of the Secret, in the run's namespace.")
    key: str = Field(
        ..., min_length=1, max_length=k8s.DNS1123_SUBDOMAIN_MAX, pattern=SECRET_KEY_PATTERN,
        description="The key of the Secret's data that holds the value.",
    )  # fmt: skip


class ObjectHalBenchOptions(ApiModel):
    """Options of Object HalBench (name: object-halbench). Files are relative to uri or storage URIs."""

    judge: Judge = Field(Judge.rules, description="How object mentions are found.")
    judge_url: str | None = Field(
        None, max_length=MAX_URI_LENGTH, pattern=HTTP_URL_PATTERN,
        description=(
            "Base URL of the judge's OpenAI-compatible API (judge: llm), to which /chat/completions is "
            "appended: http:// or https://, a host, no user:password@ (the key comes from judgeSecretRef), "
            "no query or fragment."
        ),
    )  # fmt: skip
    judge_model: str | None = Field(None, min_length=1, description="Model name sent to the judge (judge: llm).")
    judge_secret_ref: SecretKeyRef | None = Field(
        None,
        description=(
            f"The judge's API key (judge: llm): a key of a Secret in the run's namespace, given to the eval "
            f"stage alone as {JUDGE_KEY_VARIABLE} and sent to judgeUrl as a Bearer token; a run whose Secret "
            "is missing waits (SecretMissing), one whose key is missing fails at the eval stage's start. "
            f"Unset: the judge is called without a key. Locally, `mfpo run` reads {JUDGE_KEY_VARIABLE} from "
            "its environment."
        ),
    )
    questions: StorageUri = Field("questions.jsonl", description="The questions file (JSON lines).")
    instances: StorageUri = Field("instances.json", description="COCO instance annotations.")
    captions: StorageUri | None = Field(
        None,
        description="COCO caption annotations; when unset, captions.json is used if it exists.",
    )
    image_dir: StorageUri = Field("images", description="Images of questions that name no image.")

    @model_validator(mode="after")
    def _judge_endpoint(self) -> ObjectHalBenchOptions:
        if self.judge == Judge.llm.value and not (self.judge_url and self.judge_model):
            raise ValueError("objectHalbench: judge llm needs judgeUrl and judgeModel")
        return self


class AmberOptions(ApiModel):
    """Options of AMBER (name: amber). Files are relative to uri or storage URIs."""

    queries: StorageUri | None = Field(
        None, description="The query file; when unset, query_all.json or the first AMBER query file found."
    )
    annotations: StorageUri = Field("annotations.json", description="AMBER's annotations.")
    relation: StorageUri = Field("relation.json", description="AMBER's object vocabulary and associations.")
    safe_words: StorageUri = Field("safe_words.txt", description="Words never counted as hallucinations.")
    image_dir: StorageUri = Field("images", description="Images named by the queries.")


# Benchmark -> (field of BenchmarkSpec holding its options, their type). Kubernetes' union
# pattern (as in volume sources): one optional member per benchmark, the discriminator says
# which may be set. A oneOf of option types would not be a structural schema.
BENCHMARK_OPTIONS: dict[str, tuple[str, type[ApiModel]]] = {
    BenchmarkName.synthetic.value: ("synthetic", SyntheticOptions),
    BenchmarkName.object_halbench.value: ("object_halbench", ObjectHalBenchOptions),
    BenchmarkName.amber.value: ("amber", AmberOptions),
    BenchmarkName.pope.value: ("pope", PopeOptions),
}
RESULT_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LEGACY_OPTIONS_MESSAGE = (
    "options were replaced by typed options per benchmark: move them under synthetic, "
    "objectHalbench, amber or pope (e.g. pope: {splits: [adversarial]})"
)
# Bounds that keep the API server's CEL cost estimate of the pairwise benchmark rules small.
MAX_BENCHMARKS = 16
MAX_URI_LENGTH = 1024


class BenchmarkSpec(ApiModel):
    """One benchmark to evaluate on: which, on what data, with which options."""

    name: BenchmarkName = Field(
        ..., description="The benchmark.", json_schema_extra={"maxLength": 32}  # bounds the CEL cost
    )
    label: str | None = Field(
        None,
        max_length=40,
        pattern=RESULT_LABEL_PATTERN,
        description=(
            "Name of this entry's results (result document, eval.<policy>.<label>.<metric> "
            "metrics, report); the benchmark's name if unset. Entries must have distinct labels: "
            "two entries of one benchmark (on different data) need a label each."
        ),
    )
    uri: DataUri | None = Field(
        None,
        description=(
            "Storage URI of the benchmark's data (s3://, file:///<absolute path>, file://./<path> next to "
            "the manifest, or an absolute path; a relative path is refused); required except for synthetic, whose default is "
            "the world the run's data comes from (written by `python -m mfpo_runtime.data.scenes`; "
            "so only with data.format synthetic)."
        ),
    )
    max_samples: int | None = Field(
        None, ge=1, le=k8s.INT32_MAX, description="Evaluate at most this many questions (per split)."
    )
    synthetic: SyntheticOptions | None = Field(None, description="Options when name is synthetic.")
    object_halbench: ObjectHalBenchOptions | None = Field(None, description="Options when name is object-halbench.")
    amber: AmberOptions | None = Field(None, description="Options when name is amber.")
    pope: PopeOptions | None = Field(None, description="Options when name is pope.")
    # The untyped map of earlier versions: still accepted empty (as stored objects and older
    # manifests hold it), refused with a pointer to the typed members otherwise.
    legacy_options: dict[str, str] | None = Field(
        None,
        alias="options",
        description=(
            "Removed: must be empty. Options are typed per benchmark in synthetic, "
            "objectHalbench, amber and pope (e.g. pope: {splits: [adversarial]})."
        ),
    )

    @model_validator(mode="after")
    def _options_of_its_benchmark(self) -> BenchmarkSpec:
        if self.legacy_options:
            raise ValueError(LEGACY_OPTIONS_MESSAGE)
        if self.uri is None and self.name != "synthetic":
            raise ValueError(f"uri is required for {self.name} (only synthetic has a default: the run's world)")
        own, _ = BENCHMARK_OPTIONS[self.name]
        for field, _ in BENCHMARK_OPTIONS.values():
            if field != own and getattr(self, field) is not None:
                wire = to_camel(field)
                raise ValueError(f"{wire} options are only allowed when name is {_benchmark_of(field)}")
        return self

    @property
    def result_label(self) -> str:
        """Names this entry's results: unique within a run's benchmarks."""
        return self.label or self.name

    @property
    def options(self) -> Any:
        """This benchmark's options: the ones given, else their defaults."""
        field, kind = BENCHMARK_OPTIONS[self.name]
        return getattr(self, field) or kind()


def _benchmark_of(field: str) -> str:
    return next(name for name, (f, _) in BENCHMARK_OPTIONS.items() if f == field)


class EvaluationSpec(ApiModel):
    """Hallucination benchmarks run by the eval stage, and how answers are generated."""

    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [BenchmarkSpec(name=BenchmarkName.synthetic)],
        min_length=1,
        max_length=MAX_BENCHMARKS,
        description=(
            "Benchmarks to evaluate on. The same benchmark on the same data (name and uri) is "
            "listed once (its options list every split), and labels are distinct."
        ),
    )
    evaluate_base: bool = Field(True, description="Also evaluate the base model, for before/after scores.")
    every_stage: bool = Field(False, description="Evaluate every stage's policy, not only the last.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Length limit of each generated answer, in tokens.")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Sampling temperature (doSample only).")
    batch_size: int = Field(8, ge=1, le=1024, description="Prompts generated together.")

    @model_validator(mode="after")
    def _distinct(self) -> EvaluationSpec:
        benchmarks = self.benchmarks
        for index, bench in enumerate(benchmarks):
            for earlier in benchmarks[:index]:
                if (earlier.name, earlier.uri) == (bench.name, bench.uri):
                    raise ValueError(
                        f"benchmarks[{index}] lists {bench.name} on the same data as an earlier entry: "
                        "list it once (its options select the splits)"
                    )
                if earlier.result_label == bench.result_label:
                    raise ValueError(
                        f"benchmarks[{index}]: its results would be named {bench.result_label} like an "
                        "earlier entry's: give entries of one benchmark distinct labels"
                    )
        if len({(ref.name, ref.key) for _, ref in self.judge_secrets()}) > 1:
            raise ValueError(ONE_JUDGE_KEY_MESSAGE)
        return self

    def judge_secrets(self) -> list[tuple[str, SecretKeyRef]]:
        """(field, reference) of every objectHalbench.judgeSecretRef, in entry order."""
        return [
            (f"spec.evaluation.benchmarks[{i}].objectHalbench.judgeSecretRef", b.object_halbench.judge_secret_ref)
            for i, b in enumerate(self.benchmarks)
            if b.object_halbench is not None and b.object_halbench.judge_secret_ref is not None
        ]


# -------------------------------------------------------- resources & scheduling


class ResourcesSpec(ApiModel):
    """Where and how big each stage Job is."""

    gpus_per_node: int = Field(1, ge=0, le=16, description="nvidia.com/gpu per pod (0: CPU only).")
    nodes: int = Field(1, ge=1, le=512, description="Pods per alignment stage (torchrun multi-node).")
    cpu: Quantity = Field("4", description=f"CPU request per pod, a Kubernetes quantity ({QUANTITY_EXAMPLES}).")
    memory: MemoryQuantity = Field(
        "32Gi",
        description=(
            f"Memory request and limit per pod, a Kubernetes quantity of whole bytes (e.g. 32Gi; 512m would be "
            f"0.512 bytes), from {MEMORY_MIN} to {BYTE_QUANTITY_MAX}."
        ),
    )
    shm_size: ShmQuantity = Field(
        "8Gi",
        description=(
            f"Size of the memory-backed /dev/shm, a Kubernetes quantity of whole bytes, from {SHM_MIN} "
            f"(the size every container gets without it) to {BYTE_QUANTITY_MAX}."
        ),
    )
    node_selector: k8s.LabelMap = Field(
        default_factory=dict, description="Node labels every stage pod requires (label keys and values)."
    )
    tolerations: list[k8s.Toleration] = Field(
        default_factory=list, max_length=k8s.MAX_TOLERATIONS, description="Tolerations of every stage pod."
    )
    affinity: k8s.Affinity | None = Field(
        None, description="Pod affinity of every stage pod: a core/v1 Affinity, checked as the API server checks it."
    )
    priority_class_name: k8s.DNS1123Subdomain | None = Field(None, description="PriorityClass of the stage pods.")
    queue_name: str | None = Field(
        None,
        max_length=k8s.LABEL_VALUE_MAX,
        pattern=k8s.DNS1123_SUBDOMAIN_PATTERN,
        description=(
            "Kueue LocalQueue (its name, also a label value: at most 63 characters); Jobs are "
            "created suspended for Kueue."
        ),
    )
    service_account_name: k8s.DNS1123Subdomain | None = Field(
        None, description="ServiceAccount of the stage pods (the namespace's default if unset)."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=60, le=k8s.DURATION_SECONDS_MAX, description="Per-attempt time limit, in seconds."
    )
    ttl_seconds_after_finished: int = Field(
        86400,
        ge=0,
        le=k8s.INT32_MAX,
        description=(
            "How long Kubernetes keeps a finished stage Job the operator has not deleted: the "
            "latest failed attempt of a stage (for its logs), or any Job while the operator is "
            "away; at least 300 (the operator must see how an attempt ended). The operator "
            "deletes an attempt's Job once the run's status records its outcome."
        ),
    )


# A TCP port, 1-65535.
PORT_PATTERN = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"


class StorageSpec(ApiModel):
    """Where datasets, checkpoints and results live. Credentials never appear here."""

    uri: StoragePrefixUri = Field(
        ...,
        description="Run prefix: s3://bucket/prefix (MinIO) or file:///path. Each run writes under <uri>/<run name>/.",
        json_schema_extra=immutable("storage.uri is immutable once the run exists"),
    )
    endpoint: str | None = Field(
        None,
        # host:port only: TLS is `secure`, so that no URL scheme can contradict it.
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:" + PORT_PATTERN + ")?$",
        max_length=k8s.DNS1123_SUBDOMAIN_MAX + 6,
        description=(
            "S3 endpoint host[:port] (MinIO), without a scheme: TLS is set by secure. Required "
            "when uri is s3://: there is no default; write s3.amazonaws.com to use AWS S3."
        ),
    )
    secure: bool = Field(True, description="Use TLS to the endpoint.")
    connect_timeout_seconds: float = Field(
        10.0, gt=0.0, le=600.0, description="Seconds to wait for a connection to the endpoint, per attempt."
    )
    read_timeout_seconds: float = Field(
        60.0, gt=0.0, le=3600.0, description="Seconds to wait for the endpoint's next bytes, per attempt."
    )
    secret_name: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of a Secret in the run's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, injected into stage pods as environment.",
    )
    delete_on_run_deletion: bool = Field(False, description="Delete the run's artifacts when the MFPORun is deleted.")

    @model_validator(mode="after")
    def _endpoint_named(self) -> StorageSpec:
        if self.uri.startswith("s3://") and not self.endpoint:
            raise ValueError(
                "spec.storage.endpoint is required when spec.storage.uri is s3:// (there is no "
                "default endpoint; write s3.amazonaws.com to use AWS S3)"
            )
        return self


TRACKING_CREDENTIAL_VARIABLES = (
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
)  # fmt: skip


class MlflowTrackingSpec(ApiModel):
    """An MLflow tracking server the stages log the run to (rank 0 only). Credentials never appear here."""

    uri: str = Field(
        ...,
        max_length=MAX_URI_LENGTH,
        pattern=HTTP_URL_PATTERN,  # no user:password@: credentials never travel in the spec
        description=(
            "The tracking server's URL, http(s)://host[:port][/path], without user:password@ "
            "(credentials come from secretName)."
        ),
    )
    experiment: str = Field(
        "mfpo",
        min_length=1,
        max_length=500,
        description="MLflow experiment of the run (created when missing).",
    )
    secret_name: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "Name of a Secret in the run's namespace whose keys MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN, are injected into stage pods as "
            "environment (each key optional). Unset: the server is reached without credentials."
        ),
    )


class TrackingSpec(ApiModel):
    """Experiment tracking: where the stages log params, per-step training curves, evaluations,
    reports and the final policy. A tracker that is down never fails a stage."""

    mlflow: MlflowTrackingSpec | None = Field(None, description="Log to an MLflow tracking server.")


MAX_BACKOFF_SECONDS = 86_400.0  # a day


class RetrySpec(ApiModel):
    """Retries of a failed stage attempt, with exponential backoff."""

    max_attempts: int = Field(3, ge=1, le=100, description="Attempts per stage, the first included.")
    backoff_seconds: float = Field(30.0, ge=0.0, le=MAX_BACKOFF_SECONDS, description="Delay before the second attempt.")
    backoff_multiplier: float = Field(
        2.0, ge=1.0, le=10.0, description="Each further delay is the previous one times this."
    )
    max_backoff_seconds: float = Field(
        600.0, ge=0.0, le=MAX_BACKOFF_SECONDS, description="Longest delay between attempts."
    )

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
    retries: RetrySpec = Field(default_factory=RetrySpec, description="Retries of failed stage attempts.")
    tracking: TrackingSpec | None = Field(
        None, description="Experiment tracking (MLflow); off when unset (docs/tracking.md)."
    )
    runtime_image: k8s.ImageReference = Field(
        "ghcr.io/mfpo/runtime:0.1.0",
        description=(
            "Image of every stage pod: a container image reference as the kubelet parses it "
            "([registry[:port]/]repository[:tag][@digest], the repository path at most 255 characters, a digest "
            "sha256, sha384 or sha512 with its full length of lowercase hex)."
        ),
    )
    suspend: bool = Field(False, description="Pause the run: no new stage starts; running attempts are stopped.")

    @model_validator(mode="after")
    def _s3_inputs_need_the_endpoint(self) -> MFPORunSpec:
        """Stages reach every s3:// URI through spec.storage's endpoint (never the shell's)."""
        if self.storage.endpoint:
            return self
        for field, uri in self.input_uris():
            if uri.startswith("s3://"):
                raise ValueError(f"storage.endpoint is required: {field} is s3:// ({S3_INPUT_ENDPOINT_HINT})")
        return self

    @model_validator(mode="after")
    def _synthetic_benchmark_needs_a_world(self) -> MFPORunSpec:
        """The synthetic benchmark without a uri evaluates on the run's own world, which only
        synthetic training data has: refused here, not after every stage has trained."""
        if self.data.format == DataFormat.synthetic.value:
            return self
        for i, bench in enumerate(self.evaluation.benchmarks):
            if bench.name == BenchmarkName.synthetic.value and not bench.uri:
                raise ValueError(
                    f"evaluation.benchmarks[{i}]: the synthetic benchmark without a uri evaluates on the "
                    f"run's own synthetic world, but data.format is {self.data.format} (evaluation.benchmarks "
                    "defaults to it): give it a uri, or list the benchmarks to run (object-halbench, amber, "
                    "pope, each with its uri)"
                )
        return self

    def input_uris(self) -> list[tuple[str, str]]:
        """(field, URI) of every input the stages read: model, data, segmenters, benchmarks."""
        grounding = self.image_preference.grounding
        uris = [("model.uri", self.model.uri), ("data.uri", self.data.uri),
                ("imagePreference.grounding.modelUri", grounding.model_uri),
                ("imagePreference.grounding.samUri", grounding.sam_uri)]
        uris += [(f"evaluation.benchmarks[{i}].uri", b.uri) for i, b in enumerate(self.evaluation.benchmarks)]
        return [(field, uri) for field, uri in uris if uri]

    def stage_names(self) -> list[str]:
        """The run's stages in order: datagen, score, align-1..N, eval (`stages.STAGE_KINDS`)."""
        return stage_names(self.curriculum.stages)


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
    """Observed state of one stage."""

    name: str = Field(..., description="The stage: datagen, score, align-<k> or eval.")
    phase: StagePhase = Field(StagePhase.pending, description="Where the stage is.")
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
            "Machine-readable cause of the phase (set by the planner): Started, Succeeded, BackOff, "
            "Retried, Disrupted, Vanished, Suspended, Superseded, BadInput, AttemptsExhausted; while "
            "an attempt cannot start or run: ServiceAccountMissing, SecretMissing, QuotaExceeded, "
            "FailedCreate, Unschedulable, ImagePullBackOff, ErrImagePull, InvalidImageName, "
            "CreateContainerConfigError, CreateContainerError, AwaitingAdmission, Preempted, "
            "JobSuspended."
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
    generation: int | None = Field(
        None,
        ge=0,
        description=(
            "metadata.generation of the spec the latest attempt started from: a stage that "
            "succeeded before an edit of the spec keeps the generation it ran with."
        ),
    )


class Condition(ApiModel):
    """A Kubernetes-style condition (type, status, reason, message, lastTransitionTime)."""

    type: str = Field(..., description="Kind of condition: Ready, Progressing, Failed or Suspended.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="Whether the condition holds.")
    reason: str = Field(..., description="Machine-readable cause in CamelCase.")
    message: str = Field("", description="Human-readable details.")
    last_transition_time: datetime = Field(..., description="When status last changed.")
    observed_generation: int | None = Field(
        None, description="metadata.generation of the spec the condition was set from."
    )


class MFPORunStatus(ApiModel):
    """Observed state of the run, written by the operator or the local runner."""

    model_config = ConfigDict(extra="ignore")  # kopf writes its own keys into status

    phase: RunPhase = Field(RunPhase.pending, description="Where the run is.")
    current_stage: str | None = Field(None, description="The stage running or next to run.")
    progress: str | None = Field(None, description="Stages succeeded over stages, e.g. 2/6.")
    stages: list[StageStatus] = Field(default_factory=list, description="Every stage of the run, in order.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations of the run's state.")
    observed_generation: int | None = Field(None, description="metadata.generation of the spec last acted on.")
    start_time: datetime | None = Field(None, description="When the first stage started.")
    completion_time: datetime | None = Field(None, description="When the run succeeded or failed.")
    retry_token: str | None = Field(
        None, description="Value of the mfpo.dev/retry annotation last seen; a new value retries a failed run."
    )

    def stage(self, name: str) -> StageStatus | None:
        return next((s for s in self.stages if s.name == name), None)


# Job names are `<run>-<stage>-a<attempt>` within 52 characters (plan.JOB_NAME_LIMIT: an Indexed
# Job's pods are `<job>-<index>-<5 random>`, a 63-character DNS label): a run name of at most 40
# leaves 12 for `-<stage>-a<attempt>` ("-align-10-a1"); longer Job names are cut and hashed.
RUN_NAME_MAX = 40


class ObjectMeta(k8s.ObjectMeta):
    """The manifest's metadata: the run's name, and the rest of meta/v1 ObjectMeta, decoded and
    checked as the API server does (an unknown field such as `lables` is refused)."""

    name: str = Field(
        ...,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=RUN_NAME_MAX,
        description=(
            f"Name of the run: a DNS-1123 label (lowercase letters, digits, '-') of at most {RUN_NAME_MAX} "
            "characters, so that its Job names `<run>-<stage>-a<attempt>` fit in 52."
        ),
    )


class MFPORun(ApiModel):
    """A whole manifest, as `kubectl apply -f` and `mfpo run` read it."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    api_version: Literal["mfpo.dev/v1alpha1"]
    kind: Literal["MFPORun"]
    metadata: ObjectMeta
    spec: MFPORunSpec
    status: MFPORunStatus | None = None
