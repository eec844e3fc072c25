"""The real operator (kopf handlers, reconcile, Job builder) against kmock.

The test plays the kubelet and the Job controller (see kube_world.Kube.finish_job)."""

from __future__ import annotations

import kubernetes
import pytest
from kube_world import (
    Kube,
    declare_resources,
    eventually,
    run_manifest,
    running_operator,
    write_kubeconfig,
)
from mfpo_core.contract import TerminationSummary


@pytest.fixture
async def kube(kmock, tmp_path, monkeypatch):
    declare_resources(kmock)
    config = write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    # The kubernetes client reads KUBECONFIG once, at import: point its default at ours.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
    monkeypatch.setenv("MFPO_OPERATOR_TICK_SECONDS", "0.2")
    return Kube(kmock)


def phase(kube: Kube, name: str = "demo") -> str | None:
    return kube.status(name).get("phase")


async def test_a_run_goes_through_its_stages_as_jobs_succeed(kube):
    stages = ["datagen", "score", "align-1", "eval"]
    async with running_operator() as memo:
        await kube.create_run(run_manifest())
        for stage in stages:
            job = f"demo-{stage}-a1"
            await eventually(lambda job=job: job in kube.jobs(), what=f"job {job}")
            metrics = {"eval.align-1.synthetic.chair_s": 0.2} if stage == "eval" else {}
            if stage == "align-1":
                metrics = {"reward_margin.image": 0.5, "reward_margin.text": 0.25}
            summary = TerminationSummary(stage=stage, status="succeeded", metrics=metrics)
            await kube.finish_job(job, summary=summary)
        await eventually(lambda: phase(kube) == "Succeeded", what="run succeeded")
        posted = lambda: {e.get("reason") for e in kube.posted("/events")}
        await eventually(lambda: "RunSucceeded" in posted(), what="the RunSucceeded event")
    status = kube.status()
    assert status["progress"] == "4/4"
    assert [s["phase"] for s in status["stages"]] == ["Succeeded"] * 4
    assert status["stages"][3]["metrics"] == {"eval.align-1.synthetic.chair_s": 0.2}
    assert sorted(kube.jobs()) == sorted(f"demo-{s}-a1" for s in stages)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert set(kube.objects("v1/configmaps")) == {f"demo-{s}-a1-config" for s in stages}
    registry = memo.metrics.registry
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
        stage = kube.status()["stages"][0]
        assert stage["attempts"] == 2 and stage["phase"] == "Running"
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
    assert sorted(kube.jobs()) == ["demo-datagen-a1", "demo-score-a1"]
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
