"""What a real API server, Job controller, scheduler and kubelet do that kmock does not.

kmock (kopf's API emulator) has no RBAC, no validation, no Job controller and no kubelet.
Each test here makes kmock answer, or the test write, exactly what the real component does,
citing the Kubernetes documentation or source it encodes, and checks what the run shows.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from api_answers import storage_timeout
from kube_world import (
    JOBS,
    NS,
    PODS,
    Kube,
    eventually,
    run_manifest,
    running_operator,
)


def condition(kube: Kube, kind: str) -> dict:
    return next((c for c in kube.status().get("conditions") or [] if c["type"] == kind), {})


def events(kube: Kube) -> list[dict]:
    return kube.posted("/events")


# A 422 exactly as kube-apiserver writes it for an invalid Job: a metav1.Status with reason
# Invalid and one cause per field (apimachinery pkg/api/errors NewInvalid: "details.causes[]
# .field"; https://kubernetes.io/docs/reference/using-api/api-concepts/ "Status" responses).
INVALID_JOB = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": 'Job.batch "demo-datagen-a1" is invalid: spec.template.spec.containers[0]'
    '.resources.requests: Invalid value: "64Gi": must be less than or equal to memory limit',
    "reason": "Invalid",
    "details": {"name": "demo-datagen-a1", "group": "batch", "kind": "Job", "causes": [{
        "reason": "FieldValueInvalid",
        "message": 'Invalid value: "64Gi": must be less than or equal to memory limit',
        "field": "spec.template.spec.containers[0].resources.requests",
    }]},
    "code": 422,
}  # fmt: skip


async def test_a_job_the_api_server_rejects_fails_the_run_naming_the_field(kube):
    kube.kmock["post", JOBS] << 422 << INVALID_JOB
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: kube.status().get("phase") == "Failed", what="run failed")
        failed = condition(kube, "Failed")
        assert failed["status"] == "True" and failed["reason"] == "BadInput"
        assert "spec.template.spec.containers[0].resources.requests" in failed["message"]
        assert "422 Invalid" in failed["message"]
        await eventually(
            lambda: any(e["reason"] == "StageFailed" for e in events(kube)), what="the event"
        )
    assert kube.jobs() == {}  # nothing half-created looks like a running attempt


async def test_a_reconcile_that_fails_in_an_event_handler_is_tried_again(kube, caplog):
    # A run's first reconcile comes from its ADDED event, and kopf never retries an event
    # handler's error (only change handlers' errors are retried). On main nothing looked at
    # the run again: a single 500 on the get of the run left it without a Job, for ever.
    run = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/demo"
    answered = []

    def first_get_of_the_run(request) -> bool:
        return request.method == "GET" and request.url.path == run and not answered

    def timeout(request) -> dict:
        answered.append(request)
        return storage_timeout(request)

    kube.kmock[first_get_of_the_run] << 500 << timeout
    caplog.set_level(logging.ERROR, logger="mfpo.operator")
    async with running_operator():  # the resync is 60 s: the retry is the ticker's backoff
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="the first Job")
    assert len(answered) == 1
    said = [r.getMessage() for r in caplog.records if "reconcile failed" in r.getMessage()]
    assert said and "tried again in 1 s" in said[0] and "etcdserver: request timed out" in said[0]


async def test_a_missing_service_account_holds_the_run_with_the_reason_until_it_exists(kube):
    # On a real cluster the Job would be created and then hang: the Job controller cannot
    # create its pod (event FailedCreate 'serviceaccount "trainer" not found' on the Job;
    # pkg/controller/job), and the Job never fails. So the operator checks first.
    resources = {"gpusPerNode": 0, "serviceAccountName": "trainer"}
    async with running_operator():
        await kube.create_run(run_manifest(resources=resources))
        await eventually(
            lambda: condition(kube, "Progressing").get("reason") == "ServiceAccountMissing",
            what="the Progressing condition naming the missing ServiceAccount",
        )
        message = condition(kube, "Progressing")["message"]
        assert "serviceaccount 'trainer' (spec.resources.serviceAccountName)" in message
        assert kube.jobs() == {}
        await eventually(
            lambda: any(e["reason"] == "ServiceAccountMissing" for e in events(kube)),
            what="the Warning event",
        )
        account = {"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "trainer", "namespace": NS}}  # fmt: skip
        response = await kube.kmock.post(f"/api/v1/namespaces/{NS}/serviceaccounts", json=account)
        assert response.status < 300
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), timeout=30, what="the Job")
    warnings = [e for e in events(kube) if e["reason"] == "ServiceAccountMissing"]
    assert len(warnings) == 1  # said once, not at every look


async def test_a_missing_tracking_secret_holds_the_run_until_it_exists(kube):
    # The Job's references to the tracking Secret's keys are optional (a Secret may hold a
    # token only), so the kubelet would start the pod without them and the stages would talk to
    # MLflow unauthenticated: the operator waits for the Secret as it does for storage's.
    tracking = {"mlflow": {"uri": "http://mlflow.mlflow:5000", "secretName": "mlflow-creds"}}
    await held_until_the_secret_exists(kube, run_manifest(tracking=tracking), "mlflow-creds",
                                       "spec.tracking.mlflow.secretName")  # fmt: skip


async def held_until_the_secret_exists(kube, manifest, secret_name: str, field: str) -> None:
    """The run is held (SecretMissing naming the Secret and its field, no Job) until the Secret
    is created, then its first Job starts."""
    async with running_operator():
        await kube.create_run(manifest)
        await eventually(
            lambda: condition(kube, "Progressing").get("reason") == "SecretMissing",
            what="the Progressing condition naming the missing Secret",
        )
        message = condition(kube, "Progressing")["message"]
        assert f"secret '{secret_name}' ({field})" in message
        assert kube.jobs() == {}
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": secret_name, "namespace": NS}}  # fmt: skip
        response = await kube.kmock.post(f"/api/v1/namespaces/{NS}/secrets", json=secret)
        assert response.status < 300
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), timeout=30, what="the Job")


async def test_a_missing_judge_secret_holds_the_run_before_any_training(kube):
    # Read by the eval stage only, the judge's key is waited for before the first stage: a run
    # without it would train for hours and fail in its last stage.
    judged = {"name": "object-halbench", "uri": "s3://bench/coco", "objectHalbench": {
        "judge": "llm", "judgeUrl": "https://judge.example.net/v1", "judgeModel": "m",
        "judgeSecretRef": {"name": "judge-key", "key": "api-key"}}}  # fmt: skip
    storage = {"uri": "s3://mfpo/runs", "endpoint": "minio.mfpo:9000"}
    manifest = run_manifest(storage=storage, evaluation={"benchmarks": [judged]})
    await held_until_the_secret_exists(kube, manifest, "judge-key",
                                       "spec.evaluation.benchmarks[0].objectHalbench.judgeSecretRef.name")  # fmt: skip
    env = kube.jobs()["demo-datagen-a1"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "MFPO_JUDGE_API_KEY" not in {e["name"] for e in env}  # the eval stage's alone


def _pending_pod(job: str, waiting: dict | None = None, unschedulable: str | None = None) -> dict:
    status: dict = {"phase": "Pending", "startTime": "2025-01-01T00:00:00Z"}
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable", "message": unschedulable,
                                 "lastTransitionTime": "2025-01-01T00:00:00Z"}]  # fmt: skip
    if waiting:
        status["containerStatuses"] = [{"name": "stage", "ready": False, "restartCount": 0,
                                        "state": {"waiting": waiting}}]  # fmt: skip
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{job}-0-abcde", "namespace": NS,
                     "creationTimestamp": "2025-01-01T00:00:00Z",
                     "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
        "status": status,
    }  # fmt: skip


STUCK_PODS = [
    # kubelet, pkg/kubelet/images/image_manager.go: `Back-off pulling image %q`.
    ("ImagePullBackOff", {"waiting": {"reason": "ImagePullBackOff",
     "message": 'Back-off pulling image "registry.example/mfpo-runtime:0.1"'}}),
    # kubelet, makeEnvironmentVariables: a secretKeyRef to a missing Secret.
    ("CreateContainerConfigError", {"waiting": {"reason": "CreateContainerConfigError",
     "message": 'secret "s3-creds" not found'}}),
    # kube-scheduler's FitError on PodScheduled (pkg/scheduler/schedule_one.go).
    ("Unschedulable", {"unschedulable": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
     " preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."}),
]  # fmt: skip


@pytest.mark.parametrize("reason,pod", STUCK_PODS, ids=[r for r, _ in STUCK_PODS])
async def test_a_stuck_pod_is_shown_on_the_run_with_how_long_it_waited(kube, reason, pod):
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        response = await kube.kmock.post(PODS, json=_pending_pod("demo-datagen-a1", **pod))
        assert response.status < 300
        # The Job controller counts the pending pod as active and not ready.
        job_status = {"status": {"active": 1, "ready": 0, "startTime": "2025-01-01T00:00:00Z"}}
        response = await kube.kmock.patch(f"{JOBS}/demo-datagen-a1/status", json=job_status)
        assert response.status < 300
        await eventually(
            lambda: condition(kube, "Progressing").get("reason") == reason,
            what=f"the Progressing condition saying {reason}",
        )
        await eventually(lambda: any(e["reason"] == reason for e in events(kube)), what="event")
    stage = kube.status()["stages"][0]
    assert stage["reason"] == reason
    assert "pod demo-datagen-a1-0-abcde" in stage["message"] and " since " in stage["message"]


async def test_a_job_the_controller_cannot_create_pods_for_is_shown_on_the_run(kube, monkeypatch):
    # A ResourceQuota (or a LimitRange, an admission webhook) refusing the pod: the Job is
    # created and then shows nothing -- no pod, no condition, it never fails; the Job
    # controller retries and records `Eventf(job, Warning, "FailedCreate", "Error creating:
    # %v", err)` (kubernetes pkg/controller/controller_utils.go). kmock has no Job controller:
    # the test writes that event. Nothing about the Job changes, so no watch event comes: the
    # operator's periodic resync (60 s by default; 1 s here) is what finds it.
    monkeypatch.setenv("MFPO_OPERATOR_RESYNC_SECONDS", "1")
    monkeypatch.setenv("MFPO_OPERATOR_TICK_SECONDS", "0.5")
    quota = ('pods "demo-datagen-a1-x7k2p" is forbidden: exceeded quota: gpu-quota, requested: '
             "requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=4, limited: requests.nvidia.com/gpu=4")  # fmt: skip
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        job_meta = kube.jobs()["demo-datagen-a1"]["metadata"]
        event = {
            "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "FailedCreate",
            "metadata": {"name": "demo-datagen-a1.181f0c2a9e3b7d10", "namespace": NS},
            "involvedObject": {"kind": "Job", "apiVersion": "batch/v1", "namespace": NS,
                               "name": "demo-datagen-a1", **({"uid": job_meta["uid"]} if "uid" in job_meta else {})},
            "message": f"Error creating: {quota}", "count": 4, "source": {"component": "job-controller"},
            "firstTimestamp": ago(150), "lastTimestamp": ago(30),
        }  # fmt: skip
        response = await kube.kmock.post(f"/api/v1/namespaces/{NS}/events", json=event)
        assert response.status < 300
        await eventually(
            lambda: condition(kube, "Progressing").get("reason") == "FailedCreate",
            what="the Progressing condition saying FailedCreate",
        )
        await eventually(lambda: any(e["reason"] == "FailedCreate" for e in events(kube)), what="event")
    stage = kube.status()["stages"][0]
    assert stage["reason"] == "FailedCreate"
    assert stage["message"].startswith(
        f"attempt 1 waiting: Job demo-datagen-a1 cannot create its pods since {event['firstTimestamp']}"
    )
    assert "Error creating: pods \"demo-datagen-a1-x7k2p\" is forbidden: exceeded quota" in stage["message"]


def ago(seconds: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _forbidden(what: str) -> dict:
    # The RBAC authorizer's denial (kubernetes plugin/pkg/auth/authorizer/rbac): 403 Forbidden.
    user = "system:serviceaccount:mfpo-system:mfpo-operator"
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 403,
        "reason": "Forbidden",
        "message": f'{what} is forbidden: User "{user}" cannot list resource "{what}" '
        'in API group "" at the cluster scope',
    }  # fmt: skip


CLUSTER_WIDE_LISTS = {
    "/api/v1/namespaces": "namespaces",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions": "customresourcedefinitions",
    "/apis/mfpo.dev/v1alpha1/mfporuns": "mfporuns",
}


async def test_a_namespaced_operator_acts_at_once_with_a_namespaced_role_alone(kube, caplog):
    caplog.set_level(logging.INFO)
    for path, what in CLUSTER_WIDE_LISTS.items():
        kube.kmock[lambda r, path=path: r.url.path == path] << 403 << _forbidden(what)
    async with running_operator(namespaces=[NS]):
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), timeout=5, what="the Job")
    # kmock cannot route /api/v1/namespaces (it answers 500 before recording it); the CRD list
    # is recorded, and kopf skips both when its scanning is disabled.
    cluster_wide = [r.url.path for r in kube.kmock if r.url.path in CLUSTER_WIDE_LISTS]
    assert cluster_wide == []  # no 403 to back off from
    said = [r.getMessage() for r in caplog.records if "namespaced mode" in r.getMessage()]
    assert said == ["namespaced mode: watching only ['ml'] (no cluster-wide scanning)"]


async def test_readiness_says_not_ready_while_runs_cannot_be_listed(kube, unused_tcp_port):
    path = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns"
    kube.kmock[lambda r: r.url.path == path and r.method == "GET"] << 403 << _forbidden("mfporuns")
    url = f"http://127.0.0.1:{unused_tcp_port}/healthz"
    async with running_operator(namespaces=[NS], liveness=url):
        code = await _http_status(url)
    assert code == 500


async def _http_status(url: str) -> int:
    import asyncio

    def get() -> int:
        # kopf sets its ready flag before its liveness server task has bound the port: on a
        # busy machine the first connection can be refused. The status is what is tested.
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    json.load(response)
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code
            except urllib.error.URLError as err:
                if not isinstance(err.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    return await asyncio.to_thread(get)
