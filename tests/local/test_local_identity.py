"""The local runner's identity: the id its storage prefix's ownership record holds, kept in its
state, so that `mfpo run`, `mfpo retry`, a resume after Ctrl-C and `mfpo demo` carry on with
their own artifacts, and a run that is not the one whose artifacts lie there is refused before
anything is written. The stages are the real stage runner with a test double as each stage
(double_stage.py): its ownership check is the one a pod runs.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from mfpo_core import ownership, storage
from mfpo_core.api import MFPORun
from mfpo_core.contract import RunOwner, owner_uri, result_uri
from mfpo_operator import cli, demo
from mfpo_operator.local import STATE_FILE, LocalRunner, load_state

DOUBLE_STAGE = [sys.executable, str(Path(__file__).with_name("double_stage.py"))]


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "trace.txt"
    monkeypatch.setenv("DOUBLE_STAGE_TRACE", str(path))
    return path


def manifest(tmp_path: Path, name: str = "first", **spec_overrides) -> MFPORun:
    for local_input in ("model", "data"):
        (tmp_path / local_input).mkdir(exist_ok=True)
    spec = {"model": {"uri": f"file://{tmp_path}/model"}, "data": {"uri": f"file://{tmp_path}/data", "format": "synthetic"},
            "storage": {"uri": f"file://{tmp_path}/artifacts"}, "curriculum": {"stages": 1},
            "retries": {"maxAttempts": 2, "backoffSeconds": 0}, "resources": {"gpusPerNode": 0}, **spec_overrides}  # fmt: skip
    return MFPORun.model_validate({"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": name}, "spec": spec})


def runner(run: MFPORun) -> LocalRunner:
    return LocalRunner(run, progress=False, stage_command=DOUBLE_STAGE, out=io.StringIO())


def stages_run(trace: Path) -> list[str]:
    return trace.read_text().split() if trace.exists() else []


def test_the_run_keeps_its_identity_and_continues_with_its_own_artifacts(tmp_path: Path, trace: Path) -> None:
    first = runner(manifest(tmp_path))
    assert first.run().phase == "Succeeded"
    state = load_state(first.run_uri)
    recorded = storage.read_json(owner_uri(first.run_uri))["owner"]
    assert state["owner"] == recorded and recorded["runner"] == "local" and recorded["name"] == "first"
    # Again, and as `mfpo retry` does: the same identity, nothing redone.
    assert runner(manifest(tmp_path)).run(retry=True).phase == "Succeeded"
    assert load_state(first.run_uri)["owner"] == recorded
    assert stages_run(trace) == ["first:datagen:1", "first:score:1", "first:align-1:1", "first:eval:1"]


def test_a_run_whose_state_is_not_the_prefixs_owner_is_refused_before_writing(tmp_path: Path, trace: Path) -> None:
    """Another `mfpo run` of the same name and storage.uri on another machine, or after the
    state was deleted: the artifacts are not its own, and it says whose they are."""
    first = runner(manifest(tmp_path))
    first.run()
    owner = RunOwner.model_validate(load_state(first.run_uri)["owner"])
    storage.delete(storage.join(first.run_uri, "_local"))
    with pytest.raises(ownership.OwnershipConflict) as caught:
        runner(manifest(tmp_path, objective={"beta": 0.5})).run()
    assert str(caught.value).startswith(
        f"the storage prefix {first.run_uri} belongs to {owner.describe()}, not to this run, the local run first "
        "of namespace default (`mfpo run`):"
    )
    assert not storage.exists(storage.join(first.run_uri, "_local"))  # no state, no lock left behind
    assert len(stages_run(trace)) == 4


def test_mfpo_run_on_a_clusters_prefix_exits_65_naming_the_run(tmp_path: Path, capsys) -> None:
    run = manifest(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(run.to_wire()))
    prefix = f"file://{tmp_path}/artifacts/first"
    ownership.claim(prefix, RunOwner(runner="operator", namespace="team-a", name="first", uid="uid-a"), ["datagen"])
    assert cli.main(["run", str(path), "--no-progress"]) == 65
    err = capsys.readouterr().err
    assert err.startswith(f"error: the storage prefix {prefix} belongs to MFPORun team-a/first (uid uid-a)")
    assert not storage.exists(storage.join(prefix, STATE_FILE))


def test_a_local_run_of_an_earlier_version_adopts_its_own_artifacts(tmp_path: Path, trace: Path) -> None:
    """Its state, without an identity, lies beside its artifacts: they are its own."""
    run = manifest(tmp_path)
    first = runner(run)
    first.run()
    state = load_state(first.run_uri)
    del state["owner"]
    storage.write_json(state, storage.join(first.run_uri, STATE_FILE))
    storage.delete(owner_uri(first.run_uri))
    assert runner(run).run().phase == "Succeeded"
    assert RunOwner.model_validate(load_state(first.run_uri)["owner"]) == ownership.owner_of(first.run_uri)
    assert len(stages_run(trace)) == 4  # nothing redone


def test_the_demo_pair_claims_the_text_only_runs_prefix_before_copying_into_it(
    tmp_path: Path, trace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "LocalRunner", lambda *a, **k: LocalRunner(*a, **{**k, "stage_command": DOUBLE_STAGE}))
    mfpo = manifest(tmp_path, name="quickstart")
    text_only = demo.text_only_variant(mfpo)
    assert demo.run_pair(mfpo, text_only, progress=False) == 0
    copied = f"file://{tmp_path}/artifacts/quickstart-text-dpo"
    assert storage.exists(result_uri(copied, "datagen", (0, 1)))
    assert ownership.owner_of(copied) == RunOwner.model_validate(load_state(copied)["owner"])
    # The text-only run trained and evaluated on the copies: its datagen and score never ran.
    assert [s for s in stages_run(trace) if s.startswith("quickstart-text-dpo:")] == [
        "quickstart-text-dpo:align-1:1", "quickstart-text-dpo:eval:1"
    ]
