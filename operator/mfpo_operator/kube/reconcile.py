"""One reconcile of one MFPORun: read it and its Jobs, ask the planner, act, write status.

Called by the kopf handlers (`kube.handlers`) from kopf's worker threads, for a run event,
an event of one of its Jobs, or the ticker thread (backoff ends, periodic resync, retiring the
metric series of finished runs). A per-run lock serialises reconciles of the same run inside
this operator (kopf peering keeps other operators out); creation is
idempotent anyway, because every object has a deterministic name.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kubernetes.client.rest import ApiException
from mfpo_core.api import Condition, MFPORunSpec, MFPORunStatus, RunPhase
from mfpo_core.contract import TerminationSummary
from pydantic import ValidationError

from mfpo_operator.kube import jobs
from mfpo_operator.kube.cluster import Cluster
from mfpo_operator.kube.metrics import OperatorMetrics
from mfpo_operator.kube.status import status_patch
from mfpo_operator.plan import (
    RETRY_ANNOTATION,
    Attempt,
    AttemptState,
    Event,
    Plan,
    StartAttempt,
    StopAttempt,
    plan,
)

log = logging.getLogger("mfpo.operator")

PostEvent = Callable[[dict[str, Any], Event], None]
Key = tuple[str, str]  # (namespace, run)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Operator:
    """The operator's state, kept in kopf's memo: API client, metrics, per-run timing."""

    cluster: Cluster
    metrics: OperatorMetrics
    post_event: PostEvent
    resync_seconds: float = 60.0
    # How long a finished run keeps its per-stage metric series (then only its summary).
    finished_series_seconds: float = 3600.0
    clock: Callable[[], datetime] = utcnow
    _locks: dict[Key, threading.Lock] = field(default_factory=dict)
    _due: dict[Key, float] = field(default_factory=dict)  # wall time of the next needed look
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _evictions_told: dict[Key, set[str]] = field(default_factory=dict)  # pod uids per run
    _retire: dict[Key, tuple[float, str]] = field(default_factory=dict)  # (when, final phase)

    def lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def due_runs(self) -> list[Key]:
        """Runs whose backoff has ended or whose periodic resync is due."""
        now = time.time()
        with self._guard:
            return [key for key, due in self._due.items() if due <= now]

    def schedule(self, key: Key, result: Plan) -> None:
        """When to look at a run again without a trigger; never for a finished run."""
        with self._guard:
            if result.status.phase in (RunPhase.succeeded, RunPhase.failed):
                self._due.pop(key, None)
                if key not in self._retire:
                    when = time.time() + self.finished_series_seconds
                    self._retire[key] = (when, result.status.phase)
                return
            self._retire.pop(key, None)
            delay = min(result.requeue_after or self.resync_seconds, self.resync_seconds)
            self._due[key] = time.time() + delay

    def new_evictions(self, key: Key, evictions: list[tuple[str, str]]) -> list[Event]:
        """One event per evicted pod (remembered in memory: a restarted operator may repeat one)."""
        with self._guard:
            told = self._evictions_told.setdefault(key, set())
            new = [(uid, text) for uid, text in evictions if uid not in told]
            told.update(uid for uid, _ in new)
        return [Event("Normal", "PodEvicted", text) for _, text in new]

    def retire_finished(self) -> None:
        """Drop the per-stage metric series of runs finished longer than the grace period."""
        now = time.time()
        with self._guard:
            due = [(key, phase) for key, (when, phase) in self._retire.items() if when <= now]
            for key, _ in due:
                del self._retire[key]
        for (namespace, name), phase in due:
            self.metrics.retire(namespace, name, phase)

    def forget(self, key: Key) -> None:
        with self._guard:
            self._locks.pop(key, None)
            self._due.pop(key, None)
            self._evictions_told.pop(key, None)
            self._retire.pop(key, None)
        self.metrics.forget(*key)

    def tick_forever(self, stop: threading.Event, every: float) -> None:
        """The ticker thread: reconcile the runs that are due. (kopf timers would put a
        finalizer on every run; this needs none.)"""
        while not stop.wait(every):
            self.retire_finished()
            for namespace, name in self.due_runs():
                try:
                    reconcile(self, namespace, name)
                except Exception:
                    log.exception("%s/%s: reconcile failed; tried again later", namespace, name)


def reconcile(op: Operator, namespace: str, name: str) -> Plan | None:
    """Bring one run one step forward; None when it is gone or being deleted."""
    key = (namespace, name)
    with op.lock(key), op.metrics.reconcile_timer():
        body = op.cluster.get_run(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            spec = MFPORunSpec.model_validate(body.get("spec") or {})
        except ValidationError as err:
            _reject(op, body, err)
            return None
        planner = _Planner(op, body, spec)
        result = _act(op, body, spec, planner.plan(), planner)
        patch = status_patch(result.status, body.get("status"))
        if patch:
            op.cluster.patch_run_status(namespace, name, patch)
        # Metrics before events: a lost event must never lose a counted attempt.
        op.metrics.observe(namespace, name, result)
        op.schedule(key, result)
        events = [*result.events, *op.new_evictions(key, planner.observed.evictions)]
    # Events are a courtesy: posted outside the run's lock and the reconcile timer.
    _post(op, body, events)
    return result


def _post(op: Operator, body: dict[str, Any], events: list[Event]) -> None:
    for event in events:
        try:
            op.post_event(body, event)
        except Exception as err:  # noqa: BLE001 - an event is a courtesy; status has it all
            meta = body["metadata"]
            log.warning("%s/%s: event %s not posted: %s", meta["namespace"], meta["name"],
                        event.reason, err)  # fmt: skip


class _Planner:
    """The planner over one observation of the run, re-asked when acting finds a problem."""

    def __init__(self, op: Operator, body: dict[str, Any], spec: MFPORunSpec) -> None:
        self.op, self.body, self.spec = op, body, spec
        meta = body["metadata"]
        try:
            self.status = MFPORunStatus.model_validate(body.get("status") or {})
        except ValidationError as err:  # hand-edited status: start from what the Jobs say
            log.warning("%s/%s: unreadable status, rebuilt from its Jobs: %s",
                        meta["namespace"], meta["name"], err)  # fmt: skip
            self.status = None
        self.observed = op.cluster.attempts(meta["namespace"], meta["name"], meta.get("uid", ""))
        self.now = op.clock()

    def plan(self, rejected: Attempt | None = None, hold: tuple[str, str] | None = None) -> Plan:
        meta = self.body["metadata"]
        attempts = [*self.observed.attempts, *([rejected] if rejected else [])]
        return plan(
            self.spec, self.status, attempts, run=meta["name"], now=self.now,
            generation=meta.get("generation"),
            retry_token=(meta.get("annotations") or {}).get(RETRY_ANNOTATION), hold=hold,
        )  # fmt: skip


def _act(
    op: Operator, body: dict[str, Any], spec: MFPORunSpec, result: Plan, planner: _Planner
) -> Plan:
    """Carry out the plan; a start that cannot happen re-plans with the reason why."""
    run = jobs.RunRef.from_body(body)
    for action in result.actions:
        if isinstance(action, StopAttempt):
            op.cluster.delete_job(run.namespace, action.job)
            continue
        missing = _missing_prerequisite(op, run.namespace, spec)
        if missing is not None:
            return planner.plan(hold=missing)
        try:
            _create_attempt(op, run, spec, action)
        except ApiException as err:
            if not rejected_request(err):
                raise
            return planner.plan(rejected=_rejected_attempt(action, err))
    return result


def _create_attempt(op: Operator, run: jobs.RunRef, spec: MFPORunSpec, action: StartAttempt):
    for manifest in jobs.attempt_manifests(run, spec, action.stage, action.attempt, action.job):
        if not op.cluster.create(manifest):
            log.info("%s/%s %s already exists", run.namespace, manifest["kind"],
                     manifest["metadata"]["name"])  # fmt: skip


def _missing_prerequisite(
    op: Operator, namespace: str, spec: MFPORunSpec
) -> tuple[str, str] | None:
    """(reason, message) when the stage ServiceAccount, the storage or the tracking Secret does
    not exist (the tracking Secret's keys are optional references: a missing Secret would only
    leave the stages unauthenticated, silently).

    Without this check the Job is created anyway and then hangs: the Job controller cannot
    create a pod for a missing ServiceAccount (event FailedCreate on the Job), and the kubelet
    cannot start a container whose secretKeyRef names a missing Secret (waiting reason
    CreateContainerConfigError) -- neither fails the Job."""
    account = spec.resources.service_account_name
    if account and not op.cluster.exists("ServiceAccount", namespace, account):
        return "ServiceAccountMissing", (
            f"serviceaccount {account!r} (spec.resources.serviceAccountName) not found in "
            f"namespace {namespace!r}; the attempt starts once it exists"
        )
    tracking = spec.tracking.mlflow if spec.tracking else None
    secrets = [("spec.storage.secretName", spec.storage.secret_name),
               ("spec.tracking.mlflow.secretName", tracking.secret_name if tracking else None)]  # fmt: skip
    for spec_field, secret in secrets:
        if secret and not op.cluster.exists("Secret", namespace, secret):
            return "SecretMissing", (
                f"secret {secret!r} ({spec_field}) not found in namespace {namespace!r}; "
                "the attempt starts once it exists"
            )
    return None


def rejected_request(err: ApiException) -> bool:
    """A 4xx the request itself caused (invalid or forbidden), which a retry cannot fix.
    409 (exists) is handled by `Cluster.create`; 429 (too many requests) is retried."""
    return 400 <= (err.status or 0) < 500 and err.status not in (409, 429)


def rejection_text(err: ApiException) -> str:
    """The API server's Status, with each cause's field: 422 Invalid lists them in
    details.causes[] (apimachinery's StatusReasonInvalid); 400 BadRequest has only a message."""
    try:
        body = json.loads(err.body or "{}")
    except ValueError:
        body = {}
    details = body.get("details") or {}
    causes = [
        f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message"))
        for c in details.get("causes") or []
    ]
    what = f"{details.get('kind', 'object')} {details.get('name', '')}".strip()
    head = f"{what} rejected by the API server ({err.status} {body.get('reason') or err.reason})"
    return f"{head}: " + ("; ".join(causes) or body.get("message") or str(err.body))


def _rejected_attempt(action: StartAttempt, err: ApiException) -> Attempt:
    """The attempt as the planner must see it: failed for bad input, never retried as is."""
    rejected = TerminationSummary(
        stage=action.stage, status="bad-input", message=rejection_text(err)
    )
    return Attempt(
        stage=action.stage, attempt=action.attempt, state=AttemptState.failed, summary=rejected
    )


def _reject(op: Operator, body: dict[str, Any], err: ValidationError) -> None:
    """A spec the API types refuse (the CRD lets it through): Failed, with the reason."""
    meta = body["metadata"]
    message = "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
    )
    now = op.clock()
    previous = body.get("status") or {}
    failed = Condition(
        type="Failed", status="True", reason="InvalidSpec", message=message,
        last_transition_time=now, observed_generation=meta.get("generation"),
    )  # fmt: skip
    status = MFPORunStatus(
        phase=RunPhase.failed,
        conditions=[failed],
        observed_generation=meta.get("generation"),
        retry_token=previous.get("retryToken"),
    )
    patch = status_patch(status, previous)
    if patch:
        op.cluster.patch_run_status(meta["namespace"], meta["name"], patch)
        _post(op, body, [Event("Warning", "InvalidSpec", message)])
