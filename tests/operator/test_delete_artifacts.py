"""Deleting a run with `storage.deleteOnRunDeletion` always completes.

kopf retries a deletion handler that raises an ordinary exception, with backoff, for ever
(kopf docs, "Error handling"); the run's finalizer, and so the run, stays until the handler
finishes. On a real control plane a run whose Secret had been deleted retried its artifact
cleanup every 60 s with a 404 and never went away. Now: a 404 of the Secret (or a spec this
version refuses, or storage settings no retry can fix) releases the run at once; any other
failure is retried until MFPO_ARTIFACT_DELETION_GIVE_UP_SECONDS after the first attempt.
Either way a Warning event `ArtifactsLeftBehind` names the storage prefix left behind.
"""

from __future__ import annotations

import base64

import pytest
from api_answers import not_found
from kube_world import NS, Kube, eventually, run_manifest, running_operator
from kubernetes.client.rest import ApiException
from mfpo_core import ownership, s3_backend, storage
from mfpo_core.contract import RunOwner, result_uri
from mfpo_operator.kube.artifacts import delete_for_run

RUN_PATH = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/demo"
S3_STORAGE = {
    "uri": "s3://mfpo-bucket/runs", "endpoint": "127.0.0.1:9", "secure": False,
    "secretName": "s3-creds", "deleteOnRunDeletion": True,
}  # fmt: skip


def _left_behind(kube: Kube) -> list[dict]:
    return [e for e in kube.posted("/events") if e.get("reason") == "ArtifactsLeftBehind"]


async def _delete_run(kube: Kube) -> None:
    await eventually(lambda: kube.run().get("metadata", {}).get("finalizers"), what="finalizer")
    response = await kube.kmock.delete(RUN_PATH)
    assert response.status < 300, await response.text()


async def test_a_run_whose_secret_is_gone_is_released_at_once_naming_its_artifacts(kube):
    secret = f"/api/v1/namespaces/{NS}/secrets/s3-creds"
    kube.kmock[lambda r: r.url.path == secret] << 404 << not_found("secrets", "s3-creds")
    async with running_operator():
        await kube.create_run(run_manifest(storage=S3_STORAGE))
        await _delete_run(kube)
        await eventually(lambda: not kube.run(), timeout=10, what="the run released")
        await eventually(lambda: _left_behind(kube), what="the Warning event")
    (event,) = _left_behind(kube)
    assert event["type"] == "Warning" and event["involvedObject"]["name"] == "demo"
    assert event["message"] == (
        "artifacts under s3://mfpo-bucket/runs/demo not deleted: secret 's3-creds' "
        "(spec.storage.secretName) in namespace 'ml' not found; delete them by hand"
    )


async def test_a_storage_that_keeps_failing_releases_the_run_after_the_bounded_time(
    kube, monkeypatch
):
    # Nothing listens on 127.0.0.1:9: every request is refused (retried by urllib3 with the
    # storage's backoff, shortened here) and the deletion fails each time.
    monkeypatch.setenv("MFPO_ARTIFACT_DELETION_GIVE_UP_SECONDS", "1")
    monkeypatch.setattr(s3_backend, "BACKOFF_FACTOR", 0.01)
    s3_backend.clear_clients()  # clients are cached with their retry policy
    keys = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds", "namespace": NS},
              "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()}}  # fmt: skip
    response = await kube.kmock.post(f"/api/v1/namespaces/{NS}/secrets", json=secret)
    assert response.status < 300
    async with running_operator():
        await kube.create_run(run_manifest(storage=S3_STORAGE))
        await _delete_run(kube)
        await eventually(lambda: not kube.run(), timeout=30, what="the run released")
        await eventually(lambda: _left_behind(kube), what="the Warning event")
    (event,) = _left_behind(kube)
    assert event["message"].startswith(
        "artifacts under s3://mfpo-bucket/runs/demo not deleted: StorageError: cannot reach S3 "
        "endpoint http://127.0.0.1:9"
    )
    assert "; delete them by hand (gave up after " in event["message"]


class _Cluster:
    """Only what delete_for_run reads: the Secret (or the API server's error for it)."""

    def __init__(self, status: int | None = None, data: dict[str, str] | None = None) -> None:
        self.status, self.data = status, data or {}

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        if self.status:
            raise ApiException(status=self.status, reason={403: "Forbidden", 404: "Not Found"}[self.status])
        return self.data


SPEC = {k: v for k, v in run_manifest()["spec"].items() if k != "storage"}


def body(spec: dict, name: str = "old", uid: str = "uid-old", status: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid}, "spec": spec, "status": status or {}}



@pytest.mark.parametrize(
    "storage,cluster,final,reason",
    [
        # Stored under an older CRD: s3:// without an endpoint. No retry can fix it.
        ({"uri": "s3://mfpo/runs"}, _Cluster(), True, "the run's spec is not valid in this version"),
        (S3_STORAGE, _Cluster(404), True, "secret 's3-creds' (spec.storage.secretName) in namespace 'ns' not found"),
        # Not readable (rbac.readStorageSecrets=false, or a Role being replaced): retried.
        (S3_STORAGE, _Cluster(403), False, "secret 's3-creds' (spec.storage.secretName) in namespace 'ns' not readable (403 Forbidden)"),
    ],
    ids=["invalid-spec", "secret-gone", "secret-forbidden"],
)  # fmt: skip
def test_each_failure_is_final_or_retried(storage, cluster, final, reason):
    outcome = delete_for_run(cluster, body({**SPEC, "storage": storage}))
    assert not outcome.deleted and outcome.final is final
    assert outcome.reason.startswith(reason)
    assert outcome.left_behind().startswith(f"artifacts under {storage['uri']}/old not deleted: ")


def claimed(run_uri: str, name: str, uid: str, namespace: str = "ns") -> None:
    """What the run's first stage does: its ownership record, then its artifacts."""
    owner = RunOwner(runner="operator", namespace=namespace, name=name, uid=uid)
    ownership.claim(run_uri, owner, ["datagen"])
    storage.write_json({"stage": "datagen"}, result_uri(run_uri, "datagen"))


def test_a_deleted_run_prefix_is_reported_deleted(tmp_path):
    claimed(f"file://{tmp_path}/runs/r", "r", "uid-r")
    spec = {**SPEC, "storage": {"uri": f"file://{tmp_path}/runs"}}
    outcome = delete_for_run(_Cluster(), body(spec, "r", "uid-r"))
    assert outcome.deleted and outcome.prefix == f"file://{tmp_path}/runs/r"
    assert not (tmp_path / "runs" / "r").exists()


def test_another_runs_artifacts_are_never_deleted(tmp_path):
    """Before: deleting a run with deleteOnRunDeletion deleted whatever lay under
    <storage.uri>/<name>: the artifacts of a run of the same name in another namespace, or of an
    earlier run of the name whose artifacts were kept."""
    spec = {**SPEC, "storage": {"uri": f"file://{tmp_path}/runs", "deleteOnRunDeletion": True}}
    claimed(f"file://{tmp_path}/runs/r", "r", "uid-team-a", namespace="team-a")
    outcome = delete_for_run(_Cluster(), body(spec, "r", "uid-team-b"))
    assert not outcome.deleted and outcome.final
    assert outcome.reason == "they belong to MFPORun team-a/r (uid uid-team-a), not to this run"
    # The Warning event never tells the user to delete another run's results by hand.
    assert outcome.left_behind().endswith("; they are not this run's: leave them")
    assert (tmp_path / "runs/r/datagen/result.json").exists()
    # No record: a run of an earlier version. Its own only if it completed stages.
    (tmp_path / "runs/r/_owner.json").unlink()
    outcome = delete_for_run(_Cluster(), body(spec, "r", "uid-team-b"))
    assert not outcome.deleted and "no ownership record says they (datagen) are this run's" in outcome.reason
    assert "delete them by hand" not in outcome.left_behind()
    done = {"stages": [{"name": "datagen", "phase": "Succeeded", "attempts": 1}]}
    assert delete_for_run(_Cluster(), body(spec, "r", "uid-old", status=done)).deleted
    assert not (tmp_path / "runs/r").exists()
