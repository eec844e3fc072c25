"""Deleting a run's artifacts when its MFPORun is deleted with `storage.deleteOnRunDeletion`.

Called by the kopf deletion handler (`kube.handlers`). Credentials come from the run's
Secret, passed in as an environment mapping, so that concurrent deletions of runs with
different Secrets never share process-wide state. No torch: storage imports none.
"""

from __future__ import annotations

from mfpo_core import storage
from mfpo_core.api import MFPORunSpec

from mfpo_operator.plan import run_uri


def delete_run_artifacts(spec: MFPORunSpec, run: str, secret: dict[str, str]) -> str:
    """Delete everything under the run's prefix with the settings its stage pods get (the
    spec's endpoint, the Secret's keys), never the operator's own; returns the prefix."""
    prefix = run_uri(spec, run)
    with storage.using_env(storage.storage_env(spec.storage, secret)):
        storage.delete(prefix)
    return prefix
