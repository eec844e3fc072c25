"""What waiting runs cost the API server: counted requests, not timings (issue 23, point 7).

The real operator against kmock; the test plays the Job controller and the kubelet as a
cluster does once a stage's pod runs: the pod Running and Ready, the Job's status with
`active` and `ready` (the Job controller's count of Ready pods, pkg/controller/job). The
operator's own requests are those of the kubernetes client (User-Agent `OpenAPI-Generator`);
kopf's watches and the test's writes are not counted.
"""

from __future__ import annotations

import asyncio
import collections

from kube_world import (
    JOBS,
    NS,
    PODS,
    Kube,
    eventually,
    run_manifest,
    run_to_success,
    running_operator,
)

RESYNC = 0.5  # seconds; the ticker ticks every 0.2 s (conftest)


def operator_requests(kube: Kube) -> list:
    return [
        r for r in kube.kmock if r.headers.get("User-Agent", "").startswith("OpenAPI-Generator")
    ]


def by_verb(requests: list) -> dict[str, int]:
    return dict(collections.Counter(f"{r.method.value} {r.url.path}" for r in requests))


async def run_the_job(kube: Kube, job: str) -> None:
    """The kubelet runs the Job's pod, Ready; the Job controller counts it active and ready."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{job}-0-x", "namespace": NS,
                     "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "stage", "ready": True,
                                          "state": {"running": {"startedAt": "2025-01-01T00:00:01Z"}}}]},
    }  # fmt: skip
    assert (await kube.kmock.post(PODS, json=pod)).status < 300
    status = {"startTime": "2025-01-01T00:00:00Z", "active": 1, "ready": 1}
    response = await kube.kmock.patch(f"{JOBS}/{job}/status", json={"status": status})
    assert response.status < 300


async def start_waiting_runs(kube: Kube, names: list[str]) -> None:
    for name in names:
        await kube.create_run(run_manifest(name))
    for name in names:
        job = f"{name}-datagen-a1"
        await eventually(lambda job=job: job in kube.jobs(), what=f"job {job}")
        await run_the_job(kube, job)
    started = lambda: all(
        kube.status(n).get("phase") == "Running"
        and kube.status(n)["stages"][0].get("reason") == "Started"
        for n in names
    )
    await eventually(started, what="every run Running, its first stage Started")


async def test_waiting_runs_cost_no_api_call_at_a_resync(kube, monkeypatch):
    # Before: the ticker reconciled every unfinished run at every resync, a get of the run
    # and a list of its Jobs each time (2 calls per run per period, whatever changed).
    monkeypatch.setenv("MFPO_OPERATOR_RESYNC_SECONDS", str(RESYNC))
    names = [f"idle-{i}" for i in range(4)]
    async with running_operator() as memo:
        await start_waiting_runs(kube, names)
        await asyncio.sleep(3 * RESYNC)  # the reconciles of the last Job events end
        before = len(operator_requests(kube))
        await asyncio.sleep(6 * RESYNC)
        during = operator_requests(kube)[before:]
        reconciles = memo.metrics.registry.get_sample_value("mfpo_reconcile_duration_seconds_count")
    assert during == [], f"{len(names)} waiting runs, 6 resync periods: {by_verb(during)}"
    assert reconciles is not None


async def test_a_job_event_that_changes_nothing_a_reconcile_reads_costs_no_api_call(kube):
    # The Job controller writes status.uncountedTerminatedPods (uids of finished pods it has
    # not counted yet; batch/v1 JobStatus) in updates of their own: their outcome shows later
    # in succeeded/failed and the conditions. Before, every Job event reconciled the run.
    async with running_operator():
        await start_waiting_runs(kube, ["demo"])
        await asyncio.sleep(1.0)
        before = len(operator_requests(kube))
        bookkeeping = {"status": {"uncountedTerminatedPods": {"succeeded": ["pod-uid-1"]}}}
        response = await kube.kmock.patch(f"{JOBS}/demo-datagen-a1/status", json=bookkeeping)
        assert response.status < 300
        await asyncio.sleep(1.0)
        during = operator_requests(kube)[before:]
        assert during == [], by_verb(during)
        # A change a reconcile reads (the pod no longer Ready) is still looked at.
        response = await kube.kmock.patch(
            f"{JOBS}/demo-datagen-a1/status", json={"status": {"ready": 0}}
        )
        assert response.status < 300
        await eventually(
            lambda: len(operator_requests(kube)) > before, what="a reconcile of the changed Job"
        )


async def test_a_job_deleted_unseen_by_the_watch_is_found_by_the_periodic_check(kube, monkeypatch):
    # kopf re-lists after an expired resource version (410 Gone) without reporting the
    # objects deleted meanwhile. The ticker checks a waiting run's live Jobs with a get
    # every MFPO_OPERATOR_VERIFY_SECONDS; a vanished one is restarted without counting it.
    monkeypatch.setenv("MFPO_OPERATOR_VERIFY_SECONDS", "1")
    async with running_operator():
        await start_waiting_runs(kube, ["demo"])
        # Deleted in kmock's store without a watch event (kmock sends one only for a request).
        kube.kmock.objects["batch/v1/jobs", NS, "demo-datagen-a1"].delete()
        await eventually(lambda: "demo-datagen-a2" in kube.jobs(), timeout=15, what="attempt 2")
        vanished = lambda: kube.status()["stages"][0].get("disruptedAttempts") == [1]
        await eventually(vanished, what="attempt 1 recorded as disrupted, not counted")


async def test_a_run_lists_its_jobs_once_in_its_life(kube):
    # Before: every reconcile listed the run's Jobs (a list the API server answers by reading
    # every Job of the namespace: its cost grew with all the runs there). Now the first action
    # on a run in this process lists them; the watch keeps them after that.
    async with running_operator():
        await run_to_success(kube)
    lists = [r for r in operator_requests(kube) if r.method.value == "GET" and r.url.path == JOBS]
    assert len(lists) == 1, by_verb(operator_requests(kube))


async def test_a_job_whose_outcome_is_decided_is_not_searched_for_stuck_pods(kube):
    # Kubernetes 1.31+: the Job controller adds SuccessCriteriaMet (or FailureTarget) when the
    # outcome is decided, while its pods terminate, then Complete (or Failed) in a later update
    # ("Termination of Job pods", concepts/workloads/controllers/job). Its pods are ending, not
    # stuck: the Complete event reads them once.
    async with running_operator() as memo:
        await start_waiting_runs(kube, ["demo"])
        await asyncio.sleep(1.0)
        before = len(operator_requests(kube))
        reconciles = lambda: memo.metrics.registry.get_sample_value("mfpo_reconcile_duration_seconds_count")
        reconciled = reconciles()
        decided = {"status": {"active": 0, "ready": 0, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"}]}}  # fmt: skip
        response = await kube.kmock.patch(f"{JOBS}/demo-datagen-a1/status", json=decided)
        assert response.status < 300
        await eventually(lambda: reconciles() > reconciled, what="a reconcile")
        await asyncio.sleep(1.0)
        during = operator_requests(kube)[before:]
    assert not [r for r in during if r.url.path in (PODS, f"/api/v1/namespaces/{NS}/events")], (
        by_verb(during)
    )
