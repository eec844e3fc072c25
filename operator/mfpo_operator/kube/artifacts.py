"""Deleting a run's artifacts when its MFPORun is deleted with `storage.deleteOnRunDeletion`.

Called by the kopf deletion handler (`kube.handlers`). Credentials come from the run's
Secret, passed in as an environment mapping, so that concurrent deletions of runs with
different Secrets never share process-wide state. No torch: storage imports none.
"""

from __future__ import annotations

from mfpo_core import s3_backend, storage
from mfpo_core.api import MFPORunSpec

from mfpo_operator.plan import run_uri


def storage_env(spec: MFPORunSpec, secret: dict[str, str]) -> dict[str, str]:
    """The environment a stage pod would see for this run's storage."""
    env = {"MFPO_S3_SECURE": "true" if spec.storage.secure else "false"}
    if spec.storage.endpoint:
        env["MFPO_S3_ENDPOINT"] = spec.storage.endpoint
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if secret.get(key):
            env[key] = secret[key]
    return env


def delete_run_artifacts(spec: MFPORunSpec, run: str, env: dict[str, str]) -> str:
    """Delete everything under the run's prefix; returns the prefix deleted."""
    prefix = run_uri(spec, run)
    location = storage.parse(prefix)
    if location.scheme == "s3":
        # A backend built from this run's settings, not from the operator's own environment.
        s3_backend.backend_for_env(env).delete_tree(location)
    else:
        storage.delete(prefix)
    return prefix
