"""The operator's one adapter to the Kubernetes API (the official `kubernetes` client).

Created once at operator startup (into kopf's memo) and closed at cleanup; called by
`kube.reconcile`. API errors are translated here, once: 409 on create means "exists"
(deterministic names make creation idempotent, also after an operator restart), 404 on
delete means "gone". Listing passes a label selector (for real clusters) *and* filters in
code (kmock, the test emulator, ignores selectors).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException
from mfpo_core.api import GROUP, PLURAL, VERSION

from mfpo_operator.kube.jobs import JOB_NAME_LABEL, LABEL_RUN, MANAGED_BY
from mfpo_operator.kube.status import TERMINAL, attempt_from_job
from mfpo_operator.plan import Attempt

log = logging.getLogger("mfpo.operator")
_MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"


def load_config() -> kubernetes.client.Configuration:
    """In-cluster service account first, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.Configuration.get_default_copy()


def _matches(body: dict[str, Any], wanted: dict[str, str]) -> bool:
    labels = body.get("metadata", {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in wanted.items())


class Cluster:
    """Thin, thread-safe wrapper: kopf runs our sync handlers in its thread pool."""

    def __init__(self, configuration: kubernetes.client.Configuration | None = None) -> None:
        self.api = kubernetes.client.ApiClient(configuration or load_config())
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.batch = kubernetes.client.BatchV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        # A finished Job never changes: its Attempt is read from its pods once.
        self._finished: dict[str, Attempt] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.api.close()

    # ------------------------------------------------------------------ runs

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def patch_run_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )

    # -------------------------------------------------------------- attempts

    def _list(self, method, namespace: str, wanted: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in wanted.items())
        raw = method(namespace, label_selector=selector, _preload_content=False)
        items = json.loads(raw.data).get("items") or []
        return [item for item in items if _matches(item, wanted)]

    def attempts(self, namespace: str, run: str, uid: str) -> list[Attempt]:
        """Every attempt of the run still visible as a Job owned by it."""
        wanted = {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_RUN: run}
        jobs = [
            j
            for j in self._list(self.batch.list_namespaced_job, namespace, wanted)
            if _owned(j, uid)
        ]
        return [self._attempt(namespace, job) for job in jobs]

    def _attempt(self, namespace: str, job: dict[str, Any]) -> Attempt:
        uid = job["metadata"].get("uid") or job["metadata"]["name"]
        with self._lock:
            cached = self._finished.get(uid)
        if cached is not None:
            return cached
        name = job["metadata"]["name"]
        attempt = attempt_from_job(job, [])
        if attempt.state in TERMINAL:
            pods = self._list(self.core.list_namespaced_pod, namespace, {JOB_NAME_LABEL: name})
            attempt = attempt_from_job(job, pods)
            if not job["metadata"].get("deletionTimestamp"):
                with self._lock:
                    self._finished[uid] = attempt
        return attempt

    def create(self, manifest: dict[str, Any]) -> bool:
        """Create a ConfigMap, Service or Job; False when it already exists (idempotent)."""
        namespace = manifest["metadata"]["namespace"]
        create = {
            "Job": self.batch.create_namespaced_job,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
        }[manifest["kind"]]
        try:
            create(namespace, manifest)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods (they get SIGTERM and checkpoint)."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as err:
            if err.status != 404:
                raise

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """Decoded data of a Secret (storage credentials for deleting a run's artifacts)."""
        secret = self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _owned(job: dict[str, Any], uid: str) -> bool:
    """Owned by this very run (not by an earlier run of the same name); lenient when unknown."""
    owners = job["metadata"].get("ownerReferences") or []
    return not uid or not owners or any(o.get("uid") == uid for o in owners)
