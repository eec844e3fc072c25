"""Experiment tracking: every stage of an MFPORun logs to ONE MLflow run, from rank 0 only.

One MLflow run per MFPORun (not nested runs per stage): a researcher compares MFPORuns, and
MLflow's compare view, its charts and its run table compare runs; per-stage child runs would
split each curve into N pieces and leave the parent with nothing to compare. The stages are
told apart inside the run: training curves use a global optimizer step across the curriculum
(align-2's first step follows align-1's last) with `train.curriculum_stage` marking the stage
at each step, a stage's summary metrics are prefixed with its name (`align-2.steps`), and the
tags `mfpo.stage` / `mfpo.attempt` name the latest stage to log (`mfpo.status.<stage>` each
stage's outcome).

The run is found, never remembered: by its identity tags (`mfpo.namespace`, `mfpo.run_uri`) in
the experiment, so a retried or resumed stage, and every later stage, continue the same run; it
is created (named after the MFPORun, with the spec as params) when none exists. A resumed
align stage skips the steps the run already holds (its `train.objective` history), so no step
is logged twice, and re-sends those of its checkpoint's history that never arrived.

A server that is down or refuses never fails a stage: every call is caught, logged (once per
streak of failures), counted (`on_error`, the stage's mfpo_tracking_errors_total), and what it
carried stays buffered and is sent again at the next step (with a growing pause after repeated
failures, so that a hung server does not stall every step) and when the stage ends.

Credentials come from the environment only (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN, read
by the MLflow client itself); nothing here logs them. Used by the stage runner
(`mfpo_runtime.stage`), which builds the tracker from the spec; the stages add what only they
know (evaluations, reports, the final policy); the trainer's steps arrive through
`metrics.StageMetrics.train_step`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("mfpo.tracking")

TRAIN_PREFIX = "train."
STEP_SENTINEL = TRAIN_PREFIX + "objective"  # logged at every step: its history says which steps exist
TAG_NAMESPACE, TAG_RUN, TAG_RUN_URI = "mfpo.namespace", "mfpo.run", "mfpo.run_uri"
TAG_STAGE, TAG_ATTEMPT = "mfpo.stage", "mfpo.attempt"
TAG_POLICY_MODEL = "mfpo.policy_model_id"
# MLflow's limits per log_batch request (mlflow/utils/validation.py: MAX_METRICS_PER_BATCH,
# MAX_PARAMS_TAGS_PER_BATCH) and of a param value (MAX_PARAM_VAL_LENGTH).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE_LENGTH = 6000
# The MLflow client retries a failed request for minutes by default (7 retries, backoff factor
# 2) and waits 120 s for an answer: a stage would stall that long at a step. We retry ourselves.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
MAX_RETRY_PAUSE_SECONDS = 60.0
FINAL_FLUSH_TRIES = 3

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(value: str) -> str:
    """A URL's user:password@ replaced by ***@ (wherever one appears in the value)."""
    return _USERINFO.sub(r"\g<scheme>***@", value)


def flatten_params(doc: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested document as MLflow params: dotted keys (list items by index), string values,
    URLs' credentials redacted, each value cut to MLflow's limit. Empty maps and lists are kept
    as {} and [] so that every field of the document has its param."""
    params: dict[str, str] = {}
    items: Iterable[tuple[Any, Any]] = doc.items() if isinstance(doc, Mapping) else enumerate(doc)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (Mapping, list)) and value:
            params.update(flatten_params(value, f"{name}."))
            continue
        text = "{}" if value == {} else "[]" if value == [] else str(value)
        text = redact(text)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - 1] + "…"
        params[name] = text
    return params


@dataclass(frozen=True)
class TrackingTarget:
    """Where a run is tracked and who it is (the MFPORun's identity)."""

    uri: str
    experiment: str
    run_name: str
    namespace: str
    run_uri: str


@dataclass
class _Pending:
    """What has not reached the server yet."""

    metrics: list[tuple[str, float, int]] = field(default_factory=list)  # key, value, step
    train_steps: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # local path, artifact dir
    model: tuple[Path, str, dict[str, str]] | None = None  # local dir, name, tags

    def count(self) -> int:
        return (
            len(self.metrics) + len(self.train_steps) + len(self.tags) + len(self.artifacts)
            + (self.model is not None)
        )  # fmt: skip


class MlflowTracker:
    """One stage's link to the MFPORun's MLflow run. Never raises out of its methods."""

    def __init__(
        self,
        target: TrackingTarget,
        *,
        stage: str,
        attempt: int,
        params: Mapping[str, str],
        on_error: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for key, value in CLIENT_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from mlflow.tracking import MlflowClient  # imported only when tracking is on

        self.target = target
        self.stage = stage
        self.attempt = attempt
        self.params = dict(params)
        self.step_offset = 0  # align-k: the steps of align-1..k-1 (global curriculum step)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.failures = 0  # calls that failed in this stage
        self._client = MlflowClient(tracking_uri=target.uri)
        self._on_error = on_error
        self._clock, self._sleep = clock, sleep
        self._last_step: int | None = None  # highest global train step the run holds
        self._model_id: str | None = None  # a logged model created, its artifacts not all sent
        self.model_id: str | None = None  # the logged model, once complete
        self._streak = 0  # consecutive failures
        self._retry_at = 0.0
        self._pending = _Pending(tags={TAG_STAGE: stage, TAG_ATTEMPT: str(attempt)})

    # ------------------------------------------------------------------ logging

    def log_train_steps(self, steps: Iterable[tuple[int, Mapping[str, float]]]) -> None:
        """Optimizer steps of this stage (numbered from 1 within the stage), sent now or
        buffered. Steps the run already holds (a resumed stage's) are left out."""
        self._pending.train_steps += [(self.step_offset + step, dict(values)) for step, values in steps]
        self.flush()

    def log_metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        self._pending.metrics += [(key, float(value), step) for key, value in values.items()]
        self.flush()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._pending.tags.update(tags)
        self.flush()

    def log_artifact(self, local: Path, artifact_dir: str | None = None) -> None:
        """A file or a directory's contents under `artifact_dir` of the run's artifacts."""
        self._pending.artifacts.append((Path(local), artifact_dir))
        self.flush()

    def log_model(self, local_dir: Path, name: str, tags: Mapping[str, str]) -> None:
        """`local_dir` as an MLflow logged model of the run (MLflow 3's LoggedModel)."""
        self._pending.model = (Path(local_dir), name, dict(tags))
        self.flush()

    # -------------------------------------------------------------- delivering

    def flush(self, *, force: bool = False) -> bool:
        """Send everything pending; False (logged, counted) when the server failed. Skipped
        while a pause after repeated failures lasts, unless forced."""
        if not force and self._clock() < self._retry_at:
            return False
        try:
            self._ensure_run()
            self._send()
        except Exception as err:  # noqa: BLE001 - a tracker never fails a stage
            self._failed(err)
            return False
        if self._streak:
            log.info("tracking server %s reachable again: buffered data delivered", self.target.uri)
        self._streak, self._retry_at = 0, 0.0
        return True

    def finish(self, *, status: str, terminate: bool = False) -> None:
        """At the stage's end: its outcome as a tag, a last few tries to deliver what is
        buffered, and (after the run's last stage) the MLflow run marked FINISHED."""
        self._pending.tags[f"mfpo.status.{self.stage}"] = status
        for attempt in range(FINAL_FLUSH_TRIES):
            if attempt:
                self._sleep(float(attempt))
            if self.flush(force=True):
                break
        else:
            log.warning(
                "tracking: %d item(s) of %s not delivered to %s after %d tries; the stage's "
                "results are in storage as always", self._pending.count(), self.stage,
                self.target.uri, FINAL_FLUSH_TRIES,
            )  # fmt: skip
            return
        if terminate:
            try:
                self._client.set_terminated(self.run_id, "FINISHED")
            except Exception as err:  # noqa: BLE001
                self._failed(err)

    def _failed(self, err: Exception) -> None:
        self.failures += 1
        self._streak += 1
        self._on_error()
        pause = 0.0 if self._streak == 1 else min(MAX_RETRY_PAUSE_SECONDS, 2.0 ** (self._streak - 2))
        self._retry_at = self._clock() + pause
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if self._streak == 1:
            log.warning(
                "tracking server %s unreachable (%s: %s): the stage goes on; %d item(s) buffered, "
                "retried at the next step", self.target.uri, type(err).__name__, message[:300],
                self._pending.count(),
            )  # fmt: skip
        else:
            log.debug("tracking still failing (%d in a row): %s", self._streak, message[:300])

    def _ensure_run(self) -> None:
        if self.run_id is not None:
            return
        self.experiment_id = self._experiment_id()
        found = find_run(self._client, self.experiment_id, self.target.namespace, self.target.run_uri)
        if found:
            run_id = found
            history = self._client.get_metric_history(run_id, STEP_SENTINEL)
            self._last_step = max((m.step for m in history), default=0)
            log.info("tracking: continuing MLflow run %s (%d train steps logged)", run_id, self._last_step)
        else:
            tags = {
                TAG_NAMESPACE: self.target.namespace, TAG_RUN: self.target.run_name,
                TAG_RUN_URI: self.target.run_uri, "mlflow.source.name": "mfpo-stage",
            }  # fmt: skip
            run = self._client.create_run(self.experiment_id, run_name=self.target.run_name, tags=tags)
            run_id, self._last_step = run.info.run_id, 0
            self._send_params(run_id)
            log.info("tracking: created MLflow run %s in experiment %s", run_id, self.target.experiment)
        self.run_id = run_id

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self._client.get_experiment_by_name(self.target.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self._client.create_experiment(self.target.experiment)
        except MlflowException:  # created meanwhile by another run's stage
            experiment = self._client.get_experiment_by_name(self.target.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _send_params(self, run_id: str) -> None:
        from mlflow.entities import Param

        items = sorted(self.params.items())
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = items[start : start + MAX_PARAMS_TAGS_PER_BATCH]
            self._client.log_batch(run_id, params=[Param(k, v) for k, v in chunk])

    def _send(self) -> None:
        """Deliver in order: tags, metrics, train steps, artifacts, the model. Each part leaves
        the buffer only once the server has it."""
        from mlflow.entities import Metric, RunTag

        pending, run_id = self._pending, self.run_id
        if pending.tags:
            self._client.log_batch(run_id, tags=[RunTag(k, v) for k, v in pending.tags.items()])
            pending.tags = {}
        # Fresh train steps become metrics first (the run's last step moves with them), then
        # metrics leave the buffer one accepted batch at a time: nothing is sent twice.
        now = int(time.time() * 1000)
        fresh = [(s, v) for s, v in pending.train_steps if s > (self._last_step or 0)]
        curriculum_stage = self._curriculum_stage()
        for step, values in fresh:
            pending.metrics += [(TRAIN_PREFIX + k, v, step) for k, v in values.items()]
            if curriculum_stage is not None:
                pending.metrics.append((TRAIN_PREFIX + "curriculum_stage", curriculum_stage, step))
        if fresh:
            self._last_step = max(s for s, _ in fresh)
        pending.train_steps = []
        while pending.metrics:
            batch = pending.metrics[:MAX_METRICS_PER_BATCH]
            self._client.log_batch(run_id, metrics=[Metric(k, v, now, s) for k, v, s in batch])
            del pending.metrics[: len(batch)]
        while pending.artifacts:
            local, artifact_dir = pending.artifacts[0]
            if local.is_dir():
                self._client.log_artifacts(run_id, str(local), artifact_dir)
            else:
                self._client.log_artifact(run_id, str(local), artifact_dir)
            pending.artifacts.pop(0)
        if pending.model is not None:
            self._send_model(*pending.model)
            pending.model = None

    def _send_model(self, local_dir: Path, name: str, tags: dict[str, str]) -> None:
        from mlflow.entities import LoggedModelStatus

        if self._model_id is None:  # created once: a retry uploads into the same model
            self._model_id = self._client.create_logged_model(
                self.experiment_id, name=name, source_run_id=self.run_id, tags=tags
            ).model_id
        self._client.log_model_artifacts(self._model_id, str(local_dir))
        self._client.finalize_logged_model(self._model_id, LoggedModelStatus.READY)
        self._client.set_tag(self.run_id, TAG_POLICY_MODEL, self._model_id)
        self.model_id, self._model_id = self._model_id, None

    def _curriculum_stage(self) -> float | None:
        return float(self.stage.split("-", 1)[1]) if self.stage.startswith("align-") else None


def find_run(client, experiment_id: str, namespace: str, run_uri: str) -> str | None:
    """The id of the MFPORun's MLflow run (its identity tags), the earliest if several."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_RUN_URI}` = '{_quoted(run_uri)}' and tags.`{TAG_NAMESPACE}` = '{_quoted(namespace)}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def log_to_tracked_runs(
    uri: str, experiment: str, namespace: str, run_uris: list[str], local_dir: Path, artifact_dir: str
) -> list[str]:
    """`local_dir` as artifacts of each of these MFPORuns' MLflow runs (e.g. a comparison of
    two runs, made outside any stage); the ids of the runs it reached. Never raises: what
    fails is logged as a warning, as a stage's tracker does."""
    for key, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    reached: list[str] = []
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        for run_uri in run_uris:
            run_id = find_run(client, found.experiment_id, namespace, run_uri) if found else None
            if run_id is None:
                log.warning("tracking: no MLflow run of %s in experiment %s at %s", run_uri, experiment, uri)
                continue
            client.log_artifacts(run_id, str(local_dir), artifact_dir)
            reached.append(run_id)
    except Exception as err:  # noqa: BLE001 - tracking never fails the caller
        log.warning("tracking server %s unreachable (%s: %s): %s not logged", uri, type(err).__name__, err, local_dir)
    return reached


def _quoted(value: str) -> str:
    """A value inside a single-quoted MLflow search string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
