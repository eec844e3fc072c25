"""A stage Job's life on a real cluster, played on kmock: ResourceQuota, strict field
validation, the TTL controller, Kueue, evictions, pods that cannot start.

kmock has no admission, no TTL controller, no Kueue and no kubelet. Each test makes kmock
answer, or writes, exactly what the real component does, citing the Kubernetes (or Kueue)
source or documentation it encodes; the bodies were checked against kube-apiserver 1.32 on
the lab. The stage's own outputs (result documents, checkpoints) are written to file://
storage the way the runtime writes them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from kube_world import JOBS, NS, PODS, Kube, eventually, run_manifest, running_operator
from mfpo_core import storage
from mfpo_core.checkpoint_layout import step_uri
from mfpo_core.contract import StageResult, TerminationSummary, result_uri, stage_uri


def condition(kube: Kube, kind: str) -> dict:
    return next((c for c in kube.status().get("conditions") or [] if c["type"] == kind), {})


def events(kube: Kube, reason: str | None = None) -> list[dict]:
    return [e for e in kube.posted("/events") if reason is None or e.get("reason") == reason]


def stamp(seconds_ago: float = 0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_run(tmp_path: Path, **spec) -> dict:
    return run_manifest(storage={"uri": f"file://{tmp_path}/runs"}, **spec)


def record_result(
    tmp_path: Path, stage: str, metrics: dict[str, float] | None = None, outputs: dict[str, str] | None = None
) -> None:
    """The stage's result document, as `mfpo-stage` writes it last (runtime stage.run_stage):
    datagen's one shard (an Indexed Job of 1 completion) under shards/00000-of-00001/."""
    result = StageResult(stage=stage, attempt=1, started_at=datetime.now(timezone.utc),
                         metrics=metrics or {}, outputs=outputs or {})  # fmt: skip
    shard = (0, 1) if stage == "datagen" else None
    storage.write_json(result.model_dump(mode="json"), result_uri(f"file://{tmp_path}/runs/demo", stage, shard))


def record_checkpoint(tmp_path: Path, stage: str, step: int) -> None:
    """A whole checkpoint, published with its _COMPLETE marker as the trainer does."""
    local = tmp_path / f"ckpt-{step}"
    local.mkdir()
    (local / "state.json").write_text(f'{{"step": {step}}}')
    storage.publish_dir(local, step_uri(stage_uri(f"file://{tmp_path}/runs/demo", stage), step))


# ---------------------------------------------------------------- ResourceQuota


def quota_refusal(job: str, used: int, limit: int) -> dict:
    """kube-apiserver's answer when a ResourceQuota on count/jobs.batch is full: the quota
    admission plugin's `admission.NewForbidden(a, fmt.Errorf("exceeded quota: %s, requested:
    %s, used: %s, limited: %s", ...))` (apiserver pkg/admission/plugin/resourcequota/
    controller.go, checkRequest; apimachinery errors.NewForbidden); as seen on the lab."""
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'jobs.batch "{job}" is forbidden: exceeded quota: stage-jobs, requested: '
        f"count/jobs.batch=1, used: count/jobs.batch={used}, limited: count/jobs.batch={limit}",
        "reason": "Forbidden", "details": {"name": job, "group": "batch", "kind": "jobs"},
        "code": 403,
    }  # fmt: skip


def refused(kube: Kube, request, answer: dict) -> dict:
    """`answer`, for a create the API server refuses: kmock stores every created object even
    when a reaction answers an error, so the refused Job is taken back out (a real server
    stores nothing)."""
    name = request.data["metadata"]["name"]
    for (resource, _, stored), obj in kube.kmock.objects.items():
        if getattr(resource, "plural", None) == "jobs" and stored == name and not obj.deleted:
            obj.delete()
    return answer


def enforce_job_quota(kube: Kube, limit: int) -> None:
    """Refuse a Job create while `limit` Jobs exist in the namespace, finished ones included:
    a finished Job counts against count/jobs.batch until it is deleted."""

    def others(request) -> int:  # kmock has stored the requested Job already: not counted
        return len([name for name in kube.jobs() if name != request.data["metadata"]["name"]])

    def full(request) -> bool:
        return request.method == "POST" and request.url.path == JOBS and others(request) >= limit

    def refusal(request) -> dict:
        return refused(kube, request, quota_refusal(request.data["metadata"]["name"], others(request), limit))

    kube.kmock[full] << 403 << refusal


async def test_a_run_fits_a_one_job_quota_its_finished_jobs_are_deleted_once_recorded(kube):
    # On main the run failed as BadInput at its second stage: its own finished datagen Job,
    # kept a day by ttlSecondsAfterFinished, filled the quota.
    enforce_job_quota(kube, limit=1)
    stages = ["datagen", "score", "align-1", "eval"]
    async with running_operator():
        await kube.create_run(run_manifest())
        for stage in stages:
            job = f"demo-{stage}-a1"
            await eventually(lambda job=job: job in kube.jobs(), timeout=30, what=f"job {job}")
            await kube.finish_job(job)
        await eventually(lambda: kube.status().get("phase") == "Succeeded", what="run succeeded")
        # The quota did refuse the next stage while the previous one's Job was still there.
        await eventually(lambda: events(kube, "QuotaExceeded"), what="a QuotaExceeded hold")
    assert kube.jobs() == {} and kube.objects("v1/configmaps") == {}
    assert all(s["attempts"] == 1 for s in kube.status()["stages"])


async def test_a_full_quota_holds_the_stage_with_the_reason_until_it_frees(kube):
    other_tenants = {"full": True}  # the quota is filled by Jobs that are not the run's
    kube.kmock[
        lambda r: r.method == "POST" and r.url.path == JOBS and other_tenants["full"]
    ] << 403 << (lambda r: refused(kube, r, quota_refusal(r.data["metadata"]["name"], 4, 4)))
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(
            lambda: condition(kube, "Progressing").get("reason") == "QuotaExceeded",
            what="the Progressing condition saying QuotaExceeded",
        )
        assert kube.status()["phase"] == "Running" or kube.status()["phase"] == "Pending"
        assert condition(kube, "Failed").get("status") == "False"
        stage = kube.status()["stages"][0]
        assert (stage["phase"], stage["reason"]) == ("Pending", "QuotaExceeded")
        assert 'exceeded quota: stage-jobs, requested: count/jobs.batch=1' in stage["message"]
        assert stage["message"].endswith("; the attempt starts once the quota allows it")
        await eventually(lambda: events(kube, "QuotaExceeded"), what="the Warning event")
        # Nothing half-made is left for the next try to reuse (the ConfigMap came first).
        await eventually(lambda: kube.objects("v1/configmaps") == {}, what="ConfigMap removed")
        other_tenants["full"] = False
        # The hold is looked at again after 15 s (plan.HOLD_POLL_SECONDS).
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), timeout=30, what="the Job")
        await eventually(lambda: kube.status()["stages"][0]["reason"] == "Started", what="started")
    assert kube.status()["stages"][0]["attempts"] == 1
    assert [e["type"] for e in events(kube, "QuotaExceeded")] == ["Warning"]


# ------------------------------------------------------------ strict field validation


def strict_decoding_error(field: str) -> dict:
    """kube-apiserver's 400 for an unknown field under fieldValidation=Strict: the create
    handler's transformDecodeError, `errors.NewBadRequest(fmt.Sprintf("%s in version %q cannot
    be handled as a %s: %v", ...))` around apimachinery's strictDecodingError ("strict decoding
    error: " + each `unknown field "<path>"`) (apiserver pkg/endpoints/handlers/rest.go,
    apimachinery pkg/runtime/error.go); as seen on the lab."""
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'Job in version "v1" cannot be handled as a Job: strict decoding error: '
        f'unknown field "{field}"',
        "reason": "BadRequest", "code": 400,
    }  # fmt: skip


async def test_a_field_the_api_server_does_not_know_fails_the_run_naming_it(kube):
    # spec.resources.affinity is checked at apply against core/v1 as of Kubernetes 1.31+, where
    # podAffinityTerm.matchLabelKeys exists; an older API server (before 1.29, KEP-3633) does
    # not know it. Without fieldValidation=Strict it drops the field with only a Warning header
    # (seen on the lab for an unknown field: 201, `affinity: {}`), and the pods would be placed
    # without the constraint the user wrote. Here kmock plays such a server.
    field = ("spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
             ".matchLabelKeys")  # fmt: skip
    strict = lambda r: (
        r.method == "POST" and r.url.path == JOBS and r.params.get("fieldValidation") == "Strict"
    )
    kube.kmock[strict] << 400 << (lambda r: refused(kube, r, strict_decoding_error(field)))
    term = {"labelSelector": {"matchLabels": {"app": "trainer"}}, "topologyKey": "kubernetes.io/hostname",
            "matchLabelKeys": ["mfpo.dev/run"]}  # fmt: skip
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    async with running_operator():
        await kube.create_run(run_manifest(resources={"gpusPerNode": 0, "affinity": affinity}))
        await eventually(lambda: kube.status().get("phase") == "Failed", what="run failed")
    failed = condition(kube, "Failed")
    assert failed["reason"] == "BadInput"
    assert failed["message"] == (
        "datagen: attempt 1 failed: Job demo-datagen-a1 rejected by the API server (400 BadRequest): "
        f'Job in version "v1" cannot be handled as a Job: strict decoding error: unknown field "{field}" '
        "(in the run: spec.resources.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
        ".matchLabelKeys)"
    )
    assert kube.jobs() == {} and kube.objects("v1/configmaps") == {}


# ---------------------------------------------------------------------- the TTL controller


async def test_a_job_deleted_by_its_ttl_before_it_was_seen_reads_the_stage_result(kube, tmp_path):
    # ttlSecondsAfterFinished: 0 -- the TTL controller deletes a finished Job at once
    # (pkg/controller/ttlafterfinished: Foreground deletion), possibly before the operator's
    # reconcile lists it. The stage had written its result document: it succeeded.
    async with running_operator():
        await kube.create_run(file_run(tmp_path))
        await eventually(lambda: kube.status().get("stages", [{}])[0].get("phase") == "Running",
                         what="datagen running")  # fmt: skip
        record_result(tmp_path, "datagen", {"records": 12.0})
        response = await kube.kmock.delete(f"{JOBS}/demo-datagen-a1")
        assert response.status < 300
        await eventually(lambda: "demo-score-a1" in kube.jobs(), what="the next stage")
    datagen = kube.status()["stages"][0]
    assert (datagen["phase"], datagen["attempts"], datagen["metrics"]) == ("Succeeded", 1, {"records": 12.0})
    assert datagen["message"] == (
        f"attempt 1 succeeded; its Job was gone, the result read from file://{tmp_path}/runs/demo/datagen/shards/*/result.json"
    )
    assert "demo-datagen-a2" not in kube.jobs() and not events(kube, "Vanished")


async def test_a_job_gone_without_a_result_is_still_restarted_as_vanished(kube, tmp_path):
    async with running_operator():
        await kube.create_run(file_run(tmp_path))
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        await eventually(lambda: kube.status().get("stages", [{}])[0].get("phase") == "Running",
                         what="datagen running")  # fmt: skip
        await kube.kmock.delete(f"{JOBS}/demo-datagen-a1")
        await eventually(lambda: "demo-datagen-a2" in kube.jobs(), what="attempt 2")
    assert events(kube, "Vanished")


# ----------------------------------------------------------- a summary cut to 4096 bytes


async def test_a_cut_eval_summary_is_completed_from_the_result_document(kube, tmp_path):
    # 4 policies x 3 benchmarks x 8 metrics, and the outputs: more than 4096 bytes of
    # termination message; the stage keeps 72 of the 96 metrics in its summary.
    metrics = {f"eval.{p}.{b}.counterprior.metric_{m}": (m + 1) / 7
               for p in ("base", "align-1", "align-2", "align-3")
               for b in ("object-halbench", "amber", "pope") for m in range(8)}  # fmt: skip
    outputs = {k: f"s3://bucket/runs/llava15-7b-mfpo/eval/{k}" for k in ("report.md", "results", "plot.png")}
    summary = TerminationSummary(stage="eval", status="succeeded", metrics=metrics, outputs=outputs)
    decoded = TerminationSummary.decode(summary.encode())
    assert decoded.truncated and len(decoded.metrics) == 72 and len(metrics) == 96
    async with running_operator():
        await kube.create_run(file_run(tmp_path))
        for stage in ["datagen", "score", "align-1"]:
            await eventually(lambda stage=stage: f"demo-{stage}-a1" in kube.jobs(), what=stage)
            await kube.finish_job(f"demo-{stage}-a1")
        await eventually(lambda: "demo-eval-a1" in kube.jobs(), what="eval")
        record_result(tmp_path, "eval", metrics, outputs)
        await kube.finish_job("demo-eval-a1", summary=summary)
        await eventually(lambda: kube.status().get("phase") == "Succeeded", what="succeeded")
    eval_stage = kube.status()["stages"][3]
    assert eval_stage["metrics"] == metrics and eval_stage["outputs"] == outputs  # all, exact
    assert eval_stage["message"] == "succeeded in attempt 1"


async def test_a_cut_summary_without_readable_storage_says_so(kube, tmp_path):
    metrics = {f"eval.base.pope.metric_{m:03d}": m / 7 for m in range(200)}
    summary = TerminationSummary(stage="eval", status="succeeded", metrics=metrics)
    async with running_operator():
        await kube.create_run(file_run(tmp_path, curriculum={"stages": 1}))
        for stage in ["datagen", "score", "align-1"]:
            await eventually(lambda stage=stage: f"demo-{stage}-a1" in kube.jobs(), what=stage)
            await kube.finish_job(f"demo-{stage}-a1")
        await eventually(lambda: "demo-eval-a1" in kube.jobs(), what="eval")
        await kube.finish_job("demo-eval-a1", summary=summary)  # no result document readable
        await eventually(lambda: kube.status().get("phase") == "Succeeded", what="succeeded")
    stage = kube.status()["stages"][3]
    kept = len(stage["metrics"])
    assert 0 < kept < 200
    assert stage["message"] == (
        f"succeeded in attempt 1 (its termination summary was cut to 4096 bytes: {kept} metrics "
        f"here, every one in file://{tmp_path}/runs/demo/eval/result.json)"
    )


# ------------------------------------------------------------------------- pods


def pod_lists(kube: Kube) -> int:
    """How many times the operator has listed a Job's pods (it does when a Job lacks ready pods)."""
    return len([r for r in kube.kmock if r.method == "GET" and r.url.path == PODS])


def stage_pod(job: str, *, stage: str, uid: str, status: dict) -> dict:
    """A pod of a stage Job: the Job controller copies the template's labels to it."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{job}-0-abcde", "namespace": NS, "uid": uid,
            "creationTimestamp": stamp(5),
            "labels": {"batch.kubernetes.io/job-name": job, "job-name": job,
                       "app.kubernetes.io/managed-by": "mfpo-operator", "mfpo.dev/run": "demo",
                       "mfpo.dev/stage": stage, "mfpo.dev/attempt": "1"},
        },
        "status": status,
    }  # fmt: skip


async def test_an_image_pull_failure_shows_within_seconds_not_at_the_resync(kube, monkeypatch):
    # The kubelet's ErrImagePull changes the pod, not its Job (the Job controller counts the pod
    # active and not ready either way): only a watch on the pods sees it before the resync.
    monkeypatch.setenv("MFPO_OPERATOR_RESYNC_SECONDS", "60")
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        job_status = {"status": {"active": 1, "ready": 0, "startTime": stamp()}}
        await kube.kmock.patch(f"{JOBS}/demo-datagen-a1/status", json=job_status)
        # That change is reconciled (the Job's pods are listed after it: none yet), and the
        # operator is idle again: its next look is the resync, a minute away.
        patched = len(list(kube.kmock))
        await eventually(lambda: any(r.method == "GET" and r.url.path == PODS for r in list(kube.kmock)[patched:]),
                         what="the Job's change reconciled")  # fmt: skip
        await asyncio.sleep(1)
        # kubelet pkg/kubelet/images/image_manager.go: ErrImagePull, then ImagePullBackOff.
        waiting = {"reason": "ErrImagePull", "message": 'failed to pull image "registry.example/mfpo-runtime:0.1"'}
        pod = stage_pod("demo-datagen-a1", stage="datagen", uid="p1", status={
            "phase": "Pending", "startTime": stamp(),
            "containerStatuses": [{"name": "stage", "ready": False, "restartCount": 0,
                                   "state": {"waiting": waiting}}]})  # fmt: skip
        response = await kube.kmock.post(PODS, json=pod)
        assert response.status < 300
        await eventually(
            lambda: condition(kube, "Progressing").get("reason") == "ErrImagePull",
            timeout=5, what="ErrImagePull on the run within 5 s",
        )


async def test_an_eviction_is_told_once_its_resume_step_is_known(kube, tmp_path):
    # The Eviction API marks the pod DisruptionTarget=True (reason EvictionByEvictionAPI) and
    # deletes it; the pod gets SIGTERM and saves a checkpoint; the Job controller replaces it
    # (podFailurePolicy Ignore). While it stops, the step is not known: no event yet.
    run = file_run(tmp_path)
    async with running_operator():
        await kube.create_run(run)
        for stage in ["datagen", "score"]:
            await eventually(lambda stage=stage: f"demo-{stage}-a1" in kube.jobs(), what=stage)
            await kube.finish_job(f"demo-{stage}-a1")
        await eventually(lambda: "demo-align-1-a1" in kube.jobs(), what="align-1")
        record_checkpoint(tmp_path, "align-1", 20)
        stopping = stage_pod("demo-align-1-a1", stage="align-1", uid="evicted-1", status={
            "phase": "Running",
            "conditions": [{"type": "DisruptionTarget", "status": "True",
                            "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                            "lastTransitionTime": stamp()}],
            "containerStatuses": [{"name": "stage", "ready": True, "state": {"running": {"startedAt": stamp(60)}}}],
        })  # fmt: skip
        # Deleted, held by the Job controller's tracking finalizer until it has counted the pod.
        stopping["metadata"].update(deletionTimestamp=stamp(), finalizers=["batch.kubernetes.io/job-tracking"])
        looked = pod_lists(kube)
        await kube.kmock.post(PODS, json=stopping)
        await kube.kmock.patch(f"{JOBS}/demo-align-1-a1/status",
                               json={"status": {"active": 0, "ready": 0, "terminating": 1, "startTime": stamp(60)}})  # fmt: skip
        await eventually(lambda: pod_lists(kube) > looked, what="the operator listing the Job's pods")
        await asyncio.sleep(0.5)
        assert not events(kube, "PodEvicted")  # the step is not known yet: nothing promised
        # The pod's SIGTERM checkpoint, then the pod is gone and its replacement starts.
        record_checkpoint(tmp_path, "align-1", 40)
        await kube.kmock.patch(f"{PODS}/demo-align-1-a1-0-abcde", json={"metadata": {"finalizers": []}})
        await eventually(lambda: not kube.objects("v1/pods").get("demo-align-1-a1-0-abcde"), what="pod gone")
        await kube.kmock.patch(f"{JOBS}/demo-align-1-a1/status",
                               json={"status": {"active": 1, "ready": 1, "terminating": 0}})  # fmt: skip
        await eventually(lambda: events(kube, "PodEvicted"), timeout=15, what="the eviction event")
    (event,) = events(kube, "PodEvicted")
    assert event["message"] == (
        "align-1: pod demo-align-1-a1-0-abcde evicted (EvictionByEvictionAPI); "
        "the Job replaces it, resuming from step 40"
    )


# ------------------------------------------------------------------------------ Kueue


def kueue_stopped_event(job: str, uid: str, message: str) -> dict:
    """Kueue's event when it suspends a running Job: `Eventf(job, nil, Normal, "Stopped", "",
    <the Workload's Evicted message>)` (kueue pkg/controller/jobframework/reconciler.go,
    stopJob), written through events.k8s.io/v1: read as core/v1 it has eventTime, no
    lastTimestamp."""
    return {
        "apiVersion": "v1", "kind": "Event", "type": "Normal", "reason": "Stopped",
        "metadata": {"name": f"{job}.1829f3c0a7b2d4e1", "namespace": NS},
        "involvedObject": {"kind": "Job", "apiVersion": "batch/v1", "namespace": NS, "name": job, "uid": uid},
        "message": message, "eventTime": datetime.now(timezone.utc).isoformat(),
        "reportingComponent": "kueue-admission", "action": "",
    }  # fmt: skip


async def test_kueue_admission_and_preemption_are_shown_on_the_run(kube, tmp_path):
    run = file_run(tmp_path, resources={"gpusPerNode": 0, "queueName": "team-a"})
    async with running_operator():
        await kube.create_run(run)
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="datagen")
        # Created suspended; Kueue has not admitted it: the Job controller only marks it
        # Suspended (pkg/controller/job/job_controller.go: condition Suspended, reason JobSuspended).
        suspended = {"type": "Suspended", "status": "True", "reason": "JobSuspended",
                     "message": "Job suspended", "lastTransitionTime": stamp(90)}  # fmt: skip
        await kube.kmock.patch(f"{JOBS}/demo-datagen-a1/status", json={"status": {"conditions": [suspended]}})
        waiting = f"Job demo-datagen-a1 waiting for Kueue to admit it (LocalQueue team-a) since {suspended['lastTransitionTime']};"
        await eventually(
            lambda: condition(kube, "Progressing").get("reason") == "AwaitingAdmission"
            and waiting in condition(kube, "Progressing")["message"],
            what="waiting for admission, since the Job was suspended",
        )
        told = lambda: [e for e in events(kube, "AwaitingAdmission") if "demo-datagen-a1" in e["message"]]
        await eventually(told, what="the AwaitingAdmission event")
        assert [e["type"] for e in told()] == ["Normal"]  # waiting in a queue is no warning
        for stage in ["datagen", "score"]:  # admitted and done
            await eventually(lambda stage=stage: f"demo-{stage}-a1" in kube.jobs(), what=stage)
            await kube.finish_job(f"demo-{stage}-a1")
        await eventually(lambda: "demo-align-1-a1" in kube.jobs(), what="align-1")
        # Admitted: Kueue unsuspends it and the Job controller starts it (startTime).
        await kube.kmock.patch(f"{JOBS}/demo-align-1-a1", json={"spec": {"suspend": False}})
        await kube.kmock.patch(f"{JOBS}/demo-align-1-a1/status",
                               json={"status": {"startTime": stamp(300), "active": 1, "ready": 1}})  # fmt: skip
        await eventually(lambda: kube.status()["stages"][2].get("reason") == "Started", what="running")
        # Preempted: Kueue suspends it again, the pods save their checkpoint and go.
        job_uid = kube.jobs()["demo-align-1-a1"]["metadata"].get("uid", "")
        record_checkpoint(tmp_path, "align-1", 30)
        await kube.kmock.post(f"/api/v1/namespaces/{NS}/events", json=kueue_stopped_event(
            "demo-align-1-a1", job_uid, "Preempted to accommodate a higher priority Workload"))  # fmt: skip
        await kube.kmock.patch(f"{JOBS}/demo-align-1-a1", json={"spec": {"suspend": True}})
        suspended_again = {**suspended, "lastTransitionTime": stamp(5)}
        await kube.kmock.patch(f"{JOBS}/demo-align-1-a1/status", json={
            "status": {"active": 0, "ready": 0, "terminating": 0, "conditions": [suspended_again]}})  # fmt: skip
        await eventually(lambda: condition(kube, "Progressing").get("reason") == "Preempted", what="preempted")
        await eventually(lambda: events(kube, "Preempted"), what="the Preempted event")
    stage = kube.status()["stages"][2]
    assert (stage["phase"], stage["attempts"]) == ("Running", 1)  # the same attempt resumes
    assert stage["message"].startswith(
        f"attempt 1 waiting: Job demo-align-1-a1 stopped by Kueue since {suspended_again['lastTransitionTime']} "
    )
    assert stage["message"].endswith(
        "(Preempted to accommodate a higher priority Workload); resumes from step 30 when Kueue admits it again"
    )
    (preempted,) = events(kube, "Preempted")
    assert preempted["type"] == "Normal" and "resumes from step 30" in preempted["message"]
