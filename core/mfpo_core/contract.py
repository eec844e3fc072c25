"""The stage contract: the one seam between the control plane and the data plane.

Every stage of a run (datagen, score, align-1..N, eval) is one command of the runtime,
`mfpo-stage --config CONFIG`, the same in a Job's container and in a local subprocess:

- input: a `StageConfig` document (JSON, validated here); credentials come from the
  environment, never from the config;
- output: artifacts under `stage_uri(run_uri, stage)`, a `StageResult` document at
  `result_uri(...)`, and a short `TerminationSummary` written to the container's
  termination message so that the operator reads it from the Pod status;
- idempotent: a stage whose result document exists returns at once;
- exit codes: `ExitCode`.

Part of the core both planes import: pydantic and the API types only, no I/O.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mfpo_core.api import MFPORunSpec

# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
RESULT_DOCUMENT = "result.json"
STAGE_PATTERN = re.compile(r"^(datagen|score|align-[1-9][0-9]*|eval)$")


class ExitCode(IntEnum):
    """What the operator does with a stage process's exit status."""

    DONE = 0
    # Bad input (config, data, model): never retried; the podFailurePolicy fails the Job at once.
    BAD_INPUT = 65  # sysexits EX_DATAERR
    # Anything else is retryable; this one says "stopped on purpose (SIGTERM), checkpoint saved".
    PREEMPTED = 75  # sysexits EX_TEMPFAIL


class BadInput(Exception):
    """An error in the config or the data that no retry can fix. The message names the field or record."""


class StageInterrupted(Exception):
    """Raised inside a stage when SIGTERM arrived and its checkpoint has been saved."""


def stage_kind(stage: str) -> Literal["datagen", "score", "align", "eval"]:
    if not STAGE_PATTERN.match(stage):
        raise ValueError(f"stage {stage!r} is not one of datagen, score, align-<k>, eval")
    return "align" if stage.startswith("align-") else stage  # type: ignore[return-value]


def stage_uri(run_uri: str, stage: str) -> str:
    """Where a stage's artifacts live: <run_uri>/<stage>."""
    return f"{run_uri.rstrip('/')}/{stage}"


def result_uri(run_uri: str, stage: str, shard: tuple[int, int] | None = None) -> str:
    """The stage's result document; a datagen shard has its own under shards/."""
    if shard is not None:
        index, count = shard
        return f"{shard_uri(run_uri, index, count)}/{RESULT_DOCUMENT}"
    return f"{stage_uri(run_uri, stage)}/{RESULT_DOCUMENT}"


def shard_uri(run_uri: str, index: int, count: int) -> str:
    return f"{stage_uri(run_uri, 'datagen')}/shards/{index:05d}-of-{count:05d}"


def policy_uri(run_uri: str, stage: str) -> str:
    """Where an align stage publishes its policy in Hugging Face format."""
    return f"{stage_uri(run_uri, stage)}/policy"


class StageConfig(BaseModel):
    """The document a stage command reads. Serialised as JSON into a ConfigMap or a file."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(..., min_length=1, description="Name of the MFPORun.")
    namespace: str = Field("default", min_length=1)
    stage: str = Field(..., description="datagen, score, align-<k> or eval.")
    attempt: int = Field(1, ge=1, description="1-based attempt number (for metrics labels and logs).")
    run_uri: str = Field(..., pattern=r"^(s3|file)://.+", description="Prefix of all the run's artifacts.")
    spec: MFPORunSpec
    shard_index: int | None = Field(
        None, ge=0, description="datagen only; None means: take JOB_COMPLETION_INDEX from the environment, else 0."
    )

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, value: str) -> str:
        stage_kind(value)
        return value

    @model_validator(mode="after")
    def _stage_in_curriculum(self) -> StageConfig:
        if self.stage not in self.spec.stage_names():
            raise ValueError(
                f"stage {self.stage!r} is not in this run's stages {self.spec.stage_names()}"
            )
        return self

    @property
    def kind(self) -> str:
        return stage_kind(self.stage)

    @property
    def align_index(self) -> int:
        """k of align-k (1-based)."""
        if self.kind != "align":
            raise ValueError(f"stage {self.stage} is not an align stage")
        return int(self.stage.split("-", 1)[1])

    @property
    def stage_uri(self) -> str:
        return stage_uri(self.run_uri, self.stage)

    @classmethod
    def from_json(cls, text: str) -> StageConfig:
        return cls.model_validate_json(text)

    def to_json(self) -> str:
        return json.dumps(
            {**self.model_dump(mode="json", exclude={"spec"}), "spec": self.spec.to_wire()}, indent=2
        )


def _now() -> datetime:
    return datetime.now(timezone.utc)


class StageResult(BaseModel):
    """The result document, written last (atomically) next to the stage's artifacts."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    attempt: int
    started_at: datetime
    finished_at: datetime = Field(default_factory=_now)
    metrics: dict[str, float] = Field(default_factory=dict, description="Scalar results (flat names).")
    outputs: dict[str, str] = Field(default_factory=dict, description="Artifact URIs by role.")
    details: dict[str, Any] = Field(default_factory=dict, description="Anything larger: per-benchmark tables etc.")

    def summary(self) -> TerminationSummary:
        return TerminationSummary(
            stage=self.stage, status="succeeded", metrics=self.metrics, outputs=self.outputs
        )


class TerminationSummary(BaseModel):
    """The short summary for /dev/termination-log, read by the operator from the Pod status."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    status: Literal["succeeded", "bad-input", "retryable", "preempted"]
    metrics: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    message: str | None = None

    def encode(self) -> str:
        """Compact JSON within Kubernetes' 4096-byte limit: metrics are dropped first, then the message cut."""
        doc = self.model_dump(mode="json", exclude_none=True)
        text = json.dumps(doc, separators=(",", ":"))
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        doc["metrics"] = {k: v for k, v in doc.get("metrics", {}).items() if k.startswith(_KEY_METRIC_PREFIXES)}
        doc["truncated"] = True
        text = json.dumps(doc, separators=(",", ":"))
        while len(text.encode()) > TERMINATION_MESSAGE_LIMIT and doc.get("message"):
            doc["message"] = doc["message"][: len(doc["message"]) // 2]
            text = json.dumps(doc, separators=(",", ":"))
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
            doc["metrics"], doc["outputs"] = {}, {}
            text = json.dumps(doc, separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, text: str | None) -> TerminationSummary | None:
        """Parse a termination message; None when absent or not ours (e.g. an OOM kill's text)."""
        if not text:
            return None
        try:
            doc = json.loads(text)
            doc.pop("truncated", None)
            return cls.model_validate(doc)
        except (ValueError, TypeError):
            return None


# Kept when a summary must be shortened: what the operator mirrors into status and gauges.
_KEY_METRIC_PREFIXES = ("eval.", "reward_margin", "loss", "records", "fallback")
