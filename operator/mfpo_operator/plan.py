"""The pure planner: (spec, status, observed stage attempts, now) -> new status and actions.

Shared by both executors: the kopf operator (`mfpo_operator.kube.handlers`, attempts are Jobs)
and the local runner (`mfpo_operator.local`, attempts are subprocesses). No I/O, no clock, no
kopf, no Kubernetes client: everything the planner knows comes in as arguments, so the same
function is tested exhaustively with hypothesis and behaves the same in both executors.

API
---
    result = plan(spec, status, attempts, run="my-run", now=now,
                  generation=meta.generation, retry_token=annotations.get(RETRY_ANNOTATION))
    for action in result.actions:      # StartAttempt | StopAttempt, at most one start
        executor.apply(action)          # idempotent: a start of an existing job is a no-op
    persist(result.status)              # MFPORunStatus, written back after the actions
    emit(result.events)                 # Event(type, reason, message, stage): per transition
    reconcile again after result.requeue_after seconds (a backoff timer), or on the next change

Inputs
    spec       MFPORunSpec (validated).
    status     MFPORunStatus as last persisted, or None for a new run. It is the planner's
               memory of what observations may have lost (Jobs removed by their TTL, attempts
               stopped on suspend); it may be stale by one step (a lost status write).
    attempts   every attempt the executor can still see, as `Attempt` records. The executor
               derives them: one per Job (or process) named `job_name(run, stage, attempt)`.
    now        timezone-aware datetime; the only clock.
    retry_token  the current value of the manual-retry annotation (`mfpo.dev/retry`); a value
               different from `status.retry_token` while the run is Failed retries every failed
               stage with a fresh attempt budget. Values seen at other times are only recorded.

Semantics
    - Stages run strictly in order (datagen, score, align-1..N, eval); a stage starts only when
      every stage before it has succeeded. At most one attempt of a stage is live, and a new
      attempt is never started while an older one of the same stage is still running.
    - Attempt numbers only grow (attempt k has job `job_name(run, stage, k)`), so a restarted
      attempt never collides with a Job still being deleted.
    - A failed attempt is retried after `spec.retries.delay_before(n)` (n = the next counted
      attempt) by a new attempt; the stage command resumes from the stage's last checkpoint.
    - Bad input (exit code 65 or a `bad-input` termination summary) fails the stage at once.
    - `retries.maxAttempts` counts attempts since the last manual retry, minus disrupted ones.
    - A *disrupted* attempt was stopped from outside: preemption or eviction as the executor
      reports it (`Attempt.disrupted`), an attempt the planner stopped on suspend, or a live
      attempt whose Job vanished (deleted by hand; the kube executor first reads the stage's
      result document, and a recorded result is a success). It is restarted at once, without backoff, and
      does not consume the retry budget (like Kubernetes' podFailurePolicy `Ignore`). Exit code
      75 alone (SIGTERM, checkpoint saved, e.g. activeDeadlineSeconds) is a counted failure:
      only the executor knows whether the SIGTERM was a disruption.
    - `spec.suspend`: live attempts are stopped (StopAttempt, counted as disrupted) and no new
      one starts; clearing it resumes where the run stopped.
    - Succeeded is final. Failed is final until a new retry token arrives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Literal

from mfpo_core import contract
from mfpo_core.api import (
    Condition,
    MFPORunSpec,
    MFPORunStatus,
    RunPhase,
    StagePhase,
    StageStatus,
)
from mfpo_core.contract import ExitCode, TerminationSummary

RETRY_ANNOTATION = "mfpo.dev/retry"
# Kubernetes names are DNS labels (63); Indexed Job pods get the hostname `<job>-<index>`
# (index up to 4 digits for 1024 shards), so job names stay within 52 like CronJob's.
JOB_NAME_LIMIT = 52
# How soon to look again while an attempt that was told to stop is still running.
STOP_POLL_SECONDS = 5.0

CONDITION_TYPES = ("Ready", "Progressing", "Failed", "Suspended")
# Reasons of a stage whose attempt cannot start or whose pods cannot run: the run's
# Progressing condition repeats them with the stage's message, so `kubectl get` shows why.
_WAITING_REASONS = frozenset({
    "ServiceAccountMissing", "SecretMissing", "QuotaExceeded", "Unschedulable",
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError", "FailedCreate", "AwaitingAdmission", "Preempted", "JobSuspended",
})  # fmt: skip
# Waiting the user asked for (a Kueue queue): told as Normal events, the others as Warnings.
_QUEUED_REASONS = frozenset({"AwaitingAdmission", "Preempted"})
# How soon to look again while the executor cannot start an attempt (`plan(hold=...)`).
HOLD_POLL_SECONDS = 15.0


class AttemptState(str, Enum):
    running = "running"  # may still do work (includes pending, queued, being admitted)
    succeeded = "succeeded"
    failed = "failed"


@dataclass(frozen=True)
class Attempt:
    """One attempt of one stage as the executor observes it (a Job, or a local process).

    `disrupted` is set by the executor for a finished attempt that was stopped from outside
    (preemption, eviction, a Job being deleted); it is ignored while `state` is running.
    """

    stage: str
    attempt: int  # 1-based
    state: AttemptState
    exit_code: int | None = None
    summary: TerminationSummary | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None
    disrupted: bool = False
    # A live attempt whose pods cannot run yet, as the executor sees it: a reason string of
    # the kubelet or scheduler (e.g. "ImagePullBackOff", "Unschedulable"); `message` says
    # which pod and for how long.
    waiting_reason: str | None = None

    @property
    def bad_input(self) -> bool:
        by_summary = self.summary is not None and self.summary.status == "bad-input"
        return self.state == AttemptState.failed and (
            self.exit_code == ExitCode.BAD_INPUT or by_summary
        )

    def failure_text(self) -> str:
        """What went wrong, for status and events: the stage's own words first."""
        detail = (self.summary.message if self.summary else None) or self.message or "no message"
        code = f" (exit code {self.exit_code})" if self.exit_code is not None else ""
        return f"attempt {self.attempt} failed{code}: {detail}"


@dataclass(frozen=True)
class StartAttempt:
    """Create attempt `attempt` of `stage` under the name `job` (idempotent for the executor)."""

    stage: str
    attempt: int
    job: str


@dataclass(frozen=True)
class StopAttempt:
    """Stop a live attempt (delete its Job, terminate its process); idempotent."""

    stage: str
    attempt: int
    job: str
    reason: str


Action = StartAttempt | StopAttempt


@dataclass(frozen=True)
class Event:
    """A transition worth telling the user (a Kubernetes Event, a line of local output)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    stage: str | None = None  # the stage it concerns; None for the run as a whole


@dataclass(frozen=True)
class Plan:
    status: MFPORunStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None  # seconds; None: only when something changes


def job_name(run: str, stage: str, attempt: int) -> str:
    """Deterministic name of an attempt: `<run>-<stage>-a<k>`, shortened with a hash if long."""
    name = f"{run}-{stage}-a{attempt}"
    if len(name) <= JOB_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    suffix = f"-{stage}-a{attempt}-{digest}"
    return f"{run[: JOB_NAME_LIMIT - len(suffix)].rstrip('-')}{suffix}"


def run_uri(spec: MFPORunSpec, run: str) -> str:
    """The run's storage prefix: <spec.storage.uri>/<run name> (every stage writes under it)."""
    return contract.run_uri(spec.storage.uri, run)


# --------------------------------------------------------------------------- stages


@dataclass
class _Fold:
    """One stage after folding in its observations; `live` = its running attempts."""

    status: StageStatus
    live: list[Attempt] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def _counted(stage: StageStatus) -> int:
    """Attempts that count against retries.maxAttempts (since the last manual retry)."""
    disrupted = set(stage.disrupted_attempts)
    return sum(1 for n in range(stage.retried_from + 1, stage.attempts + 1) if n not in disrupted)


def _fold_stage(
    spec: MFPORunSpec, previous: StageStatus, observed: list[Attempt], now: datetime, run: str
) -> _Fold:
    """Update one stage's status from its observed attempts (pure bookkeeping, no decisions)."""
    stage = previous.model_copy(deep=True)
    live = [a for a in observed if a.state == AttemptState.running]
    stage.attempts = max([stage.attempts, *(a.attempt for a in observed)])
    newly_disrupted = {
        a.attempt for a in observed if a.state == AttemptState.failed and a.disrupted
    }
    stage.disrupted_attempts = sorted(set(stage.disrupted_attempts) | newly_disrupted)
    fold = _Fold(stage, live)
    if stage.phase in (StagePhase.succeeded, StagePhase.failed):
        return fold
    succeeded = [a for a in observed if a.state == AttemptState.succeeded]
    if succeeded:
        _mark_succeeded(fold, succeeded[-1], now, contract.result_location(run_uri(spec, run), stage.name))
        return fold
    # Attempts made before a manual retry are history: they no longer decide the phase.
    current = [a for a in observed if a.attempt == stage.attempts > stage.retried_from]
    latest = current[0] if current else None
    if latest is None:
        _fold_unobserved(fold, now, run)
    elif latest.state == AttemptState.running:
        if latest.attempt not in stage.disrupted_attempts:
            _mark_running(fold, latest, job_name(run, stage.name, latest.attempt))
    elif latest.attempt in stage.disrupted_attempts:
        _mark_disrupted(fold, latest.attempt, "Disrupted", latest.failure_text())
    else:
        _fold_failure(fold, spec, latest, now)
    return fold


def _mark_running(fold: _Fold, attempt: Attempt, job: str) -> None:
    """Running; while its pods wait (image pull, scheduling...), the reason says why."""
    stage = fold.status
    was = stage.reason
    stage.phase, stage.job = StagePhase.running, job
    if attempt.waiting_reason is None:
        stage.reason = "Started"
        return
    stage.reason = attempt.waiting_reason
    stage.message = f"attempt {attempt.attempt} waiting: {attempt.message or stage.reason}"
    if was != stage.reason:
        kind: Literal["Normal", "Warning"] = (
            "Normal" if stage.reason in _QUEUED_REASONS else "Warning"
        )
        fold.events.append(
            Event(kind, stage.reason, f"{stage.name}: {stage.message}", stage=stage.name)
        )


def _mark_succeeded(fold: _Fold, attempt: Attempt, now: datetime, result: str) -> None:
    """`result`: the stage's result document, named when the summary had to be cut."""
    stage = fold.status
    summary = attempt.summary
    stage.phase, stage.reason = StagePhase.succeeded, "Succeeded"
    stage.completion_time = attempt.finished_at or now
    stage.metrics = dict(summary.metrics) if summary else {}
    stage.outputs = dict(summary.outputs) if summary else {}
    stage.message = (
        summary.message if summary else None
    ) or f"succeeded in attempt {attempt.attempt}"
    if summary is not None and summary.truncated:
        stage.message += (
            f" (its termination summary was cut to {contract.TERMINATION_MESSAGE_LIMIT} bytes: "
            f"{len(stage.metrics)} metrics here, every one in {result})"
        )
    fold.events.append(
        Event("Normal", "StageSucceeded", f"{stage.name}: {stage.message}", stage=stage.name)
    )


def _mark_disrupted(fold: _Fold, attempt: int, reason: str, message: str) -> None:
    stage = fold.status
    if attempt not in stage.disrupted_attempts:
        stage.disrupted_attempts = sorted({*stage.disrupted_attempts, attempt})
    if stage.phase == StagePhase.pending and stage.reason == reason:
        return  # already recorded on an earlier pass
    stage.phase, stage.reason, stage.message = StagePhase.pending, reason, message
    fold.events.append(
        Event(
            "Warning",
            reason,
            f"{stage.name}: {message}; restarting without counting it",
            stage=stage.name,
        )
    )


def _fold_unobserved(fold: _Fold, now: datetime, run: str) -> None:
    """The latest attempt is not observed: gone by TTL (keep memory) or vanished while live."""
    stage = fold.status
    if stage.phase == StagePhase.running and stage.attempts > 0:
        job = job_name(run, stage.name, stage.attempts)
        _mark_disrupted(
            fold, stage.attempts, "Vanished", f"attempt {stage.attempts} ({job}) vanished"
        )


def _fold_failure(fold: _Fold, spec: MFPORunSpec, attempt: Attempt, now: datetime) -> None:
    stage = fold.status
    if stage.phase == StagePhase.backoff and stage.message == attempt.failure_text():
        return  # this failure is already recorded
    stage.message = attempt.failure_text()
    stage.last_failure_time = attempt.finished_at or now
    if attempt.bad_input:
        _mark_failed(fold, "BadInput", now)
    elif _counted(stage) >= spec.retries.max_attempts:
        _mark_failed(fold, "AttemptsExhausted", now)
    else:
        stage.phase, stage.reason = StagePhase.backoff, "BackOff"
        delay = spec.retries.delay_before(_counted(stage) + 1)
        fold.events.append(
            Event(
                "Warning",
                "AttemptFailed",
                f"{stage.name}: {stage.message}; retrying in {delay:g}s",
                stage=stage.name,
            )
        )


def _mark_failed(fold: _Fold, reason: str, now: datetime) -> None:
    stage = fold.status
    stage.phase, stage.reason, stage.completion_time = StagePhase.failed, reason, now
    fold.events.append(
        Event(
            "Warning",
            "StageFailed",
            f"{stage.name} failed ({reason}): {stage.message}",
            stage=stage.name,
        )
    )


# ---------------------------------------------------------------------------- run


def plan(
    spec: MFPORunSpec,
    status: MFPORunStatus | None,
    attempts: Sequence[Attempt],
    *,
    run: str,
    now: datetime,
    generation: int | None = None,
    retry_token: str | None = None,
    hold: tuple[str, str] | None = None,
) -> Plan:
    """Decide the next actions and the new status of one run. See the module docstring.

    `hold` = (reason, message): the executor cannot start an attempt now (e.g. a missing
    ServiceAccount); the stage that would start waits with that reason instead."""
    previous = status or MFPORunStatus()
    folds = _fold_all(spec, previous, attempts, now, run)
    events = [e for f in folds for e in f.events]
    stages = [f.status for f in folds]
    if retry_token != previous.retry_token and previous.phase == RunPhase.failed:
        events += _manual_retry(stages, retry_token)
    actions, decision_events, requeue = _decide(spec, folds, now, run, hold)
    stopped = {a.stage for a in actions if isinstance(a, StopAttempt)}
    events += _spec_changed_mid_run(previous, stages, generation, stopped)
    events += decision_events
    for action in actions:
        if isinstance(action, StartAttempt) and generation is not None:
            next(s for s in stages if s.name == action.stage).generation = generation
    new = _run_status(spec, previous, stages, now, generation, retry_token)
    events += _run_events(previous.phase, new)
    return Plan(new, tuple(actions), tuple(events), requeue)


def _spec_changed_mid_run(
    previous: MFPORunStatus, stages: list[StageStatus], generation: int | None, stopped: set[str]
) -> list[Event]:
    """A spec edited after stages succeeded: they are not run again (their results came from
    the spec they ran with, `status.stages[].generation`). Said once, when the planner first
    sees the new generation."""
    seen = previous.observed_generation
    if generation is None or seen is None or generation == seen:
        return []
    done = [s for s in stages if s.phase == StagePhase.succeeded]
    if not done:
        return []
    named = lambda s: f"{s.name} (generation {s.generation})" if s.generation else s.name
    message = (f"spec generation {generation} applies to the attempts started from now on; "
               f"{', '.join(map(named, done))} succeeded with an earlier spec and will not run again "
               "(a new run reruns them)")  # fmt: skip
    running = [s for s in stages if s.phase == StagePhase.running and s.name not in stopped]
    if running:
        message += f"; the running attempt of {', '.join(map(named, running))} goes on as it started"
    return [Event("Warning", "SpecChangedMidRun", message)]


def _fold_all(
    spec: MFPORunSpec, previous: MFPORunStatus, attempts: Sequence[Attempt], now: datetime, run: str
) -> list[_Fold]:
    by_stage: dict[str, list[Attempt]] = {}
    for attempt in sorted(attempts, key=lambda a: a.attempt):
        by_stage.setdefault(attempt.stage, []).append(attempt)
    return [
        _fold_stage(
            spec, previous.stage(name) or StageStatus(name=name), by_stage.get(name, []), now, run
        )
        for name in spec.stage_names()
    ]


def _manual_retry(stages: list[StageStatus], token: str | None) -> list[Event]:
    events = []
    for stage in stages:
        if stage.phase == StagePhase.failed:
            stage.phase, stage.reason = StagePhase.pending, "Retried"
            stage.retried_from, stage.completion_time = stage.attempts, None
            stage.message = f"retried by hand ({RETRY_ANNOTATION}={token})"
            events.append(
                Event(
                    "Normal", "RetryRequested", f"{stage.name}: {stage.message}", stage=stage.name
                )
            )
    return events


def _decide(
    spec: MFPORunSpec, folds: list[_Fold], now: datetime, run: str, hold: tuple[str, str] | None
) -> tuple[list[Action], list[Event], float | None]:
    """Stops for attempts that must not run, then at most one start, for the current stage."""
    stages = [f.status for f in folds]
    current = _current_stage(stages)
    halted = spec.suspend or current is None or any(s.phase == StagePhase.failed for s in stages)
    actions: list[Action] = []
    events: list[Event] = []
    for fold in folds:
        for attempt in fold.live:
            allowed = (
                not halted
                and fold.status is current
                and attempt.attempt == current.attempts
                and attempt.attempt not in current.disrupted_attempts
            )
            if not allowed:
                actions.append(_stop(fold, attempt, spec.suspend, run, events))
    if halted or current is None:
        return actions, events, (STOP_POLL_SECONDS if actions else None)
    if any(a.stage == current.name for a in actions) or _still_running(folds, current):
        return actions, events, STOP_POLL_SECONDS if actions else None
    return _maybe_start(spec, current, now, run, actions, events, hold)


def _current_stage(stages: list[StageStatus]) -> StageStatus | None:
    """The first stage that has not succeeded; None when all have."""
    return next((s for s in stages if s.phase != StagePhase.succeeded), None)


def _still_running(folds: list[_Fold], current: StageStatus) -> bool:
    return any(f.live for f in folds if f.status is current)


def _stop(
    fold: _Fold, attempt: Attempt, suspend: bool, run: str, events: list[Event]
) -> StopAttempt:
    stage = fold.status
    reason = "Suspended" if suspend else "Superseded"
    if attempt.attempt not in stage.disrupted_attempts:
        stage.disrupted_attempts = sorted({*stage.disrupted_attempts, attempt.attempt})
        events.append(
            Event(
                "Normal",
                "AttemptStopped",
                f"{stage.name}: attempt {attempt.attempt} stopped ({reason})",
                stage=stage.name,
            )
        )
    if stage.phase == StagePhase.running and attempt.attempt == stage.attempts:
        stage.phase, stage.reason = StagePhase.pending, reason
        stage.message = f"attempt {attempt.attempt} stopped ({reason})"
    return StopAttempt(
        stage.name, attempt.attempt, job_name(run, stage.name, attempt.attempt), reason
    )


def _maybe_start(
    spec: MFPORunSpec,
    stage: StageStatus,
    now: datetime,
    run: str,
    actions: list[Action],
    events: list[Event],
    hold: tuple[str, str] | None,
) -> tuple[list[Action], list[Event], float | None]:
    if stage.phase == StagePhase.running:
        return actions, events, None
    if stage.phase == StagePhase.backoff:
        failed_at = (stage.last_failure_time or now).timestamp()
        due = failed_at + spec.retries.delay_before(_counted(stage) + 1)
        if now.timestamp() < due:
            return actions, events, due - now.timestamp()
    if hold is not None:
        _hold(stage, hold, events)
        return actions, events, HOLD_POLL_SECONDS
    attempt = stage.attempts + 1
    job = job_name(run, stage.name, attempt)
    stage.phase, stage.reason, stage.job, stage.attempts = (
        StagePhase.running,
        "Started",
        job,
        attempt,
    )
    stage.start_time = stage.start_time or now
    actions.append(StartAttempt(stage.name, attempt, job))
    verb = (
        "started"
        if attempt == stage.retried_from + 1
        else "restarted (resumes from its checkpoint)"
    )
    events.append(
        Event(
            "Normal",
            "AttemptStarted",
            f"{stage.name}: attempt {attempt} {verb} as {job}",
            stage=stage.name,
        )
    )
    return actions, events, None


def _hold(stage: StageStatus, hold: tuple[str, str], events: list[Event]) -> None:
    """The next attempt cannot be created yet: say why once, and wait (phase Pending)."""
    reason, message = hold
    if (stage.reason, stage.message) == (reason, message):
        return
    stage.phase, stage.reason, stage.message = StagePhase.pending, reason, message
    events.append(Event("Warning", reason, f"{stage.name}: {message}", stage=stage.name))


def _run_status(
    spec: MFPORunSpec,
    previous: MFPORunStatus,
    stages: list[StageStatus],
    now: datetime,
    generation: int | None,
    retry_token: str | None,
) -> MFPORunStatus:
    phase = _run_phase(spec, stages)
    current = _current_stage(stages)
    done = sum(s.phase == StagePhase.succeeded for s in stages)
    started = any(s.attempts for s in stages)
    terminal = phase in (RunPhase.succeeded, RunPhase.failed)
    return MFPORunStatus(
        phase=phase,
        current_stage=current.name if current else None,
        progress=f"{done}/{len(stages)}",
        stages=stages,
        conditions=_conditions(previous.conditions, phase, stages, now, generation),
        observed_generation=generation if generation is not None else previous.observed_generation,
        start_time=previous.start_time or (now if started else None),
        completion_time=(previous.completion_time or now) if terminal else None,
        retry_token=retry_token,
    )


def _run_phase(spec: MFPORunSpec, stages: list[StageStatus]) -> RunPhase:
    if all(s.phase == StagePhase.succeeded for s in stages):
        return RunPhase.succeeded
    if any(s.phase == StagePhase.failed for s in stages):
        return RunPhase.failed
    if spec.suspend:
        return RunPhase.suspended
    if any(s.attempts for s in stages):
        return RunPhase.running
    return RunPhase.pending


def _conditions(
    previous: list[Condition],
    phase: RunPhase,
    stages: list[StageStatus],
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Ready / Progressing / Failed / Suspended; a transition time moves only when status flips."""
    failed = next((s for s in stages if s.phase == StagePhase.failed), None)
    current = _current_stage(stages)
    where = f"stage {current.name}" if current else "all stages"
    wanted = {
        "Ready": (phase == RunPhase.succeeded, phase.value, where),
        "Progressing": (
            phase in (RunPhase.running, RunPhase.pending),
            _progress_reason(phase, current),
            _progress_message(where, current),
        ),
        "Failed": (
            failed is not None,
            failed.reason if failed else "NoFailure",
            f"{failed.name}: {failed.message}" if failed else "",
        ),
        "Suspended": (
            phase == RunPhase.suspended,
            "SpecSuspend" if phase == RunPhase.suspended else "NotSuspended",
            "",
        ),
    }
    old = {c.type: c for c in previous}
    result = []
    for kind in CONDITION_TYPES:
        value, reason, message = wanted[kind]
        status = "True" if value else "False"
        before = old.get(kind)
        since = before.last_transition_time if before and before.status == status else now
        result.append(
            Condition(
                type=kind,
                status=status,
                reason=str(reason),
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return result


def _progress_reason(phase: RunPhase, current: StageStatus | None) -> str:
    if current is None or phase in (RunPhase.succeeded, RunPhase.suspended):
        return phase.value
    if current.reason in _WAITING_REASONS or phase in (RunPhase.running, RunPhase.failed):
        return current.reason or phase.value
    return phase.value


def _progress_message(where: str, current: StageStatus | None) -> str:
    """`stage align-1 attempt 2: Running`, with the stage's message when stuck or failing."""
    if current is None:
        return "all stages succeeded"
    attempt = f" attempt {current.attempts}" if current.attempts else ""
    text = f"{where}{attempt}: {StagePhase(current.phase).value}"
    stuck = current.reason in _WAITING_REASONS
    if current.message and (stuck or current.phase in (StagePhase.failed, StagePhase.backoff)):
        text += f": {current.message}"
    return text


def _run_events(previous_phase: str, new: MFPORunStatus) -> list[Event]:
    if previous_phase == new.phase:
        return []
    if new.phase == RunPhase.succeeded:
        return [Event("Normal", "RunSucceeded", f"all {len(new.stages)} stages succeeded")]
    if new.phase == RunPhase.failed:
        failed = next(s for s in new.stages if s.phase == StagePhase.failed)
        return [
            Event(
                "Warning", "RunFailed", f"{failed.name} failed ({failed.reason}): {failed.message}"
            )
        ]
    if new.phase == RunPhase.suspended:
        return [Event("Normal", "Suspended", "spec.suspend is set: no new attempt starts")]
    if previous_phase == RunPhase.suspended:
        return [Event("Normal", "Resumed", f"resuming at {new.current_stage}")]
    return []
