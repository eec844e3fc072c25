"""The table of stage kinds (core/mfpo_core/stages.py) and the names derived from it."""

import importlib

import pytest
from mfpo_core.api import MFPORunSpec
from mfpo_core.contract import eval_metric_key, parse_eval_metric_key
from mfpo_core.stages import STAGE_KINDS, kind_of, stage_names


def spec(**overrides) -> MFPORunSpec:
    return MFPORunSpec.model_validate({
        "model": {"uri": "file:///m"}, "data": {"uri": "file:///d", "format": "synthetic"}, "storage": {"uri": "file:///s"}, **overrides,
    })


def test_a_runs_stages_in_order() -> None:
    assert stage_names(3) == ["datagen", "score", "align-1", "align-2", "align-3", "eval"]
    assert spec(curriculum={"stages": 2}).stage_names() == ["datagen", "score", "align-1", "align-2", "eval"]


def test_kinds_say_how_a_stage_runs() -> None:
    run = spec(imagePreference={"shards": 4})
    assert kind_of("datagen").shardable and kind_of("datagen").shards(run) == 4
    assert not kind_of("score").shardable and kind_of("score").shards(run) == 1
    assert kind_of("align-12").name == "align" and kind_of("align-12").distributed
    assert not kind_of("eval").distributed


@pytest.mark.parametrize("kind", STAGE_KINDS, ids=lambda k: k.name)
def test_every_kind_names_a_runtime_module_with_run(kind) -> None:
    assert callable(importlib.import_module(kind.module).run)


@pytest.mark.parametrize("name", ["align", "align-0", "datagen-1", "Eval", "train"])
def test_names_no_run_has_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"stage '{name}' is not one of datagen, score, align-<k>, eval"):
        kind_of(name)


def test_eval_metric_keys_round_trip() -> None:
    key = eval_metric_key("align-3", "synthetic", "counterprior.chair_s")
    assert key == "eval.align-3.synthetic.counterprior.chair_s"
    assert parse_eval_metric_key(key) == ("align-3", "synthetic", "counterprior.chair_s")
    assert parse_eval_metric_key("eval.base.pope.f1") == ("base", "pope", "f1")
    for other in ("reward_margin.text", "eval.align-0.pope.f1", "eval.base.pope"):
        assert parse_eval_metric_key(other) is None
