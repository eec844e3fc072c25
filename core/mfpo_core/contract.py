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
import math
import re
from datetime import datetime, timezone
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mfpo_core import uris
from mfpo_core.api import MFPORunSpec
from mfpo_core.stages import kind_of

# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
RESULT_DOCUMENT = "result.json"
# metadata.name of an MFPORun (api.ObjectMeta): a DNS label, one path segment of its prefix.
RUN_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


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


def stage_kind(stage: str) -> str:
    """The kind of a stage name (align-2 -> align): `stages.kind_of`'s name."""
    return kind_of(stage).name


def run_uri(storage_uri: str, run: str) -> str:
    """A run's storage prefix: <spec.storage.uri>/<run name> (every stage writes under it).
    Refuses (ValueError) a prefix or name that would not name exactly that place."""
    problem = uris.storage_uri_problem(storage_uri, prefix=True)
    if problem:
        raise ValueError(f"spec.storage.uri {storage_uri!r}: {problem}")
    if not RUN_NAME.fullmatch(run):
        raise ValueError(f"run name {run!r}: expected a DNS label (lowercase letters, digits, '-')")
    return uris.join(storage_uri, run)


def stage_uri(run_uri: str, stage: str) -> str:
    """Where a stage's artifacts live: <run_uri>/<stage>."""
    return uris.join(run_uri, stage)


def result_uri(run_uri: str, stage: str, shard: tuple[int, int] | None = None) -> str:
    """The stage's result document; a datagen shard has its own under shards/."""
    if shard is not None:
        index, count = shard
        return f"{shard_uri(run_uri, index, count)}/{RESULT_DOCUMENT}"
    return f"{stage_uri(run_uri, stage)}/{RESULT_DOCUMENT}"


def result_location(run_uri: str, stage: str) -> str:
    """Where to look for a stage's result document(s), for a message: its URI, or the pattern of
    its shards' (`shard_uri`) for a sharded stage."""
    if kind_of(stage).shardable:
        return f"{stage_uri(run_uri, stage)}/shards/*/{RESULT_DOCUMENT}"
    return result_uri(run_uri, stage)


def shard_uri(run_uri: str, index: int, count: int) -> str:
    return f"{stage_uri(run_uri, 'datagen')}/shards/{index:05d}-of-{count:05d}"


def eval_results_uri(run_uri: str, policy: str) -> str:
    """The eval stage's result documents of one policy (base, align-k): one per benchmark entry."""
    return f"{stage_uri(run_uri, 'eval')}/results/{policy}"


def eval_result_uri(run_uri: str, policy: str, label: str) -> str:
    """The result document of one policy on one benchmark entry (named by its label)."""
    return f"{eval_results_uri(run_uri, policy)}/{label}.json"


EVAL_METRIC = re.compile(r"^eval\.(?P<policy>base|align-[1-9][0-9]*)\.(?P<label>[^.]+)\.(?P<metric>.+)$")


def eval_metric_key(policy: str, label: str, metric: str) -> str:
    """The key of an evaluation score in a stage's metrics: eval.<policy>.<label>.<metric>
    (the metric may be dotted: counterprior.chair_s)."""
    return f"eval.{policy}.{label}.{metric}"


def parse_eval_metric_key(key: str) -> tuple[str, str, str] | None:
    """(policy, label, metric) of an `eval_metric_key`, None for any other metric."""
    match = EVAL_METRIC.match(key)
    return (match["policy"], match["label"], match["metric"]) if match else None


def policy_uri(run_uri: str, stage: str) -> str:
    """Where an align stage publishes its policy in Hugging Face format."""
    return f"{stage_uri(run_uri, stage)}/policy"


OWNER_DOCUMENT = "_owner.json"


def owner_uri(run_uri: str) -> str:
    """The ownership record of a run's prefix (`mfpo_core.ownership`)."""
    return uris.join(run_uri, OWNER_DOCUMENT)


class RunOwner(BaseModel):
    """Whose a run's storage prefix is: one MFPORun object (its uid: a run deleted and created
    again under the same name is another run), or one local run (the id its runner keeps in
    its state). Written at the prefix by the first stage (`mfpo_core.ownership`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runner: Literal["operator", "local"] = Field(..., description="Who runs it: the operator or `mfpo run`.")
    namespace: str = Field(..., min_length=1)
    name: str = Field(..., min_length=1)
    uid: str = Field(..., min_length=1, description="metadata.uid of the MFPORun, or the local run's id.")

    def describe(self) -> str:
        if self.runner == "operator":
            return f"MFPORun {self.namespace}/{self.name} (uid {self.uid})"
        return f"the local run {self.name} of namespace {self.namespace} (`mfpo run`, id {self.uid})"


class StageConfig(BaseModel):
    """The document a stage command reads. Serialised as JSON into a ConfigMap or a file."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(..., min_length=1, description="Name of the MFPORun.")
    namespace: str = Field("default", min_length=1)
    uid: str = Field(
        ..., min_length=1,
        description="metadata.uid of the MFPORun (the local runner's own id for a local run): with runner, "
        "namespace and run, whose the run's prefix is (RunOwner).",
    )  # fmt: skip
    runner: Literal["operator", "local"] = Field(..., description="Who runs the stage: the operator or `mfpo run`.")
    adopt_unowned: bool = Field(
        False,
        description=(
            "Claim a prefix that holds artifacts but no ownership record: set for a run that completed "
            "stages before ownership records existed (the runner knows it from its status)."
        ),
    )
    stage: str = Field(..., description="datagen, score, align-<k> or eval.")
    attempt: int = Field(1, ge=1, description="1-based attempt number (for metrics labels and logs).")
    run_uri: str = Field(..., description="Prefix of all the run's artifacts: a storage URI (uris' rule).")
    spec: MFPORunSpec
    shard_index: int | None = Field(
        None, ge=0, description="datagen only; None means: take JOB_COMPLETION_INDEX from the environment, else 0."
    )

    @field_validator("run_uri")
    @classmethod
    def _addressable(cls, value: str) -> str:
        problem = uris.storage_uri_problem(value, prefix=True)
        if problem:
            raise ValueError(problem)
        return value

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
    def owner(self) -> RunOwner:
        return RunOwner(runner=self.runner, namespace=self.namespace, name=self.run, uid=self.uid)

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
    # Set by `encode` when the whole summary did not fit the termination message: some
    # metrics or outputs are missing here, and the stage's result document has them all.
    truncated: bool | None = None

    def encode(self) -> str:
        """Compact JSON, always within Kubernetes' 4096-byte limit.

        When the whole summary does not fit, it is shortened by priority and marked
        `"truncated": true`: the message is cut to half the limit, outputs are kept in their
        order, then metrics rounded to 6 significant digits, those the operator mirrors first
        (`_MIRRORED_PREFIXES`), each group in the stage's order (stages list headline metrics
        first), up to the first that does not fit. The full set stays in the result document.
        """
        doc = self.model_dump(mode="json", exclude_none=True)
        # NaN and infinity are not JSON: the operator could not patch them into the run's status
        # (the API server refuses the request). They stay in the result document.
        non_finite = [k for k, v in doc["metrics"].items() if not math.isfinite(v)]
        if non_finite:
            doc["metrics"] = {k: v for k, v in doc["metrics"].items() if k not in non_finite}
            note = f"non-finite metrics left out: {', '.join(non_finite)}"
            doc["message"] = f"{doc['message']} ({note})" if doc.get("message") else note
        text = _compact(doc)
        return text if _fits(text) else _compact(_shortened(doc))

    @classmethod
    def decode(cls, text: str | None) -> TerminationSummary | None:
        """Parse a termination message; None when absent or not ours (e.g. an OOM kill's text)."""
        if not text:
            return None
        try:
            return cls.model_validate(json.loads(text))
        except (ValueError, TypeError):
            return None


def merge_shard_summaries(summaries: list[TerminationSummary]) -> TerminationSummary:
    """One summary for a sharded attempt (summaries in shard order): count metrics summed,
    `shards` their number, every shard's outputs kept as `<key>.<index>`. Used by the operator
    (an Indexed Job's pods) and the local runner (its shard processes) alike."""
    if len(summaries) == 1:
        return summaries[0]
    metrics: dict[str, float] = {}
    outputs: dict[str, str] = {}
    for index, summary in enumerate(summaries):
        for key, value in summary.metrics.items():
            metrics[key] = metrics.get(key, 0.0) + value
        outputs.update({f"{key}.{index}": value for key, value in summary.outputs.items()})
    metrics["shards"] = float(len(summaries))
    truncated = any(s.truncated for s in summaries) or None
    return summaries[0].model_copy(update={"metrics": metrics, "outputs": outputs, "truncated": truncated})


def _compact(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def _fits(text: str, limit: int = TERMINATION_MESSAGE_LIMIT) -> bool:
    return len(text.encode()) <= limit


def _shortened(doc: dict[str, Any]) -> dict[str, Any]:
    short: dict[str, Any] = {"stage": doc["stage"], "status": doc["status"], "truncated": True}
    if "message" in doc:
        short["message"] = _cut_message(short, doc["message"])
    metrics = sorted(doc["metrics"].items(), key=lambda item: not item[0].startswith(_MIRRORED_PREFIXES))
    for part, items, round_value in (("outputs", doc["outputs"].items(), str), ("metrics", metrics, _significant)):
        kept: dict[str, Any] = {}
        short[part] = kept
        for key, value in items:
            kept[key] = round_value(value)
            if not _fits(_compact(short)):
                del kept[key]
                break
    return short


def _significant(value: float) -> float:
    return float(f"{value:.6g}")


def _cut_message(short: dict[str, Any], message: str) -> str:
    """The longest head of `message` (plus an ellipsis) that fits half the limit with `short`."""
    def fits(n: int) -> bool:
        doc = {**short, "metrics": {}, "outputs": {}, "message": message[:n] + "…"}
        return _fits(_compact(doc), TERMINATION_MESSAGE_LIMIT // 2)

    low, high = 0, len(message)  # binary search: escapes make the JSON length non-linear in n
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return message[:low] + "…"


# Shortened summaries keep these first: what the operator mirrors into status and gauges.
_MIRRORED_PREFIXES = ("eval.", "reward_margin", "loss", "records", "fallback")
