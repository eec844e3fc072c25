"""What a reconcile does not wait for: the deletion of recorded Jobs and its events
(`kube.aftercare`), and the existence checks before a start, which run side by side; and how
the operator's requests are named in its latency metric."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from kube_world import JOBS, NS, eventually, run_manifest, running_operator
from mfpo_operator.kube.aftercare import Aftercare
from mfpo_operator.kube.cluster import api_request


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
        assert kube.status()["stages"][1]["phase"] == "Succeeded"
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


# As kube-apiserver's apiserver_request_duration_seconds names them (verb: get for a named
# object, list for a collection; resource, "/" subresource), for the paths the client requests.
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
