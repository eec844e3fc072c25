"""What a reconcile does not wait for: the deletion of recorded Jobs and its events
(`kube.aftercare`), and the existence checks before a start, which run side by side."""

from __future__ import annotations

import asyncio
import threading
import time

from kube_world import JOBS, NS, eventually, run_manifest, running_operator
from mfpo_operator.kube.aftercare import Aftercare


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
