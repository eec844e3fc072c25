"""Pure translation between Kubernetes objects and the planner: Jobs and Pods -> `plan.Attempt`,
and `MFPORunStatus` -> the status patch. Called by `kube.reconcile`; tested without a cluster.

How a Job reads as an attempt:
- condition Complete=True -> succeeded; Failed=True -> failed (reason and message kept);
- metadata.deletionTimestamp set -> failed and disrupted (it was being deleted: stopped);
- otherwise running (including a Job suspended while Kueue has not admitted it yet);
- exit code and termination summary from the Pods' `containerStatuses[].state.terminated`
  (the first failed pod for a failure, every pod for a success: an Indexed datagen Job
  writes one summary per shard; their count metrics are summed, their outputs kept per shard);
- a failed Job whose failed pods all carry the DisruptionTarget condition -> disrupted;
- a running Job whose pod cannot run says why (`pod_waiting`): the scheduler's
  PodScheduled=False with reason Unschedulable, or the kubelet's waiting reason of the stage
  container (ErrImagePull, ImagePullBackOff, CreateContainerConfigError...), with since when;
- a running Job that lacks pods because the Job controller cannot create them (a
  ResourceQuota, LimitRange or admission webhook refusing the pod) says so from the
  controller's FailedCreate event on the Job (`creation_failure`): the Job itself shows
  nothing, it keeps retrying and never fails;
- a suspended Job (Kueue's, or suspended by hand) says whether it waits for admission or was
  stopped after it ran, and which step it resumes from (`suspension`);
- an evicted pod becomes one `Eviction`, told on the run once its step is known (`evictions`);
- which finished Jobs the run's status has recorded, so that they can go (`recorded_jobs`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mfpo_core.api import MFPORunStatus, StagePhase
from mfpo_core.contract import TerminationSummary, merge_shard_summaries
from mfpo_core.stages import kind_of

from mfpo_operator.kube.jobs import CONTAINER, LABEL_ATTEMPT, LABEL_KUEUE_QUEUE, LABEL_STAGE
from mfpo_operator.plan import Attempt, AttemptState

# The step a disrupted stage resumes from (its newest whole checkpoint in storage), by stage;
# None when unknown. Supplied by the caller: this module does no I/O.
ResumeStep = Callable[[str], int | None]

TERMINAL = (AttemptState.succeeded, AttemptState.failed)
# Waiting reasons of a container that will not start by itself soon, as the kubelet writes them
# (kubernetes pkg/kubelet/images/types.go, pkg/kubelet/container/sync_result.go).
# ContainerCreating and PodInitializing are normal progress and not reported.
STUCK_WAITING_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError",
})  # fmt: skip


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_state(job: dict[str, Any]) -> AttemptState:
    if _condition(job, "Complete"):
        return AttemptState.succeeded
    if _condition(job, "Failed") or job["metadata"].get("deletionTimestamp"):
        return AttemptState.failed
    return AttemptState.running


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return (status.get("state") or {}).get("terminated")
    return None


def _disrupted(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions
    )


def _since(timestamp: str | None) -> str:
    """" since <UTC time>": when a wait began, as the API object that says so records it.

    Not how long it has lasted: a stored message is rewritten only when something changes (a
    Job or pod change, the operator's periodic resync), so a duration is stale from the moment
    it is written ("unschedulable for 0s" on a run 53 s old). Kubernetes stores times too
    (conditions' lastTransitionTime, events' firstTimestamp) and kubectl turns them into ages
    when it shows them."""
    start = _time(timestamp)
    return f" since {start.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}" if start else ""


def _unschedulable(pod: dict[str, Any]) -> dict[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (condition.get("type"), condition.get("status")) == ("PodScheduled", "False") and (
            condition.get("reason") == "Unschedulable"
        ):
            return condition
    return None


def pod_waiting(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) for the first pod that cannot run, or None when every pod can."""
    for pod in pods:
        name = pod["metadata"].get("name", "?")
        if condition := _unschedulable(pod):
            waited = _since(condition.get("lastTransitionTime"))
            text = f"pod {name} unschedulable{waited}: {condition.get('message', '')}"
            return "Unschedulable", text.rstrip(": ")
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if status.get("name") == CONTAINER and waiting.get("reason") in STUCK_WAITING_REASONS:
                since = (pod.get("status") or {}).get("startTime") or pod["metadata"].get(
                    "creationTimestamp"
                )
                text = f"pod {name} {waiting['reason']}{_since(since)}"
                return waiting["reason"], f"{text}: {waiting.get('message', '')}".rstrip(": ")
    return None


def _event_time(event: dict[str, Any]) -> str:
    # core/v1 Events carry lastTimestamp; those written through events.k8s.io/v1 carry eventTime.
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""


def creation_failure(job: dict[str, Any], events: list[dict[str, Any]]) -> tuple[str, str] | None:
    """("FailedCreate", message) from the Job controller's latest FailedCreate event on `job`.

    The controller records it as `Eventf(job, Warning, "FailedCreate", "Error creating: %v",
    err)` (kubernetes pkg/controller/controller_utils.go, FailedCreatePodReason) each time a
    pod create is refused, e.g. `pods "x" is forbidden: exceeded quota: ...`.
    """
    meta = job["metadata"]
    mine = [
        e for e in events
        if e.get("reason") == "FailedCreate"
        and (e.get("involvedObject") or {}).get("kind") == "Job"
        and (e.get("involvedObject") or {}).get("name") == meta.get("name")
        and (e.get("involvedObject") or {}).get("uid", meta.get("uid")) == meta.get("uid")
    ]  # fmt: skip
    if not mine:
        return None
    latest = max(mine, key=_event_time)
    since = min((e.get("firstTimestamp") or _event_time(e) for e in mine), default=None)
    text = f"Job {meta.get('name')} cannot create its pods{_since(since)}"
    return "FailedCreate", f"{text}: {latest.get('message', '')}".rstrip(": ")


# The align stage's SIGTERM summary says "stopped at step N; checkpoint ..." (runtime trainer).
_STOPPED_AT_STEP = re.compile(r"\bat step (\d+)\b")


def _stopped_at_step(pod: dict[str, Any]) -> int | None:
    summary = TerminationSummary.decode((_terminated(pod) or {}).get("message"))
    step = _STOPPED_AT_STEP.search(summary.message or "") if summary else None
    return int(step[1]) if step else None


@dataclass(frozen=True)
class Eviction:
    """A pod of a running Job stopped by a disruption (eviction, preemption, node drain: the
    DisruptionTarget condition the control plane adds); the Job replaces it in the same attempt."""

    uid: str
    stage: str
    pod: str
    reason: str
    ended: bool  # the pod's container has terminated (its checkpoint, if any, is saved)
    step: int | None = None  # the step its own SIGTERM summary says it saved

    def text(self, resume_step: int | None) -> str:
        """The event: says a step only when it is known (the pod's own summary, else the
        stage's newest checkpoint once the pod is gone), never before."""
        step = self.step if self.step is not None else resume_step
        text = f"{self.stage}: pod {self.pod} evicted ({self.reason}); the Job replaces it"
        return text + (f", resuming from step {step}" if step is not None else "")


def evictions(stage: str, pods: list[dict[str, Any]]) -> list[Eviction]:
    """Every pod of a Job that carries the DisruptionTarget condition."""
    found = []
    for pod in pods:
        condition = next(
            (c for c in (pod.get("status") or {}).get("conditions") or []
             if c.get("type") == "DisruptionTarget" and c.get("status") == "True"),
            None,
        )  # fmt: skip
        if condition is None:
            continue
        meta = pod["metadata"]
        found.append(Eviction(
            uid=meta.get("uid") or meta.get("name", ""), stage=stage, pod=meta.get("name", "?"),
            reason=condition.get("reason", "Disrupted"), ended=_terminated(pod) is not None,
            step=_stopped_at_step(pod),
        ))  # fmt: skip
    return found


def pod_needs_look(pod: dict[str, Any]) -> bool:
    """Whether a change of this stage pod may change what its run shows: it cannot run
    (pull, scheduling, config) or it was disrupted. Other pod changes reach the operator
    through their Job's status."""
    return _disrupted(pod) or pod_waiting([pod]) is not None


# ------------------------------------------------------------------ suspended Jobs


def _job_started(job: dict[str, Any]) -> bool:
    """The Job ran at some point: the Job controller sets status.startTime when a Job first
    runs unsuspended and again on every resume, and never clears it on suspend (kubernetes
    pkg/controller/job/job_controller.go, syncJob)."""
    return bool((job.get("status") or {}).get("startTime"))


def _pods_gone(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    return not (status.get("active") or 0) and not (status.get("terminating") or 0)


def stopped_after_start(job: dict[str, Any]) -> bool:
    """Suspended after it ran (Kueue preemption), its pods gone: they saved their checkpoint."""
    return bool((job.get("spec") or {}).get("suspend")) and _job_started(job) and _pods_gone(job)


def _kueue_stop_message(job: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """Kueue's latest "Stopped" event on the Job: its reconciler records
    `Eventf(job, Normal, "Stopped", <the Workload's Evicted message>)` when it suspends a
    running Job, e.g. "Preempted to accommodate a higher priority Workload" (kueue
    pkg/controller/jobframework/reconciler.go, stopJob)."""
    name = job["metadata"].get("name")
    stops = [
        e for e in events
        if e.get("reason") == "Stopped" and (e.get("involvedObject") or {}).get("name") == name
    ]  # fmt: skip
    return max(stops, key=_event_time).get("message") if stops else None


def suspension(
    job: dict[str, Any],
    events: list[dict[str, Any]],
    resume_step: ResumeStep | None = None,
) -> tuple[str, str] | None:
    """(reason, message) for a live attempt whose Job is suspended; None when it is not.

    Kueue creates nothing for a Job until it admits it: it unsuspends the Job then, and
    suspends it again to preempt it (kueue docs, tasks/troubleshooting/troubleshooting_jobs:
    "A Job is suspended when Kueue hasn't admitted it yet or when it was preempted"). Which of
    the two shows on the Job itself, without reading Kueue's Workload: status.startTime.
    While a stopped Job's pods are still terminating (saving a checkpoint), nothing is said
    yet: the step they resume from is not known before they are gone.
    """
    if not (job.get("spec") or {}).get("suspend"):
        return None
    meta = job["metadata"]
    name, queue = meta.get("name"), (meta.get("labels") or {}).get(LABEL_KUEUE_QUEUE)
    suspended = _condition(job, "Suspended") or {}
    since = _since(suspended.get("lastTransitionTime") or meta.get("creationTimestamp"))
    if not _job_started(job):
        if queue:  # the Workload's QuotaReserved condition says why (kueue troubleshooting docs)
            return "AwaitingAdmission", (
                f"Job {name} waiting for Kueue to admit it (LocalQueue {queue}){since}; why: "
                f"kubectl get workloads -l kueue.x-k8s.io/job-uid={meta.get('uid', '<job uid>')} -o yaml"
            )
        return "JobSuspended", f"Job {name} suspended{since} (spec.suspend set outside the operator)"
    if not _pods_gone(job):
        return None
    step = resume_step(meta["labels"][LABEL_STAGE]) if resume_step else None
    resumes = f"resumes from step {step}" if step is not None else "resumes from its last checkpoint"
    if queue:
        why = _kueue_stop_message(job, events)
        return "Preempted", (
            f"Job {name} stopped by Kueue{since}" + (f" ({why})" if why else "")
            + f"; {resumes} when Kueue admits it again"
        )
    return "JobSuspended", f"Job {name} suspended{since} (spec.suspend set outside the operator); {resumes} when resumed"


def attempt_from_job(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]] | None = None,
    resume_step: ResumeStep | None = None,
) -> Attempt:
    """The planner's view of one Job; `pods` are the Job's pods (may be empty while running),
    `events` the Events about it (looked at only while it lacks pods or is suspended),
    `resume_step` asked only for a Job suspended after it ran."""
    meta = job["metadata"]
    state = job_state(job)
    if state == AttemptState.running:
        return _running_attempt(job, pods, events or [], resume_step)
    finished = [p for p in pods if _terminated(p)]
    finished.sort(
        key=lambda p: int(
            (p["metadata"].get("annotations") or {}).get(
                "batch.kubernetes.io/job-completion-index", 0
            )
        )
    )
    failed = [p for p in finished if _terminated(p).get("exitCode")]
    chosen = failed if state == AttemptState.failed else finished
    summaries = [
        s for s in (TerminationSummary.decode(_terminated(p).get("message")) for p in chosen) if s
    ]
    # Shards (datagen) each did part of the work: their counts add up. The pods of a
    # multi-node align Job each report the same averaged figures: the first one's is the stage's.
    shards = kind_of(meta["labels"][LABEL_STAGE]).shardable
    summary = (
        merge_shard_summaries(summaries)
        if summaries and shards and state == AttemptState.succeeded
        else (summaries[0] if summaries else None)
    )
    condition = _condition(job, "Failed")
    deleting = bool(meta.get("deletionTimestamp"))
    return Attempt(
        stage=meta["labels"][LABEL_STAGE],
        attempt=int(meta["labels"][LABEL_ATTEMPT]),
        state=state,
        exit_code=_terminated(failed[0]).get("exitCode")
        if failed
        else (0 if finished and state == AttemptState.succeeded else None),
        summary=summary,
        started_at=_time((job.get("status") or {}).get("startTime")),
        finished_at=_finished_at(job, condition),
        message=_message(condition, failed, deleting),
        disrupted=state == AttemptState.failed
        and (deleting or (bool(failed) and all(map(_disrupted, failed)))),
    )


def lacks_pods(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """Fewer pods than the Job runs at once (an admitted Job: a suspended one has none)."""
    spec = job.get("spec") or {}
    return not spec.get("suspend") and len(pods) < (spec.get("parallelism") or 1)


def _running_attempt(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    resume_step: ResumeStep | None,
) -> Attempt:
    labels = job["metadata"]["labels"]
    waiting = suspension(job, events, resume_step) or pod_waiting(pods)
    if waiting is None and lacks_pods(job, pods):
        waiting = creation_failure(job, events)
    return Attempt(
        stage=labels[LABEL_STAGE],
        attempt=int(labels[LABEL_ATTEMPT]),
        state=AttemptState.running,
        started_at=_time((job.get("status") or {}).get("startTime")),
        waiting_reason=waiting[0] if waiting else None,
        message=waiting[1] if waiting else None,
    )


def _finished_at(job: dict[str, Any], failed: dict[str, Any] | None) -> datetime | None:
    status = job.get("status") or {}
    if status.get("completionTime"):
        return _time(status["completionTime"])
    return _time(failed.get("lastTransitionTime")) if failed else None


def _message(
    condition: dict[str, Any] | None, failed_pods: list[dict[str, Any]], deleting: bool
) -> str | None:
    if deleting:
        return "the Job was deleted"
    parts = []
    if failed_pods:
        term = _terminated(failed_pods[0])
        reason = term.get("reason")
        # FallbackToLogsOnError: without a summary, the message is the log tail.
        text = (
            term.get("message") if TerminationSummary.decode(term.get("message")) is None else None
        )
        parts += [p for p in (reason, text and text.strip()[-500:]) if p]
    if condition:
        parts += [
            f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".rstrip(": ")
        ]
    return "; ".join(parts) or None


def recorded_attempts(status: MFPORunStatus, attempts: list[Attempt]) -> list[Attempt]:
    """The finished attempts whose outcome `status` (as stored) has recorded, and whose Jobs
    therefore may go: every attempt of a stage that succeeded, and every attempt older than its
    stage's latest (folded before a newer one could start). The latest attempt of a stage that
    has not succeeded stays (`kubectl logs job/...` of the last failure) until its TTL."""
    recorded = []
    for attempt in attempts:
        stage = status.stage(attempt.stage)
        if attempt.state == AttemptState.running or stage is None:
            continue
        if stage.phase == StagePhase.succeeded or attempt.attempt < stage.attempts:
            recorded.append(attempt)
    return recorded


def status_patch(new: MFPORunStatus, old: dict[str, Any] | None) -> dict[str, Any] | None:
    """The merge patch that turns `old` (the stored status) into `new`; None when equal.

    Keys that disappeared are sent as null (a merge patch removes them); keys we do not own
    (e.g. kopf's) are left alone.
    """
    wire = new.to_wire()
    old = old or {}
    ours = [field.alias or name for name, field in MFPORunStatus.model_fields.items()]
    patch: dict[str, Any] = {key: value for key, value in wire.items() if old.get(key) != value}
    patch.update({key: None for key in ours if key not in wire and old.get(key) is not None})
    return {"status": patch} if patch else None
