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
from mfpo_runtime.contract import TerminationSummary


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
            await eventually(lambda: job in kube.jobs(), what=f"job {job}")
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
