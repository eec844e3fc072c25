"""Keeping the operator's rights in a namespace for as long as runs there hold its finalizer.

In namespaced mode the operator acts in a namespace through the chart's Role and RoleBinding
there. Deleting the namespace deletes them at once, together with everything else in it (the
namespace controller deletes every resource of the namespace, kubernetes
pkg/controller/namespace/deletion/namespaced_resources_deleter.go `deleteAllContent`), while
a run whose artifacts are to be deleted (`spec.storage.deleteOnRunDeletion`) keeps kopf's
finalizer: without the Role the operator can no longer remove it, and the namespace stays
Terminating forever.

So while a namespace holds such a run, the operator puts its own finalizer on that Role and
RoleBinding. A Role or RoleBinding with a finalizer outlives its deletion request (it only gets
a deletionTimestamp) and keeps granting: the RBAC authorizer reads every Role and RoleBinding
its informers hold and never looks at deletionTimestamp (kubernetes
pkg/registry/rbac/validation/rule.go `VisitRulesFor`). Once the namespace's last such run is
gone, the operator removes its finalizer, and the namespace deletion completes.

Called by the kopf handlers (`kube.handlers`): `hold` on every event of a run that needs the
finalizer, `release_if_unused` when a run is gone. Patching only `metadata.finalizers` of a
Role or RoleBinding needs no escalation check (kubernetes pkg/registry/rbac
`IsOnlyMutatingGCFields`); the chart grants `get` and `patch` on these two objects by name.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes.client.rest import ApiException

from mfpo_operator.kube.cluster import Cluster

log = logging.getLogger("mfpo.operator")

FINALIZER = "mfpo.dev/runs-hold-finalizers"
KINDS = ("Role", "RoleBinding")


def holds_finalizer(run: dict[str, Any], kopf_finalizer: str) -> bool:
    """Whether a run needs the operator to release it when deleted: it asks for its
    artifacts to be deleted, or still carries kopf's finalizer from when it did."""
    spec, meta = run.get("spec") or {}, run.get("metadata") or {}
    wanted = bool((spec.get("storage") or {}).get("deleteOnRunDeletion"))
    return wanted or kopf_finalizer in (meta.get("finalizers") or [])


class RoleGuard:
    """The finalizer on the Role and RoleBinding named `role` in each namespace that holds
    runs with a finalizer. Thread-safe: kopf calls its handlers from a thread pool."""

    def __init__(self, cluster: Cluster, role: str, kopf_finalizer: str) -> None:
        self.cluster, self.role, self.kopf_finalizer = cluster, role, kopf_finalizer
        self._held: set[str] = set()  # namespaces whose Role and RoleBinding carry FINALIZER
        self._told: set[str] = set()  # namespaces already warned about (once each)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, namespace: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(namespace, threading.Lock())

    def hold(self, namespace: str) -> None:
        """Make sure the namespace's Role and RoleBinding carry the finalizer (once per
        namespace and process: a cached answer until `release_if_unused` drops it)."""
        with self._lock(namespace):
            if namespace in self._held:
                return
            for kind in KINDS:
                if not self._patch(kind, namespace, add=True):
                    return
            self._held.add(namespace)
            log.info("%s: Role and RoleBinding %s kept (finalizer %s) while runs here hold "
                     "the operator's finalizer", namespace, self.role, FINALIZER)  # fmt: skip

    def release_if_unused(self, namespace: str) -> None:
        """Remove the finalizer once no run in the namespace holds the operator's own."""
        with self._lock(namespace):
            try:
                runs = self.cluster.runs(namespace)
            except ApiException as err:
                if err.status not in (403, 404):
                    raise
                self._held.discard(namespace)  # the Role is gone already: nothing to release
                return
            holding = [r["metadata"]["name"] for r in runs if holds_finalizer(r, self.kopf_finalizer)]
            if holding:
                log.debug("%s: %s still hold the operator's finalizer", namespace, holding)
                return
            for kind in KINDS:
                self._patch(kind, namespace, add=False)
            if namespace in self._held:
                log.info("%s: no run holds the operator's finalizer; Role and RoleBinding %s "
                         "released", namespace, self.role)  # fmt: skip
            self._held.discard(namespace)

    def _patch(self, kind: str, namespace: str, add: bool) -> bool:
        """Add or remove FINALIZER on one object; False when the object cannot be read."""
        try:
            finalizers = self.cluster.finalizers(kind, namespace, self.role)
        except ApiException as err:
            if err.status not in (403, 404):
                raise
            self._warn_once(namespace, kind, err)
            return False
        patch = finalizer_patch(finalizers, FINALIZER, add=add)
        if patch:
            try:
                self.cluster.patch_finalizers(kind, namespace, self.role, patch)
            except ApiException as err:
                if err.status == 404 and not add:
                    return True  # already gone: nothing left to release
                raise
        return True

    def _warn_once(self, namespace: str, kind: str, err: ApiException) -> None:
        if namespace in self._told:
            return
        self._told.add(namespace)
        reason = "not found" if err.status == 404 else "not readable (403)"
        log.warning(
            "%s: %s %s %s: deleting this namespace while runs here hold the operator's "
            "finalizer may leave them (and the namespace) for a person to release (see "
            "docs/troubleshooting.md)", namespace, kind, self.role, reason,
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
