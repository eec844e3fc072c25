"""The align stages through the stage runner: curriculum lineage, publication, families, SIGTERM."""

import json

import pytest
import torch
from claimed_prefix import claimed
from mfpo_core import storage
from mfpo_core.contract import StageConfig, StageInterrupted, policy_uri
from mfpo_runtime.models import load_vlm
from mfpo_runtime.stage import run_stage
from mfpo_runtime.train.checkpoints import latest_step
from torch.testing import assert_close


def stage(spec, run_dir, k: int) -> StageConfig:
    return claimed(StageConfig(uid="uid-test", runner="operator", run="r", stage=f"align-{k}", run_uri=f"file://{run_dir}", spec=spec))


def policy_params(uri):
    return dict(load_vlm(uri).model.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["base", "previous"])
def test_two_stage_curriculum_publishes_loadable_policies(tiny_llava_dir, run_dir, spec_for, reference):
    spec = spec_for(tiny_llava_dir, maxSteps=1)
    spec.curriculum.reference = reference
    results = [run_stage(stage(spec, run_dir, k), progress=False) for k in (1, 2)]
    run_uri = f"file://{run_dir}"
    lineage = json.loads((run_dir / "align-2" / "policy" / "mfpo_policy.json").read_text())
    assert lineage["base"] == str(tiny_llava_dir)
    if reference == "base":  # one adapter, trained on across both stages
        assert lineage["adapters"] == [policy_uri(run_uri, "align-2") + "/adapter"]
    else:  # stage 2's fresh adapter on top of stage 1's, merged in order
        assert lineage["adapters"] == [policy_uri(run_uri, f"align-{k}") + "/adapter" for k in (1, 2)]
    assert storage.is_complete(policy_uri(run_uri, "align-2"))
    base = policy_params(str(tiny_llava_dir))
    stage2 = policy_params(policy_uri(run_uri, "align-2"))
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(stage2[name], base[name])  # training changed the merged weights
    for result in results:
        assert {"loss.text", "loss.image", "loss.anchor", "reward_margin.text", "reward_margin.image",
                "reward_accuracy.text", "reward_accuracy.image", "modality_balance",
                "samples_per_second", "steps"} <= set(result.metrics)
        assert result.metrics["records"] == 4


@pytest.mark.slow
def test_merged_policy_equals_the_adapter_policy(tiny_llava_dir, run_dir, spec_for, tmp_path):
    spec = spec_for(tiny_llava_dir, maxSteps=1)
    run_stage(stage(spec, run_dir, 1), progress=False)
    merged_run = tmp_path / "merged"
    (merged_run / "score").mkdir(parents=True)
    (merged_run / "score" / "dataset").symlink_to(run_dir / "score" / "dataset")
    spec.model.merge_adapters = True
    run_stage(stage(spec, merged_run, 1), progress=False)
    merged_dir = merged_run / "align-1" / "policy"
    assert (merged_dir / "config.json").is_file() and not (merged_dir / "mfpo_policy.json").exists()
    adapter_policy = policy_params(policy_uri(f"file://{run_dir}", "align-1"))
    for name, value in policy_params(str(merged_dir)).items():
        assert_close(value, adapter_policy[name], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_precomputed_reference_is_stored_and_trains(tiny_llava_dir, run_dir, spec_for):
    spec = spec_for(tiny_llava_dir, maxSteps=1, referenceMode="precomputed")
    result = run_stage(stage(spec, run_dir, 1), progress=False)
    stored = json.loads((run_dir / "align-1" / "reference" / "ref_logps.json").read_text())
    assert len(stored) == 4 and all(set(v) == {"chosen", "rejected", "perturbed"} for v in stored.values())
    # a fresh adapter is zero (lora_B = 0): at step 1 the policy is the reference, margins are 0
    assert result.metrics["steps"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("tiny_model_dir", ["llava-next", "qwen2-vl"], indirect=True)
def test_other_families_train_and_share_image_features(tiny_model_dir, run_dir, spec_for):
    from mfpo_runtime.stages.align import train_config
    from mfpo_runtime.train import policy as policies
    from mfpo_runtime.train.data import collate, load_bin
    from mfpo_runtime.train.logprobs import image_path_frozen, shared_image_features, triple_logps

    family = json.loads((tiny_model_dir / "config.json").read_text())["model_type"]
    spec = spec_for(tiny_model_dir, maxSteps=1)
    spec.model.family = {"llava_next": "llava-next", "qwen2_vl": "qwen2-vl"}[family]
    policy = policies.prepare(train_config(spec), 1, None)
    assert image_path_frozen(policy.model)
    training_set = load_bin(run_dir / "score" / "dataset", 1)
    batch = collate(training_set, [0, 1], policy.processor, policy.family, 1024)
    plain = triple_logps(policy.model, batch)
    shared = triple_logps(policy.model, batch, shared_image_features(policy.model, batch))
    assert_close(shared.stacked(), plain.stacked(), atol=1e-4, rtol=1e-4)
    result = run_stage(stage(spec, run_dir, 1), progress=False)
    assert result.metrics["steps"] == 1
    assert load_vlm(policy_uri(f"file://{run_dir}", "align-1")).family == spec.model.family


def test_sigterm_saves_a_checkpoint_and_raises(tiny_llava_dir, run_dir, spec_for, monkeypatch):
    from mfpo_runtime import stage as stage_module

    spec = spec_for(tiny_llava_dir, maxSteps=3, checkpointEverySteps=50)
    real_context = stage_module.StageContext

    def stopping_context(**kwargs):
        ctx = real_context(**kwargs)
        ctx.request_stop()  # as the SIGTERM handler does
        return ctx

    monkeypatch.setattr(stage_module, "StageContext", stopping_context)
    with pytest.raises(StageInterrupted, match="checkpoint"):
        run_stage(stage(spec, run_dir, 1), progress=False)
    assert latest_step(f"file://{run_dir}/align-1") == 0
    assert not (run_dir / "align-1" / "result.json").exists()


def _record(record_id: str):
    from mfpo_runtime.data.records import PreferenceRecord

    return PreferenceRecord(id=record_id, question="q?", image="i.png", chosen="a cat", rejected="a dog")


def test_precomputed_reference_refuses_records_that_share_an_id(tmp_path):
    """ref_logps.json is keyed by record id: of two records with one id, one trained against the
    other's reference log-probs (the tester's loss.text 12.34 at step 1 instead of ln 2).
    Refused before anything is computed, and published values that miss a record are too."""
    from types import SimpleNamespace

    from mfpo_core.contract import BadInput
    from mfpo_runtime.stages.align import with_reference_logps
    from mfpo_runtime.train.data import TrainingSet

    ctx = SimpleNamespace(config=SimpleNamespace(stage_uri=f"file://{tmp_path}/align-1"), work_dir=tmp_path)
    shared = SimpleNamespace(training_set=TrainingSet(tmp_path, [_record("a"), _record("b"), _record("a")]))
    with pytest.raises(BadInput, match=r"records #0 and #2 share the id 'a'"):
        with_reference_logps(ctx, shared, policy=None)
    local = tmp_path / "computed-before"
    local.mkdir()
    (local / "ref_logps.json").write_text(json.dumps({"a": {"chosen": -1.0, "rejected": -2.0, "perturbed": -3.0}}))
    storage.publish_dir(local, f"file://{tmp_path}/align-1/reference")  # an earlier attempt's
    other = SimpleNamespace(training_set=TrainingSet(tmp_path, [_record("a"), _record("c")]))
    with pytest.raises(BadInput, match=r"hold no value for 1 of the stage's 2 records \(first: 'c'\)"):
        with_reference_logps(ctx, other, policy=None)
