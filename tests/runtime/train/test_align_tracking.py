"""The align stages logging to a real MLflow server (tests/mlflow_server.py): every param, every
step, the final policy as a logged model that loads back; a server that goes away mid-stage;
a stage resumed from its checkpoint continuing the same MLflow run."""

import logging
import uuid

import pytest
import torch
from claimed_prefix import claimed
from mfpo_core.api import MlflowTrackingSpec, TrackingSpec
from mfpo_core.contract import StageConfig, StageInterrupted, policy_uri
from mfpo_runtime import stage as stage_module
from mfpo_runtime.metrics import StageMetrics
from mfpo_runtime.models import load_vlm
from mfpo_runtime.stage import run_stage
from mfpo_runtime.train.checkpoints import latest_step, read_history
from mlflow_server import wire_params

TRAIN_KEYS = {
    "loss.text", "loss.image", "loss.anchor", "objective", "reward.chosen", "reward.rejected",
    "reward.perturbed", "reward_margin.text", "reward_margin.image", "reward_accuracy.text",
    "reward_accuracy.image", "modality_balance", "learning_rate", "samples_per_second",
    "tokens_per_second", "curriculum_stage",
}  # fmt: skip


def tracked(spec, uri: str):
    spec.tracking = TrackingSpec(mlflow=MlflowTrackingSpec(uri=uri, experiment=f"test-{uuid.uuid4().hex[:8]}"))
    return spec


def config(spec, run_dir, k: int, attempt: int = 1) -> StageConfig:
    return claimed(StageConfig(uid="uid-test", runner="operator", run="r", namespace="team-a", stage=f"align-{k}",
                               attempt=attempt, run_uri=f"file://{run_dir}", spec=spec))  # fmt: skip


def only_run(client, spec):
    experiment = client.get_experiment_by_name(spec.tracking.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]




def steps_of(client, run_id: str, key: str = "train.objective") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.fixture
def client(mlflow_server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_server.uri)


@pytest.fixture
def metrics_of(monkeypatch):
    """The StageMetrics of each stage run in this test, in order."""
    made = []
    real = StageMetrics.for_config.__func__

    def recording(cls, cfg):
        made.append(real(cls, cfg))
        return made[-1]

    monkeypatch.setattr(StageMetrics, "for_config", classmethod(recording))
    return made


def after_step(monkeypatch, hook):
    """Call hook(number) after each optimizer step has been logged."""
    real = StageMetrics.train_step

    def train_step(self, number, step):
        real(self, number, step)
        hook(number)

    monkeypatch.setattr(StageMetrics, "train_step", train_step)


def errors(metrics: StageMetrics) -> float:
    return metrics.registry.get_sample_value(
        "mfpo_tracking_errors_total", {"namespace": "team-a", "run": "r", "stage": "align-1", "attempt": "1"}
    ) or 0.0


def test_two_stages_log_params_every_step_and_a_policy_that_loads_back(
    tiny_llava_dir, run_dir, spec_for, client, mlflow_server, tmp_path
):
    from peft import PeftModel

    spec = tracked(spec_for(tiny_llava_dir, maxSteps=3, epochs=2), mlflow_server.uri)
    for k in (1, 2):
        run_stage(config(spec, run_dir, k), progress=False)

    run = only_run(client, spec)
    assert run.info.run_name == "r"
    assert run.data.params == wire_params(spec.to_wire())
    tags = run.data.tags
    assert (tags["mfpo.namespace"], tags["mfpo.run"], tags["mfpo.run_uri"]) == ("team-a", "r", f"file://{run_dir}")
    assert (tags["mfpo.stage"], tags["mfpo.attempt"]) == ("align-2", "1")
    assert tags["mfpo.status.align-1"] == tags["mfpo.status.align-2"] == "succeeded"
    # One curve per quantity over the whole curriculum: align-2's steps follow align-1's.
    for key in TRAIN_KEYS:
        assert steps_of(client, run.info.run_id, f"train.{key}") == [1, 2, 3, 4, 5, 6], key
    stage_of = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train.curriculum_stage")}
    assert stage_of == {1: 1.0, 2: 1.0, 3: 1.0, 4: 2.0, 5: 2.0, 6: 2.0}
    # The values are the trainer's own (its checkpoint history), step for step.
    trained = [h["objective"] for k in (1, 2) for h in read_history(f"file://{run_dir}/align-{k}", 3)]
    logged = sorted(client.get_metric_history(run.info.run_id, "train.objective"), key=lambda m: m.step)
    assert [m.value for m in logged] == pytest.approx(trained)
    assert run.data.metrics["align-1.steps"] == run.data.metrics["align-2.steps"] == 3.0

    # The final policy as a logged model: peft's adapter on the base model gives the published policy.
    import mlflow

    model = client.get_logged_model(tags["mfpo.policy_model_id"])
    assert model.source_run_id == run.info.run_id and model.tags["mfpo.stage"] == "align-2"
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=model.artifact_location, dst_path=str(tmp_path), tracking_uri=mlflow_server.uri
    )
    base = load_vlm(str(tiny_llava_dir)).model
    from_mlflow = PeftModel.from_pretrained(base, f"{local}/adapter").merge_and_unload().state_dict()
    published = load_vlm(policy_uri(f"file://{run_dir}", "align-2")).model.state_dict()
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(published[name], load_vlm(str(tiny_llava_dir)).model.state_dict()[name])
    for key, value in published.items():
        torch.testing.assert_close(from_mlflow[key], value, msg=key)


def test_server_stopped_mid_stage_the_stage_succeeds_and_delivers_later(
    tiny_llava_dir, run_dir, spec_for, client, mlflow_server, monkeypatch, metrics_of, caplog
):
    spec = tracked(spec_for(tiny_llava_dir, maxSteps=6, epochs=3), mlflow_server.uri)

    def outage(number: int) -> None:
        if number == 2:
            mlflow_server.stop()  # steps 3 and 4 meet no server
        elif number == 4:
            mlflow_server.start()  # same database and artifacts: step 5 delivers the buffer

    after_step(monkeypatch, outage)
    with caplog.at_level(logging.INFO, logger="mfpo.tracking"):
        result = run_stage(config(spec, run_dir, 1), progress=False)
    assert result.metrics["steps"] == 6.0
    assert mlflow_server.answers()
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable" in m and "the stage goes on" in m for m in messages), messages
    assert any("reachable again" in m for m in messages), messages
    assert errors(metrics_of[0]) >= 2  # steps 3 and 4 at least
    run = only_run(client, spec)
    assert steps_of(client, run.info.run_id) == [1, 2, 3, 4, 5, 6]  # each step once, none lost
    assert run.data.tags["mfpo.status.align-1"] == "succeeded"


def test_unreachable_server_never_fails_the_stage(tiny_llava_dir, run_dir, spec_for, metrics_of, caplog):
    import socket

    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = tracked(spec_for(tiny_llava_dir, maxSteps=2), f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="mfpo.tracking"):
        result = run_stage(config(spec, run_dir, 1), progress=False)
    assert result.metrics["steps"] == 2.0
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable" in m for m in messages) and any("not delivered" in m for m in messages)
    assert errors(metrics_of[0]) >= 3  # the run's creation at the start, then each retry


def test_resumed_stage_continues_the_same_run_without_duplicate_steps(
    tiny_llava_dir, run_dir, spec_for, client, mlflow_server, monkeypatch
):
    spec = tracked(spec_for(tiny_llava_dir, maxSteps=4, epochs=2, checkpointEverySteps=1), mlflow_server.uri)
    contexts = []
    real_context = stage_module.StageContext

    def recording_context(**kwargs):
        contexts.append(real_context(**kwargs))
        return contexts[-1]

    monkeypatch.setattr(stage_module, "StageContext", recording_context)
    after_step(monkeypatch, lambda number: number == 2 and len(contexts) == 1 and contexts[0].request_stop())
    with pytest.raises(StageInterrupted):
        run_stage(config(spec, run_dir, 1, attempt=1), progress=False)
    assert latest_step(f"file://{run_dir}/align-1") == 2
    run_stage(config(spec, run_dir, 1, attempt=2), progress=False)

    run = only_run(client, spec)
    assert steps_of(client, run.info.run_id) == [1, 2, 3, 4]
    assert run.data.tags["mfpo.attempt"] == "2"
    assert run.data.tags["mfpo.status.align-1"] == "succeeded"
