"""One reconcile of one MFPORun: read it and its Jobs, ask the planner, act, write status.

Called by the kopf handlers (`kube.handlers`) from kopf's worker threads, for a run event,
an event of one of its Jobs that changes something or of its stage pods, or the ticker thread.
A per-run lock serialises reconciles of the same run inside this operator (one replica);
creation is idempotent anyway, because every object has a deterministic name.

The run is the one this operator last read or wrote (`kube.run_cache`: until a watch event
shows it changed; else a get); its Jobs come from the watch-fed `JobCache` (no list call) once
they were listed for it in this process (its first reconcile lists them), and are listed
afresh only when the cache and the status disagree: the cache lacks the Job of an attempt
the status says is running (before the run's storage is read for it, or the planner concludes
it vanished), or holds one of an attempt the status does not know. A plan that changes
nothing costs no request at all, and a status equal to the stored one is not written.

The ticker (`Operator.tick_forever`) looks at a run only when it is due:
- a full reconcile when the planner asked for one (a backoff ends, a held start is retried,
  a stopped attempt is awaited), and every `resync_seconds` while a running Job has fewer
  ready pods than it runs (its pods may be stuck: a pod that cannot even be created, the
  Job controller's FailedCreate, shows in no pod event) or its attempt waits with a reason
  (Kueue admission, a stuck pod: its message says for how long);
- otherwise, every `verify_seconds` (spread out), a check of the run's live Jobs in the cache
  with one get each, which reconciles only if one differs (kopf's watch, re-listing after an
  expired resource version, reports no deletion it missed);
- a run whose reconcile failed (from an event handler too: kopf retries no event handler's
  error) after 1, 2, 4... s, at most `resync_seconds`;
- the metric series of finished runs are retired after `finished_series_seconds`.

Where the Jobs cannot tell, the run's storage is read (`kube.run_storage`): the result
document of a stage whose Job is gone or whose summary was cut, the step a disrupted stage
resumes from. Once the stored status records a finished attempt, its Job, ConfigMap and
Service are deleted: finished Jobs would otherwise count against a `count/jobs.batch`
ResourceQuota for a day (ttlSecondsAfterFinished) and starve the run's own next stage. These
deletions and the events are left to `kube.aftercare`'s threads: outside the run's lock and
the reconcile's time. The existence checks before a start (ServiceAccount, Secrets) run
side by side.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from kubernetes.client.rest import ApiException
from mfpo_core.api import Condition, MFPORunSpec, MFPORunStatus, RunPhase, StagePhase
from mfpo_core.contract import TerminationSummary, result_location
from pydantic import ValidationError

from mfpo_operator.kube import jobs
from mfpo_operator.kube.aftercare import Aftercare
from mfpo_operator.kube.cluster import Cluster, Observed
from mfpo_operator.kube.job_cache import JobCache
from mfpo_operator.kube.metrics import OperatorMetrics
from mfpo_operator.kube.run_cache import RunCache
from mfpo_operator.kube.run_storage import RunStorage
from mfpo_operator.kube.status import Eviction, recorded_attempts, status_patch
from mfpo_operator.plan import (
    RETRY_ANNOTATION,
    Attempt,
    AttemptState,
    Event,
    Plan,
    StartAttempt,
    StopAttempt,
    job_name,
    plan,
)

log = logging.getLogger("mfpo.operator")

PostEvent = Callable[[dict[str, Any], Event], None]
# The first retry of a failed reconcile; doubled at each failure in a row, up to the resync.
RETRY_FIRST_SECONDS = 1.0
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
    # How often the live Jobs of a run with nothing due are checked against the API server.
    verify_seconds: float = 600.0
    # How long a finished run keeps its per-stage metric series (then only its summary).
    finished_series_seconds: float = 3600.0
    clock: Callable[[], datetime] = utcnow
    # The watch-fed view of the stage Jobs; None: every reconcile lists them (and the ticker
    # reconciles every unfinished run every resync_seconds).
    jobs: JobCache | None = None
    # Threads for a reconcile's events and deletions; None: done in the reconcile's thread.
    aftercare: Aftercare | None = None
    # The runs as last read or written; None: every reconcile gets its run.
    runs: RunCache | None = None
    _locks: dict[Key, threading.Lock] = field(default_factory=dict)
    _due: dict[Key, float] = field(default_factory=dict)  # wall time of the next needed look
    _verify_only: set[Key] = field(default_factory=set)  # due runs that need only a check
    _failures: dict[Key, int] = field(default_factory=dict)  # reconciles failed in a row
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _evictions_told: dict[Key, set[str]] = field(default_factory=dict)  # pod uids per run
    _evictions_pending: dict[Key, dict[str, Eviction]] = field(default_factory=dict)
    _retire: dict[Key, tuple[float, str]] = field(default_factory=dict)  # (when, final phase)

    def later(self, key: Key, task: Callable[..., Any], *args: Any, once: Any = None) -> None:
        """task(*args) on the aftercare threads (see `kube.aftercare`), or now without them."""
        if self.aftercare is None:
            task(*args)
        else:
            self.aftercare.submit(key, task, *args, once=once)

    def lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def due_runs(self) -> tuple[list[Key], list[Key]]:
        """(runs due for a reconcile, runs due for a check of their Jobs), earliest first."""
        now = time.time()
        with self._guard:
            due = sorted((when, key) for key, when in self._due.items() if when <= now)
            looks = [key for _, key in due if key not in self._verify_only]
            checks = [key for _, key in due if key in self._verify_only]
        return looks, checks

    def schedule(self, key: Key, result: Plan, observed: Observed | None = None) -> None:
        """When to look at a run again without a trigger; never for a finished run."""
        with self._guard:
            self._failures.pop(key, None)
            if result.status.phase in (RunPhase.succeeded, RunPhase.failed):
                self._due.pop(key, None)
                self._verify_only.discard(key)
                if key not in self._retire:
                    when = time.time() + self.finished_series_seconds
                    self._retire[key] = (when, result.status.phase)
                return
            self._retire.pop(key, None)
            if result.requeue_after is not None:
                self._look_at(key, min(result.requeue_after, self.resync_seconds))
            elif self.jobs is None or observed is None or _waits(observed) or _starts(result):
                self._look_at(key, self.resync_seconds)  # a new Job's pods are not ready yet
            else:
                self._check_at(key)

    def retry(self, key: Key) -> float:
        """A reconcile failed: the ticker looks again after a backoff (1, 2, 4... s, at most
        resync_seconds), the delay returned. kopf never retries an event handler's error
        (only change handlers' are retried), and the event may have been the only trigger:
        a run's first reconcile, or a Job event the cache has taken in already."""
        with self._guard:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self.resync_seconds, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
            self._look_at(key, delay)
        return delay

    def unschedule(self, key: Key) -> None:
        with self._guard:
            self._failures.pop(key, None)
            self._due.pop(key, None)
            self._verify_only.discard(key)

    def _look_at(self, key: Key, delay: float) -> None:
        self._due[key] = time.time() + delay
        self._verify_only.discard(key)

    def _check_at(self, key: Key) -> None:
        # Spread: runs created together would otherwise all be checked in the same tick.
        self._due[key] = time.time() + self.verify_seconds * random.uniform(0.5, 1.5)
        self._verify_only.add(key)

    def verify(self, key: Key) -> None:
        """Check the run's live Jobs in the cache against the API server (a get each);
        reconcile only when one differs. A failed check asks for a reconcile (`retry`): the
        cache may have taken in a change of one Job before the get of another failed."""
        namespace, name = key
        changed = False
        try:
            for job in self.jobs.live(namespace, name):
                meta = job["metadata"]
                current = self.cluster.get_job(namespace, meta["name"])
                if current is None or current["metadata"].get("uid") != meta.get("uid"):
                    changed |= self.jobs.forget(job)  # gone (a Job of the same name is another)
                if current is not None:
                    changed |= self.jobs.observe(current)
        except Exception:
            self.retry(key)
            raise
        if changed:
            reconcile(self, namespace, name)
        else:
            with self._guard:
                if key in self._due:  # not forgotten meanwhile
                    self._check_at(key)

    def new_evictions(
        self, key: Key, seen: list[Eviction], resume_step: Callable[[str], int | None]
    ) -> list[Event]:
        """One event per evicted pod, once the step it resumes from can be known: when the pod
        has ended (its own SIGTERM summary names the step it saved), or, for a pod seen while
        still stopping, once it is gone (the stage's newest checkpoint, where its replacement
        starts). Remembered in memory: a restarted operator may repeat one."""
        with self._guard:
            told = self._evictions_told.setdefault(key, set())
            pending = self._evictions_pending.setdefault(key, {})
            fresh = [e for e in seen if e.uid not in told]
            seen_uids = {e.uid for e in seen}
            ready = [e for e in fresh if e.ended]
            ready += [e for uid, e in pending.items() if uid not in seen_uids and uid not in told]
            for eviction in fresh:
                if not eviction.ended:
                    pending[eviction.uid] = eviction
            for eviction in ready:
                pending.pop(eviction.uid, None)
                told.add(eviction.uid)
        return [
            Event("Normal", "PodEvicted", e.text(None if e.step is not None else resume_step(e.stage)))
            for e in ready
        ]

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
            self._failures.pop(key, None)
            self._verify_only.discard(key)
            self._evictions_told.pop(key, None)
            self._evictions_pending.pop(key, None)
            self._retire.pop(key, None)
        self.cluster.forget_run(*key)
        if self.runs is not None:
            self.runs.forget(key)
        if self.jobs is not None:
            self.jobs.forget_run(*key)
        self.metrics.forget(*key)

    def checks_per_tick(self, every: float) -> int:
        """At most this many Job checks per tick: twice the even spread of all the runs'
        checks over verify_seconds (the rest wait for the next tick, earliest first)."""
        with self._guard:
            runs = len(self._due)
        return max(1, math.ceil(2 * runs * every / self.verify_seconds))

    def tick_forever(self, stop: threading.Event, every: float) -> None:
        """The ticker thread: reconcile or check the runs that are due. (kopf timers would put
        a finalizer on every run; this needs none.)"""
        while not stop.wait(every):
            self.retire_finished()
            looks, checks = self.due_runs()
            for namespace, name in looks:
                try:
                    reconcile(self, namespace, name)
                except ReconcileFailed as err:
                    log.error("%s", err, exc_info=err.__cause__)
            for namespace, name in checks[: self.checks_per_tick(every)]:
                try:
                    self.verify((namespace, name))
                except ReconcileFailed as err:
                    log.error("%s", err, exc_info=err.__cause__)
                except Exception:
                    log.exception("%s/%s: check of its Jobs failed; reconciled again later",
                                  namespace, name)  # fmt: skip


def reconcile(op: Operator, namespace: str, name: str) -> Plan | None:
    """Bring one run one step forward; None when it is gone or being deleted. An error is
    raised after the ticker was told to try again (`Operator.retry`)."""
    key = (namespace, name)
    with op.lock(key), op.metrics.reconcile_timer():
        try:
            outcome = _reconcile_locked(op, key)
        except _RunGone:
            log.info("%s/%s: deleted while it was reconciled", namespace, name)
            op.unschedule(key)
            if op.runs is not None:
                op.runs.forget(key)
            return None
        except Exception as err:
            delay = op.retry(key)
            raise ReconcileFailed(f"{namespace}/{name}: reconcile failed; tried again in "
                                  f"{delay:g} s: {_error_text(err)}") from err  # fmt: skip
        if outcome is None:
            return None
        body, result, events = outcome
    # Events are a courtesy: posted outside the run's lock and the reconcile timer.
    if events:
        op.later(key, _post, op, body, events)
    return result


class ReconcileFailed(Exception):
    """A reconcile raised; its run is due again (the message says when)."""


class _RunGone(Exception):
    """The run's status could not be written: the run is gone (404; its namespace deleted,
    or the run itself before its DELETED event arrived)."""


def _error_text(err: Exception) -> str:
    """One line: an API error's status and the API server's message (str() of the client's
    ApiException spans lines of headers), else the exception's type and text."""
    if isinstance(err, ApiException):
        try:
            message = json.loads(err.body or "{}").get("message")
        except ValueError:
            message = None
        return f"{err.status} {err.reason}: {message or err.body}"
    return f"{type(err).__name__}: {err}"


def _reconcile_locked(
    op: Operator, key: Key
) -> tuple[dict[str, Any], Plan, list[Event]] | None:
    namespace, name = key
    body = _read_run(op, key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        op.unschedule(key)  # gone, or left to the deletion handler
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
        _write_status(op, key, patch)
    # Metrics before events: a lost event must never lose a counted attempt.
    op.metrics.observe(namespace, name, result)
    op.schedule(key, result, planner.observed)
    _delete_recorded(op, planner, result.status)
    evicted = op.new_evictions(key, planner.observed.evictions, planner.storage.resume_step)
    return body, result, [*result.events, *evicted]


def _read_run(op: Operator, key: Key) -> dict[str, Any] | None:
    """The run as last read or written, else as a get answers (None: gone)."""
    if op.runs is None:
        return op.cluster.get_run(*key)
    epoch = op.runs.epoch(key)
    body = op.runs.get(key)
    if body is None:
        body = op.cluster.get_run(*key)
        if body is not None:
            op.runs.keep(key, body, epoch)
    return body


def _write_status(op: Operator, key: Key, patch: dict[str, Any]) -> None:
    epoch = op.runs.epoch(key) if op.runs is not None else 0
    try:
        written = op.cluster.patch_run_status(*key, patch)
    except ApiException as err:
        if err.status == 404:
            raise _RunGone from err
        raise
    if op.runs is not None and isinstance(written, dict):
        op.runs.keep(key, written, epoch)


def _disagree(status: MFPORunStatus | None, observed: Observed) -> bool:
    """The status says a stage's latest attempt is running and it is not observed (what the
    planner would call vanished, and `_Planner._recover_vanished` would read storage for), or
    an attempt is observed that the status does not know (newer than its stage's latest: on
    a real cluster, a Job created just before an operator restart, which a restart lists
    anyway; kmock also reports a Job whose creation a test refused)."""
    if status is None:
        return True
    seen = {(a.stage, a.attempt) for a in observed.attempts}
    latest = {stage.name: stage.attempts for stage in status.stages}
    vanished = any(
        stage.phase == StagePhase.running and stage.attempts and (stage.name, stage.attempts) not in seen
        for stage in status.stages
    )
    return vanished or any(attempt > latest.get(stage, 0) for stage, attempt in seen)


def _waits(observed: Observed) -> bool:
    """A running attempt whose pods may be stuck (fewer ready than it runs), or that waits
    with a reason (its message says for how long: refreshed at each resync)."""
    return observed.unready or any(
        a.state == AttemptState.running and a.waiting_reason for a in observed.attempts
    )


def _starts(result: Plan) -> bool:
    return any(isinstance(action, StartAttempt) for action in result.actions)


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
        self.storage = RunStorage(spec, meta["name"], self._credentials)
        self.observed = self._observe_jobs()
        self.now = op.clock()
        self._complete_from_storage()

    def _observe_jobs(self) -> Observed:
        """The run's attempts from the cache (see `kube.job_cache`), or from a listing: without
        a cache, for a run not listed yet in this process, or when the cache and the status
        disagree (only a listing tells whether a Job is gone, or not seen yet)."""
        meta = self.body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta.get("uid", "")
        cache, step = self.op.jobs, self.storage.resume_step
        if cache is not None and cache.seeded(namespace, name):
            observed = self.op.cluster.attempts(namespace, name, uid, step, cache.jobs(namespace, name))
            if not _disagree(self.status, observed):
                return observed
        listed = self.op.cluster.list_jobs(namespace, name)
        if cache is not None:
            cache.replace(namespace, name, listed)
        return self.op.cluster.attempts(namespace, name, uid, step, listed)

    def _credentials(self) -> dict[str, str] | None:
        """The run's storage Secret, None when it is gone or the operator may not read it."""
        namespace, secret = self.body["metadata"]["namespace"], self.spec.storage.secret_name
        try:
            return self.op.cluster.read_secret(namespace, secret) if secret else None
        except ApiException as err:
            log.warning("%s/%s: storage secret %r not read (%s %s): storage read without it",
                        namespace, self.body["metadata"]["name"], secret, err.status, err.reason)  # fmt: skip
            return None

    def _complete_from_storage(self) -> None:
        """What the Jobs cannot say, from the stages' result documents: a stage whose latest
        attempt's Job is gone, and a summary cut to fit the termination message."""
        if self.status is None:
            return
        seen = {(a.stage, a.attempt): a for a in self.observed.attempts}
        for stage in self.status.stages:
            if stage.phase in (StagePhase.succeeded, StagePhase.failed) or not stage.attempts:
                continue
            latest = seen.get((stage.name, stage.attempts))
            if latest is None and stage.phase == StagePhase.running:
                self._recover_vanished(stage.name, stage.attempts)
            elif latest is not None and latest.summary is not None and latest.summary.truncated:
                self._complete_summary(latest)

    def _recover_vanished(self, stage: str, attempt: int) -> None:
        """A Job deleted before the operator saw it finish (ttlSecondsAfterFinished, by hand):
        if the stage recorded its result, the attempt succeeded; else it stays unobserved and
        the planner restarts it as vanished."""
        summary = self.storage.stage_result(stage)
        if summary is None:
            return
        uri = result_location(self.storage.run_uri, stage)
        log.info("%s/%s: %s attempt %d's Job is gone; its result document says it succeeded",
                 self.body["metadata"]["namespace"], self.body["metadata"]["name"], stage, attempt)  # fmt: skip
        note = f"attempt {attempt} succeeded; its Job was gone, the result read from {uri}"
        _remove_config_later(self.op, self.body, self.spec, stage, attempt)
        self.observed.attempts.append(Attempt(
            stage=stage, attempt=attempt, state=AttemptState.succeeded,
            summary=summary.model_copy(update={"message": summary.message or note}),
        ))  # fmt: skip

    def _complete_summary(self, attempt: Attempt) -> None:
        full = self.storage.stage_result(attempt.stage) if attempt.state == AttemptState.succeeded else None
        if full is None:
            return  # the planner says the summary was cut, and where the rest is
        complete = replace(attempt, summary=full.model_copy(update={"message": attempt.summary.message}))
        self.observed.attempts = [complete if a is attempt else a for a in self.observed.attempts]

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
            _delete_job(op, run.namespace, run.name, action.job)
            # Its pods keep the mounted config while they stop; a next attempt gets its own.
            _remove_config_later(op, body, spec, action.stage, action.attempt)
            continue
        missing = _missing_prerequisite(op, run.namespace, spec)
        if missing is not None:
            return planner.plan(hold=missing)
        _remove_earlier_configs(op, planner, action)
        try:
            _create_attempt(op, run, spec, action, adopt_unowned=completed_stages(planner.status))
        except _Refused as refused:
            _remove_attempt(op, run.namespace, run.name, spec, action.stage, action.job, job_too=False)
            quota = quota_exceeded(refused.error)
            if quota is not None:
                return planner.plan(hold=("QuotaExceeded", quota))
            return planner.plan(rejected=_rejected_attempt(action, refused))
    return result


@dataclass
class _Refused(Exception):
    """The API server refused one of an attempt's objects (`what`: its kind and name)."""

    what: str
    error: ApiException


def completed_stages(status: MFPORunStatus | None) -> bool:
    """Whether the run completed a stage: then its storage prefix holds its own artifacts, also
    without an ownership record (a run that started before records existed: its stages adopt
    the prefix). A run that completed none has claimed its prefix with its first stage, or
    finds there another run's artifacts."""
    return status is not None and any(stage.phase == StagePhase.succeeded for stage in status.stages)


def _create_attempt(op: Operator, run: jobs.RunRef, spec: MFPORunSpec, action: StartAttempt, *, adopt_unowned: bool):
    manifests = jobs.attempt_manifests(
        run, spec, action.stage, action.attempt, action.job, adopt_unowned=adopt_unowned
    )
    for manifest in manifests:
        what = f"{manifest['kind']} {manifest['metadata']['name']}"
        try:
            created = op.cluster.create(manifest)
        except ApiException as err:
            if rejected_request(err):
                raise _Refused(what, err) from err
            raise
        if created is None:
            log.info("%s/%s already exists", run.namespace, what)
        elif manifest["kind"] == "Job" and op.jobs is not None:
            op.jobs.observe(created)  # the next reconcile sees it before its watch event


def _remove_attempt(
    op: Operator, namespace: str, run: str, spec: MFPORunSpec, stage: str, job: str, *,
    job_too: bool = True,
) -> None:  # fmt: skip
    """Delete an attempt's ConfigMap and Service (and its Job): after its outcome is recorded,
    or when its Job could not be created (nothing half-made stays behind to be reused)."""
    kinds = [*(["Job"] if job_too else []), "ConfigMap"]
    names = {"Job": job, "ConfigMap": jobs.config_map_name(job), "Service": jobs.service_name(job)}
    if jobs.is_multi_node(spec, stage):
        kinds.append("Service")
    for kind in kinds:
        if kind == "Job":
            _delete_job(op, namespace, run, job)
        else:
            op.cluster.delete(kind, namespace, names[kind])


def _delete_job(op: Operator, namespace: str, run: str, job: str) -> None:
    """Delete the Job (its pods in the background: the Job itself goes at once) and drop it
    from the cache, so that a reconcile before its DELETED event does not delete it again."""
    op.cluster.delete_job(namespace, job)
    if op.jobs is not None:
        op.jobs.forget_name(namespace, run, job)


def _delete_recorded(op: Operator, planner: _Planner, stored: MFPORunStatus) -> None:
    """Delete the Jobs (and their pods, ConfigMaps, Services) of attempts `stored` records:
    nothing later reads them (the summary and failure are in status, the result document in
    storage), and a finished Job still counts against a count/jobs.batch ResourceQuota."""
    meta = planner.body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    observed = planner.observed
    for attempt in recorded_attempts(stored, observed.attempts):
        key = (attempt.stage, attempt.attempt)
        job = observed.jobs.get(key)
        if job is None or key in observed.deleting:
            continue
        op.later((namespace, name), _remove_recorded, op, namespace, name, planner.spec,
                 attempt, job, once=("remove", namespace, job))  # fmt: skip


def _remove_earlier_configs(op: Operator, planner: _Planner, action: StartAttempt) -> None:
    """The ConfigMaps and Services of the stage's earlier attempts whose Jobs are gone (deleted
    by hand or by their TTL, so `_delete_recorded` never sees them): nothing reads them again."""
    for attempt in range(1, action.attempt):
        if (action.stage, attempt) not in planner.observed.jobs:  # else deleted with its Job
            _remove_config_later(op, planner.body, planner.spec, action.stage, attempt)


def _remove_config_later(op: Operator, body: dict[str, Any], spec: MFPORunSpec, stage: str, attempt: int) -> None:
    namespace, run = body["metadata"]["namespace"], body["metadata"]["name"]
    job = job_name(run, stage, attempt)
    op.later((namespace, run), _remove_config, op, namespace, run, spec, stage, job,
             once=("remove", namespace, job))  # fmt: skip


def _remove_config(op: Operator, namespace: str, run: str, spec: MFPORunSpec, stage: str, job: str) -> None:
    _remove_attempt(op, namespace, run, spec, stage, job, job_too=False)


def _remove_recorded(
    op: Operator, namespace: str, run: str, spec: MFPORunSpec, attempt: Attempt, job: str
) -> None:
    if op.jobs is not None and not op.jobs.holds(namespace, run, job):
        return  # deleted since the reconcile that asked for it saw it
    try:
        _remove_attempt(op, namespace, run, spec, attempt.stage, job)
    except ApiException as err:  # tried again at the run's next look
        log.warning("%s/%s: Job %s not deleted: %s %s", namespace, run, job, err.status, err.reason)
        return
    log.info("%s/%s: deleted Job %s (%s attempt %d, recorded in status)",
             namespace, run, job, attempt.stage, attempt.attempt)  # fmt: skip


def quota_exceeded(err: ApiException) -> str | None:
    """The API server's message when a ResourceQuota refused the object, else None.

    The quota admission plugin answers 403 Forbidden with "exceeded quota: <name>, requested:
    ..., used: ..., limited: ..." or, before the quota controller has counted the namespace's
    usage, "status unknown for quota: <name>, resources: ..." (apiserver
    pkg/admission/plugin/resourcequota/controller.go, checkRequest). Both pass: objects get
    deleted, quotas raised. Its "failed quota" (an object lacking a required request) does not.
    """
    if err.status != 403:
        return None
    try:
        message = str(json.loads(err.body or "{}").get("message") or "")
    except ValueError:
        message = str(err.body or "")
    if "exceeded quota: " not in message and "status unknown for quota: " not in message:
        return None
    return f"{message}; the attempt starts once the quota allows it"


def _missing_prerequisite(
    op: Operator, namespace: str, spec: MFPORunSpec
) -> tuple[str, str] | None:
    """(reason, message) when the stage ServiceAccount, the storage, tracking or judge Secret
    does not exist (the tracking Secret's keys are optional references: a missing Secret would
    only leave the stages unauthenticated, silently; the judge's is needed by the last stage
    only, and held for from the first, before any training).

    Without this check the Job is created anyway and then hangs: the Job controller cannot
    create a pod for a missing ServiceAccount (event FailedCreate on the Job), and the kubelet
    cannot start a container whose secretKeyRef names a missing Secret (waiting reason
    CreateContainerConfigError) -- neither fails the Job."""
    tracking = spec.tracking.mlflow if spec.tracking else None
    needed = [("ServiceAccount", "spec.resources.serviceAccountName", spec.resources.service_account_name),
              ("Secret", "spec.storage.secretName", spec.storage.secret_name),
              ("Secret", "spec.tracking.mlflow.secretName", tracking.secret_name if tracking else None)]  # fmt: skip
    # The judge's key is read by the eval stage only, but a run without it would train for nothing.
    needed += [("Secret", f"{field}.name", ref.name) for field, ref in spec.evaluation.judge_secrets()]
    needed = [(kind, spec_field, name) for kind, spec_field, name in needed if name]
    for (kind, spec_field, name), exists in zip(needed, _exist(op, namespace, needed)):
        if not exists:
            reason = "ServiceAccountMissing" if kind == "ServiceAccount" else "SecretMissing"
            return reason, (
                f"{kind.lower()} {name!r} ({spec_field}) not found in namespace {namespace!r}; "
                "the attempt starts once it exists"
            )
    return None


EXISTENCE_CHECK_THREADS = 4
_EXISTENCE_CHECKS = ThreadPoolExecutor(EXISTENCE_CHECK_THREADS, thread_name_prefix="mfpo-exists")


def _exist(op: Operator, namespace: str, needed: list[tuple[str, str, str]]) -> list[bool]:
    """Whether each (kind, field, name) exists: side by side when there are several (each a get)."""
    if len(needed) <= 1:
        return [op.cluster.exists(kind, namespace, name) for kind, _, name in needed]
    return list(_EXISTENCE_CHECKS.map(lambda n: op.cluster.exists(n[0], namespace, n[2]), needed))


def rejected_request(err: ApiException) -> bool:
    """A 4xx the request itself caused (invalid or forbidden), which a retry cannot fix.
    409 (exists) is handled by `Cluster.create`; 429 (too many requests) is retried."""
    return 400 <= (err.status or 0) < 500 and err.status not in (409, 429)


def rejection_text(err: ApiException, what: str = "object") -> str:
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
    if details.get("kind"):
        what = f"{details['kind']} {details.get('name', '')}".strip()
    head = f"{what} rejected by the API server ({err.status} {body.get('reason') or err.reason})"
    text = f"{head}: " + ("; ".join(causes) or body.get("message") or str(err.body))
    # Fields of the run the server names (in a cause, or in a strict decoding error's
    # `unknown field "<path>"`), so that the user sees what to fix in the MFPORun.
    named = [c.get("field") or "" for c in details.get("causes") or []]
    named += _UNKNOWN_FIELD.findall(body.get("message") or "")
    fields = list(dict.fromkeys(f for f in map(jobs.run_field, named) if f))
    return text + (f" (in the run: {', '.join(fields)})" if fields else "")


# apimachinery pkg/runtime/error.go strictDecodingError, from sigs.k8s.io/json's
# `unknown field "<path>"` per field (pkg/endpoints/handlers/create.go under Strict).
_UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')


def _rejected_attempt(action: StartAttempt, refused: _Refused) -> Attempt:
    """The attempt as the planner must see it: failed for bad input, never retried as is."""
    rejected = TerminationSummary(
        stage=action.stage, status="bad-input", message=rejection_text(refused.error, refused.what)
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
        _write_status(op, (meta["namespace"], meta["name"]), patch)
        _post(op, body, [Event("Warning", "InvalidSpec", message)])
