"""Deleting a run's artifacts when its MFPORun is deleted with `storage.deleteOnRunDeletion`.

Called by the kopf deletion handler (`kube.handlers`), which holds the run's finalizer until
`delete_for_run` says the artifacts are deleted or can never be (`Outcome.final`): a run's
deletion must always complete, also when its Secret went first (a namespace being deleted
deletes it) or its storage keeps failing (the handler gives up after a bounded time). What is
not deleted is named in the outcome, for the Warning event the handler posts.

Only the run's own artifacts: the prefix's ownership record (`mfpo_core.ownership`) must name
this run (its uid), else nothing is deleted and the outcome says whose they are.

Credentials come from the run's Secret, passed in as an environment mapping, so that
concurrent deletions of runs with different Secrets never share process-wide state. No torch:
storage imports none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client.rest import ApiException
from mfpo_core import ownership, storage
from mfpo_core.api import MFPORunSpec, MFPORunStatus
from mfpo_core.contract import RunOwner, stage_uri
from mfpo_core.storage import StorageConfigError
from pydantic import ValidationError

from mfpo_operator.kube.cluster import Cluster
from mfpo_operator.kube.reconcile import completed_stages
from mfpo_operator.plan import run_uri


@dataclass(frozen=True)
class Outcome:
    """What one deletion attempt did. `final`: retrying cannot change it."""

    prefix: str  # the run's storage prefix (what is, or is left, to delete)
    deleted: bool
    final: bool
    reason: str = ""  # why not deleted
    others: bool = False  # the prefix's ownership record names another run: never delete by hand

    def left_behind(self) -> str:
        if self.others:
            return f"artifacts under {self.prefix} not deleted: {self.reason}; they are not this run's: leave them"
        return f"artifacts under {self.prefix} not deleted: {self.reason}; delete them by hand"


def delete_run_artifacts(
    spec: MFPORunSpec, owner: RunOwner, secret: dict[str, str], *, completed_stages: bool = False
) -> str:
    """Delete everything under the run's prefix with the settings its stage pods get (the
    spec's endpoint, the Secret's keys), never the operator's own; returns the prefix.

    Only the owner's: a prefix whose ownership record names another run (one of the same name
    in another namespace, or a later run of the name) is left alone (OwnershipConflict), and so
    is one without a record unless the run completed stages (then they are its own, written
    before records existed) or it holds nothing of a run."""
    prefix = run_uri(spec, owner.name)
    with storage.using_env(storage.storage_env(spec.storage, secret)):
        recorded = ownership.owner_of(prefix)
        if recorded is not None and recorded != owner:
            raise ownership.OwnershipConflict(f"they belong to {recorded.describe()}, not to this run")
        if recorded is None and not completed_stages:
            leftovers = [s for s in spec.stage_names() if storage.exists(stage_uri(prefix, s))]
            if leftovers:
                raise ownership.OwnershipConflict(
                    f"no ownership record says they ({', '.join(leftovers)}) are this run's, which completed no stage"
                )
        storage.delete(prefix)
    return prefix


def delete_for_run(cluster: Cluster, body: dict[str, Any]) -> Outcome:
    """One attempt at deleting a run's artifacts, every failure classified (never raises)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    run, namespace = meta["name"], meta.get("namespace") or "default"
    # The prefix as the spec names it, also when this version refuses the spec.
    prefix = f"{(spec.get('storage') or {}).get('uri', '<spec.storage.uri>')}/{run}"
    try:
        run_spec = MFPORunSpec.model_validate(spec)
        status = MFPORunStatus.model_validate(body.get("status") or {})
    except ValidationError as err:
        # Stored under an older CRD (e.g. s3:// without an endpoint): no retry can fix it.
        reason = f"the run's spec is not valid in this version ({err.errors()[0]['msg']})"
        return Outcome(prefix, deleted=False, final=True, reason=reason)
    prefix = run_uri(run_spec, run)
    secret_name = run_spec.storage.secret_name
    secret: dict[str, str] = {}
    if secret_name:
        try:
            secret = cluster.read_secret(namespace, secret_name)
        except ApiException as err:
            where = f"secret {secret_name!r} (spec.storage.secretName) in namespace {namespace!r}"
            if err.status == 404:  # deleted (e.g. with its namespace): it will not come back
                return Outcome(prefix, deleted=False, final=True, reason=f"{where} not found")
            return Outcome(prefix, deleted=False, final=False,
                           reason=f"{where} not readable ({err.status} {err.reason})")  # fmt: skip
    owner = RunOwner(runner="operator", namespace=namespace, name=run, uid=meta.get("uid") or "-")
    try:
        delete_run_artifacts(run_spec, owner, secret, completed_stages=completed_stages(status))
    except ownership.OwnershipConflict as err:  # another run's (or no record says whose): never deleted
        return Outcome(prefix, deleted=False, final=True, reason=str(err), others=True)
    except StorageConfigError as err:  # e.g. no credentials in the Secret
        return Outcome(prefix, deleted=False, final=True, reason=str(err))
    except Exception as err:  # noqa: BLE001 - the storage's own errors: retried, then given up
        return Outcome(prefix, deleted=False, final=False, reason=f"{type(err).__name__}: {err}")
    return Outcome(prefix, deleted=True, final=True)
