"""ZeRO-2 across two processes on CPU (torchrun, gloo): the multi-process path of the trainer.

Trains two steps, then resumes both ranks from the first step's checkpoint. The first run
JIT-compiles DeepSpeed's CPU communication op (a few minutes, cached in TORCH_EXTENSIONS_DIR);
later runs take under a minute on two cores.
"""

import json
import shutil
import subprocess
import sys

import pytest
from claimed_prefix import claimed
from mfpo_core.contract import StageConfig


def torchrun_stage(spec, run_dir, tmp_path) -> subprocess.CompletedProcess:
    config = claimed(StageConfig(uid="uid-test", runner="operator", run="r", stage="align-1", run_uri=f"file://{run_dir}", spec=spec))
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "mfpo_runtime.stage", "--config", str(path), "--no-progress"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.deepspeed
def test_zero2_two_processes_train_checkpoint_publish_and_resume(tiny_llava_dir, run_dir, spec_for, tmp_path):
    spec = spec_for(tiny_llava_dir, maxSteps=2, batchSize=1, deepspeedStage=2)
    torchrun_stage(spec, run_dir, tmp_path)
    result = json.loads((run_dir / "align-1" / "result.json").read_text())
    assert result["metrics"]["steps"] == 2
    step = run_dir / "align-1" / "checkpoints" / "step-00000002"
    assert (step / "_COMPLETE").is_file()
    assert (step / "rank-00000" / "_COMPLETE").is_file() and (step / "rank-00001" / "_COMPLETE").is_file()
    assert (run_dir / "align-1" / "policy" / "mfpo_policy.json").is_file()

    # As if killed after step 1's checkpoint: both ranks resume from its ZeRO shards and finish.
    shutil.rmtree(step)
    shutil.rmtree(run_dir / "align-1" / "policy")
    (run_dir / "align-1" / "result.json").unlink()
    resumed = torchrun_stage(spec, run_dir, tmp_path)
    assert resumed.stderr.count("from step 1") == 2, resumed.stderr[-3000:]
    assert json.loads((run_dir / "align-1" / "result.json").read_text())["metrics"]["steps"] == 2
    assert (step / "_COMPLETE").is_file() and (run_dir / "align-1" / "policy" / "mfpo_policy.json").is_file()
