"""stage.py: `mfpo-stage --config` through a test double stage registered in STAGE_MODULES.

Checks the contract's behaviour, not any real stage: idempotent re-runs, the result document,
the termination summary and the exit code for success, bad input, preemption and crashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import types
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from foundation_s3 import free_port
from mfpo_core import s3_backend, storage
from mfpo_core.contract import BadInput, StageConfig, StageInterrupted, result_uri
from mfpo_runtime import stage
from mfpo_runtime.stage import StageContext, StageOutcome

DOUBLE_MODULE = "mfpo_test_double_stage"  # a test double: no real stage is involved


class StageDouble:
    """Records each call; `behaviour(ctx)` decides what the stage does."""

    def __init__(self) -> None:
        self.calls: list[StageContext] = []
        self.behaviour: Callable[[StageContext], StageOutcome] = lambda ctx: StageOutcome(
            metrics={"loss.text": 0.25}, outputs={"policy": f"{ctx.config.stage_uri}/policy"}
        )

    def run(self, ctx: StageContext) -> StageOutcome:
        self.calls.append(ctx)
        return self.behaviour(ctx)


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> StageDouble:
    fake = StageDouble()
    module = types.ModuleType(DOUBLE_MODULE)
    module.run = fake.run
    monkeypatch.setitem(sys.modules, DOUBLE_MODULE, module)
    for kind in ("datagen", "align", "eval"):
        monkeypatch.setitem(stage.STAGE_MODULES, kind, DOUBLE_MODULE)
    return fake


@pytest.fixture
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(path))
    monkeypatch.delenv("MFPO_METRICS_PORT", raising=False)
    monkeypatch.delenv("MFPO_PUSHGATEWAY", raising=False)
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    return path


def write_config(
    tmp_path: Path, stage_name: str = "align-1", runs_uri: str | None = None, **spec_extra
) -> tuple[Path, str]:
    runs_uri = runs_uri or f"file://{tmp_path}/runs"
    run_uri = f"{runs_uri}/demo"
    spec = {
        "model": {"uri": "file:///models/tiny"},
        "data": {"uri": "file:///data/train", "format": "synthetic"},
        "storage": {"uri": runs_uri},
        **spec_extra,
    }
    config = StageConfig(uid="uid-test", runner="operator", run="demo", stage=stage_name, run_uri=run_uri, spec=spec)
    path = tmp_path / f"{stage_name}.json"
    path.write_text(config.to_json())
    return path, run_uri


def run_main(config: Path | str, *extra: str) -> int:
    codes: list[int] = []
    stage.main(["--config", str(config), "--no-progress", *extra], exit=codes.append)
    assert len(codes) == 1
    return codes[0]


def summary(termination_log: Path) -> dict:
    return json.loads(termination_log.read_text())


def test_success_writes_result_and_summary(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    config, run_uri = write_config(tmp_path)

    assert run_main(config) == 0

    result = storage.read_json(result_uri(run_uri, "align-1"))
    assert (result["stage"], result["attempt"], result["metrics"]) == (
        "align-1",
        1,
        {"loss.text": 0.25},
    )
    assert summary(termination_log) == {
        "stage": "align-1",
        "status": "succeeded",
        "metrics": {"loss.text": 0.25},
        "outputs": {"policy": f"{run_uri}/align-1/policy"},
    }
    ctx = double.calls[0]
    assert (
        ctx.shard is None
        and ctx.progress is False
        and ctx.work_dir.name.startswith("mfpo-align-1-")
    )
    assert not ctx.work_dir.exists()  # scratch space is removed afterwards


def test_rerun_of_a_done_stage_returns_at_once(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    config, _ = write_config(tmp_path)
    assert run_main(config) == 0
    termination_log.unlink()

    assert run_main(config) == 0

    assert len(double.calls) == 1  # the stage did not run again
    assert summary(termination_log)["metrics"] == {"loss.text": 0.25}


def test_bad_input_exits_65_and_is_not_retried(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    def refuse(ctx: StageContext) -> StageOutcome:
        raise BadInput("data.uri: record 7 has no image")

    double.behaviour = refuse
    config, run_uri = write_config(tmp_path)

    assert run_main(config) == 65

    assert summary(termination_log) == {
        "stage": "align-1",
        "status": "bad-input",
        "metrics": {},
        "outputs": {},
        "message": "data.uri: record 7 has no image",
    }
    assert not storage.exists(result_uri(run_uri, "align-1"))


def test_an_invalid_config_is_bad_input_naming_the_field(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    config, _ = write_config(tmp_path)
    doc = json.loads(config.read_text())
    doc["spec"]["objective"] = {"beta": -1}
    config.write_text(json.dumps(doc))

    assert run_main(config) == 65

    message = summary(termination_log)["message"]
    assert "spec.objective.beta: Input should be greater than 0" in message
    assert summary(termination_log)["stage"] == "unknown"  # the config could not say which
    assert run_main(tmp_path / "missing.json") == 65
    assert "cannot read the stage config" in summary(termination_log)["message"]
    assert double.calls == []


def test_sigterm_asks_the_stage_to_stop_and_exits_75(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    def preempted(ctx: StageContext) -> StageOutcome:
        assert not ctx.stop_requested
        os.kill(os.getpid(), signal.SIGTERM)  # what the kubelet sends on preemption
        assert ctx.stop_requested
        raise StageInterrupted("checkpoint saved at step 40")

    double.behaviour = preempted
    config, run_uri = write_config(tmp_path)
    handler_before = signal.getsignal(signal.SIGTERM)

    assert run_main(config) == 75

    assert summary(termination_log)["status"] == "preempted"
    assert summary(termination_log)["message"] == "checkpoint saved at step 40"
    assert signal.getsignal(signal.SIGTERM) is handler_before  # restored
    assert not storage.exists(result_uri(run_uri, "align-1"))


def test_any_other_failure_is_retryable(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    def crash(ctx: StageContext) -> StageOutcome:
        raise RuntimeError("CUDA error: an illegal memory access")

    double.behaviour = crash
    config, _ = write_config(tmp_path)

    assert run_main(config) == 1

    assert summary(termination_log)["status"] == "retryable"
    assert (
        summary(termination_log)["message"] == "RuntimeError: CUDA error: an illegal memory access"
    )


def test_datagen_shard_from_the_job_completion_index(
    double: StageDouble, termination_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, run_uri = write_config(tmp_path, "datagen", imagePreference={"shards": 4})
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")

    assert run_main(config) == 0

    assert double.calls[0].shard == (2, 4)
    assert storage.exists(result_uri(run_uri, "datagen", (2, 4)))
    assert not storage.exists(result_uri(run_uri, "datagen", (0, 4)))


def test_shard_index_outside_the_shards_is_bad_input(
    double: StageDouble, termination_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = write_config(tmp_path, "datagen", imagePreference={"shards": 2})
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "5")

    assert run_main(config) == 65
    assert summary(termination_log)["message"] == (
        "shard index 5 is outside 0..1 (imagePreference.shards)"
    )


def test_a_missing_bucket_is_bad_input_not_retried(
    s3_env: str, double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    """A storage.uri naming a bucket that does not exist cannot be fixed by a retry."""
    runs_uri = "s3://no-such-bucket/runs"
    config, _ = write_config(tmp_path, runs_uri=runs_uri, storage={"uri": runs_uri, "endpoint": s3_env})

    assert run_main(config) == 65

    assert "bucket 'no-such-bucket' does not exist" in summary(termination_log)["message"]
    assert double.calls == []


def scrape(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_a_metrics_port_in_use_is_a_warning_not_a_failure(
    double: StageDouble, termination_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, run_uri = write_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        monkeypatch.setenv("MFPO_METRICS_PORT", str(taken.getsockname()[1]))
        with caplog.at_level(logging.WARNING, logger="mfpo.metrics"):
            assert run_main(config) == 0

    assert "metrics not served: cannot listen on 0.0.0.0" in caplog.text
    assert summary(termination_log)["status"] == "succeeded"
    assert storage.exists(result_uri(run_uri, "align-1"))


@pytest.mark.parametrize("how", ["env", "flag"])
def test_the_metrics_address_is_configurable(
    how: str, double: StageDouble, termination_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound to 127.0.0.2 (loopback too on Linux), the port is not open on 127.0.0.1."""
    port = free_port()
    monkeypatch.setenv("MFPO_METRICS_PORT", str(port))
    seen: dict[str, object] = {}

    def scraped(ctx: StageContext) -> StageOutcome:
        ctx.metrics.inc("mfpo_train_steps_total")
        seen["bound"] = scrape("127.0.0.2", port)
        with pytest.raises(urllib.error.URLError):
            scrape("127.0.0.1", port)
        return StageOutcome()

    double.behaviour = scraped
    config, _ = write_config(tmp_path)
    if how == "env":
        monkeypatch.setenv("MFPO_METRICS_ADDRESS", "127.0.0.2")
        assert run_main(config) == 0
    else:
        assert run_main(config, "--metrics-address", "127.0.0.2") == 0

    assert 'mfpo_train_steps_total{attempt="1",namespace="default",run="demo",stage="align-1"} 1.0' in str(
        seen["bound"]
    )
    with socket.socket() as again:  # no longer listening once the stage ended
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the scrape's TIME_WAIT
        again.bind(("127.0.0.2", port))


TORCHRUN_DOUBLE = """
    import os, sys, time, urllib.request
    from pathlib import Path
    import torch.distributed as dist
    from mfpo_core.contract import BadInput
    from mfpo_runtime import stage
    from mfpo_runtime.stage import StageOutcome

    def run(ctx):
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        if os.environ["SCENARIO"] == "bad-input-on-rank-1":
            if rank == 1:
                raise BadInput("data.uri: record 7 has no image")
            log = Path(os.environ["MFPO_TERMINATION_LOG"])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (log.exists() and log.read_text()):
                time.sleep(0.05)
            raise RuntimeError("Connection closed by peer")  # what rank 0 sees next
        dist.barrier()  # every rank is past the runner's metrics server start
        if rank == 0:
            url = f"http://127.0.0.1:{os.environ['MFPO_METRICS_PORT']}/metrics"
            Path(os.environ["SCRAPE_FILE"]).write_text(urllib.request.urlopen(url, timeout=5).read().decode())
        dist.barrier()
        dist.destroy_process_group()
        if rank == 1:
            time.sleep(0.5)  # finishes last: its summary would overwrite rank 0's
        return StageOutcome(metrics={"rank": float(rank)})

    sys.modules["torchrun_double"] = sys.modules[__name__]
    stage.STAGE_MODULES["align"] = "torchrun_double"
    stage.main()
"""


def torchrun_double(tmp_path: Path, termination_log: Path, scenario: str) -> tuple[subprocess.CompletedProcess, str]:
    """Runs the test double stage as two ranks of one pod (torchrun, gloo, CPU); returns the run URI too."""
    script = tmp_path / "double_stage.py"
    script.write_text(textwrap.dedent(TORCHRUN_DOUBLE))
    config, run_uri = write_config(tmp_path)
    env = {
        **os.environ,
        "SCENARIO": scenario,
        "MFPO_METRICS_PORT": str(free_port()),
        "MFPO_TERMINATION_LOG": str(termination_log),
        "SCRAPE_FILE": str(tmp_path / "scrape.txt"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), "--config", str(config), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc, run_uri


def test_under_torchrun_one_rank_serves_metrics_and_writes_the_summary(
    termination_log: Path, tmp_path: Path
) -> None:
    proc, run_uri = torchrun_double(tmp_path, termination_log, "ok")

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Address already in use" not in proc.stderr
    assert "mfpo_train_steps_total" in (tmp_path / "scrape.txt").read_text()  # rank 0 scraped it
    assert summary(termination_log) == {
        "stage": "align-1", "status": "succeeded", "metrics": {"rank": 0.0}, "outputs": {},
    }  # fmt: skip
    assert storage.read_json(result_uri(run_uri, "align-1"))["metrics"] == {"rank": 0.0}


def test_under_torchrun_bad_input_on_another_rank_is_the_summary(termination_log: Path, tmp_path: Path) -> None:
    """torchrun exits 1 whatever its workers' codes: the summary alone says "do not retry"."""
    proc, _ = torchrun_double(tmp_path, termination_log, "bad-input-on-rank-1")

    assert proc.returncode == 1
    assert summary(termination_log) == {
        "stage": "align-1", "status": "bad-input", "metrics": {}, "outputs": {},
        "message": "data.uri: record 7 has no image",
    }  # fmt: skip

@pytest.fixture
def torch_threads(monkeypatch: pytest.MonkeyPatch):
    """Restores torch's thread count and the OpenMP variable the stage sets in this process."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # restored by monkeypatch after the test
    yield torch
    torch.set_num_threads(before)


@pytest.mark.parametrize(("env", "expected"), [({"MFPO_THREADS": "3"}, 3), ({"LOCAL_WORLD_SIZE": "2"}, 2)])
def test_the_stage_takes_its_share_of_the_cpus(
    env: dict[str, str], expected: int, double: StageDouble, termination_log: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, torch_threads,
) -> None:
    """MFPO_THREADS wins; else the available CPUs (4 by the test double) over the pod's ranks."""
    monkeypatch.setattr(stage.cpus, "available_cpus", lambda root=None: 4)
    monkeypatch.delenv("OMP_NUM_THREADS")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen: list[tuple[int, str]] = []
    double.behaviour = lambda ctx: seen.append((torch_threads.get_num_threads(), os.environ["OMP_NUM_THREADS"])) or StageOutcome()
    config, _ = write_config(tmp_path)

    assert run_main(config) == 0
    assert seen == [(expected, str(expected))]


def test_a_bad_thread_count_is_bad_input(
    double: StageDouble, termination_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_threads
) -> None:
    monkeypatch.setenv("MFPO_THREADS", "-2")
    config, _ = write_config(tmp_path)

    assert run_main(config) == 65
    assert summary(termination_log)["message"] == "MFPO_THREADS='-2': expected a positive number of threads"
    assert double.calls == []


def test_a_corrupt_artifact_is_not_retried_and_names_the_object(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    """Fetched twice with the same wrong digest: every further attempt would read the same
    bytes, so the stage fails for good, saying which object is corrupt."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "adapter.bin").write_bytes(b"weights")
    policy = f"file://{tmp_path}/published/policy"
    storage.publish_dir(tmp_path / "policy", policy)
    (tmp_path / "published" / "policy" / "adapter.bin").write_bytes(b"bitrot!")  # at rest
    double.behaviour = lambda ctx: storage.fetch_dir(policy, ctx.work_dir / "policy")
    config, _ = write_config(tmp_path)

    assert run_main(config) == 65

    expected, actual = hashlib.sha256(b"weights").hexdigest(), hashlib.sha256(b"bitrot!").hexdigest()
    assert summary(termination_log)["status"] == "bad-input"
    assert summary(termination_log)["message"] == (
        f"corrupt object, not retried: checksum mismatch for {policy}/adapter.bin: "
        f"expected sha256 {expected}, got sha256 {actual}"
    )


def test_an_unreachable_endpoint_is_one_retryable_line_without_traceback(
    s3_env: str, double: StageDouble, termination_log: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    dead = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("MFPO_S3_ENDPOINT", dead)
    runs_uri = "s3://mfpo/runs"
    config, _ = write_config(tmp_path, runs_uri=runs_uri, storage={"uri": runs_uri, "endpoint": dead})

    assert run_main(config) == 1

    message = (
        f"cannot reach S3 endpoint http://{dead} for s3://mfpo/runs/demo/_owner.json "
        f"after {s3_backend.MAX_RETRIES} retries: cannot connect: [Errno 111] Connection refused"
    )
    assert summary(termination_log)["message"] == message
    logged = [r.getMessage() for r in caplog.records if r.name == "mfpo.stage"]
    assert logged == [f"stage failed (retryable): {message}"]  # no traceback


def test_a_cpu_stage_runs_with_deterministic_kernels(
    double: StageDouble, termination_log: Path, tmp_path: Path
) -> None:
    """Same seed, same thread count, same numbers: what bench_ablations' reruns rely on."""
    import torch

    seen: list[tuple[bool, bool]] = []

    def record(ctx: StageContext) -> StageOutcome:
        seen.append(
            (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            )
        )
        return StageOutcome(metrics={}, outputs={})

    double.behaviour = record
    config, _ = write_config(tmp_path)
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    try:
        assert run_main(config) == 0
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])
    assert seen == [(not torch.cuda.is_available(), not torch.cuda.is_available())]
