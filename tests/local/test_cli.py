"""`mfpo` as a user runs it: real processes (fake_cli.py is the real CLI with the test-double
stage program), their exit codes, messages, locks and signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

FAKE_CLI = [sys.executable, str(Path(__file__).with_name("fake_cli.py"))]


def write_manifest(directory: Path, *, data_format: str = "synthetic", storage_uri: str | None = None) -> Path:
    """A manifest whose local paths are relative to its own directory (file://./...)."""
    (directory / "model").mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    doc = {
        "apiVersion": "mfpo.dev/v1alpha1",
        "kind": "MFPORun",
        "metadata": {"name": "demo"},
        "spec": {
            "model": {"uri": "file://./model"},
            "data": {"uri": "file://./data", "format": data_format},
            "storage": {"uri": storage_uri or "file://./artifacts"},
            "curriculum": {"stages": 2},
            "retries": {"maxAttempts": 2, "backoffSeconds": 0},
            "resources": {"gpusPerNode": 0},
        },
    }
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def env(tmp_path):
    trace = tmp_path / "trace.txt"
    environ = {**os.environ, "FAKE_STAGE_TRACE": str(trace)}

    def script(**behaviour):
        environ["FAKE_STAGE_SCRIPT"] = json.dumps({k.replace("_", "-"): v for k, v in behaviour.items()})

    return environ, script, trace


def mfpo(args, environ, cwd, timeout=60):
    return subprocess.run([*FAKE_CLI, *args], env=environ, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def start(args, environ, cwd):
    return subprocess.Popen([*FAKE_CLI, *args], env=environ, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_runner_is_refused_and_ctrl_c_exits_130(tmp_path, env):
    environ, script, trace = env
    manifest = write_manifest(tmp_path)
    script(align_1=["hang"])
    first = start(["run", str(manifest)], environ, tmp_path)
    hanging = Path(f"{trace}.hanging")
    wait_for(hanging)

    status = mfpo(["status", str(manifest)], environ, tmp_path)
    assert f"being run by pid {first.pid}" in status.stdout

    second = mfpo(["run", str(manifest)], environ, tmp_path)
    assert second.returncode == 75, second.stderr
    assert "already being run by another `mfpo run`" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert first.poll() is None  # the first runner and its stage were left alone
    assert trace.read_text().split().count("align-1:1:None") == 1

    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=30)
    assert first.returncode == 130
    assert f"to continue run demo where it stopped: mfpo run {manifest}" in out
    status = mfpo(["status", str(manifest)], environ, tmp_path)
    assert f"no runner is active: `mfpo run {manifest}` continues it" in status.stdout
    hanging.unlink()

    script()  # the next runner takes the lock (released by the first) and finishes
    third = mfpo(["run", str(manifest)], environ, tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert not (tmp_path / "artifacts/demo/_local/lock.json").exists()


def test_a_lock_left_by_a_killed_runner_is_taken_over(tmp_path, env):
    environ, script, trace = env
    manifest = write_manifest(tmp_path)
    script(align_1=["hang"])
    first = start(["run", str(manifest)], environ, tmp_path)
    wait_for(Path(f"{trace}.hanging"))
    lock = json.loads((tmp_path / "artifacts/demo/_local/lock.json").read_text())
    assert lock["pid"] == first.pid
    first.kill()  # kill -9: no cleanup, the lock stays behind
    first.communicate()

    script()
    second = mfpo(["run", str(manifest)], environ, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Succeeded" in second.stdout


def test_a_failed_run_is_retried_with_the_command_it_names(tmp_path, env):
    environ, script, trace = env
    manifest = write_manifest(tmp_path)
    script(score=["bad"])
    failed = mfpo(["run", str(manifest)], environ, tmp_path)
    assert failed.returncode == 1
    assert f"mfpo run {manifest} --retry" in failed.stdout

    again = mfpo(["run", str(manifest)], environ, tmp_path)  # without --retry: still Failed
    assert again.returncode == 1
    assert trace.read_text().split().count("score:1:None") == 1

    retried = mfpo(["retry", str(manifest)], environ, tmp_path)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "RetryRequested" in retried.stdout
    assert "score:2:None" in trace.read_text().split()
    assert trace.read_text().split().count("datagen:1:0") == 1  # the finished stage is not redone


def test_missing_inputs_are_named_before_anything_starts(tmp_path, env):
    environ, _, trace = env
    manifest = write_manifest(tmp_path)
    (tmp_path / "data").rmdir()
    result = mfpo(["run", str(manifest)], environ, tmp_path)
    assert result.returncode == 2
    assert f"spec.data.uri: file://{tmp_path}/data does not exist" in result.stderr
    assert "run `make demo` (or `mfpo demo`) first to create the world and the base model" in result.stderr
    assert not trace.exists()  # no stage ran
    assert not (tmp_path / "artifacts").exists()  # no state, no lock: nothing to block a later run


def test_the_demo_retries_a_quickstart_that_failed_before(tmp_path, env, monkeypatch):
    from mfpo_operator import demo, local
    from mfpo_operator.validation import load_manifest

    environ, _, _ = env
    fake_stage = [sys.executable, str(Path(__file__).with_name("fake_stage.py"))]
    monkeypatch.setitem(local.LocalRunner.__init__.__kwdefaults__, "stage_command", fake_stage)
    monkeypatch.setenv("FAKE_STAGE_TRACE", environ["FAKE_STAGE_TRACE"])
    manifest = load_manifest(write_manifest(tmp_path))
    monkeypatch.setenv("FAKE_STAGE_SCRIPT", json.dumps({"datagen": ["bad"]}))
    assert local.LocalRunner(manifest, progress=False).run().phase == "Failed"
    monkeypatch.setenv("FAKE_STAGE_SCRIPT", "{}")
    assert demo._run(manifest, progress=False) == 0


def test_status_resolves_relative_uris_against_the_manifest_and_shows_times_and_results(tmp_path, env):
    environ, script, _ = env
    manifest = write_manifest(tmp_path)
    script()
    assert mfpo(["run", str(manifest)], environ, tmp_path).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = mfpo(["status", str(manifest)], environ, elsewhere)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("run demo: Succeeded (5/5)")
    assert f"file://{tmp_path}/artifacts/demo" in lines[0]
    datagen = next(line for line in lines if line.split()[0] == "datagen")
    assert "records=10" in datagen
    assert any(word.endswith("s") and word[0].isdigit() for word in datagen.split())  # e.g. 0m01s


def test_status_of_a_bad_manifest_is_one_line_without_traceback(tmp_path, env):
    environ, _, _ = env
    path = tmp_path / "bad.yaml"
    path.write_text(write_manifest(tmp_path).read_text().replace("stages: 2", "stages: two"))
    result = mfpo(["status", str(path)], environ, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "spec.curriculum.stages" in result.stderr
    assert result.stderr.startswith("error: ")


def test_status_into_a_closed_pipe_stops_quietly(tmp_path, env):
    environ, script, _ = env
    manifest = write_manifest(tmp_path)
    script()
    assert mfpo(["run", str(manifest)], environ, tmp_path).returncode == 0
    # `mfpo status run.yaml | head -0`: the reader is gone before anything is written.
    reader, writer = os.pipe()
    os.close(reader)
    result = subprocess.run([*FAKE_CLI, "status", str(manifest)], env=environ, cwd=tmp_path, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    os.close(writer)
    assert result.stderr == ""
    assert result.returncode == 128 + signal.SIGPIPE


def test_stages_get_no_progress_when_stdout_is_not_a_terminal(tmp_path, env):
    environ, script, trace = env
    manifest = write_manifest(tmp_path)
    script()
    result = mfpo(["run", str(manifest)], environ, tmp_path)  # stdout is a pipe
    assert result.returncode == 0
    flags = Path(f"{trace}.flags").read_text().splitlines()
    assert flags and all(line == "--no-progress" for line in flags)
    assert "\r" not in result.stdout


@pytest.mark.parametrize("program", ["mfpo_operator.cli", "mfpo_operator.kube.main"])
def test_version(program):
    result = subprocess.run([sys.executable, "-m", program, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    from importlib.metadata import version

    assert result.stdout.split()[-1] == version("mfpo")


def test_operator_without_any_kubeconfig_exits_with_one_line(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    environ["HOME"] = str(tmp_path)  # no ~/.kube/config
    result = subprocess.run(
        [sys.executable, "-m", "mfpo_operator.kube.main", "--metrics-port", "0", "--liveness", ""],
        env=environ, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no Kubernetes credentials" in result.stderr and "KUBECONFIG" in result.stderr


def test_a_failed_demo_step_is_one_error_line_not_a_traceback(tmp_path):
    # The world generator cannot write under /proc: it fails and prints its own error; the
    # demo adds one line naming the step, not a CalledProcessError traceback of its own.
    (tmp_path / "examples").mkdir()
    quickstart = (Path(__file__).parents[2] / "examples" / "quickstart.yaml").read_text()
    (tmp_path / "examples" / "quickstart.yaml").write_text(
        quickstart.replace("file://../runs/quickstart/world/train", "file:///proc/mfpo/world/train")
    )
    result = subprocess.run(
        [sys.executable, "-m", "mfpo_operator.cli", "demo", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: synthetic world failed (exit 1); its error is printed above" in result.stderr
    assert "CalledProcessError" not in result.stderr
    assert "mfpo_operator" not in result.stderr  # no frame of the demo's own: the generator's only


@pytest.mark.parametrize(("override", "threads"), [({"MFPO_THREADS": "3"}, "3"), ({}, "1")])
def test_the_demo_bootstraps_on_the_cpus_idle_now(monkeypatch, override, threads):
    """Beside a busy process the bootstrap with a thread per CPU took 314 s instead of ~60:
    it gets the CPUs idle now (here one, the machine's other CPU being busy; an override wins)
    and says how many. Its subprocesses are recorded, not run (a test double), and the demo
    stops after them."""
    from mfpo_core import cpus
    from mfpo_operator import demo

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)  # QUICKSTART is relative, as `make demo` runs it
    for name in ("MFPO_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in override.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cpus, "idle_cpus", lambda *args, **kwargs: 1.0)
    commands = []
    monkeypatch.setattr(demo, "_call", lambda what, command: commands.append((what, command)))
    monkeypatch.setattr(demo.storage, "exists", lambda uri: False)
    monkeypatch.setattr(demo, "_run", lambda manifest, progress: 1)
    assert demo.run_demo(compare=False, progress=False) == 1
    ((what, command),) = [c for c in commands if "mfpo_runtime.bootstrap" in c[1]]
    assert command[command.index("--threads") + 1] == threads
    assert what == f"tiny LLaVA captioner ({threads} thread{'s' if threads != '1' else ''})"


# ------------------------------------------------------------------- mfpo validate


def test_validate_checks_without_running_and_warns_of_a_key_written_twice(tmp_path, env):
    environ, _, trace = env
    manifest = write_manifest(tmp_path)
    text = manifest.read_text().replace("  curriculum:\n", "  curriculum:\n    stages: 3\n")
    assert text.count("stages:") == 2
    manifest.write_text(text)
    result = mfpo(["validate", str(manifest)], environ, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'{manifest}: MFPORun "demo" is valid\n'
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {manifest}: line ") and "spec.curriculum.stages" in warning
    assert "kubectl keeps only the value on line" in warning
    assert not trace.exists() and not (tmp_path / "artifacts").exists()  # nothing ran
    strict = mfpo(["validate", "--strict", str(manifest)], environ, tmp_path)
    assert strict.returncode == 2 and "error: the warnings above fail the check (--strict)" in strict.stderr
    # `mfpo run` reads the same file the same way, and says so too.
    status = mfpo(["status", str(manifest)], environ, tmp_path)
    assert warning in status.stderr


def test_validate_names_every_problem_reads_stdin_and_skips_other_kinds(tmp_path, env):
    environ, _, _ = env
    good = write_manifest(tmp_path).read_text()
    bad = good.replace("gpusPerNode: 0", "gpusPerNode: 0\n    tolerations: [{key: nvidia.com/gpu, operator: Exists, value: 'true'}]")
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: mfpo-s3}\n"
    stream = f"{secret}---\n{bad}"
    result = subprocess.run([*FAKE_CLI, "validate", "-"], input=stream, env=environ, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "<stdin>: document 1 (Secret) skipped: not an MFPORun" in result.stdout
    assert result.stderr == (
        'error: <stdin>: The MFPORun "demo" is invalid:\n'
        "* spec.resources.tolerations[0]: Invalid value: \"object\": value must be empty when `operator` is 'Exists'\n"
    )
    only_secret = tmp_path / "secret.yaml"
    only_secret.write_text(secret)
    none = mfpo(["validate", str(only_secret)], environ, tmp_path)
    assert none.returncode == 2 and none.stderr == f"error: no MFPORun in {only_secret}\n"
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert mfpo(["validate", str(broken)], environ, tmp_path).stderr.startswith(f"error: {broken}: line 2: not valid YAML: ")


def test_validate_names_a_file_it_cannot_read(tmp_path, env):
    environ, _, _ = env
    result = mfpo(["validate", "missing.yaml"], environ, tmp_path)
    assert (result.returncode, result.stderr) == (2, "error: cannot read missing.yaml: No such file or directory\n")
    result = mfpo(["run", "missing.yaml"], environ, tmp_path)
    assert (result.returncode, result.stderr) == (2, "error: cannot read missing.yaml: No such file or directory\n")


def test_validate_checks_each_run_of_a_list_and_run_takes_a_list_of_one(tmp_path, env):
    """`kubectl get mfpo -o yaml` prints a v1 List: kubectl applies its items, and so mfpo reads them."""
    environ, _, _ = env
    run = yaml.safe_load(write_manifest(tmp_path).read_text())
    other = {**run, "metadata": {"name": "other"}}
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [run, other]}))
    result = mfpo(["validate", str(listed)], environ, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f'{listed}: document 1 items[0]: MFPORun "demo" is valid\n{listed}: document 1 items[1]: MFPORun "other" is valid\n'
    )
    refused = mfpo(["run", str(listed)], environ, tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"error: {listed}: holds 2 MFPORuns (demo, other); `mfpo run` runs one MFPORun per file: put each in its own file\n"
    )
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [run]}))
    status = mfpo(["status", str(one)], environ, tmp_path)
    assert status.returncode == 0, status.stderr


def test_validate_strict_fails_on_a_merge_key_over_a_key(tmp_path, env):
    environ, _, _ = env
    manifest = write_manifest(tmp_path)
    text = manifest.read_text().replace("    stages: 2\n", "    stages: 2\n    <<: {stages: 3}\n")
    assert "stages: 2\n    <<: {stages: 3}" in text
    manifest.write_text(text)
    result = mfpo(["validate", str(manifest)], environ, tmp_path)
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {manifest}: line ") and "spec.curriculum.stages: the merge key '<<'" in warning
    strict = mfpo(["validate", "--strict", str(manifest)], environ, tmp_path)
    assert strict.returncode == 2 and "error: the warnings above fail the check (--strict)" in strict.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [1, *a]\n", "line 1: anchor 'a' value contains itself"),
        ("a: !!binary YW Jj\n", "line 1: !!binary value contains invalid base64 data"),
        ("a: {<<: 3}\n", "line 1: map merge requires map or sequence of maps as the value"),
        ("--- {a: 1}\n", "line 1: invalid Yaml document separator: {a: 1}"),
        ("~: 1\n", "line 1: (document): unsupported map key of type: %!s(<nil>)"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "nested more than 100 levels deep"),
    ],
)
def test_validate_refuses_odd_yaml_with_one_line_and_exit_2(tmp_path, env, text, message):
    environ, _, _ = env
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    result = mfpo(["validate", str(path)], environ, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
