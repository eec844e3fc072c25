"""The kopf handlers of the MFPO operator: thin triggers of `kube.reconcile`.

Registered on their own `REGISTRY` (not kopf's global one), which `kube.main` and the tests
pass to `kopf.run` / `kopf.operator`. The handlers are sync functions: kopf runs them in its
thread pool, where the synchronous `kubernetes` client is at home.

Triggers: an MFPORun appears or its spec/retry annotation changes (an event), one of its
Jobs changes (an event), and the operator's ticker thread when a backoff ends or a periodic
resync is due (a kopf timer would need a finalizer on every run; the ticker needs none).
Deleting a run deletes its Jobs, pods, ConfigMaps and Services through owner references;
only with `spec.storage.deleteOnRunDeletion` does a kopf finalizer hold the deletion until
its artifacts are deleted.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import kopf
from mfpo_core.api import GROUP, PLURAL, VERSION, MFPORunSpec
from mfpo_core.storage import StorageConfigError
from pydantic import ValidationError

from mfpo_operator.kube.artifacts import delete_run_artifacts
from mfpo_operator.kube.cluster import Cluster
from mfpo_operator.kube.jobs import LABEL_RUN, MANAGED_BY
from mfpo_operator.kube.metrics import OperatorMetrics
from mfpo_operator.kube.reconcile import Operator, reconcile
from mfpo_operator.plan import RETRY_ANNOTATION
from mfpo_operator.validation import LAST_HANDLED_KEY, LAST_HANDLED_PREFIX

REGISTRY = kopf.OperatorRegistry()
_RUNS = {"group": GROUP, "version": VERSION, "plural": PLURAL, "registry": REGISTRY}


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else the kubeconfig: the same as the kubernetes client."""
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=REGISTRY)
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger, **_: Any) -> None:
    # Our own annotations, not kopf's defaults; kopf writes nothing into our status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="mfpo.dev")
    # A copy of the spec in an annotation: `validation.size_problems` counts it against the
    # API server's 256 KiB for all annotations.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=LAST_HANDLED_PREFIX, key=LAST_HANDLED_KEY
    )
    settings.posting.level = logging.WARNING  # our transitions are posted explicitly
    settings.execution.max_workers = int(os.environ.get("MFPO_OPERATOR_WORKERS", "16"))
    namespaces = list(memo.get("namespaces") or [])
    if namespaces and not any(_is_pattern(n) for n in namespaces):
        # A namespaced Role cannot list namespaces or CRDs cluster-wide: kopf's scanning would
        # get 403s and back off for about a minute before serving these namespaces. (Patterns
        # need that scanning, and the grant, to find the namespaces they match.)
        settings.scanning.disabled = True
        logger.info("namespaced mode: watching only %s (no cluster-wide scanning)", namespaces)
    metrics = memo.get("metrics") or OperatorMetrics()
    # One connection per worker thread, plus the ticker's.
    cluster = Cluster(pool_size=settings.execution.max_workers + 1)
    memo.operator = Operator(
        cluster=cluster,
        metrics=metrics,
        post_event=cluster.post_event,
        resync_seconds=float(os.environ.get("MFPO_OPERATOR_RESYNC_SECONDS", "60")),
        finished_series_seconds=float(os.environ.get("MFPO_FINISHED_SERIES_SECONDS", "3600")),
    )
    tick_seconds = float(os.environ.get("MFPO_OPERATOR_TICK_SECONDS", "5"))
    memo.stop_ticking = threading.Event()
    ticker = threading.Thread(
        target=memo.operator.tick_forever, args=(memo.stop_ticking, tick_seconds),
        name="mfpo-ticker", daemon=True,
    )  # fmt: skip
    ticker.start()


@kopf.on.probe(id="runs", errors=kopf.ErrorsMode.PERMANENT, registry=REGISTRY)
def runs_listable(memo: kopf.Memo, **_: Any) -> str:
    """Readiness: the operator can list MFPORuns where it watches (raises, i.e. HTTP 500,
    until it can: a missing Role binding shows as not ready, not as a silent operator)."""
    watched = list(memo.get("namespaces") or [])
    # Cluster-wide: one cluster-wide list; patterns: the exact names among them.
    namespaces = [n for n in watched if not _is_pattern(n)] if watched else [None]
    for namespace in namespaces:
        memo.operator.cluster.list_runs_probe(namespace)
    return "listable in " + (", ".join(n for n in namespaces if n) or "all namespaces")


def _is_pattern(namespace: str) -> bool:
    """A kopf namespace glob or negation (`team-*`, `!kube-system`), not an exact name."""
    return any(char in namespace for char in "*?[!")


@kopf.on.cleanup(registry=REGISTRY)
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("stop_ticking") is not None:
        memo.stop_ticking.set()
    operator = memo.get("operator")
    if operator is not None:
        operator.cluster.close()


def _needs_reconcile(event_type: str | None, body: kopf.Body) -> bool:
    """Skip the echo of our own status writes: only new specs and retry requests matter."""
    if event_type in (None, "ADDED"):  # None: the initial listing (operator start)
        return True
    status = body.get("status") or {}
    retry = body.metadata.annotations.get(RETRY_ANNOTATION)
    return status.get("observedGeneration") != body.metadata.get("generation") or (
        retry != status.get("retryToken")
    )


@kopf.on.event(**_RUNS)
def run_changed(
    type: str | None, body: kopf.Body, name: str, namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    if type == "DELETED":
        memo.operator.forget((namespace, name))
    elif _needs_reconcile(type, body):
        reconcile(memo.operator, namespace, name)


@kopf.on.event(
    "batch", "v1", "jobs",
    labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_RUN: kopf.PRESENT},
    registry=REGISTRY,
)  # fmt: skip
def job_changed(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    reconcile(memo.operator, namespace, labels[LABEL_RUN])


def _delete_artifacts_requested(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("storage") or {}).get("deleteOnRunDeletion"))


@kopf.on.delete(**_RUNS, when=_delete_artifacts_requested)
def delete_artifacts(
    spec: kopf.Spec, name: str, namespace: str, memo: kopf.Memo, logger, **_: Any
) -> None:
    # A spec this version refuses (stored under an older CRD, e.g. s3:// without an endpoint) or
    # storage settings no retry can fix must not hold the run's finalizer forever: kopf releases
    # the object after a PermanentError, and the message says what is left to delete by hand.
    where = f"{spec.get('storage', {}).get('uri', '<storage.uri>')}/{name}"
    try:
        run_spec = MFPORunSpec.model_validate(dict(spec))
    except ValidationError as err:
        raise kopf.PermanentError(
            f"artifacts under {where} not deleted: the run's spec is not valid in this version "
            f"({err.errors()[0]['msg']}); delete them by hand"
        ) from err
    secret_name = run_spec.storage.secret_name
    secret = memo.operator.cluster.read_secret(namespace, secret_name) if secret_name else {}
    try:
        prefix = delete_run_artifacts(run_spec, name, secret)
    except StorageConfigError as err:
        raise kopf.PermanentError(f"artifacts under {where} not deleted: {err}; delete them by hand") from err
    logger.info("deleted the run's artifacts under %s", prefix)
