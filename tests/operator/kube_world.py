"""Helpers for running the real operator against kmock (kopf's Kubernetes API emulator).

The test plays the kubelet and the Job controller: it creates a Job's pods with their
termination messages and sets the Job's conditions, as a cluster would. kmock has no
controllers, no label selectors and no garbage collection, which the operator tolerates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import kopf
from mfpo_core.contract import TerminationSummary
from mfpo_operator.kube.handlers import REGISTRY
from mfpo_operator.kube.metrics import OperatorMetrics

NS = "ml"
RUNS = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
VERBS = {"get", "list", "watch", "create", "patch", "delete"}


def declare_resources(kmock) -> None:
    info = kmock_lib.ResourceInfo
    kmock.resources["mfpo.dev/v1alpha1/mfporuns"] = info(
        kind="MFPORun", singular="mfporun", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "patch", "create", "delete"},
    )  # fmt: skip
    for path, kind in [
        ("batch/v1/jobs", "Job"), ("v1/pods", "Pod"), ("v1/configmaps", "ConfigMap"),
        ("v1/services", "Service"), ("v1/events", "Event"), ("v1/secrets", "Secret"),
        ("v1/serviceaccounts", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding"),
    ]:  # fmt: skip
        kmock.resources[path] = info(kind=kind, namespaced=True, verbs=VERBS)
    # kopf discovers namespaces and CRDs before it starts watching anything.
    kmock.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=VERBS)
    kmock.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs=VERBS
    )


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [
            {"name": "kmock", "context": {"cluster": "kmock", "user": "test", "namespace": NS}}
        ],
        "current-context": "kmock",
    }
    path.write_text(json.dumps(config))
    return path


def run_manifest(name: str = "demo", namespace: str = NS, **spec_overrides: Any) -> dict[str, Any]:
    spec = {
        "model": {"uri": "file:///models/tiny"},
        "data": {"uri": "file:///data/train", "format": "synthetic"},
        "storage": {"uri": "file:///runs"},
        "curriculum": {"stages": 1},
        "retries": {"maxAttempts": 2, "backoffSeconds": 0},
        "resources": {"gpusPerNode": 0},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "mfpo.dev/v1alpha1",
        "kind": "MFPORun",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",  # kmock assigns none; kopf's JSON patches test it
        },
        "spec": spec,
    }


STAGES = ["datagen", "score", "align-1", "eval"]  # run_manifest's, curriculum.stages 1


async def run_to_success(kube: Kube, metrics: dict[str, dict[str, float]] | None = None) -> None:
    """Create the demo run and play each stage's Job to success in turn (with `metrics` per
    stage in its summary) until the run has succeeded."""
    await kube.create_run(run_manifest())
    for stage in STAGES:
        job = f"demo-{stage}-a1"
        await eventually(lambda job=job: job in kube.jobs(), what=f"job {job}")
        summary = TerminationSummary(stage=stage, status="succeeded", metrics=(metrics or {}).get(stage, {}))
        await kube.finish_job(job, summary=summary)
    await eventually(lambda: kube.status().get("phase") == "Succeeded", what="run succeeded")


@contextlib.asynccontextmanager
async def running_operator(
    metrics: OperatorMetrics | None = None,
    namespaces: list[str] | None = None,
    liveness: str | None = None,
    role_binding: str | None = None,
    settings: kopf.OperatorSettings | None = None,
) -> AsyncIterator[kopf.Memo]:
    """The real operator (all its handlers) until the block ends; cluster-wide unless
    `namespaces` are given (as `mfpo-operator --namespace`, and `--role-binding`).
    `memo.operator_thread` is the thread it runs in (alive while the operator runs).

    It runs in its own thread and event loop, as in production: kopf cancels every task of its
    loop when it stops, which must not hit kmock's server tasks in the test's loop."""
    memo = kopf.Memo(
        metrics=metrics or OperatorMetrics(), namespaces=namespaces or [],
        role_binding=role_binding,
    )  # fmt: skip
    stop, ready = threading.Event(), threading.Event()

    def serve() -> None:
        asyncio.run(
            kopf.operator(
                registry=REGISTRY, clusterwide=not namespaces, namespaces=namespaces or [],
                standalone=True, liveness_endpoint=liveness, settings=settings,
                stop_flag=stop, ready_flag=ready, memo=memo,
            )
        )  # fmt: skip

    thread = threading.Thread(target=serve, name="operator", daemon=True)
    memo.operator_thread = thread
    thread.start()
    await eventually(ready.is_set, what="the operator to start")
    try:
        yield memo
    finally:
        stop.set()
        await eventually(lambda: not thread.is_alive(), timeout=30, what="the operator to stop")


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll until `check()` is truthy (returns it) or fail with what was last seen."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


class Kube:
    """The test's hands on the emulated cluster: objects, and the kubelet's/Job controller's work."""

    def __init__(self, kmock) -> None:
        self.kmock = kmock

    def objects(self, resource: str) -> dict[str, dict[str, Any]]:
        """Live objects of a resource ("batch/v1/jobs", "v1/pods", ...) by name."""
        out = {}
        for (res, _ns, name), obj in self.kmock.objects.items():
            if _resource_path(res) == resource and not obj.deleted:
                out[name] = obj.raw
        return out

    def posted(self, path_suffix: str) -> list[dict[str, Any]]:
        """Bodies of every POST to a collection (kmock keeps one object per name, and kopf's
        events all share their generateName, so Events are checked here)."""
        return [
            r.data for r in self.kmock if r.method == "POST" and r.url.path.endswith(path_suffix)
        ]

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.objects("batch/v1/jobs")

    def run(self, name: str = "demo") -> dict[str, Any]:
        return self.objects("mfpo.dev/v1alpha1/mfporuns").get(name, {})

    def status(self, name: str = "demo") -> dict[str, Any]:
        return self.run(name).get("status") or {}

    async def create_run(self, manifest: dict[str, Any]) -> None:
        namespace = manifest["metadata"]["namespace"]
        response = await self.kmock.post(RUNS.replace(f"/{NS}/", f"/{namespace}/"), json=manifest)
        assert response.status < 300, await response.text()

    async def patch_run(self, name: str, patch: dict[str, Any]) -> None:
        response = await self.kmock.patch(f"{RUNS}/{name}", json=patch)
        assert response.status < 300, await response.text()

    async def finish_job(
        self,
        job: str,
        *,
        exit_code: int = 0,
        summary: TerminationSummary | None = None,
        pods: int = 1,
        disrupted: bool = False,
        now: str = "2025-01-01T00:00:10Z",
        pods_ended: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """What the kubelet and the Job controller do when a Job's pods end (at `now`);
        `pods_ended` is awaited between the pods' end and the Job's."""
        body = self.jobs()[job]
        stage = body["metadata"]["labels"]["mfpo.dev/stage"]
        if summary is None:
            status = {0: "succeeded", 65: "bad-input"}.get(exit_code, "retryable")
            summary = TerminationSummary(
                stage=stage, status=status, message=None if exit_code == 0 else f"exit {exit_code}"
            )
        for index in range(pods):
            await self._pod(job, index, exit_code, summary, disrupted)
        if pods_ended is not None:
            await pods_ended()
        if exit_code == 0:
            conditions = [{"type": "Complete", "status": "True", "lastTransitionTime": now}]
            status = {
                "conditions": conditions,
                "succeeded": pods,
                "startTime": "2025-01-01T00:00:00Z",
                "completionTime": now,
            }
        else:
            reason = "PodFailurePolicy" if exit_code == 65 else "BackoffLimitExceeded"
            conditions = [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": now,
                }
            ]
            status = {"conditions": conditions, "failed": 1, "startTime": "2025-01-01T00:00:00Z"}
        response = await self.kmock.patch(f"{JOBS}/{job}/status", json={"status": status})
        assert response.status < 300, await response.text()

    async def _pod(
        self, job: str, index: int, exit_code: int, summary: TerminationSummary, disrupted: bool
    ) -> None:
        conditions = [{"type": "DisruptionTarget", "status": "True"}] if disrupted else []
        # The Job controller's pod: the template's labels (the run's), and its own.
        template = (self.jobs()[job].get("spec") or {}).get("template") or {}
        labels = {**((template.get("metadata") or {}).get("labels") or {}),
                  "batch.kubernetes.io/job-name": job, "job-name": job}  # fmt: skip
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{job}-{index}-x", "namespace": NS,
                "labels": labels,
                "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            },
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": conditions,
                "containerStatuses": [{
                    "name": "stage",
                    "state": {"terminated": {"exitCode": exit_code, "message": summary.encode(),
                                             "reason": "Completed" if exit_code == 0 else "Error"}},
                }],
            },
        }  # fmt: skip
        response = await self.kmock.post(PODS, json=pod)
        assert response.status < 300, await response.text()


def _resource_path(res) -> str:
    group = getattr(res, "group", "") or ""
    version = getattr(res, "version", "") or ""
    plural = getattr(res, "plural", "") or ""
    return f"{group}/{version}/{plural}" if group else f"{version}/{plural}"
