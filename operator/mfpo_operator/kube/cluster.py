"""The operator's one adapter to the Kubernetes API (the official `kubernetes` client).

Created once at operator startup (into kopf's memo) and closed at cleanup; called by
`kube.reconcile`. API errors are translated here, once: 409 on create means "exists"
(deterministic names make creation idempotent, also after an operator restart), 404 on
delete means "gone". Objects are created with `fieldValidation=Strict`: a field the API server
does not know (a typo inside the free-form spec.resources.affinity) is refused with 400
instead of dropped with a warning. Listing passes a label selector (for real clusters) *and* filters in
code (kmock, the test emulator, ignores selectors).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException
from mfpo_core.api import GROUP, PLURAL, VERSION

from mfpo_operator.kube.jobs import JOB_NAME_LABEL, LABEL_RUN, MANAGED_BY
from mfpo_operator.kube.pod_cache import PodCache
from mfpo_operator.kube.status import (
    TERMINAL,
    Eviction,
    ResumeStep,
    attempt_from_job,
    evictions,
    lacks_pods,
    stopped_after_start,
)
from mfpo_operator.plan import Attempt, Event

log = logging.getLogger("mfpo.operator")
# (connect, read) seconds of every API request, and no retry after a read timed out. The
# client's default is no timeout at all (and urllib3 retries a GET 3 times): a request to an
# API server that stopped answering would hang its handler thread, and kopf waits for running
# handlers before it exits, so a SIGTERM'd operator would outlive its grace period. 20 s is
# far above the API server's own latency objectives (p99 of a LIST within 5 s, of a write
# within 1 s); MFPO_OPERATOR_API_TIMEOUT_SECONDS sets the read timeout.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 20.0
_MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"
# The API server rejects an Event message over 1 KiB (validation of core/v1 Event.message).
EVENT_MESSAGE_LIMIT = 1024


@dataclass
class Observed:
    """What one look at a run's Jobs found: its attempts, the evicted pods of its running
    Jobs, the names of its Jobs by (stage, attempt) with those being deleted, and whether a
    running Job has fewer ready pods than it runs (its pods were looked at: they may be
    stuck, and only a later look at them shows it)."""

    attempts: list[Attempt] = field(default_factory=list)
    evictions: list[Eviction] = field(default_factory=list)
    jobs: dict[tuple[str, int], str] = field(default_factory=dict)
    deleting: set[tuple[str, int]] = field(default_factory=set)
    unready: bool = False


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

    def __init__(
        self,
        configuration: kubernetes.client.Configuration | None = None,
        pool_size: int = 0,
        observe_request: RequestObserver | None = None,
    ) -> None:
        configuration = configuration or load_config()
        # urllib3's pool defaults to 10 connections: fewer than the operator's worker threads
        # gives "Connection pool is full, discarding connection" under load.
        if pool_size > (configuration.connection_pool_maxsize or 0):
            configuration.connection_pool_maxsize = pool_size
        configuration.retries = urllib3.Retry(total=3, read=0)
        read = float(os.environ.get("MFPO_OPERATOR_API_TIMEOUT_SECONDS", READ_TIMEOUT_SECONDS))
        self.api = _ApiClientWithTimeout(configuration, (CONNECT_TIMEOUT_SECONDS, read), observe_request)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(self.api)
        self.batch = kubernetes.client.BatchV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        # A finished Job never changes: its Attempt is read from its pods once. By run, so
        # that the entries of Jobs gone (deleted when recorded, or by their TTL) are dropped.
        self._finished: dict[tuple[str, str], dict[str, Attempt]] = {}
        self._lock = threading.Lock()
        # The stage pods as the pod watch shows them (`kube.pod_cache`); None: always listed.
        self.pods: PodCache | None = None

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

    def runs(self, namespace: str) -> list[dict[str, Any]]:
        """Every MFPORun in the namespace."""
        raw = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _preload_content=False
        )
        return json.loads(raw.data).get("items") or []

    def list_runs_probe(self, namespace: str | None) -> None:
        """List at most one MFPORun (raises ApiException, e.g. 403, when it cannot)."""
        if namespace is None:
            self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
        else:
            self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, limit=1)

    def patch_run_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the run's status; the run as written."""
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )

    # -------------------------------------------------------------- attempts

    def _list(self, method, namespace: str, wanted: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in wanted.items())
        raw = method(namespace, label_selector=selector, _preload_content=False)
        items = json.loads(raw.data).get("items") or []
        return [item for item in items if _matches(item, wanted)]

    def list_jobs(self, namespace: str, run: str) -> list[dict[str, Any]]:
        """The run's Jobs as the API server has them now (one list call)."""
        wanted = {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_RUN: run}
        return self._list(self.batch.list_namespaced_job, namespace, wanted)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job as the API server has it now; None when it is gone."""
        try:
            raw = self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return json.loads(raw.data)

    def attempts(
        self,
        namespace: str,
        run: str,
        uid: str,
        resume_step: ResumeStep | None = None,
        jobs: list[dict[str, Any]] | None = None,
    ) -> Observed:
        """Every attempt of the run visible as a Job owned by it (`jobs`, else listed now),
        and the evictions seen among the pods of its running Jobs. `resume_step` is asked for
        a Job suspended after it ran (see `status.suspension`)."""
        if jobs is None:
            jobs = self.list_jobs(namespace, run)
        jobs = [j for j in jobs if _owned(j, uid)]
        with self._lock:
            cache = self._finished.setdefault((namespace, run), {})
            listed = {j["metadata"].get("uid") or j["metadata"]["name"] for j in jobs}
            for gone in set(cache) - listed:
                del cache[gone]
        observed = Observed()
        for job in jobs:
            self._observe(namespace, job, observed, cache, resume_step)
        return observed

    def forget_run(self, namespace: str, run: str) -> None:
        with self._lock:
            self._finished.pop((namespace, run), None)

    def _observe(
        self,
        namespace: str,
        job: dict[str, Any],
        observed: Observed,
        cache: dict[str, Attempt],
        resume_step: ResumeStep | None,
    ) -> None:
        meta = job["metadata"]
        uid = meta.get("uid") or meta["name"]
        with self._lock:
            attempt = cache.get(uid)
        if attempt is None:
            attempt = self._read_attempt(namespace, job, observed, resume_step)
            if attempt.state in TERMINAL and not meta.get("deletionTimestamp"):
                with self._lock:
                    cache[uid] = attempt
        key = (attempt.stage, attempt.attempt)
        observed.jobs[key] = meta["name"]
        if meta.get("deletionTimestamp"):
            observed.deleting.add(key)
        observed.attempts.append(attempt)

    def _read_attempt(
        self, namespace: str, job: dict[str, Any], observed: Observed, resume_step: ResumeStep | None
    ) -> Attempt:
        """The Job's attempt, reading its pods and events only when the Job alone cannot tell."""
        name = job["metadata"]["name"]
        attempt = attempt_from_job(job, [])
        pods: list[dict[str, Any]] = []
        if attempt.state not in TERMINAL and _pods_not_ready(job):
            observed.unready = True
        if attempt.state in TERMINAL or _pods_not_ready(job):
            seen = self.pods.ended_pods(job) if attempt.state in TERMINAL and self.pods else None
            pods = seen or self._list(self.core.list_namespaced_pod, namespace, {JOB_NAME_LABEL: name})
        elif not stopped_after_start(job):
            return attempt
        # Events: the Job controller's FailedCreate on a Job without pods, Kueue's Stopped on
        # a Job it suspended after it ran.
        needs_events = (attempt.state not in TERMINAL and lacks_pods(job, pods)) or (
            stopped_after_start(job)
        )
        events = self._job_events(namespace, name) if needs_events else []
        attempt = attempt_from_job(job, pods, events=events, resume_step=resume_step)
        if attempt.state not in TERMINAL:
            observed.evictions += evictions(attempt.stage, pods)
        return attempt

    def _job_events(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """Events about the Job `job` (the Job controller's FailedCreate among them)."""
        selector = f"involvedObject.kind=Job,involvedObject.name={job}"
        raw = self.core.list_namespaced_event(namespace, field_selector=selector, _preload_content=False)
        items = json.loads(raw.data).get("items") or []
        # Filtered here too: an API that ignores the field selector (kmock) returns them all.
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == job]

    def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a ConfigMap, Service or Job: the object as created (parsed as JSON, not into
        the client's models); None when it already exists (idempotent).

        Strict field validation: an unknown field is a 400 naming it (apiserver
        pkg/endpoints/handlers/create.go: a strict decoding error under
        fieldValidation=Strict), not a field dropped with only a Warning header."""
        namespace = manifest["metadata"]["namespace"]
        create = {
            "Job": self.batch.create_namespaced_job,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
        }[manifest["kind"]]
        try:
            raw = create(namespace, manifest, field_validation="Strict", _preload_content=False)
        except ApiException as err:
            if err.status == 409:
                return None
            raise
        return json.loads(raw.data)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a Job, ConfigMap or Service; a Job's pods go in the background (they get
        SIGTERM and checkpoint). Gone already (404) is fine."""
        delete = {
            "Job": self.batch.delete_namespaced_job,
            "ConfigMap": self.core.delete_namespaced_config_map,
            "Service": self.core.delete_namespaced_service,
        }[kind]
        try:
            _drop(delete(name, namespace, propagation_policy="Background", _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise

    def delete_job(self, namespace: str, name: str) -> None:
        self.delete("Job", namespace, name)

    def post_event(self, body: dict[str, Any], event: Event) -> None:
        """A core/v1 Event on the run, as `kubectl describe mfporun` lists them.

        Posted with the operator's own client, not `kopf.event`: that one reads kopf's context
        variables, which exist only in kopf's handler threads, not in the ticker thread."""
        namespace = body["metadata"]["namespace"]
        _drop(self.core.create_namespaced_event(
            namespace, event_body(body, event), _preload_content=False
        ))  # fmt: skip

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        """Whether a ServiceAccount or Secret exists (read with `get`, the one verb granted).

        True when the operator may not read it (403: the chart's rbac.readStorageSecrets=false):
        it cannot tell, and the Job's pod will say so (CreateContainerConfigError)."""
        read = {
            "ServiceAccount": self.core.read_namespaced_service_account,
            "Secret": self.core.read_namespaced_secret,
        }[kind]
        try:
            _drop(read(name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status == 403:
                log.debug("%s/%s %s: not readable (403), not checked", namespace, kind, name)
                return True
            if err.status == 404:
                return False
            raise
        return True

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """Decoded data of a Secret (storage credentials for deleting a run's artifacts)."""
        secret = self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    # ---------------------------------------------- the operator's own RoleBinding

    def binding_finalizers(self, namespace: str, name: str) -> list[str]:
        """metadata.finalizers of a RoleBinding (ApiException 404/403 as the server says)."""
        raw = self.rbac.read_namespaced_role_binding(name, namespace, _preload_content=False)
        return list(json.loads(raw.data).get("metadata", {}).get("finalizers") or [])

    def patch_binding(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> None:
        """Apply a JSON patch (a list body: application/json-patch+json) to a RoleBinding."""
        self.rbac.patch_namespaced_role_binding(name, namespace, patch, _preload_content=False)


# (verb, resource as `api_request` names them, seconds until the response's headers).
RequestObserver = Callable[[str, str, float], None]


class _ApiClientWithTimeout(kubernetes.client.ApiClient):
    """The kubernetes ApiClient with a (connect, read) timeout on every request that names none
    (the generated API methods pass `_request_timeout=None` unless a caller sets one), each
    request's time told to `observe` (a failed one too)."""

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        timeout: tuple[float, float],
        observe: RequestObserver | None = None,
    ) -> None:
        super().__init__(configuration)
        self.timeout = timeout
        self.observe = observe

    def request(self, method: str, url: str, *args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return super().request(method, url, *args, _request_timeout=_request_timeout or self.timeout, **kwargs)
        finally:
            if self.observe is not None:
                self.observe(*api_request(method, url), time.monotonic() - started)


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def api_request(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of a request, as Kubernetes authorization names them ("Determine the
    request verb", kubernetes.io/docs/reference/access-authn-authz/authorization: POST is
    `create`, a GET of one object `get`, of a collection `list`, PUT `update`, PATCH `patch`,
    DELETE `delete`), so that they read like the chart's RBAC rules; a subresource after a
    slash: ("get", "mfporuns"), ("list", "pods"), ("patch", "mfporuns/status"). Paths:
    `/api/v1/namespaces/{ns}/{resource}/{name}/{sub}`, `/apis/{group}/{version}/...`. (The
    client makes no watch and no collection delete: kopf's watches are not timed here.)"""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource = (f"{rest[0]}/{rest[2]}" if len(rest) >= 3 else rest[0]) if rest else "unknown"
    verb = _VERBS.get(method.upper()) or ("get" if len(rest) >= 2 else "list")
    return verb, resource


def _drop(response) -> None:
    """Discard a raw response (`_preload_content=False`: nothing decoded into the client's
    models): urllib3 returns its connection to the pool only once its body is read."""
    response.drain_conn()


# Added by the Job controller once a Job's outcome is decided, before its pods have all
# terminated and it gets Complete or Failed (Kubernetes 1.31+, "Termination of Job pods":
# https://kubernetes.io/docs/concepts/workloads/controllers/job/#termination-of-job-pods).
_ENDING = ("SuccessCriteriaMet", "FailureTarget")


def _pods_not_ready(job: dict[str, Any]) -> bool:
    """A running, admitted Job with fewer ready pods than it runs: its pods may be stuck
    (the Job controller counts Ready pods in status.ready; a suspended Job has none). Not a
    Job whose outcome is decided (its pods are ending: its Complete or Failed event follows)."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    ending = any(
        c.get("type") in _ENDING and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    ready = status.get("ready") or 0
    return not spec.get("suspend") and not ending and ready < (spec.get("parallelism") or 1)


def _owned(job: dict[str, Any], uid: str) -> bool:
    """Owned by this very run (not by an earlier run of the same name); lenient when unknown."""
    owners = job["metadata"].get("ownerReferences") or []
    return not uid or not owners or any(o.get("uid") == uid for o in owners)


def event_body(run: dict[str, Any], event: Event) -> dict[str, Any]:
    """A core/v1 Event about the run (fields as kubectl's and kopf's own events fill them)."""
    meta = run["metadata"]
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    # client-go's event recorder names events "<object>.<unix nanoseconds in hex>".
    name = f"{meta['name']}.{time.time_ns():x}"
    message = event.message
    if len(message) > EVENT_MESSAGE_LIMIT:
        message = message[: EVENT_MESSAGE_LIMIT - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": run.get("apiVersion", f"{GROUP}/{VERSION}"),
            "kind": run.get("kind", "MFPORun"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": message,
        "source": {"component": MANAGED_BY},
        "reportingComponent": MANAGED_BY,
        "reportingInstance": MANAGED_BY,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
