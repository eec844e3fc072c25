"""One reconcile of one MFPORun: read it and its Jobs, ask the planner, act, write status.

Called by the kopf handlers (`kube.handlers`) from kopf's worker threads, for a run event,
an event of one of its Jobs, or the ticker thread (backoff ends, periodic resync). A per-run lock serialises reconciles of the
same run inside this operator (kopf peering keeps other operators out); creation is
idempotent anyway, because every object has a deterministic name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mfpo_core.api import Condition, MFPORunSpec, MFPORunStatus, RunPhase
from pydantic import ValidationError

from mfpo_operator.kube import jobs
from mfpo_operator.kube.cluster import Cluster
from mfpo_operator.kube.metrics import OperatorMetrics
from mfpo_operator.kube.status import status_patch
from mfpo_operator.plan import RETRY_ANNOTATION, Event, Plan, StartAttempt, StopAttempt, plan

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
    clock: Callable[[], datetime] = utcnow
    _locks: dict[Key, threading.Lock] = field(default_factory=dict)
    _due: dict[Key, float] = field(default_factory=dict)  # wall time of the next needed look
    _guard: threading.Lock = field(default_factory=threading.Lock)

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
                return
            delay = min(result.requeue_after or self.resync_seconds, self.resync_seconds)
            self._due[key] = time.time() + delay

    def forget(self, key: Key) -> None:
        with self._guard:
            self._locks.pop(key, None)
            self._due.pop(key, None)
        self.metrics.forget(*key)

    def tick_forever(self, stop: threading.Event, every: float) -> None:
        """The ticker thread: reconcile the runs that are due. (kopf timers would put a
        finalizer on every run; this needs none.)"""
        while not stop.wait(every):
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
        result = _plan(op, body, spec)
        _act(op, body, spec, result)
        patch = status_patch(result.status, body.get("status"))
        if patch:
            op.cluster.patch_run_status(namespace, name, patch)
        for event in result.events:
            op.post_event(body, event)
        op.metrics.observe(namespace, name, result)
        op.schedule(key, result)
        return result


def _plan(op: Operator, body: dict[str, Any], spec: MFPORunSpec) -> Plan:
    meta = body["metadata"]
    try:
        status = MFPORunStatus.model_validate(body.get("status") or {})
    except ValidationError as err:  # hand-edited status: start from what the Jobs say
        log.warning(
            "%s/%s: unreadable status, rebuilt from its Jobs: %s",
            meta["namespace"],
            meta["name"],
            err,
        )
        status = None
    attempts = op.cluster.attempts(meta["namespace"], meta["name"], meta.get("uid", ""))
    return plan(
        spec,
        status,
        attempts,
        run=meta["name"],
        now=op.clock(),
        generation=meta.get("generation"),
        retry_token=(meta.get("annotations") or {}).get(RETRY_ANNOTATION),
    )


def _act(op: Operator, body: dict[str, Any], spec: MFPORunSpec, result: Plan) -> None:
    run = jobs.RunRef.from_body(body)
    for action in result.actions:
        if isinstance(action, StartAttempt):
            for manifest in jobs.attempt_manifests(
                run, spec, action.stage, action.attempt, action.job
            ):
                if not op.cluster.create(manifest):
                    log.info(
                        "%s/%s %s already exists",
                        run.namespace,
                        manifest["kind"],
                        manifest["metadata"]["name"],
                    )
        elif isinstance(action, StopAttempt):
            op.cluster.delete_job(run.namespace, action.job)


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
        op.post_event(body, Event("Warning", "InvalidSpec", message))
