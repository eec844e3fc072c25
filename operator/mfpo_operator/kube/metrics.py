"""Prometheus metrics of the operator: the one place their names are defined.

`OPERATOR_METRICS` is the table the chart's dashboard and alert rules are held to (like
`mfpo_runtime.metrics.RUNTIME_METRICS` for the stage pods). The operator serves them on
--metrics-port (default 9090, `/metrics`). `OperatorMetrics.observe` is called by
`kube.reconcile` after every reconcile with the run's new status and the plan; `forget`
when a run is deleted. Final evaluation scores and reward margins are mirrored from the
stages' termination summaries, so dashboards outlive the pods.

Series per finished run are bounded: `retire` (called by the operator's ticker a grace period
after a run finished) drops its per-stage series and the zero phases, keeping only
`SUMMARY_METRICS` (the run's phase, its last transition, its scores and margins).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mfpo_core.api import MFPORunStatus, RunPhase, StagePhase, StageStatus
from mfpo_core.contract import parse_eval_metric_key
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mfpo_operator.plan import Plan, StartAttempt

# name -> (type, help, labels). prometheus-client adds `_total` to counters itself.
OPERATOR_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mfpo_run_phase": ("gauge", "1 for the run's current phase, 0 for the others", ("namespace", "run", "phase")),
    "mfpo_stage_phase": ("gauge", "1 for the stage's current phase, 0 for the others", ("namespace", "run", "stage", "phase")),
    "mfpo_stage_attempts_total": ("counter", "Stage attempts (Jobs) started by this operator", ("namespace", "run", "stage")),
    "mfpo_stage_retries_total": ("counter", "Stage attempts started because the attempt before failed (not after a disruption: suspend, eviction, preemption, a deleted Job)", ("namespace", "run", "stage")),
    "mfpo_stage_failures_total": ("counter", "Stage attempts that failed (disruptions excluded)", ("namespace", "run", "stage")),
    "mfpo_stage_duration_seconds": ("gauge", "Wall time of a finished stage, first start to completion", ("namespace", "run", "stage")),
    "mfpo_run_last_transition_timestamp_seconds": ("gauge", "Unix time of the run's latest transition (stuck-run alert)", ("namespace", "run")),
    "mfpo_reconcile_duration_seconds": ("histogram", "Time of one reconcile of one run (read, plan, act, write status)", ()),
    "mfpo_operator_api_request_duration_seconds": ("histogram", "Kubernetes API requests of the operator's own client (not kopf's watches), until the response's headers", ("verb", "resource")),
    "mfpo_run_eval_score": ("gauge", "Final evaluation scores, from the eval stage's eval.<stage>.<benchmark>.<metric>", ("namespace", "run", "stage", "benchmark", "metric")),
    "mfpo_run_reward_margin": ("gauge", "Reward margin per modality at the end of an align stage", ("namespace", "run", "stage", "modality")),
}  # fmt: skip

_MARGIN_METRIC = re.compile(r"^reward_margin\.(?P<modality>text|image)$")
_FAILURE_EVENTS = ("AttemptFailed", "StageFailed")
# What a finished run keeps once retired: one phase series, one timestamp, its final results.
SUMMARY_METRICS = (
    "mfpo_run_phase", "mfpo_run_last_transition_timestamp_seconds",
    "mfpo_run_eval_score", "mfpo_run_reward_margin",
)  # fmt: skip
_TERMINAL = (RunPhase.succeeded, RunPhase.failed)


def _is_retry(stage: StageStatus, attempt: int) -> bool:
    """Whether `attempt` retries a failure, as retries.maxAttempts counts them (plan._counted):
    its predecessor is counted (after the last manual retry, and not disrupted). An attempt
    after a suspend, an eviction, a preemption or a deleted Job restarts without using the
    budget, and is no retry either."""
    previous = attempt - 1
    return previous > stage.retried_from and previous not in stage.disrupted_attempts


def _build(
    name: str, kind: str, help_text: str, labels: tuple[str, ...], registry: CollectorRegistry
):
    if kind == "counter":
        return Counter(name[: -len("_total")], help_text, labels, registry=registry)
    if kind == "histogram":
        return Histogram(name, help_text, labels, registry=registry)
    return Gauge(name, help_text, labels, registry=registry)


@dataclass
class OperatorMetrics:
    """The operator's collectors on their own registry (tests and benchmarks never collide)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _retired: set[tuple[str, str]] = field(default_factory=set)  # (namespace, run)

    def __post_init__(self) -> None:
        self.m = {
            name: _build(name, kind, help_text, labels, self.registry)
            for name, (kind, help_text, labels) in OPERATOR_METRICS.items()
        }

    def reconcile_timer(self):
        """Context manager timing one reconcile."""
        return self.m["mfpo_reconcile_duration_seconds"].time()

    def api_request(self, verb: str, resource: str, seconds: float) -> None:
        """One request of the operator's API client (`kube.cluster.Cluster`)."""
        self.m["mfpo_operator_api_request_duration_seconds"].labels(verb, resource).observe(seconds)

    def observe(self, namespace: str, run: str, result: Plan) -> None:
        """Mirror one reconcile's outcome: phases, counters from actions and events, scores."""
        status = result.status
        if (namespace, run) in self._retired:
            if status.phase in _TERMINAL and not result.actions:
                return  # a look at a retired finished run: keep only its summary
            self._retired.discard((namespace, run))  # retried by hand: alive again
        self._phases(namespace, run, status)
        for action in result.actions:
            if isinstance(action, StartAttempt):
                self.m["mfpo_stage_attempts_total"].labels(namespace, run, action.stage).inc()
                stage = status.stage(action.stage)
                if stage is not None and _is_retry(stage, action.attempt):
                    self.m["mfpo_stage_retries_total"].labels(namespace, run, action.stage).inc()
        for event in result.events:
            if event.reason in _FAILURE_EVENTS and event.stage:
                self.m["mfpo_stage_failures_total"].labels(namespace, run, event.stage).inc()
        self._durations(namespace, run, status)
        self._scores(namespace, run, status)

    def _phases(self, namespace: str, run: str, status: MFPORunStatus) -> None:
        for phase in RunPhase:
            value = 1.0 if status.phase == phase.value else 0.0
            self.m["mfpo_run_phase"].labels(namespace, run, phase.value).set(value)
        for stage in status.stages:
            for phase in StagePhase:
                value = 1.0 if stage.phase == phase.value else 0.0
                self.m["mfpo_stage_phase"].labels(namespace, run, stage.name, phase.value).set(
                    value
                )
        times = [c.last_transition_time for c in status.conditions]
        for stage in status.stages:
            times += [
                t for t in (stage.start_time, stage.completion_time, stage.last_failure_time) if t
            ]
        if times:
            latest = max(times).timestamp()
            self.m["mfpo_run_last_transition_timestamp_seconds"].labels(namespace, run).set(latest)

    def _durations(self, namespace: str, run: str, status: MFPORunStatus) -> None:
        for stage in status.stages:
            if stage.start_time and stage.completion_time:
                seconds = (stage.completion_time - stage.start_time).total_seconds()
                self.m["mfpo_stage_duration_seconds"].labels(namespace, run, stage.name).set(
                    seconds
                )

    def _scores(self, namespace: str, run: str, status: MFPORunStatus) -> None:
        for stage in status.stages:
            if stage.phase != StagePhase.succeeded:
                continue
            for key, value in stage.metrics.items():
                if parsed := parse_eval_metric_key(key):
                    self.m["mfpo_run_eval_score"].labels(namespace, run, *parsed).set(value)
                elif match := _MARGIN_METRIC.match(key):
                    labels = (namespace, run, stage.name, match["modality"])
                    self.m["mfpo_run_reward_margin"].labels(*labels).set(value)

    def forget(self, namespace: str, run: str) -> None:
        """Drop every series of a deleted run."""
        self._retired.discard((namespace, run))
        self._drop(namespace, run, lambda name, values: True)

    def retire(self, namespace: str, run: str, phase: str) -> None:
        """Keep only a finished run's summary: `SUMMARY_METRICS`, and of its phases only `phase`."""
        self._retired.add((namespace, run))
        self._drop(
            namespace, run,
            lambda name, values: name not in SUMMARY_METRICS
            or (name == "mfpo_run_phase" and values["phase"] != phase),
        )  # fmt: skip

    def _drop(self, namespace: str, run: str, unwanted) -> None:
        for name, (_, _, labels) in OPERATOR_METRICS.items():
            if "run" not in labels:
                continue
            collector = self.m[name]
            # prometheus-client keeps no public index of a collector's children.
            for sample_labels in list(collector._metrics):
                values = dict(zip(labels, sample_labels))
                if (values["namespace"], values["run"]) == (namespace, run) and unwanted(
                    name, values
                ):
                    collector.remove(*sample_labels)
