"""The local runner drives the shared planner with subprocesses: retries, bad input, stop and
resume, recovery after a hard kill. The stage program is a test double (fake_stage.py)."""

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mfpo_core.api import MFPORun
from mfpo_operator.local import (
    LocalRunner,
    MissingInputs,
    _start_ticks,
    format_eval_table,
    load_state,
    visible_gpus,
)

FAKE_STAGE = [sys.executable, str(Path(__file__).with_name("fake_stage.py"))]


def manifest(tmp_path: Path, **spec_overrides) -> MFPORun:
    for local_input in ("model", "data"):  # the runner checks that local inputs exist
        (tmp_path / local_input).mkdir(exist_ok=True)
    spec = {
        "model": {"uri": f"file://{tmp_path}/model"},
        "data": {"uri": f"file://{tmp_path}/data", "format": "synthetic"},
        "storage": {"uri": f"file://{tmp_path}/artifacts"},
        "curriculum": {"stages": 2},
        "retries": {"maxAttempts": 3, "backoffSeconds": 0},
        "resources": {"gpusPerNode": 0},
        **spec_overrides,
    }
    return MFPORun.model_validate(
        {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "demo"}, "spec": spec}
    )


@pytest.fixture
def fake(tmp_path, monkeypatch):
    trace = tmp_path / "trace.txt"
    monkeypatch.setenv("FAKE_STAGE_TRACE", str(trace))

    def script(**behaviour):
        monkeypatch.setenv("FAKE_STAGE_SCRIPT", json.dumps({k.replace("_", "-"): v for k, v in behaviour.items()}))

    def calls():
        return trace.read_text().split() if trace.exists() else []

    return script, calls


def runner(run: MFPORun, out=None) -> LocalRunner:
    return LocalRunner(run, progress=False, stage_command=FAKE_STAGE, out=out or io.StringIO())


def test_every_stage_runs_once_in_order(tmp_path, fake):
    script, calls = fake
    script()
    out = io.StringIO()
    status = runner(manifest(tmp_path), out).run()
    assert status.phase == "Succeeded"
    assert status.progress == "5/5"
    assert [c.rsplit(":", 2)[0] for c in calls()] == ["datagen", "score", "align-1", "align-2", "eval"]
    assert "chair_s" in out.getvalue()  # the summary table of eval metrics


def test_sharded_datagen_runs_every_shard_and_adds_counts(tmp_path, fake):
    script, calls = fake
    script()
    run = manifest(tmp_path, imagePreference={"shards": 3})
    status = runner(run).run()
    assert sorted(c for c in calls() if c.startswith("datagen")) == ["datagen:1:0", "datagen:1:1", "datagen:1:2"]
    assert status.stage("datagen").metrics["records"] == 30.0


def test_a_failed_attempt_is_retried_and_the_run_succeeds(tmp_path, fake):
    script, calls = fake
    script(align_1=["fail", "fail"])
    status = runner(manifest(tmp_path)).run()
    assert status.phase == "Succeeded"
    assert status.stage("align-1").attempts == 3
    assert calls().count("align-2:1:None") == 1


def test_attempts_exhausted_fails_the_run(tmp_path, fake):
    script, calls = fake
    script(score=["fail", "fail", "fail"])
    status = runner(manifest(tmp_path)).run()
    assert status.phase == "Failed"
    assert status.stage("score").attempts == 3
    assert "simulated crash" in status.stage("score").message
    assert not any(c.startswith("align") for c in calls())


def test_bad_input_fails_at_once_with_the_stage_message(tmp_path, fake):
    script, calls = fake
    script(datagen=["bad"])
    status = runner(manifest(tmp_path)).run()
    assert status.phase == "Failed"
    assert status.stage("datagen").attempts == 1
    assert "record 7 has no image" in status.stage("datagen").message
    assert calls() == ["datagen:1:0"]


def test_stop_saves_and_a_second_run_continues_where_it_stopped(tmp_path, fake):
    script, calls = fake
    script(align_1=["hang"])
    first = runner(manifest(tmp_path))
    hanging = Path(str(tmp_path / "trace.txt") + ".hanging")
    stopper = threading.Thread(target=lambda: (_wait_for(hanging), first.request_stop()))
    stopper.start()
    status = first.run()
    stopper.join()
    assert status.phase == "Running"
    recorded = [(a["stage"], a["attempt"], a["exit_code"], a["disrupted"]) for a in load_state(first.run_uri)["attempts"]]
    # The stage saved its checkpoint (exit 75); the stop is a disruption, not the stage's fault.
    assert recorded[-1] == ("align-1", 1, 75, True)

    second = runner(manifest(tmp_path)).run()
    assert second.phase == "Succeeded"
    assert second.stage("align-1").disrupted_attempts == [1]
    assert second.stage("align-1").attempts == 2
    stages = [c.rsplit(":", 2)[0] for c in calls()]
    assert stages == ["datagen", "score", "align-1", "align-1", "align-2", "eval"]


def test_an_attempt_left_running_by_a_killed_runner_is_recovered(tmp_path, fake):
    script, _ = fake
    script()
    run = manifest(tmp_path)
    first = runner(run)
    first.run()
    state = load_state(first.run_uri)
    # Rewrite history: eval was running under a runner that died (kill -9), its process alive.
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    # A process whose pid was recorded but which started later (the pid was reused): untouched.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    eval_record = next(a for a in state["attempts"] if a["stage"] == "eval")
    processes = [[orphan.pid, _start_ticks(orphan.pid)], [bystander.pid, _start_ticks(bystander.pid) - 1]]
    eval_record.update(state="running", exit_code=None, summary=None, finished_at=None, processes=processes)
    state["status"] = None
    Path(first.run_uri.removeprefix("file://"), "_local", "state.json").write_text(json.dumps(state))
    (tmp_path / "artifacts" / "demo" / "eval" / "result.json").unlink()

    status = runner(run).run()
    assert orphan.wait(timeout=10) != 0  # the orphan was stopped before a new attempt started
    assert bystander.poll() is None
    bystander.kill()
    bystander.wait()
    assert status.phase == "Succeeded"
    assert status.stage("eval").attempts == 2
    assert status.stage("eval").disrupted_attempts == [1]


def test_eval_table_puts_base_first():
    table = format_eval_table({"eval.align-3.synthetic.chair_s": 0.1, "eval.base.synthetic.chair_s": 0.4, "loss": 1})
    header, row = table.splitlines()
    assert header.split()[-2:] == ["base", "align-3"]
    assert row.split()[-2:] == ["0.400", "0.100"]


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_failure_message_is_printed_once(tmp_path, fake):
    script, _ = fake
    script(score=["bad"])
    out = io.StringIO()
    status = runner(manifest(tmp_path), out).run()
    assert status.phase == "Failed"
    # The final status names it; the attempt line and the events do not repeat it.
    assert out.getvalue().count("record 7 has no image") == 1
    assert "StageFailed: score failed (BadInput)" in out.getvalue()


def test_retry_of_a_run_that_did_not_fail_changes_nothing(tmp_path, fake):
    script, calls = fake
    script()
    assert runner(manifest(tmp_path)).run().phase == "Succeeded"
    out = io.StringIO()
    status = runner(manifest(tmp_path), out).run(retry=True)
    assert status.phase == "Succeeded"
    assert "is Succeeded, not Failed: nothing to retry" in out.getvalue()
    assert len(calls()) == 5  # no stage ran again


def test_gpus_the_machine_does_not_show_are_refused_before_any_stage(tmp_path: Path) -> None:
    """gpusPerNode defaults to 1: on a machine without a GPU the run stops before datagen and
    score spend their time, naming the field and the fix (the align stage would fail later)."""
    run = manifest(tmp_path, resources={"gpusPerNode": 1})
    with pytest.raises(MissingInputs, match=r"spec.resources.gpusPerNode: 1, but this machine shows no GPU"):
        LocalRunner(run, stage_command=["false"]).run()
    assert not (tmp_path / "artifacts").exists()


def test_visible_gpus_follow_the_driver_and_cuda_visible_devices(tmp_path: Path) -> None:
    for bus in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (tmp_path / bus).mkdir()
    assert visible_gpus({}, tmp_path) == 3
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,2"}, tmp_path) == 2
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == 0
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}, tmp_path) == 1  # CUDA stops at -1
    assert visible_gpus({}, tmp_path / "no-driver") == 0


def test_a_failed_runs_edited_manifest_is_named_and_only_retry_applies_it(tmp_path, fake):
    """Hostile-user report: after data.uri was edited, a plain `mfpo run` re-printed the failure
    of the earlier manifest (quoting the old data.uri) without a word about the edit."""
    script, calls = fake
    script(datagen=["bad"])
    assert runner(manifest(tmp_path)).run().phase == "Failed"
    (tmp_path / "data2").mkdir()
    edited = manifest(tmp_path, data={"uri": f"file://{tmp_path}/data2", "format": "synthetic"})
    notice = "the manifest changed since run demo failed: the failure below is the earlier manifest's"
    for _ in range(2):  # said again while the edit has not been run
        out = io.StringIO()
        assert runner(edited, out).run().phase == "Failed"
        assert notice in out.getvalue() and "with the edited manifest: mfpo run FILE.yaml --retry" in out.getvalue()
    assert len(calls()) == 1  # nothing ran
    out = io.StringIO()
    assert runner(manifest(tmp_path), out).run().phase == "Failed"  # the manifest it failed with
    assert notice not in out.getvalue()
    out = io.StringIO()
    assert runner(edited, out).run(retry=True).phase == "Succeeded"
    assert notice not in out.getvalue()
    assert load_state(f"file://{tmp_path}/artifacts/demo")["spec_sha256"] == runner(edited)._spec_sha256()


def test_a_retried_stages_time_is_its_attempts_not_the_wait_between_them(tmp_path, fake):
    """Hostile-user report: a 7 s retried attempt was shown as 0m41s, the span from the first
    attempt's start (status.stages[].startTime) to the end, the user's editing included."""
    script, _ = fake
    script(datagen=["bad"])
    assert runner(manifest(tmp_path)).run().phase == "Failed"
    time.sleep(6)  # the user reads the error and fixes the data
    out = io.StringIO()
    status = runner(manifest(tmp_path), out).run(retry=True)
    assert status.phase == "Succeeded"
    span = (status.stage("datagen").completion_time - status.stage("datagen").start_time).total_seconds()
    assert span >= 6
    (line,) = [x for x in out.getvalue().splitlines() if x.strip().startswith("datagen ") and "attempts=" in x]
    minutes, seconds = line.split()[3].rstrip("s").split("m")  # "datagen Succeeded attempts=2 0m01s ..."
    assert int(minutes) * 60 + int(seconds) < span - 3, line
