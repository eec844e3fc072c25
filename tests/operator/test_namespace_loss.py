"""A watched namespace that disappears is a normal event: the operator keeps serving the others.

On a real control plane (the lab, kube-apiserver v1.32, the operator as the chart's
ServiceAccount in namespaced mode) `kubectl delete namespace team-b` deleted the chart's Role
there within seconds; every request of the operator in team-b then got the RBAC 403. kopf
retries a 403 on its schedule (1, 1, 2, 3, 5, 8, 13, 21 s) and then escalates it (kopf
`_cogs/clients/api.py` `request`); an escalated error in any watch stream or peering
keep-alive fails kopf's orchestrator and stops the whole operator (kopf
`_core/reactor/orchestration.py`: `aiotasks.reraise(ensemble_done)`): 2 min 15 s after the
deletion, "Multidimensional multitasker has failed". kmock has no RBAC: these tests make it
answer the lab's 403 (tests/operator/api_answers.py) for every request in the lost namespace.
"""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest
from api_answers import namespace_terminating, not_found, rbac_forbidden
from kube_world import NS, Kube, eventually, run_manifest, running_operator

FINALIZER = "mfpo.dev/runs-hold-finalizers"  # the operator's own (kube/role_guard.py)

GONE = "gone"


def _in(namespace: str):
    return lambda request: f"/namespaces/{namespace}/" in request.url.path


def _kopf_gives_up_fast() -> kopf.OperatorSettings:
    """kopf's default schedule escalates a 403 after 54 s; shortened here to two retries of
    0.05 s, so that an operator which keeps kopf's escalation stops within this test. The
    operator replaces the schedule in its startup handler (kube/handlers.py RetryForever)."""
    settings = kopf.OperatorSettings()
    settings.networking.error_backoffs = [0.05, 0.05]
    return settings


async def test_a_namespace_out_of_reach_does_not_stop_the_operator_and_is_served_again(kube):
    reachable = {"gone": False}
    kube.kmock[lambda r: not reachable["gone"] and _in(GONE)(r)] << 403 << rbac_forbidden
    async with running_operator(namespaces=[NS, GONE], settings=_kopf_gives_up_fast()) as memo:
        await kube.create_run(run_manifest("before"))
        await eventually(lambda: "before-datagen-a1" in kube.jobs(), what="the first run's Job")
        await asyncio.sleep(2.0)  # 40x the shortened schedule: kopf would have escalated
        assert memo.operator_thread.is_alive(), "the operator stopped"
        await kube.create_run(run_manifest("after"))
        await eventually(lambda: "after-datagen-a1" in kube.jobs(), what="a new run served")
        # Retried, never given up: once the namespace is back (recreated, Role applied again),
        # its runs are served without a restart.
        retried = [r for r in kube.kmock if _in(GONE)(r)]
        assert {"mfporuns", "jobs"} <= {r.url.path.rsplit("/", 1)[-1] for r in retried}
        reachable["gone"] = True
        await kube.create_run(run_manifest("back", namespace=GONE))
        await eventually(
            lambda: any(j["metadata"]["namespace"] == GONE for j in kube.jobs().values()),
            timeout=30, what="the run in the namespace that came back served",
        )  # fmt: skip


async def test_readiness_names_a_namespace_out_of_reach_and_stays_ready(kube, unused_tcp_port):
    # Liveness and readiness are one endpoint (the chart's probes): a 500 for one lost
    # namespace would have the kubelet restart the operator forever.
    kube.kmock[_in(GONE)] << 403 << rbac_forbidden
    url = f"http://127.0.0.1:{unused_tcp_port}/healthz"
    async with running_operator(namespaces=[NS, GONE], liveness=url):
        code, body = await _get(url)
    assert code == 200, body
    assert "listable in ml" in body and "not in gone (403 Forbidden)" in body


async def _get(url: str) -> tuple[int, str]:
    import time
    import urllib.error
    import urllib.request

    def get() -> tuple[int, str]:
        # kopf sets its ready flag before its liveness server has bound the port (as in
        # test_operator_cluster._http_status): a refused connection is tried again.
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as err:
                return err.code, err.read().decode()
            except urllib.error.URLError as err:
                if not isinstance(err.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    return await asyncio.to_thread(get)


# ------------------------------------------------------------- the run in a deleted namespace


async def _role_binding(kube: Kube, namespace: str = NS) -> None:
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "mfpo", "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mfpo"}}  # fmt: skip
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings"
    response = await kube.kmock.post(path, json=binding)
    assert response.status < 300, await response.text()


def _finalizers(kube: Kube) -> list[str] | None:
    obj = kube.objects("rbac.authorization.k8s.io/v1/rolebindings").get("mfpo")
    return None if obj is None else obj["metadata"].get("finalizers") or []


async def test_runs_holding_a_finalizer_keep_the_operators_binding_until_they_are_gone(kube, tmp_path):
    # Deleting a namespace deletes the chart's RoleBinding at once (the namespace controller
    # deletes every resource in it), while a run with deleteOnRunDeletion keeps kopf's
    # finalizer: the operator would be left without the right to release it, the namespace
    # Terminating forever (seen on the lab). A finalizer keeps a binding granting while it is
    # being deleted (checked on the lab: a ServiceAccount read a ConfigMap through a
    # Terminating Role and RoleBinding with finalizers; 403 once they were released).
    await _role_binding(kube)
    storage = {"uri": f"file://{tmp_path}/runs", "deleteOnRunDeletion": True}
    async with running_operator(namespaces=[NS], role_binding="mfpo"):
        await kube.create_run(run_manifest("plain"))
        await eventually(lambda: "plain-datagen-a1" in kube.jobs(), what="the plain run's Job")
        assert _finalizers(kube) == []
        await kube.create_run(run_manifest("keeps", storage=storage))
        await eventually(lambda: _finalizers(kube) == [FINALIZER], what="the RoleBinding kept")
        response = await kube.kmock.delete(f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/keeps")
        assert response.status < 300, await response.text()
        await eventually(lambda: not kube.run("keeps"), what="the run released")
        await eventually(lambda: _finalizers(kube) == [], what="the RoleBinding released")


async def test_a_run_in_a_namespace_being_deleted_is_released_naming_what_is_left(kube, caplog):
    # The namespace controller deleted the run's Secret with everything else (a 404 now), and
    # the namespace refuses new Events (NamespaceLifecycle): the run must still be released
    # at once, and the log says which artifacts are left behind.
    caplog.set_level(logging.WARNING, logger="mfpo.operator")
    doomed = "doomed"
    await _role_binding(kube, doomed)
    secret = f"/api/v1/namespaces/{doomed}/secrets/s3-creds"
    kube.kmock[lambda r: r.url.path == secret] << 404 << not_found("secrets", "s3-creds")
    events = f"/api/v1/namespaces/{doomed}/events"
    kube.kmock[lambda r: r.url.path == events and r.method == "POST"] << 403 << (
        lambda r: namespace_terminating("events", r.data["metadata"]["name"], doomed)
    )
    storage = {"uri": "s3://mfpo-bucket/runs", "endpoint": "127.0.0.1:9", "secure": False,
               "secretName": "s3-creds", "deleteOnRunDeletion": True}  # fmt: skip
    async with running_operator(namespaces=[doomed], role_binding="mfpo"):
        await kube.create_run(run_manifest("demo", namespace=doomed, storage=storage))
        await eventually(lambda: _finalizers(kube) == [FINALIZER], what="the RoleBinding kept")
        finalizers = lambda: kube.run("demo").get("metadata", {}).get("finalizers")
        await eventually(finalizers, what="kopf's finalizer on the run")
        path = f"/apis/mfpo.dev/v1alpha1/namespaces/{doomed}/mfporuns/demo"
        response = await kube.kmock.delete(path)
        assert response.status < 300, await response.text()
        await eventually(lambda: not kube.run("demo"), timeout=10, what="the run released")
        await eventually(lambda: _finalizers(kube) == [], what="the RoleBinding released")
    said = [r.getMessage() for r in caplog.records if "released:" in r.getMessage()]
    assert said == [
        (
            f"{doomed}/demo: released: artifacts under s3://mfpo-bucket/runs/demo not deleted: "
            f"secret 's3-creds' (spec.storage.secretName) in namespace '{doomed}' not found; "
            "delete them by hand"
        )
    ]
    assert any("ArtifactsLeftBehind not posted" in r.getMessage() for r in caplog.records)


async def test_a_finalizer_left_by_a_killed_operator_is_released_at_startup(kube):
    # An operator SIGKILLed between a namespace's last such run going away and its release
    # leaves the finalizer on the binding: the next one removes it when it starts.
    await _role_binding(kube)
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/mfpo"
    response = await kube.kmock.patch(path, json={"metadata": {"finalizers": [FINALIZER]}})
    assert response.status < 300, await response.text()
    async with running_operator(namespaces=[NS], role_binding="mfpo"):
        await eventually(lambda: _finalizers(kube) == [], what="the stale finalizer removed")


@pytest.mark.parametrize(
    "current,add,expected",
    [([], True, [FINALIZER]), (["other"], True, ["other", FINALIZER]),
     ([FINALIZER, "other"], False, ["other"]), ([FINALIZER], False, [])],
)  # fmt: skip
def test_the_finalizer_patch_keeps_other_finalizers_and_fails_on_a_concurrent_change(
    current, add, expected
):
    # Applied with jsonpatch (RFC 6902, as the API server applies application/json-patch+json).
    import jsonpatch
    from mfpo_operator.kube.role_guard import finalizer_patch

    patch = finalizer_patch(current, FINALIZER, add=add)
    binding = {"metadata": {"name": "mfpo", "finalizers": current}} if current else {"metadata": {}}
    assert jsonpatch.apply_patch(binding, patch)["metadata"]["finalizers"] == expected
    assert finalizer_patch(expected, FINALIZER, add=add) == []  # nothing left to do
    if current:  # computed from a list that changed since: the `test` op refuses it
        changed = {"metadata": {"finalizers": [*current, "newer"]}}
        with pytest.raises(jsonpatch.JsonPatchTestFailed):
            jsonpatch.apply_patch(changed, patch)
