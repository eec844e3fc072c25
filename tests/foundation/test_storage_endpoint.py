"""The storage endpoint a manifest names is the one every plane talks to (issue 13, point 1).

`storage.storage_env` turns `spec.storage` (+ a Secret's keys) into the s3 settings; the local
runner's stage processes and own state, the operator's Jobs and its artifact deletion all use
it, and no s3:// URI falls back to a default endpoint. Against moto's S3 server with the real
minio client; the shell's MFPO_S3_ENDPOINT / AWS_ENDPOINT_URL point at ports nobody listens on
(or are unset), so a request that followed them would fail.
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from datetime import datetime, timezone

import pytest
from foundation_s3 import ACCESS_KEY, SECRET_KEY, free_port
from mfpo_core import ownership, s3_backend, storage
from mfpo_core.api import MFPORun, StorageSpec
from mfpo_core.contract import RunOwner, StageResult, result_uri
from mfpo_operator import cli
from mfpo_operator.kube.artifacts import delete_run_artifacts
from mfpo_operator.kube.jobs import _env
from mfpo_operator.local import LocalRunner
from mfpo_operator.validation import ManifestError, load_manifest
from minio import Minio
from pydantic import ValidationError

REAL_STAGE = (sys.executable, "-m", "mfpo_runtime.stage")


def run_manifest(storage_spec: dict, name: str = "demo") -> MFPORun:
    spec = {
        # object-store inputs: the runner leaves them to the stages (whose results exist already)
        "model": {"uri": "s3://mfpo/models/tiny"},
        "data": {"uri": "s3://mfpo/data/train", "format": "synthetic"},
        "storage": storage_spec,
        "curriculum": {"stages": 1},
        "retries": {"maxAttempts": 1},
        "resources": {"gpusPerNode": 0},
    }
    return MFPORun.model_validate(
        {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": name}, "spec": spec}
    )


@pytest.fixture
def moto_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on moto, reachable only by naming its endpoint: the shell's endpoint
    variables are removed (tests set them to dead ports), its credentials are moto's."""
    for name in storage.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setattr(s3_backend, "BACKOFF_FACTOR", 0.01)
    monkeypatch.setattr(s3_backend, "MAX_RETRIES", 2)
    s3_backend.clear_clients()
    bucket = f"mfpo-{uuid.uuid4().hex[:12]}"
    Minio(moto_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False).make_bucket(bucket)
    yield bucket
    s3_backend.clear_clients()


def objects(moto_endpoint: str, bucket: str) -> list[str]:
    client = Minio(moto_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    return sorted(o.object_name for o in client.list_objects(bucket, recursive=True))


# --------------------------------------------------------------- the settings


def test_storage_env_is_the_spec_and_the_secret_keys_only() -> None:
    spec = StorageSpec(uri="s3://mfpo/runs", endpoint="minio:9000", secure=False, read_timeout_seconds=5)
    secret = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "other": "x"}
    assert storage.storage_env(spec, secret) == {
        "MFPO_S3_ENDPOINT": "minio:9000",
        "MFPO_S3_SECURE": "false",
        "MFPO_S3_CONNECT_TIMEOUT": "10",
        "MFPO_S3_READ_TIMEOUT": "5",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
    }


def test_a_runs_environment_replaces_every_endpoint_setting_of_the_shell() -> None:
    spec = StorageSpec(uri="s3://mfpo/runs", endpoint="minio:9000", secure=False)
    shell = {"AWS_ENDPOINT_URL": "https://s3.amazonaws.com", "AWS_ENDPOINT_URL_S3": "https://x",
             "MFPO_S3_ENDPOINT": "elsewhere:1", "MFPO_S3_SECURE": "true", "HOME": "/root"}  # fmt: skip
    env = storage.run_environment(spec, shell)
    assert env["MFPO_S3_ENDPOINT"] == "minio:9000" and env["MFPO_S3_SECURE"] == "false"
    assert "AWS_ENDPOINT_URL" not in env and "AWS_ENDPOINT_URL_S3" not in env
    assert env["HOME"] == "/root"
    # A file:// run names no endpoint: the shell's is dropped all the same (no silent default).
    assert "MFPO_S3_ENDPOINT" not in storage.run_environment(StorageSpec(uri="file:///r"), shell)


def test_a_job_gets_the_same_settings_with_credentials_by_reference() -> None:
    run = run_manifest({"uri": "s3://mfpo/runs", "endpoint": "minio:9000", "secure": False,
                        "secretName": "creds", "connectTimeoutSeconds": 3})  # fmt: skip
    env = {e["name"]: e for e in _env(run.spec, "score", "demo-score-1")}
    values = {name: e["value"] for name, e in env.items() if name in storage.ENDPOINT_VARIABLES}
    assert values == storage.storage_env(run.spec.storage)
    assert env["MFPO_S3_CONNECT_TIMEOUT"]["value"] == "3"
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "AWS_SECRET_ACCESS_KEY"}},
    }


@pytest.mark.parametrize("endpoint", [None, ""])
def test_an_s3_uri_without_an_endpoint_is_refused_naming_the_field(endpoint: str | None) -> None:
    with pytest.raises(ValidationError, match="spec.storage.endpoint|endpoint"):
        StorageSpec(uri="s3://mfpo/runs", endpoint=endpoint)
    StorageSpec(uri="s3://mfpo/runs", endpoint="s3.amazonaws.com")  # AWS, written explicitly
    StorageSpec(uri="file:///runs")


@pytest.mark.parametrize("endpoint", ["http://minio:9000", "minio:9000/bucket", "minio:port"])
def test_an_endpoint_is_host_and_port_only(endpoint: str) -> None:
    """A scheme could contradict `secure` (http:// with secure: true): TLS has one field."""
    with pytest.raises(ValidationError, match="endpoint"):
        StorageSpec(uri="s3://mfpo/runs", endpoint=endpoint)
    for good in ("minio:9000", "minio.mfpo-system.svc.cluster.local:9000", "10.0.0.7", "[::1]:9000"):
        StorageSpec(uri="s3://mfpo/runs", endpoint=good)


def test_mfpo_run_refuses_such_a_manifest(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "apiVersion: mfpo.dev/v1alpha1\nkind: MFPORun\nmetadata: {name: demo}\n"
        "spec:\n  model: {uri: file:///m}\n  data: {uri: file:///d}\n  storage: {uri: s3://mfpo/runs}\n"
    )
    with pytest.raises(ManifestError, match="spec.storage.endpoint is required"):
        load_manifest(str(path))


# ------------------------------------------------------- requests reach the manifest's endpoint


@pytest.mark.parametrize("shell", ["elsewhere", "unset"])
def test_a_local_run_talks_to_the_manifests_endpoint_only(
    shell: str, moto_endpoint: str, moto_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's state and every stage process (the real `mfpo-stage`) use the manifest's
    endpoint. Each stage's result document exists on moto only, so a stage that looked
    anywhere else would fail (one attempt) instead of finding its result."""
    if shell == "elsewhere":
        monkeypatch.setenv("MFPO_S3_ENDPOINT", f"127.0.0.1:{free_port()}")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    runs = f"s3://{moto_bucket}/runs"
    run = run_manifest({"uri": runs, "endpoint": moto_endpoint, "secure": False})
    LocalRunner(run, progress=False, stage_command=REAL_STAGE).claim()  # the results below are this run's
    with storage.using_env({**storage.storage_env(run.spec.storage), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                            "AWS_SECRET_ACCESS_KEY": SECRET_KEY}):  # fmt: skip
        for stage in run.spec.stage_names():
            done = StageResult(stage=stage, attempt=1, started_at=datetime.now(timezone.utc))
            shard = (0, 1) if stage == "datagen" else None  # datagen's one shard has its own
            storage.write_json(done.model_dump(mode="json"), result_uri(f"{runs}/demo", stage, shard))

    out = io.StringIO()
    status = LocalRunner(run, progress=False, stage_command=REAL_STAGE, out=out).run()

    assert status.phase == "Succeeded", out.getvalue()
    assert [s.attempts for s in status.stages] == [1, 1, 1, 1]
    assert "runs/demo/_local/state.json" in objects(moto_endpoint, moto_bucket)


def test_artifact_deletion_uses_the_runs_endpoint_and_secret(
    moto_endpoint: str, moto_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MFPO_S3_ENDPOINT", f"127.0.0.1:{free_port()}")  # the operator's own: dead
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # the operator holds no keys; the Secret does
    run = run_manifest({"uri": f"s3://{moto_bucket}/runs", "endpoint": moto_endpoint, "secure": False})
    secret = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    owner = RunOwner(runner="operator", namespace="default", name="demo", uid="uid-demo")
    with storage.using_env(storage.storage_env(run.spec.storage, secret)):
        ownership.claim(f"s3://{moto_bucket}/runs/demo", owner, run.spec.stage_names())
        storage.write_text("x", f"s3://{moto_bucket}/runs/demo/score/result.json")
        storage.write_text("y", f"s3://{moto_bucket}/runs/other/result.json")

    assert delete_run_artifacts(run.spec, owner, secret) == f"s3://{moto_bucket}/runs/demo"

    assert objects(moto_endpoint, moto_bucket) == ["runs/other/result.json"]


def test_parallel_transfers_keep_the_runs_settings(
    moto_endpoint: str, moto_bucket: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """publish_dir/fetch_dir move files on worker threads: those use the run's settings too."""
    monkeypatch.setenv("MFPO_S3_ENDPOINT", f"127.0.0.1:{free_port()}")  # the process's: dead
    for name in ("a", "b", "c"):
        (tmp_path / "tree" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "tree" / name).write_text(name)
    spec = StorageSpec(uri=f"s3://{moto_bucket}/runs", endpoint=moto_endpoint, secure=False)
    uri = f"s3://{moto_bucket}/runs/demo/policy"

    with storage.using_env(storage.storage_env(spec, dict(os.environ))):
        storage.publish_dir(tmp_path / "tree", uri)
        fetched = storage.fetch_dir(uri, tmp_path / "back")

    assert sorted(p.name for p in fetched.iterdir()) == ["a", "b", "c"]
    assert "runs/demo/policy/_COMPLETE" in objects(moto_endpoint, moto_bucket)


# ---------------------------------------------------------------- clear errors


@pytest.mark.parametrize("command", ["run", "status"])
def test_mfpo_run_and_status_name_an_unreachable_endpoint_in_one_line(
    command: str, moto_bucket: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    path = tmp_path / "run.yaml"
    path.write_text(
        "apiVersion: mfpo.dev/v1alpha1\nkind: MFPORun\nmetadata: {name: demo}\n"
        "spec:\n  model: {uri: s3://mfpo/m}\n  data: {uri: s3://mfpo/d, format: synthetic}\n  resources: {gpusPerNode: 0}\n"
        f"  storage: {{uri: 's3://{moto_bucket}/runs', endpoint: '{dead}', secure: false}}\n"
    )
    assert cli.main([command, str(path)]) == 1
    err = capsys.readouterr().err
    # A runner reads whose the prefix is first (mfpo_core.ownership); status reads the state.
    first_object = "_owner.json" if command == "run" else "_local/state.json"
    assert err == (
        f"error: cannot reach S3 endpoint http://{dead} for s3://{moto_bucket}/runs/demo/"
        f"{first_object} after {s3_backend.MAX_RETRIES} retries: cannot connect: [Errno 111] "
        "Connection refused\n"
    )
    assert SECRET_KEY not in err
