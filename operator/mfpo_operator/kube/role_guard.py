"""Keeping the operator's rights in a namespace for as long as runs there hold its finalizer.

In namespaced mode the operator acts in a namespace through the chart's RoleBinding there (to
the chart's ClusterRole). Deleting the namespace deletes the binding at once, together with
everything else in it (the namespace controller deletes every resource of the namespace,
kubernetes pkg/controller/namespace/deletion/namespaced_resources_deleter.go
`deleteAllContent`), while a run whose artifacts are to be deleted
(`spec.storage.deleteOnRunDeletion`) keeps kopf's finalizer: without the binding the operator
can no longer remove it, and the namespace stays Terminating forever (seen on the lab).

So while a namespace holds such a run, the operator puts its own finalizer on that
RoleBinding. A RoleBinding with a finalizer outlives its deletion request (it only gets a
deletionTimestamp) and keeps granting: the RBAC authorizer reads every binding its informers
hold and never looks at deletionTimestamp (kubernetes pkg/registry/rbac/validation/rule.go
`VisitRulesFor`; checked on the lab). Once the namespace's last such run is gone, the operator
removes its finalizer, and the namespace deletion completes. One object: with a Role beside
the binding, releasing the first of the two would take away the right to release the second.

Called by the kopf handlers (`kube.handlers`): `hold` on every event of a run that needs the
finalizer, `run_gone` when a run is deleted, `release_if_unused` for each namespace at startup. Patching only `metadata.finalizers` of a
RoleBinding needs no escalation check (kubernetes pkg/registry/rbac/helpers.go
`IsOnlyMutatingGCFields`); the chart grants `get` and `patch` on this one binding by name.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes.client.rest import ApiException

from mfpo_operator.kube.cluster import Cluster

log = logging.getLogger("mfpo.operator")

FINALIZER = "mfpo.dev/runs-hold-finalizers"


def holds_finalizer(run: dict[str, Any], kopf_finalizer: str) -> bool:
    """Whether a run needs the operator to release it when deleted: it asks for its
    artifacts to be deleted, or still carries kopf's finalizer from when it did."""
    spec, meta = run.get("spec") or {}, run.get("metadata") or {}
    wanted = bool((spec.get("storage") or {}).get("deleteOnRunDeletion"))
    return wanted or kopf_finalizer in (meta.get("finalizers") or [])


class RoleBindingGuard:
    """The finalizer on the RoleBinding named `binding` in each namespace that holds runs
    with a finalizer. Thread-safe: kopf calls its handlers from a thread pool."""

    def __init__(self, cluster: Cluster, binding: str, kopf_finalizer: str) -> None:
        self.cluster, self.binding, self.kopf_finalizer = cluster, binding, kopf_finalizer
        self._held: set[str] = set()  # namespaces whose binding carries FINALIZER
        self._told: set[str] = set()  # namespaces already warned about (once each)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, namespace: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(namespace, threading.Lock())

    def hold(self, namespace: str) -> None:
        """Make sure the namespace's binding carries the finalizer (once per namespace and
        process: a cached answer until `release_if_unused` drops it)."""
        with self._lock(namespace):
            if namespace in self._held:
                return
            try:
                self._patch(namespace, add=True)
            except ApiException as err:
                # 404: no such binding (RBAC not the chart's); 403: not ours to read; 422: the
                # binding is being deleted already (no finalizer can be added any more).
                if err.status not in (403, 404, 422):
                    raise
                self._warn_once(namespace, err)
                return
            self._held.add(namespace)
            log.info("%s: RoleBinding %s kept (finalizer %s) while runs here hold the "
                     "operator's finalizer", namespace, self.binding, FINALIZER)  # fmt: skip

    def run_gone(self, namespace: str) -> None:
        """A run was deleted: release the namespace's binding if it was the last holding run."""
        with self._guard:
            held = namespace in self._held
        if held:
            self.release_if_unused(namespace)

    def release_if_unused(self, namespace: str) -> None:
        """Remove the finalizer once no run in the namespace holds the operator's own (also
        called at startup: a finalizer left by an operator killed before it released)."""
        with self._lock(namespace):
            try:
                runs = self.cluster.runs(namespace)
                holding = [r["metadata"]["name"] for r in runs
                           if holds_finalizer(r, self.kopf_finalizer)]  # fmt: skip
                if holding:
                    log.debug("%s: %s still hold the operator's finalizer", namespace, holding)
                    return
                removed = self._patch(namespace, add=False)
            except ApiException as err:
                if err.status not in (403, 404):
                    raise
                removed = False  # the binding is gone already (403: no rights left; 404: none)
            if removed:
                log.info("%s: no run holds the operator's finalizer; RoleBinding %s released",
                         namespace, self.binding)  # fmt: skip
            self._held.discard(namespace)

    def _patch(self, namespace: str, add: bool) -> bool:
        """Add or remove FINALIZER; whether the binding changed."""
        finalizers = self.cluster.binding_finalizers(namespace, self.binding)
        patch = finalizer_patch(finalizers, FINALIZER, add=add)
        if patch:
            self.cluster.patch_binding(namespace, self.binding, patch)
        return bool(patch)

    def _warn_once(self, namespace: str, err: ApiException) -> None:
        if namespace in self._told:
            return
        self._told.add(namespace)
        log.warning(
            "%s: RoleBinding %s not kept (%s %s): deleting this namespace while runs here hold "
            "the operator's finalizer may leave them, and the namespace, for a person to "
            "release (docs/troubleshooting.md)", namespace, self.binding, err.status, err.reason,
        )  # fmt: skip


def finalizer_patch(current: list[str], finalizer: str, add: bool) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) adding or removing `finalizer`, guarded by a `test` of the list
    it was computed from (a concurrent change fails it with 422 instead of being overwritten);
    [] when nothing is to change."""
    if add == (finalizer in current):
        return []
    if not current:  # add only: there is no list to test against
        return [{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}]
    wanted = [*current, finalizer] if add else [f for f in current if f != finalizer]
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": wanted},
    ]
