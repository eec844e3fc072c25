"""End to end: one MFPORun manifest through the local runner and the real runtime stages
(datagen, score, align-1..2, eval) on the synthetic world with a tiny LLaVA, stopped in the
middle of an alignment stage and run again: it resumes from the checkpoint and finishes."""

import threading
import time
from pathlib import Path

import pytest
from mfpo_core.api import MFPORun
from mfpo_operator.local import LocalRunner, load_state
from mfpo_runtime.train.checkpoints import completed_steps

pytestmark = pytest.mark.slow


def quick_manifest(model_dir: Path, world_dir: Path, artifacts: Path) -> MFPORun:
    spec = {
        "model": {"uri": f"file://{model_dir}", "family": "llava", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"uri": f"file://{world_dir}/train", "format": "synthetic"},
        "storage": {"uri": f"file://{artifacts}"},
        "imagePreference": {"shards": 2},
        "curriculum": {"stages": 2, "entropySamples": 2, "maxNewTokens": 6},
        "training": {
            "maxSteps": 40,
            "learningRate": 1e-3,
            "lrScheduler": "constant",
            "warmupRatio": 0.0,
            "batchSize": 2,
            "gradientAccumulation": 1,
            "precision": "fp32",
            "checkpointEverySteps": 1,
            "maxLength": 128,
        },
        "evaluation": {
            "benchmarks": [{"name": "synthetic", "uri": f"file://{world_dir}/eval", "maxSamples": 4}],
            "maxNewTokens": 6,
            "batchSize": 4,
        },
        "resources": {"gpusPerNode": 0},
        "retries": {"maxAttempts": 2, "backoffSeconds": 0},
    }
    return MFPORun.model_validate(
        {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "e2e"}, "spec": spec}
    )


def test_pipeline_stopped_mid_stage_resumes_and_finishes(tiny_llava_dir, world_dir, tmp_path):
    run = quick_manifest(tiny_llava_dir, world_dir, tmp_path / "artifacts")
    first = LocalRunner(run, progress=False)
    align_uri = f"{first.run_uri}/align-1"

    def stop_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 600
        while not completed_steps(align_uri) and time.monotonic() < deadline:
            time.sleep(0.1)
        first.request_stop()

    stopper = threading.Thread(target=stop_after_first_checkpoint, daemon=True)
    stopper.start()
    stopped = first.run()
    stopper.join()
    assert stopped.phase == "Running"
    assert [s.name for s in stopped.stages if s.phase == "Succeeded"] == ["datagen", "score"]
    interrupted = load_state(first.run_uri)["attempts"][-1]
    assert (interrupted["stage"], interrupted["exit_code"], interrupted["disrupted"]) == ("align-1", 75, True)
    saved = completed_steps(align_uri)
    assert saved and max(saved) < 40

    finished = LocalRunner(run, progress=False).run()
    assert finished.phase == "Succeeded", finished.stage("align-1").message
    align = finished.stage("align-1")
    assert align.attempts == 2 and align.disrupted_attempts == [1]
    assert [a["stage"] for a in load_state(first.run_uri)["attempts"]].count("datagen") == 1
    metrics = finished.stage("eval").metrics
    for policy in ("base", "align-2"):
        assert 0.0 <= metrics[f"eval.{policy}.synthetic.chair_i"] <= 1.0
    assert Path(finished.stage("eval").outputs["report"].removeprefix("file://")).is_file()
