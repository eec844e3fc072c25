"""The operator's watch-fed view of its stage Jobs, so that a reconcile lists nothing.

Fed by kopf's watch of the operator's Jobs (`kube.handlers.job_changed`: every event's body,
and DELETED), by the Jobs the operator creates (the create response), and by the
listings `kube.reconcile` makes; read by `kube.reconcile` from kopf's worker
threads and the ticker thread (hence the lock).

The view may lag the API server (a watch event not processed yet) and, until a run's Jobs
were listed once in this process (`seeded`), miss some (kopf delivers its initial listing of
Jobs and of runs in no set order): `kube.reconcile` lists a run's Jobs at its first
reconcile, and again whenever the view lacks the Job of an attempt the status says is
running. Once seeded, the view misses none of the run's Jobs: the operator is their only
creator (one replica, `Recreate`), it adds each Job it creates at once, and the watch adds
the rest; what lags is only their state, and a Job's end, the one state a plan acts on, is
final. Two rules keep a late event from undoing a fresher read:
- a Job's end is final (its Complete or Failed condition, its deletionTimestamp: the Job
  controller never removes them), so an older, unfinished version never replaces it;
- a deleted Job stays deleted (its uid is remembered until its run is forgotten; a Job without
  a uid, as kmock serves them, is kept by name and not remembered: names come back).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from mfpo_operator.kube.jobs import LABEL_RUN
from mfpo_operator.kube.status import TERMINAL, job_state

Key = tuple[str, str]  # (namespace, run)
# What changes in a Job's watch events without telling a reconcile anything: the version,
# the fields' owners, and the Job controller's bookkeeping of pods it has yet to count
# (status.uncountedTerminatedPods; their outcome shows in succeeded/failed and the conditions).
_METADATA_NOISE = ("resourceVersion", "managedFields")
_STATUS_NOISE = ("uncountedTerminatedPods",)


def run_key(job: Mapping[str, Any]) -> Key | None:
    meta = job.get("metadata") or {}
    run = (meta.get("labels") or {}).get(LABEL_RUN)
    return (meta.get("namespace", ""), run) if run else None


def _identity(job: Mapping[str, Any]) -> str:
    meta = job["metadata"]
    return meta.get("uid") or meta["name"]


def snapshot(job: Mapping[str, Any]) -> dict[str, Any]:
    """The Job as kept: without its pod template and managedFields (most of its bytes;
    nothing the operator reads from a Job)."""
    meta = {k: v for k, v in (job.get("metadata") or {}).items() if k != "managedFields"}
    spec = {k: v for k, v in (job.get("spec") or {}).items() if k != "template"}
    return {
        "apiVersion": job.get("apiVersion", "batch/v1"), "kind": job.get("kind", "Job"),
        "metadata": meta, "spec": spec, "status": dict(job.get("status") or {}),
    }  # fmt: skip


def _ended(job: Mapping[str, Any]) -> bool:
    return job_state(job) in TERMINAL  # Complete, Failed, or being deleted


def _telling(job: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in job["metadata"].items() if k not in _METADATA_NOISE}
    status = {k: v for k, v in job["status"].items() if k not in _STATUS_NOISE}
    return {**job, "metadata": meta, "status": status}


class JobCache:
    """The stage Jobs of every run, by (namespace, run label), each by uid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[Key, dict[str, dict[str, Any]]] = {}
        self._deleted: dict[Key, set[str]] = {}
        self._seeded: set[Key] = set()

    def observe(self, job: Mapping[str, Any]) -> bool:
        """A Job as a watch event or a read shows it; True when that changes anything a
        reconcile of its run reads (False for an echo, a version bump, or an older version)."""
        key = run_key(job)
        if key is None:
            return False
        new = snapshot(job)
        with self._lock:
            return self._put(key, new)

    def _put(self, key: Key, new: dict[str, Any]) -> bool:
        ident = _identity(new)
        if ident in self._deleted.get(key, ()):
            return False
        jobs = self._jobs.setdefault(key, {})
        old = jobs.get(ident)
        if old is not None and _ended(old) and not _ended(new):
            return False  # an older version, seen after the Job's end
        jobs[ident] = new
        return old is None or _telling(old) != _telling(new)

    def forget(self, job: Mapping[str, Any]) -> bool:
        """A Job deleted (a DELETED watch event, or 404 on a read); True if it was kept."""
        key = run_key(job)
        if key is None:
            return False
        ident = _identity(job)
        with self._lock:
            self._remember_deleted(key, job)
            return self._jobs.get(key, {}).pop(ident, None) is not None

    def forget_name(self, namespace: str, run: str, name: str) -> None:
        """The operator deleted the run's Job `name` (the API server removed it: background
        propagation)."""
        key = (namespace, run)
        with self._lock:
            jobs = self._jobs.get(key, {})
            for ident in [i for i, job in jobs.items() if job["metadata"]["name"] == name]:
                self._remember_deleted(key, jobs.pop(ident))

    def _remember_deleted(self, key: Key, job: Mapping[str, Any]) -> None:
        if job["metadata"].get("uid"):
            self._deleted.setdefault(key, set()).add(job["metadata"]["uid"])

    def replace(self, namespace: str, run: str, listed: Iterable[Mapping[str, Any]]) -> None:
        """A fresh listing of the run's Jobs: those not in it are gone; the run is seeded."""
        key = (namespace, run)
        fresh = [snapshot(job) for job in listed]
        with self._lock:
            self._seeded.add(key)
            kept = {_identity(job) for job in fresh}
            jobs = self._jobs.setdefault(key, {})
            for gone in set(jobs) - kept:
                self._remember_deleted(key, jobs.pop(gone))
            for job in fresh:
                self._put(key, job)

    def seeded(self, namespace: str, run: str) -> bool:
        """Whether the run's Jobs were listed once since this cache (the process) began."""
        with self._lock:
            return (namespace, run) in self._seeded

    def jobs(self, namespace: str, run: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._jobs.get((namespace, run), {}).values())

    def holds(self, namespace: str, run: str, name: str) -> bool:
        """Whether the run's Job `name` is kept (not deleted, as far as the cache knows)."""
        return any(job["metadata"]["name"] == name for job in self.jobs(namespace, run))

    def live(self, namespace: str, run: str) -> list[dict[str, Any]]:
        """The run's Jobs not known to have ended (the ones that can still change)."""
        return [job for job in self.jobs(namespace, run) if not _ended(job)]

    def forget_run(self, namespace: str, run: str) -> None:
        with self._lock:
            self._jobs.pop((namespace, run), None)
            self._deleted.pop((namespace, run), None)
            self._seeded.discard((namespace, run))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(jobs) for jobs in self._jobs.values())
