"""Whose a run's storage prefix is: the ownership record `<run_uri>/_owner.json`.

A run's artifacts live under `<spec.storage.uri>/<run name>`: the name alone says where. Two runs
of one name would share that prefix (two namespaces writing to one bucket, or a run deleted with
its artifacts kept and created again with another spec), and a stage that finds a result
document or a checkpoint there would take the other run's for its own: the second run would
report the first one's policies and scores as its own and succeed. So the prefix names its owner:

- the first stage that runs claims the prefix for its run (`contract.RunOwner`: namespace, name
  and uid of the MFPORun, or the local runner's own id), with a create-if-absent write, so that of
  two runs starting together exactly one wins;
- every stage, before it trusts any result document or checkpoint under the prefix, checks the
  record: another owner is bad input naming both runs and what to do. Attempts, retries and
  resumes of the same run (same uid, whatever the operator or pod restarts) find their own
  record and carry on;
- a prefix holding artifacts of a run that left no record (one run by an earlier version) is
  claimed only when the run says so (`adopt_unowned`: it completed stages before records
  existed), else it is bad input too: those artifacts cannot be told from another run's.

Called by the stage runner (mfpo_runtime.stage) before anything else, by the local runner
before it writes its state, and by the operator's artifact deletion, which deletes a prefix only
for its owner. I/O through `storage` only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from pydantic import ValidationError

from mfpo_core import storage
from mfpo_core.contract import BadInput, RunOwner, owner_uri, stage_uri


class OwnershipConflict(BadInput):
    """The prefix belongs to another run, or holds artifacts no record says are this run's."""


def owner_of(run_uri: str) -> RunOwner | None:
    """The prefix's recorded owner; None when there is no record."""
    uri = owner_uri(run_uri)
    if not storage.exists(uri):
        return None
    doc = storage.read_json(uri)
    try:
        return RunOwner.model_validate(doc.get("owner") if isinstance(doc, dict) else None)
    except ValidationError as err:
        raise OwnershipConflict(
            f"the ownership record {uri} is not one (it says whose the run's prefix is): {err.errors()[0]['msg']}; "
            "delete it only if every artifact under the prefix is this run's"
        ) from err


def claim(run_uri: str, owner: RunOwner, stages: Iterable[str], *, adopt_unowned: bool = False) -> None:
    """Return when the prefix is `owner`'s, claiming it if it has no owner; raise
    OwnershipConflict when it is another run's, or holds artifacts under `stages` that no record
    says are `owner`'s (unless `adopt_unowned`)."""
    recorded = owner_of(run_uri)
    if recorded is None:
        if not adopt_unowned:
            leftovers = [s for s in stages if storage.exists(stage_uri(run_uri, s))]
            if leftovers:
                raise OwnershipConflict(_unowned_message(run_uri, owner, leftovers))
        record = {"owner": owner.model_dump(), "claimed_at": datetime.now(timezone.utc).isoformat()}
        storage.create_json(record, owner_uri(run_uri))
        recorded = owner_of(run_uri)  # ours, or the run that claimed it a moment before us
    if recorded != owner:
        raise OwnershipConflict(conflict_message(run_uri, owner.describe(), recorded))


def conflict_message(run_uri: str, this_run: str, recorded: RunOwner | None) -> str:
    """Why `this_run` (its description) may not use the prefix `recorded` owns, and what to do."""
    return (
        f"the storage prefix {run_uri} belongs to {recorded.describe() if recorded else 'no run'}, not to this "
        f"run, {this_run}: its result documents and checkpoints are not this run's. Give this run "
        f"another name or another spec.storage.uri, or, if the other run's artifacts are no longer needed, "
        f"delete everything under {run_uri} and start this run again"
    )


def _unowned_message(run_uri: str, owner: RunOwner, leftovers: list[str]) -> str:
    return (
        f"the storage prefix {run_uri} holds artifacts ({', '.join(leftovers)}) but no ownership record: they were "
        f"written by a run of an earlier version, or their record was deleted, and cannot be told from another "
        f"run's. This run, {owner.describe()}, does not take them for its own: give it another name or another "
        f"spec.storage.uri, or delete everything under {run_uri} if those artifacts are no longer needed"
    )
