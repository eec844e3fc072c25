"""The stage pods as the operator's pod watch last showed them, so that a finished Job's
termination summary is read without listing its pods.

Fed in kopf's event loop by the filter of the pod watch (`kube.handlers`), read by
`kube.cluster.Cluster` from the reconciles' threads. The watch of pods and the watch of Jobs
are separate streams: the Job controller marks a Job Complete or Failed only after counting
its ended pods (status.succeeded, status.failed; since Kubernetes 1.31 only after they have
all terminated), but the operator may see the Job's event before the pods'. So the view
answers for a Job only when it is complete: it holds as many ended pods of the Job (its uid)
as the Job counts, and none still running; else the caller lists them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from mfpo_operator.kube.jobs import JOB_NAME_LABEL

# The Job controller labels its pods with the Job's uid (and the name, JOB_NAME_LABEL).
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
_ENDED = ("Succeeded", "Failed")
Key = tuple[str, str]  # (namespace, Job name)


def _snapshot(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k != "managedFields"}
    return {"metadata": meta, "status": dict(pod.get("status") or {})}


class PodCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[Key, dict[str, dict[str, Any]]] = {}  # by Job, then pod name

    def observe(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        job = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
        if not job:
            return
        key = (meta.get("namespace", ""), job)
        with self._lock:
            if event_type == "DELETED":
                pods = self._pods.get(key, {})
                pods.pop(meta.get("name"), None)
                if not pods:
                    self._pods.pop(key, None)
            else:
                self._pods.setdefault(key, {})[meta.get("name")] = _snapshot(pod)

    def ended_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The ended pods of a finished Job, when this view holds them all; else None."""
        meta, status = job["metadata"], job.get("status") or {}
        uid = meta.get("uid")
        with self._lock:
            pods = list(self._pods.get((meta.get("namespace", ""), meta["name"]), {}).values())
        if uid:  # a Job of the same name before it (a new attempt never reuses a name, a
            # restarted operator's recreated Job may)
            pods = [p for p in pods if (p["metadata"].get("labels") or {}).get(CONTROLLER_UID_LABEL) in (uid, None)]
        if any(p["status"].get("phase") not in _ENDED for p in pods):
            return None
        counted = (status.get("succeeded") or 0) + (status.get("failed") or 0)
        return pods if pods and len(pods) >= counted else None
