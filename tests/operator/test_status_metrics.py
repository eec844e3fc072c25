"""Pure translations: Jobs/Pods -> attempts, status patches, operator metrics, artifacts."""

from __future__ import annotations

from datetime import datetime, timezone

from mfpo_core import ownership
from mfpo_core.api import MFPORunStatus
from mfpo_core.contract import RunOwner, TerminationSummary
from mfpo_operator.kube.artifacts import delete_run_artifacts
from mfpo_operator.kube.metrics import OPERATOR_METRICS, OperatorMetrics
from mfpo_operator.kube.status import (
    attempt_from_job,
    evictions,
    pod_waiting,
    recorded_attempts,
    status_patch,
    suspension,
)
from mfpo_operator.plan import AttemptState
from planner_world import World, make_spec


def job(conditions=(), deleting=False, **status):
    meta = {
        "name": "r-datagen-a1",
        "labels": {"mfpo.dev/stage": "datagen", "mfpo.dev/attempt": "1"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:01:00Z"
    return {"metadata": meta, "status": {"conditions": list(conditions), **status}}


def pod(index, exit_code, message, disrupted=False):
    return {
        "metadata": {"annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
        "status": {
            "conditions": [{"type": "DisruptionTarget", "status": "True"}] if disrupted else [],
            "containerStatuses": [{"name": "stage", "state": {"terminated": {
                "exitCode": exit_code, "message": message, "reason": "Error" if exit_code else "Completed"}}}],
        },
    }  # fmt: skip


COMPLETE = {"type": "Complete", "status": "True", "lastTransitionTime": "2025-01-01T00:00:10Z"}
FAILED = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
          "message": "Job has reached the specified backoff limit",
          "lastTransitionTime": "2025-01-01T00:00:20Z"}  # fmt: skip


def summary(status="succeeded", **kw):
    return TerminationSummary(stage="datagen", status=status, **kw).encode()


def test_a_running_job_is_a_running_attempt():
    attempt = attempt_from_job(job(startTime="2025-01-01T00:00:00Z"), [])
    assert (attempt.stage, attempt.attempt, attempt.state) == ("datagen", 1, AttemptState.running)
    assert attempt.started_at == datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_shard_summaries_are_summed():
    pods = [pod(1, 0, summary(metrics={"records": 3, "fallbacks": 1}, outputs={"dataset": "s3://bkt/1"})),
            pod(0, 0, summary(metrics={"records": 4}, outputs={"dataset": "s3://bkt/0"}))]  # fmt: skip
    attempt = attempt_from_job(job([COMPLETE], completionTime="2025-01-01T00:00:10Z"), pods)
    assert attempt.state == AttemptState.succeeded
    assert attempt.summary.metrics == {"records": 7.0, "fallbacks": 1.0, "shards": 2.0}
    # Every shard's output, by completion index, named as the local runner names them.
    assert attempt.summary.outputs == {"dataset.0": "s3://bkt/0", "dataset.1": "s3://bkt/1"}
    assert attempt.exit_code == 0


def test_bad_input_failure_keeps_the_stage_message():
    pods = [pod(0, 65, summary("bad-input", message="record 7: no image"))]
    attempt = attempt_from_job(job([FAILED]), pods)
    assert attempt.bad_input
    assert attempt.failure_text() == "attempt 1 failed (exit code 65): record 7: no image"
    assert attempt.finished_at == datetime(2025, 1, 1, 0, 0, 20, tzinfo=timezone.utc)


def test_oom_kill_without_summary_reports_the_log_tail():
    attempt = attempt_from_job(job([FAILED]), [pod(0, 137, "Killed\n")])
    assert attempt.summary is None and not attempt.bad_input and not attempt.disrupted
    assert attempt.message == (
        "Error; Killed; BackoffLimitExceeded: Job has reached the specified backoff limit"
    )


def test_disruption_and_deletion_are_disruptions():
    assert attempt_from_job(job([FAILED]), [pod(0, 143, "", disrupted=True)]).disrupted
    deleted = attempt_from_job(job(deleting=True), [])
    assert deleted.state == AttemptState.failed and deleted.disrupted


def test_a_restart_after_a_disruption_is_no_retry_in_the_metrics():
    """docs/failures.md: attempts stopped from outside (suspend, eviction, a deleted Job) do not
    count against retries.maxAttempts (plan._counted); mfpo_stage_retries_total counted them."""
    metrics = OperatorMetrics()
    world = World(make_spec(retries={"maxAttempts": 3, "backoffSeconds": 0}))
    metrics.observe("ml", "r", world.reconcile())  # datagen a1
    world.spec = make_spec(suspend=True)
    metrics.observe("ml", "r", world.reconcile())  # a1 stopped
    world.spec = make_spec(retries={"maxAttempts": 3, "backoffSeconds": 0})
    metrics.observe("ml", "r", world.reconcile())  # resumed: a2
    world.finish("r-datagen-a2", exit_code=143, message="evicted", disrupted=True)
    metrics.observe("ml", "r", world.reconcile())  # a3
    del world.jobs["r-datagen-a3"]  # a deleted Job
    metrics.observe("ml", "r", world.reconcile())  # a4
    labels = {"namespace": "ml", "run": "r", "stage": "datagen"}
    get = metrics.registry.get_sample_value
    assert get("mfpo_stage_attempts_total", labels) == 4.0
    assert get("mfpo_stage_retries_total", labels) in (None, 0.0)
    world.finish("r-datagen-a4", exit_code=1)
    metrics.observe("ml", "r", world.reconcile())  # a4 failed
    metrics.observe("ml", "r", world.reconcile())  # a5: a retry
    assert world.live() == ["r-datagen-a5"]
    assert get("mfpo_stage_retries_total", labels) == 1.0


def test_status_patch_sends_only_changes_and_nulls_removed_keys():
    new = MFPORunStatus(phase="Succeeded", progress="5/5")
    old = {"phase": "Running", "progress": "5/5", "currentStage": "eval", "kopf": {"x": 1}}
    patch = status_patch(new, old)["status"]
    assert patch["phase"] == "Succeeded" and patch["currentStage"] is None
    assert "progress" not in patch and "kopf" not in patch
    assert status_patch(new, new.to_wire()) is None


def test_metrics_mirror_phases_scores_and_counters():
    metrics = OperatorMetrics()
    world = World(
        make_spec(curriculum={"stages": 1}, retries={"maxAttempts": 3, "backoffSeconds": 0})
    )
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=1)
    metrics.observe("ml", "r", world.reconcile())  # fails
    metrics.observe("ml", "r", world.reconcile())  # retries
    for job_name in ["r-datagen-a2", "r-score-a1", "r-align-1-a1", "r-eval-a1"]:
        extra = {"reward_margin.text": 0.3} if "align" in job_name else {}
        if "eval" in job_name:
            extra = {"eval.base.synthetic.chair_s": 0.5, "eval.align-1.synthetic.chair_s": 0.2}
        world.finish(job_name, metrics=extra)
        metrics.observe("ml", "r", world.reconcile())
    get = metrics.registry.get_sample_value
    base = {"namespace": "ml", "run": "r"}
    assert get("mfpo_run_phase", {**base, "phase": "Succeeded"}) == 1.0
    assert get("mfpo_run_phase", {**base, "phase": "Running"}) == 0.0
    assert get("mfpo_stage_phase", {**base, "stage": "eval", "phase": "Succeeded"}) == 1.0
    assert get("mfpo_stage_retries_total", {**base, "stage": "datagen"}) == 1.0
    assert get("mfpo_stage_failures_total", {**base, "stage": "datagen"}) == 1.0
    assert get("mfpo_stage_attempts_total", {**base, "stage": "score"}) == 1.0
    assert get("mfpo_run_eval_score", {**base, "stage": "base", "benchmark": "synthetic",
                                       "metric": "chair_s"}) == 0.5  # fmt: skip
    assert get("mfpo_run_reward_margin", {**base, "stage": "align-1", "modality": "text"}) == 0.3
    assert get("mfpo_stage_duration_seconds", {**base, "stage": "score"}) == 0.0
    assert get("mfpo_run_last_transition_timestamp_seconds", base) > 0
    metrics.forget("ml", "r")
    assert get("mfpo_run_phase", {**base, "phase": "Succeeded"}) is None


def _series_of(metrics: OperatorMetrics, run: str) -> list[tuple[str, dict]]:
    return [
        (sample.name, sample.labels)
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.labels.get("run") == run and not sample.name.endswith("_created")
    ]


def test_a_finished_run_keeps_only_its_summary_series_once_retired():
    metrics = OperatorMetrics()
    world = World(make_spec(curriculum={"stages": 2}))
    for _ in range(6):
        result = world.reconcile()
        metrics.observe("ml", "r", result)
        for job_name in world.live():
            extra = {"reward_margin.text": 0.3} if "align" in job_name else {}
            if "eval" in job_name:
                extra = {"eval.align-2.synthetic.chair_s": 0.2, "eval.align-2.amber.hal": 0.4}
            world.finish(job_name, metrics=extra)
    metrics.observe("ml", "r", result := world.reconcile())
    assert result.status.phase == "Succeeded"
    before = len(_series_of(metrics, "r"))
    metrics.retire("ml", "r", "Succeeded")
    kept = _series_of(metrics, "r")
    # 1 phase + 1 last-transition + 2 eval scores + 2 reward margins (align-1, align-2).
    assert len(kept) == 6 < before
    assert ("mfpo_run_phase", {"namespace": "ml", "run": "r", "phase": "Succeeded"}) in kept
    metrics.observe("ml", "r", world.reconcile())  # a later look at the finished run
    assert len(_series_of(metrics, "r")) == 6


def test_evictions_name_the_pod_and_a_step_only_once_it_is_known():
    # The DisruptionTarget condition as the control plane writes it on an evicted pod
    # (https://kubernetes.io/docs/concepts/workloads/pods/disruptions/#pod-disruption-conditions),
    # and the align stage's SIGTERM summary.
    evicted = pod(0, 75, TerminationSummary(stage="align-3", status="preempted",
                  message="stopped at step 55; checkpoint s3://bkt/r/align-3/ckpt").encode())  # fmt: skip
    evicted["metadata"].update(name="r-align-3-a1-0-x", uid="u1")
    evicted["status"]["conditions"] = [{
        "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    }]  # fmt: skip
    quiet = pod(0, 75, "", disrupted=True)
    quiet["metadata"].update(name="r-align-3-a1-0-y", uid="u2")
    stopping = {"metadata": {"name": "r-align-3-a1-0-z", "uid": "u3"}, "status": {
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}],
        "containerStatuses": [{"name": "stage", "state": {"running": {}}}]}}  # fmt: skip
    found = evictions("align-3", [evicted, quiet, pod(0, 0, ""), stopping])
    assert [(e.uid, e.ended, e.step) for e in found] == [("u1", True, 55), ("u2", True, None), ("u3", False, None)]
    assert found[0].text(resume_step=None) == (
        "align-3: pod r-align-3-a1-0-x evicted (EvictionByEvictionAPI); the Job replaces it, resuming from step 55"
    )
    assert found[1].text(resume_step=40).endswith("evicted (Disrupted); the Job replaces it, resuming from step 40")
    assert found[2].text(resume_step=None) == (
        "align-3: pod r-align-3-a1-0-z evicted (TerminationByKubelet); the Job replaces it"
    )


def test_every_metric_is_exported_with_its_table_name():
    metrics = OperatorMetrics()
    names = {m.name for m in metrics.registry.collect()}
    expected = {n.removesuffix("_total") for n in OPERATOR_METRICS}
    assert names == expected
    assert all(name.startswith("mfpo_") for name in OPERATOR_METRICS)


def test_artifacts_are_deleted_under_the_run_prefix(tmp_path):
    spec = make_spec(
        storage={"uri": f"file://{tmp_path}", "endpoint": "minio:9000", "secure": False}
    )
    owner = RunOwner(runner="operator", namespace="ns", name="r", uid="uid-r")
    ownership.claim(f"file://{tmp_path}/r", owner, spec.stage_names())
    (tmp_path / "r" / "datagen").mkdir(parents=True)
    (tmp_path / "r" / "datagen" / "result.json").write_text("{}")
    (tmp_path / "other").mkdir()
    assert delete_run_artifacts(spec, owner, {}) == f"file://{tmp_path}/r"
    assert not (tmp_path / "r").exists() and (tmp_path / "other").exists()


def failed_create(job_name, message, first, last, uid="job-uid"):
    """A core/v1 Event as the Job controller records it when a pod create is refused
    (kubernetes pkg/controller/controller_utils.go: Warning, FailedCreate, "Error creating: %v")."""
    return {
        "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "FailedCreate",
        "message": f"Error creating: {message}", "count": 3,
        "involvedObject": {"kind": "Job", "apiVersion": "batch/v1", "name": job_name, "uid": uid},
        "source": {"component": "job-controller"}, "firstTimestamp": first, "lastTimestamp": last,
    }  # fmt: skip


QUOTA = ('pods "r-datagen-a1-x7k2p" is forbidden: exceeded quota: gpu-quota, requested: '
         "requests.nvidia.com/gpu=8, used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=4")  # fmt: skip


def test_a_job_whose_pods_cannot_be_created_says_why_from_the_controllers_event():
    running = job(startTime="2025-01-01T00:00:00Z")
    running["metadata"]["uid"] = "job-uid"
    events = [
        failed_create("r-datagen-a1", "an older refusal", "2025-01-01T00:00:00Z", "2025-01-01T00:00:30Z"),
        failed_create("r-datagen-a1", QUOTA, "2025-01-01T00:00:40Z", "2025-01-01T00:02:00Z"),
        failed_create("r-datagen-a1", "an earlier Job of the same name", "2024-12-31T00:00:00Z",
                      "2025-01-01T00:03:00Z", uid="other-uid"),
        failed_create("r-score-a1", "another Job", "2025-01-01T00:00:00Z", "2025-01-01T00:04:00Z"),
    ]
    attempt = attempt_from_job(running, [], events=events)
    assert attempt.state == AttemptState.running and attempt.waiting_reason == "FailedCreate"
    assert attempt.message == (
        f"Job r-datagen-a1 cannot create its pods since 2025-01-01T00:00:00Z: Error creating: {QUOTA}"
    )
    # Once the Job has its pods, an old FailedCreate event no longer speaks for it.
    started = {"metadata": {"name": "r-datagen-a1-x7k2p"}, "status": {"phase": "Running"}}
    assert attempt_from_job(running, [started], events=events).waiting_reason is None


# kube-scheduler's FitError on the pod (pkg/scheduler/schedule_one.go): PodScheduled=False,
# reason Unschedulable, lastTransitionTime when it first could not be placed.
UNSCHEDULABLE_POD = {
    "metadata": {"name": "gpu9-datagen-a1-0-kvghm"},
    "status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        "lastTransitionTime": "2026-12-07T06:12:03Z"}]},
}  # fmt: skip


def test_a_waiting_pod_says_since_when_not_a_duration_that_goes_stale():
    """The message is stored on the run and rewritten only when something changes: it said
    "unschedulable for 0s" on a run 53 s old. It names the time the API object records."""
    assert pod_waiting([UNSCHEDULABLE_POD]) == ("Unschedulable", (
        "pod gpu9-datagen-a1-0-kvghm unschedulable since 2026-12-07T06:12:03Z: "
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."))  # fmt: skip
    pulling = {"metadata": {"name": "p", "creationTimestamp": "2026-12-07T06:11:58Z"},
               "status": {"startTime": "2026-12-07T06:12:00+00:00", "containerStatuses": [{
                   "name": "stage", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                          "message": "Back-off pulling image"}}}]}}  # fmt: skip
    assert pod_waiting([pulling]) == (
        "ImagePullBackOff", "pod p ImagePullBackOff since 2026-12-07T06:12:00Z: Back-off pulling image"
    )


def test_recorded_attempts_are_those_the_stored_status_has_folded():
    world = World(make_spec(retries={"maxAttempts": 3, "backoffSeconds": 10}))
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=0)
    world.reconcile()  # datagen recorded as Succeeded, score-a1 started
    world.finish("r-score-a1", exit_code=1)
    world.reconcile()  # the failure of score-a1 recorded (BackOff)
    recorded = recorded_attempts(world.status, list(world.jobs.values()))
    assert [(a.stage, a.attempt) for a in recorded] == [("datagen", 1)]  # score-a1 kept for its logs
    world.advance(10)
    world.reconcile()  # score-a2 started: a1 is now history
    recorded = recorded_attempts(world.status, list(world.jobs.values()))
    assert sorted((a.stage, a.attempt) for a in recorded) == [("datagen", 1), ("score", 1)]


def suspended_job(started: bool, active: int = 0, queue: str | None = "team-a") -> dict:
    body = job(startTime="2025-01-01T00:00:00Z" if started else None, active=active)
    body["metadata"]["labels"]["mfpo.dev/stage"] = "align-1"
    body["metadata"]["uid"] = "job-uid"
    if queue:
        body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = queue
    body["spec"] = {"suspend": True}
    # The Job controller's condition on a suspended Job (pkg/controller/job/job_controller.go).
    body["status"]["conditions"] = [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                     "message": "Job suspended", "lastTransitionTime": "2025-01-01T00:02:00Z"}]  # fmt: skip
    return body


def test_a_suspended_job_says_whether_it_waits_for_admission_or_was_preempted():
    never_ran = suspended_job(started=False)
    assert suspension(never_ran, []) == ("AwaitingAdmission", (
        "Job r-datagen-a1 waiting for Kueue to admit it (LocalQueue team-a) since 2025-01-01T00:02:00Z; why: "
        "kubectl get workloads -l kueue.x-k8s.io/job-uid=job-uid -o yaml"))  # fmt: skip
    stopping = suspended_job(started=True, active=1)
    assert suspension(stopping, [], lambda stage: 40) is None  # its pods still save a checkpoint
    stopped = suspended_job(started=True)
    kueue = {"reason": "Stopped", "message": "Preempted to accommodate a higher priority Workload",
             "involvedObject": {"kind": "Job", "name": "r-datagen-a1"}, "eventTime": "2025-01-01T00:02:00Z"}  # fmt: skip
    asked = []
    assert suspension(stopped, [kueue], lambda stage: asked.append(stage) or 40) == ("Preempted", (
        "Job r-datagen-a1 stopped by Kueue since 2025-01-01T00:02:00Z (Preempted to accommodate a higher priority "
        "Workload); resumes from step 40 when Kueue admits it again"))  # fmt: skip
    assert asked == ["align-1"]
    by_hand = suspended_job(started=True, queue=None)
    assert suspension(by_hand, []) == ("JobSuspended", (
        "Job r-datagen-a1 suspended since 2025-01-01T00:02:00Z (spec.suspend set outside the operator); "
        "resumes from its last checkpoint when resumed"))  # fmt: skip
    assert suspension(job(startTime="2025-01-01T00:00:00Z"), []) is None
