"""The kopf handlers of the MFPO operator: thin triggers of `kube.reconcile`.

Registered on their own `REGISTRY` (not kopf's global one), which `kube.main` and the tests
pass to `kopf.run` / `kopf.operator`. The handlers are sync functions: kopf runs them in its
thread pool, where the synchronous `kubernetes` client is at home.

Triggers: an MFPORun appears or its spec/retry annotation changes (an event), one of its
Jobs changes something a reconcile reads (an event, kept in the operator's `JobCache` first),
one of its stage pods cannot run or is disrupted (an event: an image pull failing changes the
pod, not its Job), and the operator's ticker thread when a run is due (see `kube.reconcile`;
a kopf timer would need a finalizer on every run; the ticker needs none).
Deleting a run deletes its Jobs, pods, ConfigMaps and Services through owner references;
only with `spec.storage.deleteOnRunDeletion` does a kopf finalizer hold the deletion until
its artifacts are deleted, or are known to be left behind (a Warning event names them).

A watched namespace may disappear at any time (deleted, or its RoleBinding removed): the
operator keeps serving the others. kopf retries every API error it retries at all (403, 429,
5xx, connection errors) for ever instead of escalating after about a minute, which would stop
the whole operator (an escalated error in any watch stream fails kopf's orchestrator); runs
that hold a finalizer in a namespace keep the operator's RoleBinding there
(`kube.role_guard`). (kopf's namespace globs would stop the watchers of a vanished namespace
instead, but they observe namespaces cluster-wide, a grant the chart's namespaced mode does
not give: exact names, retried, are served again as soon as a namespace comes back.)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kopf
from mfpo_core.api import GROUP, KIND, PLURAL, VERSION

from mfpo_operator.kube.aftercare import Aftercare
from mfpo_operator.kube.artifacts import Outcome, delete_for_run
from mfpo_operator.kube.cluster import Cluster
from mfpo_operator.kube.job_cache import JobCache
from mfpo_operator.kube.jobs import LABEL_RUN, MANAGED_BY
from mfpo_operator.kube.metrics import OperatorMetrics
from mfpo_operator.kube.pod_cache import PodCache
from mfpo_operator.kube.reconcile import (
    EXISTENCE_CHECK_THREADS,
    Operator,
    ReconcileFailed,
    reconcile,
)
from mfpo_operator.kube.role_guard import RoleBindingGuard, holds_finalizer
from mfpo_operator.kube.run_cache import RunCache
from mfpo_operator.kube.status import pod_needs_look
from mfpo_operator.plan import RETRY_ANNOTATION, Event
from mfpo_operator.validation import LAST_HANDLED_KEY, LAST_HANDLED_PREFIX

REGISTRY = kopf.OperatorRegistry()
_RUNS = {"group": GROUP, "version": VERSION, "plural": PLURAL, "registry": REGISTRY}
# The operator's own Jobs and pods (the Job template carries the run's labels to its pods).
_OURS = {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_RUN: kopf.PRESENT}
# The same, as a server-side selector: the API server streams only the operator's Jobs and
# stage pods, not every Job and pod of the cluster.
STAGE_POD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},{LABEL_RUN}"
log = logging.getLogger("mfpo.operator")
T = TypeVar("T")

# kopf SIGKILLs its own process when exiting takes longer than this after a signal or an
# internal failure (settings.process.ultimate_exiting_timeout, default 600 s): a last resort,
# inside the 30 s grace period of a SIGTERM'd pod. Every state exits well before it.
EXIT_TIMEOUT_SECONDS = 25.0
# Threads posting the reconciles' events and deleting recorded Jobs (`kube.aftercare`).
AFTERCARE_THREADS = 2


class RetryForever:
    """kopf's API retry delays (settings.networking.error_backoffs) that never run out: kopf's
    own schedule (1, 1, 2, 3, 5, 8, 13, 21 s), then every 30 s. Not a tuple: kopf gives up
    when a sized schedule is exhausted (kopf/_cogs/clients/api.py `request`), and a given-up
    watch request stops the whole operator. kopf retries only 403, 429, 5xx and connection
    errors this way; any other error still fails at once."""

    def __iter__(self) -> Iterator[float]:
        return itertools.chain((1, 1, 2, 3, 5, 8, 13, 21), itertools.repeat(30.0))


class RunsDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base (the last handled spec, kept in an annotation), built for MFPORuns
    only. kopf builds one for every event of every resource it watches, as a deep copy of the
    whole body (kopf/_core/reactor/processing.py `_detect_causes`), and compares it only for
    a resource with a change-detecting handler: here the runs' deletion handler. A Job's or a
    pod's was never read, and copying it was the largest single part of kopf's per-event work
    (15% of the operator's CPU with 200 runs on kmock, py-spy)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        if body.get("kind") != KIND:
            return {}  # never compared: no change-detecting handler watches Jobs or pods
        return super().build(body=body, extra_fields=extra_fields)


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
    settings.persistence.diffbase_storage = RunsDiffBaseStorage(
        prefix=LAST_HANDLED_PREFIX, key=LAST_HANDLED_KEY
    )
    settings.posting.level = logging.WARNING  # our transitions are posted explicitly
    settings.execution.max_workers = int(os.environ.get("MFPO_OPERATOR_WORKERS", "16"))
    # A watched namespace that vanished (403 without its RoleBinding) is retried, never given up.
    settings.networking.error_backoffs = RetryForever()
    settings.process.ultimate_exiting_timeout = EXIT_TIMEOUT_SECONDS
    settings.watching.label_selectors["v1", "pods"] = STAGE_POD_SELECTOR
    settings.watching.label_selectors["batch", "jobs"] = STAGE_POD_SELECTOR
    namespaces = list(memo.get("namespaces") or [])
    if namespaces and not any(_is_pattern(n) for n in namespaces):
        # A namespaced grant cannot list namespaces or CRDs cluster-wide: kopf's scanning would
        # get 403s and back off for about a minute before serving these namespaces. (Patterns
        # need that scanning, and the grant, to find the namespaces they match.)
        settings.scanning.disabled = True
        logger.info("namespaced mode: watching only %s (no cluster-wide scanning)", namespaces)
    metrics = memo.get("metrics") or OperatorMetrics()
    aftercare = Aftercare(threads=AFTERCARE_THREADS)
    # One connection per thread that makes requests: kopf's workers, the ticker, the aftercare
    # threads and the existence checks (`kube.reconcile._exist`).
    pool_size = settings.execution.max_workers + 1 + aftercare.threads + EXISTENCE_CHECK_THREADS
    cluster = Cluster(pool_size=pool_size, observe_request=metrics.api_request)
    cluster.pods = PodCache()
    memo.operator = Operator(
        cluster=cluster,
        metrics=metrics,
        post_event=cluster.post_event,
        resync_seconds=float(os.environ.get("MFPO_OPERATOR_RESYNC_SECONDS", "60")),
        verify_seconds=float(os.environ.get("MFPO_OPERATOR_VERIFY_SECONDS", "600")),
        finished_series_seconds=float(os.environ.get("MFPO_FINISHED_SERIES_SECONDS", "3600")),
        jobs=JobCache(),
        aftercare=aftercare,
        runs=RunCache(),
    )
    binding = memo.get("role_binding")
    memo.role_guard = None
    if binding:
        memo.role_guard = RoleBindingGuard(cluster, binding, settings.persistence.finalizer)
        for namespace in (n for n in namespaces if not _is_pattern(n)):
            try:  # a finalizer left by an operator killed before it could release it
                memo.role_guard.release_if_unused(namespace)
            except Exception:  # released later, at a run's deletion
                logger.exception("%s: the operator's RoleBinding not checked", namespace)
    tick_seconds = float(os.environ.get("MFPO_OPERATOR_TICK_SECONDS", "5"))
    memo.stop_ticking = threading.Event()
    ticker = threading.Thread(
        target=memo.operator.tick_forever, args=(memo.stop_ticking, tick_seconds),
        name="mfpo-ticker", daemon=True,
    )  # fmt: skip
    ticker.start()


@kopf.on.probe(id="runs", errors=kopf.ErrorsMode.PERMANENT, registry=REGISTRY)
def runs_listable(memo: kopf.Memo, **_: Any) -> str:
    """Readiness (and liveness): the operator can list MFPORuns where it watches, in at least
    one namespace (raises, i.e. HTTP 500, until it can: a missing RoleBinding shows as not
    ready, not as a silent operator). One watched namespace out of reach (deleted, or its
    RoleBinding removed) is reported, not fatal: failing liveness for it would restart the operator
    in a loop while the other namespaces still need it."""
    watched = list(memo.get("namespaces") or [])
    # Cluster-wide: one cluster-wide list; patterns: the exact names among them.
    namespaces = [n for n in watched if not _is_pattern(n)] if watched else [None]
    listable, unreachable = [], {}
    for namespace in namespaces:
        try:
            memo.operator.cluster.list_runs_probe(namespace)
        except Exception as err:
            if len(namespaces) == 1:
                raise
            unreachable[namespace] = f"{getattr(err, 'status', '')} {getattr(err, 'reason', err)}"
        else:
            listable.append(namespace)
    if not listable:
        raise RuntimeError(f"runs are not listable in any watched namespace: {unreachable}")
    said = "listable in " + (", ".join(n for n in listable if n) or "all namespaces")
    if unreachable:
        said += "; not in " + ", ".join(f"{n} ({why.strip()})" for n, why in unreachable.items())
    return said


def _is_pattern(namespace: str) -> bool:
    """A kopf namespace glob or negation (`team-*`, `!kube-system`), not an exact name."""
    return any(char in namespace for char in "*?[!")


@kopf.on.cleanup(registry=REGISTRY)
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("stop_ticking") is not None:
        memo.stop_ticking.set()
    operator = memo.get("operator")
    if operator is not None:
        if operator.aftercare is not None:
            operator.aftercare.stop()
        operator.cluster.close()


def _reconcile(operator: Operator, namespace: str, name: str) -> None:
    """A reconcile from an event handler. Its error is logged here, not raised: kopf would log
    it as ignored (it retries no event handler), while the ticker does try again."""
    try:
        reconcile(operator, namespace, name)
    except ReconcileFailed as err:
        log.error("%s", err, exc_info=err.__cause__)


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
    guard: RoleBindingGuard | None = memo.get("role_guard")
    if type == "DELETED":
        memo.operator.forget((namespace, name))
        if guard is not None:
            guard.run_gone(namespace)
        return
    if memo.operator.runs is not None:
        memo.operator.runs.seen((namespace, name), body)
    if guard is not None and holds_finalizer(body, guard.kopf_finalizer):
        try:
            guard.hold(namespace)
        except Exception:  # the run is reconciled anyway; tried again at its next event
            log.exception("%s: the operator's RoleBinding not kept for run %s", namespace, name)
    if _needs_reconcile(type, body):
        _reconcile(memo.operator, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=_OURS, registry=REGISTRY)
def job_changed(
    type: str | None, body: kopf.Body, labels: kopf.Labels, namespace: str, memo: kopf.Memo,
    **_: Any,
) -> None:  # fmt: skip
    """Kept in the operator's JobCache first; a trigger only when it changed something a
    reconcile reads (not the echo of a Job the operator created, not a version bump)."""
    jobs: JobCache = memo.operator.jobs
    job = dict(body)
    changed = jobs.forget(job) if type == "DELETED" else jobs.observe(job)
    if changed:
        _reconcile(memo.operator, namespace, labels[LABEL_RUN])


def _pod_needs_look(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    pod = dict(body)
    operator: Operator | None = memo.get("operator")
    if operator is not None and operator.cluster.pods is not None:
        operator.cluster.pods.observe(type, pod)
    return type != "DELETED" and pod_needs_look(pod)


# The filter runs in kopf's event loop: it keeps every pod event in the operator's PodCache,
# and the events that need no look (most of them) are not handed to a worker thread.
@kopf.on.event("v1", "pods", labels=_OURS, when=_pod_needs_look, registry=REGISTRY)
def pod_changed(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    """A stage pod that cannot run (ErrImagePull, Unschedulable...) or was disrupted: shown on
    the run within seconds, not at the next resync."""
    _reconcile(memo.operator, namespace, labels[LABEL_RUN])


def _delete_artifacts_requested(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("storage") or {}).get("deleteOnRunDeletion"))


def give_up_seconds() -> float:
    """How long a run's deletion retries a failing artifact deletion before it releases the
    run and says what is left behind (MFPO_ARTIFACT_DELETION_GIVE_UP_SECONDS, default 600)."""
    return float(os.environ.get("MFPO_ARTIFACT_DELETION_GIVE_UP_SECONDS", "600"))


RETRY_DELAY_SECONDS = 60.0


@kopf.on.delete(**_RUNS, when=_delete_artifacts_requested)
async def delete_artifacts(
    body: kopf.Body, name: str, namespace: str, memo: kopf.Memo, runtime: Any, **_: Any,
) -> None:  # fmt: skip
    """Delete the run's artifacts; release the run when they are deleted, cannot be (its
    Secret or a valid spec is gone, or they are another run's: at once), or keep failing for give_up_seconds() (counted
    by kopf from the first attempt, across operator restarts). A run released with its
    artifacts still there gets a Warning event `ArtifactsLeftBehind` naming their prefix.

    Async, with the blocking work on a daemon thread: kopf waits for a sync handler's thread
    before it exits, and a storage request may hang for minutes; a cancelled await here lets a
    SIGTERM'd operator exit at once (the finalizer stays: the next operator deletes again)."""
    operator: Operator = memo.operator
    # The whole body: the prefix is deleted only for its owner, the run of this uid.
    run = {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}
    outcome = await in_daemon_thread(delete_for_run, operator.cluster, run)
    if outcome.deleted:
        log.info("%s/%s: deleted the run's artifacts under %s", namespace, name, outcome.prefix)
        return
    elapsed, limit = runtime.total_seconds(), give_up_seconds()
    if not outcome.final and elapsed < limit:
        raise kopf.TemporaryError(
            f"artifacts under {outcome.prefix} not deleted yet ({outcome.reason}); retried "
            f"until {limit:g} s after the first attempt",
            delay=max(1.0, min(RETRY_DELAY_SECONDS, limit - elapsed)),
        )
    _leave_behind(operator, body, outcome, elapsed)


def _leave_behind(operator: Operator, body: kopf.Body, outcome: Outcome, elapsed: float) -> None:
    """Say what is left behind: a Warning event on the run, and the log (an event cannot be
    created in a namespace being deleted: the NamespaceLifecycle admission refuses it)."""
    message = outcome.left_behind()
    if not outcome.final:
        message = f"{message} (gave up after {elapsed:.0f} s of retries)"
    meta = body["metadata"]
    log.warning("%s/%s: released: %s", meta["namespace"], meta["name"], message)
    try:
        operator.post_event(dict(body), Event("Warning", "ArtifactsLeftBehind", message))
    except Exception as err:  # noqa: BLE001 - said in the log above
        log.warning("%s/%s: event ArtifactsLeftBehind not posted: %s",
                    meta["namespace"], meta["name"], err)  # fmt: skip


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on a new daemon thread; a cancelled await abandons it. (asyncio.to_thread and
    kopf's executor use non-daemon pool threads, which the interpreter joins at exit.)"""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome: tuple[Callable[[Any], None], Any] = (future.set_exception, err)
        else:
            outcome = (future.set_result, result)
        try:
            loop.call_soon_threadsafe(deliver, *outcome)
        except RuntimeError:  # the loop is closed: nobody awaits any more
            pass

    threading.Thread(target=target, name=f"mfpo-{fn.__name__}", daemon=True).start()
    return await future
