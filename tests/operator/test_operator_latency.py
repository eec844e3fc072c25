"""What a reconcile does not wait for: the deletion of recorded Jobs and its events
(`kube.aftercare`), the existence checks before a start (side by side), a get of the run
between its watch events (`kube.run_cache`), a list of a finished Job's pods the watch has
shown (`kube.pod_cache`); and how the operator's requests are named in its
latency metric."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from api_answers import not_found
from kube_world import JOBS, NS, PODS, eventually, run_manifest, run_to_success, running_operator
from mfpo_core.contract import TerminationSummary
from mfpo_operator.kube.aftercare import Aftercare
from mfpo_operator.kube.cluster import api_request
from mfpo_operator.kube.pod_cache import CONTROLLER_UID_LABEL, PodCache
from mfpo_operator.kube.run_cache import RunCache


async def test_a_recorded_jobs_deletion_that_hangs_does_not_hold_the_run(kube):
    # The API server takes the DELETE of datagen's Job and does not answer (an overloaded
    # server, a webhook timing out) until the test ends. Before, the deletion ran inside the reconcile, under the run's
    # lock: the run's next reconcile waited for the read timeout (20 s) before it could start
    # align-1.
    hung = f"{JOBS}/demo-datagen-a1"

    released = asyncio.Event()

    async def answer_at_the_end() -> dict:
        await released.wait()
        return {"apiVersion": "v1", "kind": "Status", "status": "Success"}

    kube.kmock[lambda r: r.method == "DELETE" and r.url.path == hung] << answer_at_the_end
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="datagen's Job")
        await kube.finish_job("demo-datagen-a1")
        await eventually(lambda: "demo-score-a1" in kube.jobs(), what="score's Job")
        await eventually(
            lambda: any(r.method == "DELETE" and r.url.path == hung for r in kube.kmock),
            what="the deletion of datagen's Job (unanswered)",
        )
        await kube.finish_job("demo-score-a1")
        await eventually(lambda: "demo-align-1-a1" in kube.jobs(), timeout=10, what="align-1's Job")
        await eventually(lambda: kube.status()["stages"][1]["phase"] == "Succeeded", what="score recorded")
        released.set()


async def test_the_checks_before_a_start_run_side_by_side(kube):
    in_flight, most = 0, 0

    async def slow_read(request) -> dict:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.5)
        in_flight -= 1
        kind = "Secret" if "/secrets/" in request.url.path else "ServiceAccount"
        name = request.url.path.rsplit("/", 1)[1]
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": NS}}

    def checked(request) -> bool:
        return request.method == "GET" and any(
            f"/namespaces/{NS}/{plural}/" in request.url.path for plural in ("secrets", "serviceaccounts")
        )

    kube.kmock[checked] << slow_read
    manifest = run_manifest(
        resources={"gpusPerNode": 0, "serviceAccountName": "trainer"},
        tracking={"mlflow": {"uri": "http://mlflow.mlflow:5000", "secretName": "mlflow-creds"}},
    )
    async with running_operator():
        await kube.create_run(manifest)
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="the first Job")
    reads = [r.url.path.rsplit("/", 1)[1] for r in kube.kmock if checked(r)]
    assert {"trainer", "mlflow-creds"} <= set(reads)
    assert most >= 2  # one after the other before: never more than one in flight


def test_a_runs_tasks_run_in_order_and_once_while_waiting():
    aftercare = Aftercare(threads=2)
    gate, done = threading.Event(), []
    aftercare.submit(("ns", "a"), gate.wait, 10)
    for i in range(5):
        aftercare.submit(("ns", "a"), done.append, i)
    aftercare.submit(("ns", "a"), done.append, "delete", once=("remove", "ns", "job"))
    aftercare.submit(("ns", "a"), done.append, "delete", once=("remove", "ns", "job"))  # waits: dropped
    gate.set()
    assert aftercare.join()
    assert done == [0, 1, 2, 3, 4, "delete"]
    aftercare.submit(("ns", "a"), done.append, "delete", once=("remove", "ns", "job"))  # ran: taken
    assert aftercare.join()
    assert done[-2:] == ["delete", "delete"]
    aftercare.stop()


def test_a_failing_task_does_not_stop_its_thread_nor_hold_other_runs(caplog):
    aftercare = Aftercare(threads=2)
    gate, done = threading.Event(), []

    def fail() -> None:
        raise RuntimeError("409 Conflict")

    blocked = ("ns", "a")
    aftercare.submit(blocked, gate.wait, 10)
    # A run on the other thread.
    other = next(("ns", n) for n in "bcdefgh" if aftercare.thread_of(("ns", n)) != aftercare.thread_of(blocked))
    aftercare.submit(other, fail)
    aftercare.submit(other, done.append, "after the failure")
    deadline = time.monotonic() + 10
    while not done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done == ["after the failure"]  # while the blocked run's thread still waits
    assert "aftercare task fail failed" in caplog.text
    gate.set()
    aftercare.stop()


# As Kubernetes authorization names a request's verb ("Determine the request verb": get for
# one object, list for a collection, create, patch, delete) and resource ("/" subresource),
# for the paths the client requests.
@pytest.mark.parametrize("method,url,named", [
    ("GET", "https://10.0.0.1:443/apis/mfpo.dev/v1alpha1/namespaces/ml/mfporuns/demo", ("get", "mfporuns")),
    ("PATCH", "https://h/apis/mfpo.dev/v1alpha1/namespaces/ml/mfporuns/demo/status", ("patch", "mfporuns/status")),
    ("GET", "https://h/api/v1/namespaces/ml/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3Dj", ("list", "pods")),
    ("GET", "https://h/apis/mfpo.dev/v1alpha1/mfporuns?limit=1", ("list", "mfporuns")),
    ("POST", "https://h/apis/batch/v1/namespaces/ml/jobs?fieldValidation=Strict", ("create", "jobs")),
    ("DELETE", "https://h/apis/batch/v1/namespaces/ml/jobs/demo-datagen-a1?propagationPolicy=Background", ("delete", "jobs")),
    ("GET", "https://h/api/v1/namespaces/ml/secrets/s3-creds", ("get", "secrets")),
    ("PATCH", "https://h/apis/rbac.authorization.k8s.io/v1/namespaces/ml/rolebindings/mfpo", ("patch", "rolebindings")),
    ("GET", "https://h/api/v1/namespaces/ml", ("get", "namespaces")),
])  # fmt: skip
def test_requests_are_named_as_the_api_server_names_them(method, url, named):
    assert api_request(method, url) == named


async def test_a_job_event_is_planned_from_the_run_as_last_written_without_a_get(kube):
    # Before, every reconcile began with a get of its run. The operator is the run's only
    # writer of status, and every other change reaches it as a watch event: between two such
    # events the run is the one its last status write returned.
    async with running_operator() as memo:
        await run_to_success(kube)
        reconciles = memo.metrics.registry.get_sample_value("mfpo_reconcile_duration_seconds_count")
    run = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/demo"
    gets = [r for r in kube.kmock if r.method.value == "GET" and r.url.path == run and "watch" not in r.params]
    # The first reconcile gets it, and each event of a write by someone else (kopf's annotations)
    # drops it once; before, one get per reconcile.
    assert len(gets) <= 3 < reconciles, (reconciles, len(gets))


async def test_an_edit_between_stages_reaches_the_next_stage(kube):
    # The watch event of the edit drops the run as last written: the next Job is planned
    # from the edited spec, not from the body kept since the last status write.
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="datagen's Job")
        await eventually(lambda: kube.status().get("phase") == "Running", what="status written")
        edit = {"spec": {"runtimeImage": "registry.example/mfpo/runtime:2.0"}, "metadata": {"generation": 2}}
        await kube.patch_run("demo", edit)
        await asyncio.sleep(0.5)
        await kube.finish_job("demo-datagen-a1")
        await eventually(lambda: "demo-score-a1" in kube.jobs(), what="score's Job")
    image = kube.jobs()["demo-score-a1"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/mfpo/runtime:2.0"


def test_the_run_kept_is_dropped_by_any_other_version_and_kept_through_its_echo():
    cache = RunCache()
    key = (NS, "demo")
    written = {"metadata": {"name": "demo", "resourceVersion": "7", "generation": 1},
               "spec": {"a": 1}, "status": {"phase": "Running"}}  # fmt: skip
    cache.keep(key, written, cache.epoch(key))
    cache.seen(key, {**written, "metadata": {**written["metadata"], "managedFields": []}})  # echo
    assert cache.get(key) is written
    # The echo of a first write arriving after the second one's answer: nothing new.
    second = {**written, "metadata": {**written["metadata"], "resourceVersion": "8"},
              "status": {"phase": "Succeeded"}}  # fmt: skip
    cache.keep(key, second, cache.epoch(key))
    cache.seen(key, written)
    assert cache.get(key) is second
    # A version the operator never read nor wrote (kopf's, a user's): dropped, the next
    # reconcile gets the run.
    older = {**written, "metadata": {**written["metadata"], "resourceVersion": "6"}, "status": {}}
    cache.seen(key, older)
    assert cache.get(key) is None
    # A get in flight while an event arrives is not kept: it may predate the change.
    epoch = cache.epoch(key)
    cache.seen(key, {**written, "spec": {"a": 2}})
    cache.keep(key, written, epoch)
    assert cache.get(key) is None
    cache.keep(key, written, cache.epoch(key))
    cache.forget(key)
    assert cache.get(key) is None


async def test_a_suspended_attempts_config_goes_with_its_job(kube):
    # Found by a user on a real cluster: `<run>-score-a1-config` stayed after the run was
    # suspended and resumed (its Job deleted by the stop, its ConfigMap not).
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1-config" in kube.objects("v1/configmaps"), what="the config")
        await kube.patch_run("demo", {"spec": {"suspend": True}, "metadata": {"generation": 2}})
        await eventually(lambda: "demo-datagen-a1" not in kube.jobs(), what="the Job stopped")
        await eventually(lambda: "demo-datagen-a1-config" not in kube.objects("v1/configmaps"),
                         what="its ConfigMap deleted")  # fmt: skip


async def test_a_vanished_attempts_config_goes_when_the_next_attempt_starts(kube):
    # The Job deleted by hand (`kubectl delete job`): no recorded Job to delete it with.
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        assert (await kube.kmock.delete(f"{JOBS}/demo-datagen-a1")).status < 300
        await eventually(lambda: "demo-datagen-a2" in kube.jobs(), what="attempt 2")
        configs = lambda: set(kube.objects("v1/configmaps"))
        await eventually(lambda: configs() == {"demo-datagen-a2-config"}, what="only attempt 2's config")


async def test_a_run_deleted_during_its_reconcile_is_let_go_quietly(kube, caplog):
    # Found on a real cluster: deleting a namespace logged `ERROR ... reconcile failed ... 404
    # Not Found` for its runs, and the ticker tried again. The status write's 404 says the run
    # is gone (planned from the run as last read, before its DELETED event arrived).
    status = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/demo/status"
    kube.kmock[lambda r: r.method == "PATCH" and r.url.path == status] << 404 << not_found("mfporuns", "demo")
    caplog.set_level(logging.INFO, logger="mfpo.operator")
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "deleted while it was reconciled" in caplog.text, what="the run let go")
        await asyncio.sleep(2.5)  # a failed reconcile is tried again after 1, then 2 s
    assert "reconcile failed" not in caplog.text


async def test_a_finished_jobs_summary_is_read_from_the_pods_the_watch_showed(kube):
    # Before, every Job's end listed its pods to read the termination summary. The pod watch
    # has shown them already (when it has not, or not all: listed, see the next test).
    stages = ["datagen", "score", "align-1", "eval"]
    lists_after_an_end = []
    pod_lists = lambda: [r for r in kube.kmock if r.method.value == "GET" and r.url.path == PODS]
    async with running_operator() as memo:
        await kube.create_run(run_manifest())
        for stage in stages:
            job = f"demo-{stage}-a1"
            await eventually(lambda job=job: job in kube.jobs(), what=f"job {job}")
            seen = lambda job=job: memo.operator.cluster.pods.ended_pods(
                {"metadata": {"name": job, "namespace": NS}, "status": {"succeeded": 1}})  # fmt: skip
            summary = TerminationSummary(stage=stage, status="succeeded", metrics={"loss": 0.5})
            before = []

            async def pods_ended(seen=seen, before=before) -> None:
                await eventually(seen, what="the pod in the operator's view")
                before.append(len(pod_lists()))

            await kube.finish_job(job, summary=summary, pods_ended=pods_ended)
            index = stages.index(stage)
            await eventually(lambda index=index: kube.status()["stages"][index]["phase"] == "Succeeded",
                             what=f"{stage} recorded")  # fmt: skip
            # (the next stage's new Job, its pod not seen yet, is listed: not this one)
            lists_after_an_end += [r for r in pod_lists()[before[0]:] if job in r.url.query_string]
        await eventually(lambda: kube.status().get("phase") == "Succeeded", what="run succeeded")
    assert [s["metrics"] for s in kube.status()["stages"]] == [{"loss": 0.5}] * 4
    assert lists_after_an_end == []


def pod(name: str, job: str, phase: str, uid: str | None = "job-uid") -> dict:
    labels = {"batch.kubernetes.io/job-name": job, **({CONTROLLER_UID_LABEL: uid} if uid else {})}
    return {"metadata": {"name": name, "namespace": NS, "labels": labels}, "status": {"phase": phase}}


def finished_job(succeeded: int = 0, failed: int = 0) -> dict:
    return {"metadata": {"name": "j", "namespace": NS, "uid": "job-uid"},
            "status": {"succeeded": succeeded, "failed": failed}}  # fmt: skip


def test_the_pods_of_a_finished_job_are_listed_unless_the_watch_showed_them_all():
    cache = PodCache()
    assert cache.ended_pods(finished_job(succeeded=1)) is None  # not seen yet
    cache.observe("ADDED", pod("j-0", "j", "Running"))
    assert cache.ended_pods(finished_job(succeeded=1)) is None  # its end not seen yet
    cache.observe("MODIFIED", pod("j-0", "j", "Failed"))
    assert cache.ended_pods(finished_job(succeeded=1, failed=1)) is None  # one of two
    cache.observe("ADDED", pod("j-1", "j", "Succeeded"))
    assert [p["metadata"]["name"] for p in cache.ended_pods(finished_job(succeeded=1, failed=1))] == ["j-0", "j-1"]
    # A pod of an earlier Job of the same name (another uid) is not one of this Job's.
    cache.observe("ADDED", pod("j-old", "j", "Running", uid="earlier-uid"))
    assert len(cache.ended_pods(finished_job(succeeded=1, failed=1))) == 2
    cache.observe("DELETED", pod("j-1", "j", "Succeeded"))
    assert cache.ended_pods(finished_job(succeeded=1, failed=1)) is None
