"""The real operator (kopf handlers, reconcile, Job builder) against kmock.

The test plays the kubelet and the Job controller (see kube_world.Kube.finish_job)."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import kopf
from kube_world import (
    STAGES,
    Kube,
    eventually,
    run_manifest,
    run_to_success,
    running_operator,
)
from mfpo_core.contract import TerminationSummary
from mfpo_operator.plan import Event


def phase(kube: Kube, name: str = "demo") -> str | None:
    return kube.status(name).get("phase")


async def test_a_run_goes_through_its_stages_as_jobs_succeed(kube):
    stages = STAGES
    async with running_operator() as memo:
        await run_to_success(kube, metrics={
            "align-1": {"reward_margin.image": 0.5, "reward_margin.text": 0.25},
            "eval": {"eval.align-1.synthetic.chair_s": 0.2},
        })  # fmt: skip
        posted = lambda: {e.get("reason") for e in kube.posted("/events")}
        await eventually(lambda: "RunSucceeded" in posted(), what="the RunSucceeded event")
    status = kube.status()
    assert status["progress"] == "4/4"
    assert [s["phase"] for s in status["stages"]] == ["Succeeded"] * 4
    assert status["stages"][3]["metrics"] == {"eval.align-1.synthetic.chair_s": 0.2}
    # Each stage's Job and ConfigMap go once its outcome is in status (no ResourceQuota left
    # counting them for a day); the Job's pods with it (propagationPolicy Background).
    assert kube.jobs() == {} and kube.objects("v1/configmaps") == {}
    deleted = [r for r in kube.kmock if r.method == "DELETE" and "/jobs/" in r.url.path]
    assert sorted(r.url.path.rsplit("/", 1)[1] for r in deleted) == sorted(f"demo-{s}-a1" for s in stages)
    assert {r.params.get("propagationPolicy") for r in deleted} == {"Background"}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    registry = memo.metrics.registry
    # The operator's own API requests, by verb and resource: one Job created per stage.
    requests = "mfpo_operator_api_request_duration_seconds_count"
    assert registry.get_sample_value(requests, {"verb": "create", "resource": "jobs"}) == 4
    assert registry.get_sample_value(requests, {"verb": "delete", "resource": "jobs"}) == 4
    assert registry.get_sample_value(requests, {"verb": "patch", "resource": "mfporuns/status"}) >= 4
    labels = {"namespace": "ml", "run": "demo"}
    assert registry.get_sample_value("mfpo_run_phase", {**labels, "phase": "Succeeded"}) == 1.0
    assert (
        registry.get_sample_value(
            "mfpo_run_eval_score",
            {**labels, "stage": "align-1", "benchmark": "synthetic", "metric": "chair_s"},
        )
        == 0.2
    )
    assert (
        registry.get_sample_value(
            "mfpo_run_reward_margin", {**labels, "stage": "align-1", "modality": "image"}
        )
        == 0.5
    )
    assert (
        registry.get_sample_value("mfpo_stage_attempts_total", {**labels, "stage": "score"}) == 1.0
    )
    assert {"AttemptStarted", "StageSucceeded", "RunSucceeded"} <= posted()


async def test_a_failed_attempt_is_retried_and_resumes(kube):
    async with running_operator() as memo:
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        await kube.finish_job("demo-datagen-a1", exit_code=1)
        await eventually(lambda: "demo-datagen-a2" in kube.jobs(), what="attempt 2")
        # The status is written after the Job is created: wait for it too.
        second = lambda: kube.status()["stages"][0]["attempts"] == 2
        await eventually(second, what="the status recording attempt 2")
        assert kube.status()["stages"][0]["phase"] == "Running"
        await kube.finish_job("demo-datagen-a2")
        await eventually(lambda: "demo-score-a1" in kube.jobs(), what="the next stage")
        labels = {"namespace": "ml", "run": "demo", "stage": "datagen"}
        registry = memo.metrics.registry
        assert registry.get_sample_value("mfpo_stage_retries_total", labels) == 1.0
        assert registry.get_sample_value("mfpo_stage_failures_total", labels) == 1.0
    stage = kube.status()["stages"][0]
    assert stage["phase"] == "Succeeded"
    assert stage["message"] == "succeeded in attempt 2"


async def test_bad_input_stops_the_run_with_a_clear_condition(kube):
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        summary = TerminationSummary(
            stage="datagen", status="bad-input", message="record 3: no image"
        )
        await kube.finish_job("demo-datagen-a1", exit_code=65, summary=summary)
        await eventually(lambda: phase(kube) == "Failed", what="run failed")
    status = kube.status()
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BadInput")
    assert "record 3: no image" in failed["message"]
    assert status["stages"][0]["message"] == "attempt 1 failed (exit code 65): record 3: no image"
    assert set(kube.jobs()) == {"demo-datagen-a1"}


async def test_an_operator_restart_mid_run_creates_no_duplicate(kube):
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
    # The operator is down while the Job finishes, then a new one starts and re-reads the Jobs.
    await kube.finish_job("demo-datagen-a1")
    async with running_operator():
        await eventually(lambda: "demo-score-a1" in kube.jobs(), what="score after restart")
    async with running_operator():  # and once more with nothing to do
        await eventually(lambda: kube.status().get("currentStage") == "score", what="status")
    assert sorted(kube.jobs()) == ["demo-score-a1"]  # datagen's, recorded, deleted
    creates = [r for r in kube.posted("/jobs")]
    assert sorted(j["metadata"]["name"] for j in creates) == ["demo-datagen-a1", "demo-score-a1"]


async def test_a_run_suspended_and_resumed(kube):
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        await kube.patch_run("demo", {"spec": {"suspend": True}, "metadata": {"generation": 2}})
        await eventually(lambda: phase(kube) == "Suspended", what="suspended")
        await eventually(lambda: "demo-datagen-a1" not in kube.jobs(), what="the Job deleted")
        suspended = next(c for c in kube.status()["conditions"] if c["type"] == "Suspended")
        assert suspended["status"] == "True"
        await kube.patch_run("demo", {"spec": {"suspend": False}, "metadata": {"generation": 3}})
        await eventually(lambda: "demo-datagen-a2" in kube.jobs(), what="a new attempt")
        await eventually(lambda: phase(kube) == "Running", what="running again")
    stage = kube.status()["stages"][0]
    assert stage["disruptedAttempts"] == [1]
    assert kube.status()["observedGeneration"] == 3


async def test_manual_retry_after_a_permanent_failure(kube):
    async with running_operator():
        await kube.create_run(run_manifest())
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        await kube.finish_job("demo-datagen-a1", exit_code=65)
        await eventually(lambda: phase(kube) == "Failed", what="failed")
        await kube.patch_run("demo", {"metadata": {"annotations": {"mfpo.dev/retry": "1"}}})
        await eventually(lambda: "demo-datagen-a2" in kube.jobs(), what="the retried attempt")
        await eventually(lambda: phase(kube) == "Running", what="running again")
    assert kube.status()["retryToken"] == "1"


def _events(kube: Kube) -> list[dict]:
    return kube.posted("/events")


async def test_a_retry_after_a_backoff_is_started_by_the_ticker_with_its_event_and_counts(kube):
    # With a backoff the retry is not started by the Job event (that reconcile only records the
    # failure): the operator's ticker thread starts it, outside kopf's handler threads.
    retries = {"maxAttempts": 3, "backoffSeconds": 1}
    async with running_operator() as memo:
        await kube.create_run(run_manifest(retries=retries))
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), what="attempt 1")
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        await kube.finish_job("demo-datagen-a1", exit_code=1, now=now)
        await eventually(lambda: "demo-datagen-a2" in kube.jobs(), what="attempt 2")
        restarted = "datagen: attempt 2 restarted (resumes from its checkpoint) as demo-datagen-a2"
        await eventually(
            lambda: any(e.get("message") == restarted for e in _events(kube)),
            what="the restart event, posted from the ticker thread",
        )
        labels = {"namespace": "ml", "run": "demo", "stage": "datagen"}
        registry = memo.metrics.registry
        assert registry.get_sample_value("mfpo_stage_attempts_total", labels) == 2.0
        assert registry.get_sample_value("mfpo_stage_retries_total", labels) == 1.0
    event = next(e for e in _events(kube) if e.get("message") == restarted)
    # As `kubectl describe mfporun demo` lists it: involvedObject is the run.
    assert event["involvedObject"]["kind"] == "MFPORun"
    assert event["involvedObject"]["name"] == "demo"
    assert (event["type"], event["reason"]) == ("Normal", "AttemptStarted")


async def test_events_are_posted_from_a_thread_without_kopf_context(kube):
    # kopf.event reads kopf's context variable settings_var, set only in kopf's own handler
    # tasks (kopf/_core/engines/posting.py: `settings_var.get()`); a plain thread has none.
    outside: list[BaseException] = []

    def call_kopf_event() -> None:
        try:
            kopf.event({}, type="Normal", reason="X", message="y")
        except LookupError as err:
            outside.append(err)

    thread = threading.Thread(target=call_kopf_event)
    thread.start()
    thread.join()
    assert outside, "kopf.event works outside kopf's context: the premise changed"
    async with running_operator() as memo:
        await kube.create_run(run_manifest())
        await eventually(lambda: kube.run(), what="the run")
        body = kube.run()
        # A plain worker thread (not the test's loop: kmock serves from it).
        event = Event("Warning", "Probe", "posted from a plain thread")
        await asyncio.to_thread(memo.operator.post_event, body, event)
        await eventually(
            lambda: any(e.get("reason") == "Probe" for e in _events(kube)), what="the event"
        )
