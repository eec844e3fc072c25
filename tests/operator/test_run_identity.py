"""The real operator against kmock, with a kubelet that runs each Job's stage config (its
ConfigMap) through the real stage runner, a test double as the stage: a run deleted with its
artifacts kept (deleteOnRunDeletion defaults to false) and created again under its name is
another run (another uid), and its first stage refuses the prefix instead of the new run
reporting the old one's results as its own. Attempts of one run carry on across an operator
restart.

The operator deletes an attempt's Job and ConfigMap once its outcome is recorded in status, so
the kubelet keeps each stage config it ran (`kubelet.configs`) for the tests to read.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from kube_world import NS, Kube, eventually, run_manifest, running_operator
from mfpo_core import storage
from mfpo_core.contract import StageConfig, TerminationSummary, owner_uri, result_uri
from mfpo_runtime import stage
from mfpo_runtime.stage import StageOutcome

DOUBLE = "mfpo_test_kubelet_double"
STAGES = ["datagen", "score", "align-1", "eval"]


@pytest.fixture
def kubelet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Runs a Job as its pod would: `mfpo-stage --config <its ConfigMap's stage.json>`."""
    module = types.ModuleType(DOUBLE)
    module.run = lambda ctx: StageOutcome(metrics={"uid": float(ctx.config.uid == "uid-first")})
    monkeypatch.setitem(sys.modules, DOUBLE, module)
    for kind in stage.STAGE_MODULES:
        monkeypatch.setitem(stage.STAGE_MODULES, kind, DOUBLE)
    monkeypatch.setattr(stage, "limit_threads", lambda: 1)
    monkeypatch.setattr(stage, "deterministic_on_cpu", lambda: False)
    log = tmp_path / "termination-log"
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(log))

    async def run_job(kube: Kube, job: str) -> tuple[int, TerminationSummary]:
        document = kube.objects("v1/configmaps")[f"{job}-config"]["data"]["stage.json"]
        run_job.configs[job] = StageConfig.from_json(document)  # type: ignore[attr-defined]
        path = tmp_path / f"{job}.json"
        path.write_text(document)
        log.unlink(missing_ok=True)
        codes: list[int] = []
        # In this thread: the stage installs its SIGTERM handler, which only the main thread may.
        # kmock's answers to the operator wait the few milliseconds it takes.
        stage.main(["--config", str(path), "--no-progress"], exit=codes.append)
        summary = TerminationSummary.decode(log.read_text())
        await kube.finish_job(job, exit_code=codes[0], summary=summary)
        return codes[0], summary

    run_job.configs = {}  # type: ignore[attr-defined]  # job -> the StageConfig it ran
    return run_job


async def _garbage_collect(kube: Kube, run: str) -> None:
    """What the API server's garbage collector does once the run is gone: its owned objects go."""
    for resource, path in (("batch/v1/jobs", f"/apis/batch/v1/namespaces/{NS}/jobs"),
                           ("v1/configmaps", f"/api/v1/namespaces/{NS}/configmaps"),
                           ("v1/pods", f"/api/v1/namespaces/{NS}/pods")):  # fmt: skip
        for name in list(kube.objects(resource)):
            if name.startswith(f"{run}-"):
                await kube.kmock.delete(f"{path}/{name}")


async def test_a_run_created_again_under_its_name_is_refused_the_old_runs_results(kube, kubelet, tmp_path):
    storage_spec = {"uri": f"file://{tmp_path}/runs"}
    first = run_manifest("first", storage=storage_spec)
    first["metadata"]["uid"] = "uid-first"
    async with running_operator():
        await kube.create_run(first)
        for name in STAGES:
            job = f"first-{name}-a1"
            await eventually(lambda job=job: job in kube.jobs(), what=f"job {job}")
            assert (await kubelet(kube, job))[0] == 0
        await eventually(lambda: kube.status("first").get("phase") == "Succeeded", what="the first run succeeded")
    assert "first-eval-a1-config" not in kube.objects("v1/configmaps")  # deleted once recorded
    config = kubelet.configs["first-eval-a1"]
    assert (config.uid, config.runner, config.namespace) == ("uid-first", "operator", NS)

    await kube.kmock.delete(f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/first")
    await _garbage_collect(kube, "first")
    again = run_manifest("first", storage=storage_spec, objective={"beta": 0.5})
    again["metadata"]["uid"] = "uid-again"
    async with running_operator():  # a restarted operator, too
        await kube.create_run(again)
        await eventually(lambda: "first-datagen-a1" in kube.jobs(), what="the new run's first Job")
        code, summary = await kubelet(kube, "first-datagen-a1")
        await eventually(lambda: kube.status("first").get("phase") == "Failed", what="the new run failed")
    assert code == 65 and summary.status == "bad-input"
    failed = next(c for c in kube.status("first")["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BadInput"
    assert (
        f"the storage prefix file://{tmp_path}/runs/first belongs to MFPORun {NS}/first (uid uid-first), not to "
        f"this run, MFPORun {NS}/first (uid uid-again)"
    ) in failed["message"]
    assert set(kube.jobs()) == {"first-datagen-a1"}  # never retried: bad input
    run_uri = f"file://{tmp_path}/runs/first"
    assert storage.read_json(owner_uri(run_uri))["owner"]["uid"] == "uid-first"
    assert storage.read_json(result_uri(run_uri, "eval"))["metrics"] == {"uid": 1.0}


async def test_an_attempt_after_an_operator_restart_carries_on_with_the_runs_artifacts(kube, kubelet, tmp_path):
    run = run_manifest("first", storage={"uri": f"file://{tmp_path}/runs"})
    run["metadata"]["uid"] = "uid-first"
    async with running_operator():
        await kube.create_run(run)
        await eventually(lambda: "first-datagen-a1" in kube.jobs(), what="datagen")
        assert (await kubelet(kube, "first-datagen-a1"))[0] == 0
        await eventually(lambda: "first-score-a1" in kube.jobs(), what="score")
        await kube.finish_job("first-score-a1", exit_code=1)  # a crash: retried
    async with running_operator():
        await eventually(lambda: "first-score-a2" in kube.jobs(), what="score, attempt 2")
        assert (await kubelet(kube, "first-score-a2"))[0] == 0
        for name in STAGES[2:]:
            job = f"first-{name}-a1"
            await eventually(lambda job=job: job in kube.jobs(), what=job)
            assert (await kubelet(kube, job))[0] == 0
        await eventually(lambda: kube.status("first").get("phase") == "Succeeded", what="succeeded")
    assert set(kubelet.configs) == {"first-datagen-a1", "first-score-a2", *(f"first-{n}-a1" for n in STAGES[2:])}
    assert {config.uid for config in kubelet.configs.values()} == {"uid-first"}
