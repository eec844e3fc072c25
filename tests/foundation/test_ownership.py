"""A run's storage prefix is its own: the ownership record (mfpo_core.ownership), through the
real stage runner (`mfpo-stage`, a test double as the stage) on file:// and on S3 (moto's server,
the real minio client).

The prefix is <storage.uri>/<run name>. Before, a stage returned any result document it found
there: a run of the same name in another namespace, or a run deleted (its artifacts kept, as
deleteOnRunDeletion defaults to false) and created again with another spec, reported the other
run's results as its own. Attempts, retries and resumes of one run (one uid) must still carry on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import types
from pathlib import Path

import pytest
from mfpo_core import ownership, storage
from mfpo_core.contract import (
    RunOwner,
    StageConfig,
    StageInterrupted,
    owner_uri,
    result_uri,
    stage_uri,
)
from mfpo_runtime import stage
from mfpo_runtime.stage import StageContext, StageOutcome

DOUBLE = "mfpo_test_ownership_double"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[StageContext]:
    """Every stage kind runs a double that records its context; `ctx.config.spec` decides nothing."""
    seen: list[StageContext] = []
    module = types.ModuleType(DOUBLE)
    module.run = lambda ctx: seen.append(ctx) or BEHAVIOUR.get(ctx.config.stage, _done)(ctx)
    monkeypatch.setitem(sys.modules, DOUBLE, module)
    for kind in stage.STAGE_MODULES:
        monkeypatch.setitem(stage.STAGE_MODULES, kind, DOUBLE)
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.delenv("MFPO_METRICS_PORT", raising=False)
    monkeypatch.setattr(stage, "limit_threads", lambda: 1)  # no torch needed for a double
    monkeypatch.setattr(stage, "deterministic_on_cpu", lambda: False)
    BEHAVIOUR.clear()
    return seen


BEHAVIOUR: dict = {}


def _done(ctx: StageContext) -> StageOutcome:
    return StageOutcome(metrics={"chair_s": 0.5 if ctx.config.uid == "uid-1" else 0.1})


def config(storage_root: str, stage_name: str, *, namespace: str = "ml", uid: str = "uid-1", attempt: int = 1,
           beta: float = 0.1) -> StageConfig:  # fmt: skip
    endpoint = {"endpoint": os.environ["MFPO_S3_ENDPOINT"]} if storage_root.startswith("s3://") else {}
    spec = {"model": {"uri": "file:///m"}, "data": {"uri": "file:///d", "format": "synthetic"},
            "storage": {"uri": storage_root, **endpoint}, "curriculum": {"stages": 1}, "objective": {"beta": beta}}  # fmt: skip
    return StageConfig(
        run="first", namespace=namespace, uid=uid, runner="operator", stage=stage_name, attempt=attempt,
        run_uri=f"{storage_root}/first", spec=spec, shard_index=0 if stage_name == "datagen" else None,
    )  # fmt: skip


def run(tmp_path: Path, cfg: StageConfig) -> tuple[int, dict]:
    """`mfpo-stage --config` as a pod runs it: exit code and termination summary."""
    path = tmp_path / f"{cfg.stage}-{cfg.uid}.json"
    path.write_text(cfg.to_json())
    codes: list[int] = []
    stage.main(["--config", str(path), "--no-progress"], exit=codes.append)
    return codes[0], json.loads((tmp_path / "termination-log").read_text())


def test_two_namespaces_writing_one_bucket_do_not_share_a_runs_results(
    calls: list, storage_root: str, tmp_path: Path
) -> None:
    """docs/install.md's two watched namespaces with one bucket, each with a run `first`."""
    assert run(tmp_path, config(storage_root, "datagen", namespace="team-a", uid="uid-a"))[0] == 0
    code, summary = run(tmp_path, config(storage_root, "datagen", namespace="team-b", uid="uid-b"))
    assert code == 65 and summary["status"] == "bad-input"
    assert summary["message"] == (
        f"the storage prefix {storage_root}/first belongs to MFPORun team-a/first (uid uid-a), not to this run, "
        "MFPORun team-b/first (uid uid-b): its result documents and checkpoints are not this run's. Give this run "
        f"another name or another spec.storage.uri, or, if the other run's artifacts are no longer needed, delete "
        f"everything under {storage_root}/first and start this run again"
    )
    assert len(calls) == 1  # team-b's stage never ran
    assert storage.read_json(owner_uri(f"{storage_root}/first"))["owner"]["uid"] == "uid-a"


def test_a_run_created_again_never_reports_the_deleted_runs_results(calls: list, storage_root: str, tmp_path: Path) -> None:
    stages = ["datagen", "score", "align-1", "eval"]
    for name in stages:
        assert run(tmp_path, config(storage_root, name))[0] == 0
    # `kubectl delete mfporun first` (artifacts kept) and a new `first` with another spec: a new uid.
    for name in stages:
        code, summary = run(tmp_path, config(storage_root, name, uid="uid-2", beta=0.5))
        assert code == 65, name
        assert "belongs to MFPORun ml/first (uid uid-1), not to this run, MFPORun ml/first (uid uid-2)" in summary["message"]
    assert [c.config.uid for c in calls] == ["uid-1"] * 4
    assert storage.read_json(result_uri(f"{storage_root}/first", "eval"))["metrics"] == {"chair_s": 0.5}


def test_attempts_of_the_same_run_resume_and_finish(calls: list, storage_root: str, tmp_path: Path) -> None:
    """A preempted attempt's checkpoint is found by the next attempt of the same run (a new pod,
    or after an operator restart: the same uid), and a finished stage returns at once."""
    checkpoint = f"{storage_root}/first/align-1/checkpoints/step-00000002/_COMPLETE"

    def preempted(ctx: StageContext) -> StageOutcome:
        storage.write_json({"files": {}}, checkpoint)
        raise StageInterrupted("checkpoint saved at step 2")

    BEHAVIOUR["align-1"] = preempted
    assert run(tmp_path, config(storage_root, "datagen"))[0] == 0
    assert run(tmp_path, config(storage_root, "align-1"))[0] == 75
    BEHAVIOUR["align-1"] = lambda ctx: StageOutcome(metrics={"resumed": float(storage.exists(checkpoint))})
    assert run(tmp_path, config(storage_root, "align-1", attempt=2)) == (
        0, {"stage": "align-1", "status": "succeeded", "metrics": {"resumed": 1.0}, "outputs": {}}
    )
    assert run(tmp_path, config(storage_root, "align-1", attempt=3))[0] == 0
    assert [c.config.attempt for c in calls if c.config.stage == "align-1"] == [1, 2]  # the 3rd returned at once


def test_of_two_runs_claiming_at_once_exactly_one_owns_the_prefix(storage_root: str) -> None:
    """The claim is a create-if-absent write (os.link on file://, If-None-Match: * on S3)."""
    for trial in range(4):
        prefix = f"{storage_root}/race-{trial}"
        owners = [RunOwner(runner="operator", namespace=f"ns-{i}", name="first", uid=f"uid-{i}") for i in range(6)]
        outcomes = claim_together(prefix, owners)
        winners = [uid for uid, outcome in outcomes.items() if outcome == "owner"]
        assert len(outcomes) == 6 and len(winners) == 1, outcomes
        assert ownership.owner_of(prefix).uid == winners[0]


def claim_together(prefix: str, owners: list[RunOwner]) -> dict[str, str]:
    """Each owner claims the prefix on its own thread, all released at once."""
    outcomes: dict[str, str] = {}
    start = threading.Barrier(len(owners))

    def claim(owner: RunOwner) -> None:
        start.wait()
        try:
            ownership.claim(prefix, owner, ["datagen"])
            outcomes[owner.uid] = "owner"
        except ownership.OwnershipConflict:
            outcomes[owner.uid] = "refused"

    threads = [threading.Thread(target=claim, args=(o,)) for o in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_create_json_writes_only_where_nothing_is(storage_root: str) -> None:
    uri = f"{storage_root}/x/doc.json"
    assert storage.create_json({"n": 1}, uri) is True
    assert storage.create_json({"n": 2}, uri) is False
    assert storage.read_json(uri) == {"n": 1}


def test_artifacts_without_a_record_are_another_runs_unless_the_run_completed_stages(storage_root: str) -> None:
    """A prefix written before records existed: a run that completed stages there adopts it
    (the operator knows it from the run's status); any other run is refused."""
    prefix = f"{storage_root}/legacy"
    storage.write_json({"stage": "datagen"}, result_uri(prefix, "datagen"))
    owner = RunOwner(runner="operator", namespace="ml", name="legacy", uid="uid-new")
    with pytest.raises(ownership.OwnershipConflict, match=r"holds artifacts \(datagen\) but no ownership record"):
        ownership.claim(prefix, owner, ["datagen", "score"])
    assert ownership.owner_of(prefix) is None  # refused: nothing written
    ownership.claim(prefix, owner, ["datagen", "score"], adopt_unowned=True)
    assert ownership.owner_of(prefix) == owner
    assert storage.exists(stage_uri(prefix, "datagen"))
