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
  container (ErrImagePull, ImagePullBackOff, CreateContainerConfigError...), with how long;
- a running Job that lacks pods because the Job controller cannot create them (a
  ResourceQuota, LimitRange or admission webhook refusing the pod) says so from the
  controller's FailedCreate event on the Job (`creation_failure`): the Job itself shows
  nothing, it keeps retrying and never fails.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from mfpo_core.api import MFPORunStatus
from mfpo_core.contract import TerminationSummary, merge_shard_summaries
from mfpo_core.stages import kind_of

from mfpo_operator.kube.jobs import CONTAINER, LABEL_ATTEMPT, LABEL_STAGE
from mfpo_operator.plan import Attempt, AttemptState

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


def _waited(since: str | None, now: datetime) -> str:
    start = _time(since)
    if start is None:
        return ""
    seconds = max(int((now - start).total_seconds()), 0)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f" for {hours}h{minutes:02d}m"
    return f" for {minutes}m{seconds:02d}s" if minutes else f" for {seconds}s"


def _unschedulable(pod: dict[str, Any]) -> dict[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (condition.get("type"), condition.get("status")) == ("PodScheduled", "False") and (
            condition.get("reason") == "Unschedulable"
        ):
            return condition
    return None


def pod_waiting(pods: list[dict[str, Any]], now: datetime) -> tuple[str, str] | None:
    """(reason, message) for the first pod that cannot run, or None when every pod can."""
    for pod in pods:
        name = pod["metadata"].get("name", "?")
        if condition := _unschedulable(pod):
            waited = _waited(condition.get("lastTransitionTime"), now)
            text = f"pod {name} unschedulable{waited}: {condition.get('message', '')}"
            return "Unschedulable", text.rstrip(": ")
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if status.get("name") == CONTAINER and waiting.get("reason") in STUCK_WAITING_REASONS:
                since = (pod.get("status") or {}).get("startTime") or pod["metadata"].get(
                    "creationTimestamp"
                )
                text = f"pod {name} {waiting['reason']}{_waited(since, now)}"
                return waiting["reason"], f"{text}: {waiting.get('message', '')}".rstrip(": ")
    return None


def _event_time(event: dict[str, Any]) -> str:
    # core/v1 Events carry lastTimestamp; those written through events.k8s.io/v1 carry eventTime.
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""


def creation_failure(
    job: dict[str, Any], events: list[dict[str, Any]], now: datetime
) -> tuple[str, str] | None:
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
    text = f"Job {meta.get('name')} cannot create its pods{_waited(since, now)}"
    return "FailedCreate", f"{text}: {latest.get('message', '')}".rstrip(": ")


# The align stage's SIGTERM summary says "stopped at step N; checkpoint ..." (runtime trainer).
_STOPPED_AT_STEP = re.compile(r"\bat step (\d+)\b")


def evictions(stage: str, pods: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(pod uid, event message) for each pod of a Job stopped by a disruption (eviction,
    preemption, node drain: the DisruptionTarget condition the control plane adds)."""
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
        summary = TerminationSummary.decode((_terminated(pod) or {}).get("message"))
        step = _STOPPED_AT_STEP.search(summary.message or "") if summary else None
        text = f"{stage}: pod {meta.get('name')} evicted ({condition.get('reason', 'Disrupted')})"
        text += f", continuing from step {step[1]}" if step else ", continuing"
        found.append((meta.get("uid") or meta.get("name", ""), text))
    return found


def attempt_from_job(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    now: datetime | None = None,
    events: list[dict[str, Any]] | None = None,
) -> Attempt:
    """The planner's view of one Job; `pods` are the Job's pods (may be empty while running),
    `events` the Events about it (looked at only while it lacks pods)."""
    meta = job["metadata"]
    state = job_state(job)
    if state == AttemptState.running:
        return _running_attempt(job, pods, now or datetime.now(timezone.utc), events or [])
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
    job: dict[str, Any], pods: list[dict[str, Any]], now: datetime, events: list[dict[str, Any]]
) -> Attempt:
    labels = job["metadata"]["labels"]
    waiting = pod_waiting(pods, now)
    if waiting is None and lacks_pods(job, pods):
        waiting = creation_failure(job, events, now)
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
