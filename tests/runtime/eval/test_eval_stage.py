"""The eval stage through the stage contract: base and aligned policies on the synthetic world
and on small COCO / AMBER / POPE-format samples, with a tiny LLaVA; resume; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import write_amber_sample, write_coco_sample, write_pope_sample
from mfpo_core import ownership, storage
from mfpo_core.api import JUDGE_KEY_VARIABLE, MFPORunSpec
from mfpo_core.contract import ExitCode, StageConfig, eval_result_uri, policy_uri
from mfpo_runtime.eval.common import BenchmarkResult
from mfpo_runtime.metrics import StageMetrics
from mfpo_runtime.stage import StageContext, main, run_stage
from mfpo_runtime.stages import evaluate


def eval_config(tmp_path: Path, model_dir: Path, world_dir: Path, benchmarks: list[dict], **evaluation) -> StageConfig:
    spec = MFPORunSpec.model_validate({
        "model": {"uri": str(model_dir)},
        "data": {"uri": f"file://{world_dir}/train", "format": "synthetic"},
        "storage": {"uri": f"file://{tmp_path}/runs"},
        "curriculum": {"stages": 2},
        "evaluation": {"benchmarks": benchmarks, "maxNewTokens": 5, "batchSize": 4, **evaluation},
        "resources": {"gpusPerNode": 0},
    })  # fmt: skip
    return StageConfig(uid="uid-test", runner="operator", run="demo", stage="eval", run_uri=f"file://{tmp_path}/runs/demo", spec=spec)


def publish_policies(config: StageConfig, model_dir: Path, stages: list[str]) -> None:
    # The tiny model itself stands in for each align stage's published policy (a HF directory),
    # written under the prefix the run's first stage claimed.
    ownership.claim(config.run_uri, config.owner, [])
    for stage in stages:
        storage.publish_dir(model_dir, policy_uri(config.run_uri, stage))


@pytest.mark.slow
def test_eval_stage_on_all_benchmarks(tmp_path: Path, tiny_llava_dir: Path, world_dir: Path):
    benchmarks = [
        {"name": "synthetic", "maxSamples": 2},
        {"name": "object-halbench", "uri": str(write_coco_sample(tmp_path))},
        {"name": "amber", "uri": str(write_amber_sample(tmp_path))},
        {"name": "pope", "uri": str(write_pope_sample(tmp_path)), "pope": {"splits": ["random", "adversarial"]}},
    ]
    config = eval_config(tmp_path, tiny_llava_dir, world_dir, benchmarks)
    publish_policies(config, tiny_llava_dir, ["align-2"])
    result = run_stage(config, progress=False)

    for policy in ("base", "align-2"):
        for bench in ("synthetic", "object-halbench", "amber", "pope"):
            doc = storage.read_json(eval_result_uri(config.run_uri, policy, bench))
            assert doc["policy"] == policy and doc["benchmark"] == bench and doc["samples"]
    assert "align-1" not in json.dumps(result.details["scores"])  # only the last stage by default
    for key in ("eval.base.synthetic.chair_s", "eval.align-2.synthetic.chair_s", "eval.align-2.pope.f1",
                "eval.base.object-halbench.chair_i", "eval.align-2.amber.chair", "eval.align-2.amber.f1"):
        assert 0.0 <= result.metrics[key] <= 1.0, key
    report = storage.read_text(result.outputs["report"])
    assert "| metric | better | base | align-2 |" in report and "## amber" in report
    assert storage.read_bytes(result.outputs["plot"])[:4] == b"\x89PNG"
    assert len(result.summary().encode()) <= 4096


@pytest.mark.slow
def test_eval_stage_resumes_and_exports_gauges(tmp_path: Path, tiny_llava_dir: Path, world_dir: Path):
    config = eval_config(tmp_path, tiny_llava_dir, world_dir,
                         [{"name": "synthetic", "maxSamples": 1, "synthetic": {"reliance": False}}],
                         everyStage=True)  # fmt: skip
    publish_policies(config, tiny_llava_dir, ["align-1", "align-2"])
    # A previous attempt finished align-1: its document is reused, not redone.
    kept = eval_result_uri(config.run_uri, "align-1", "synthetic")
    storage.write_json({"metrics": {"chair_s": 0.25, "well_formed": 1.0}, "flags": []}, kept)
    ctx = StageContext(config=config, work_dir=tmp_path / "work", metrics=StageMetrics.for_config(config),
                       progress=False)  # fmt: skip
    (tmp_path / "work").mkdir()
    outcome = evaluate.run(ctx)
    assert outcome.metrics["eval.align-1.synthetic.chair_s"] == 0.25
    assert storage.read_json(kept) == {"metrics": {"chair_s": 0.25, "well_formed": 1.0}, "flags": []}
    assert list(outcome.details["scores"]) == ["base", "align-1", "align-2"]
    gauge = ctx.metrics.registry.get_sample_value(
        "mfpo_eval_score",
        {"namespace": "default", "run": "demo", "stage": "align-1", "attempt": "1",
         "benchmark": "synthetic", "metric": "chair_s"},
    )  # fmt: skip
    assert gauge == 0.25


def bad_input_summary(config, tmp_path: Path, monkeypatch) -> dict:
    """Run the stage's entry point on `config`; it must exit with the bad-input code. Returns
    the termination summary it wrote."""
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(tmp_path / "termination-log"))
    codes: list[int] = []
    main(["--config", str(path), "--no-progress"], exit=codes.append)
    assert codes == [ExitCode.BAD_INPUT]
    return json.loads((tmp_path / "termination-log").read_text())


def test_missing_policy_is_bad_input_exit_code(tmp_path: Path, tiny_llava_dir: Path, world_dir: Path, monkeypatch):
    config = eval_config(tmp_path, tiny_llava_dir, world_dir, [{"name": "synthetic"}], evaluateBase=False)
    summary = bad_input_summary(config, tmp_path, monkeypatch)
    assert summary["status"] == "bad-input" and "align-2 is not published" in summary["message"]
    assert not storage.exists(f"{config.run_uri}/eval/result.json")


def test_policies_in_run_order(tmp_path: Path, tiny_llava_dir: Path, world_dir: Path):
    config = eval_config(tmp_path, tiny_llava_dir, world_dir, [{"name": "synthetic"}], everyStage=True)
    assert [name for name, _ in evaluate.policies(config)] == ["base", "align-1", "align-2"]
    assert evaluate.policies(config)[2][1] == f"{config.run_uri}/align-2/policy"


def test_two_entries_of_one_benchmark_keep_their_own_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Two POPE entries on different data: each is written and read back under its own label
    # (before labels, the second entry read back the first one's result document).
    config = eval_config(tmp_path, tmp_path / "model", tmp_path / "world", [
        {"name": "pope", "uri": "file:///bench/pope-coco", "label": "pope-coco"},
        {"name": "pope", "uri": "file:///bench/pope-gqa", "label": "pope-gqa"},
    ])  # fmt: skip
    scored = {"file:///bench/pope-coco": 0.8, "file:///bench/pope-gqa": 0.6}
    monkeypatch.setattr(evaluate.VLMPolicy, "load", lambda *a, **k: "policy stand-in")
    monkeypatch.setattr(evaluate, "run_benchmark", lambda policy, bench, env: BenchmarkResult({"f1": scored[bench.uri]}))
    ctx = StageContext(config=config, work_dir=tmp_path, metrics=StageMetrics.for_config(config), progress=False)
    expected = {"pope-coco": 0.8, "pope-gqa": 0.6}
    for _ in range(2):  # computed, then read back from the result documents
        out = evaluate.evaluate_policy(ctx, "base", "file:///models/base", evaluate._env(ctx))
        assert {label: r["metrics"]["f1"] for label, r in out.items()} == expected
    for label, f1 in expected.items():
        assert storage.read_json(eval_result_uri(config.run_uri, "base", label))["metrics"] == {"f1": f1}


def test_a_judge_secret_whose_key_is_absent_fails_the_eval_stage_at_its_start(tmp_path: Path, monkeypatch):
    """Before: the judge was called without a key after every policy had been generated for,
    and its refusal was a retried failure, in the run's last stage."""
    monkeypatch.delenv(JUDGE_KEY_VARIABLE, raising=False)
    judged = {"name": "object-halbench", "uri": "file:///bench/coco", "objectHalbench": {
        "judge": "llm", "judgeUrl": "https://judge.example.net/v1", "judgeModel": "m",
        "judgeSecretRef": {"name": "judge", "key": "api-key"}}}  # fmt: skip
    config = eval_config(tmp_path, tmp_path / "model", tmp_path / "world", [judged])
    message = bad_input_summary(config, tmp_path, monkeypatch)["message"]
    assert message == (
        "spec.evaluation.benchmarks[0].objectHalbench.judgeSecretRef: the judge's key is not in this stage's "
        "environment as MFPO_JUDGE_API_KEY: the Secret 'judge' has no key 'api-key', or it is empty (in a "
        "local run: export MFPO_JUDGE_API_KEY)"
    )
    assert not storage.exists(f"{config.run_uri}/eval")  # nothing evaluated
