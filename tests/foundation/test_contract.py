"""The stage contract (contract.py): config validation, storage layout, summaries, exit codes."""

from __future__ import annotations

import json

import pytest
from mfpo_core.api import MFPORunSpec
from mfpo_core.contract import (
    TERMINATION_MESSAGE_LIMIT,
    ExitCode,
    StageConfig,
    StageResult,
    TerminationSummary,
    policy_uri,
    result_uri,
    shard_uri,
    stage_kind,
    stage_uri,
)
from pydantic import ValidationError

SPEC = {
    "model": {"uri": "file:///models/tiny"},
    "data": {"uri": "file:///data/train", "format": "synthetic"},
    "storage": {"uri": "file:///runs"},
}


def make_config(**overrides) -> StageConfig:
    doc = {"run": "demo", "uid": "uid-demo", "runner": "operator", "stage": "align-2", "run_uri": "file:///runs/demo", "spec": SPEC}
    return StageConfig.model_validate({**doc, **overrides})


def error_fields(err: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in err.errors()]


def test_exit_codes_are_the_contracts() -> None:
    assert (ExitCode.DONE, ExitCode.BAD_INPUT, ExitCode.PREEMPTED) == (0, 65, 75)


def test_storage_layout() -> None:
    run = "s3://mfpo/runs/demo/"
    assert stage_uri(run, "score") == "s3://mfpo/runs/demo/score"
    assert result_uri(run, "align-1") == "s3://mfpo/runs/demo/align-1/result.json"
    assert shard_uri(run, 3, 8) == "s3://mfpo/runs/demo/datagen/shards/00003-of-00008"
    assert (
        result_uri(run, "datagen", (3, 8))
        == "s3://mfpo/runs/demo/datagen/shards/00003-of-00008/result.json"
    )
    assert policy_uri(run, "align-2") == "s3://mfpo/runs/demo/align-2/policy"


@pytest.mark.parametrize(
    ("stage", "kind"),
    [("datagen", "datagen"), ("score", "score"), ("align-12", "align"), ("eval", "eval")],
)
def test_stage_kinds(stage: str, kind: str) -> None:
    assert stage_kind(stage) == kind


@pytest.mark.parametrize("stage", ["align-0", "align", "train", "Eval", "align-1x"])
def test_unknown_stage_names_are_refused(stage: str) -> None:
    with pytest.raises(ValueError, match=f"stage '{stage}' is not one of"):
        stage_kind(stage)


def test_config_roundtrip_and_properties() -> None:
    config = make_config()
    again = StageConfig.from_json(config.to_json())
    assert again == config
    assert (again.kind, again.align_index) == ("align", 2)
    assert again.stage_uri == "file:///runs/demo/align-2"
    assert json.loads(config.to_json())["spec"]["model"]["uri"] == "file:///models/tiny"


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"stage": "train"}, "stage", "not one of datagen, score, align-<k>, eval"),
        ({"run_uri": "/runs/demo"}, "run_uri", "must be a storage URI"),
        ({"run": ""}, "run", "at least 1 character"),
        ({"attempt": 0}, "attempt", "greater than or equal to 1"),
        ({"shard_index": -1}, "shard_index", "greater than or equal to 0"),
        ({"colour": "blue"}, "colour", "Extra inputs are not permitted"),
        ({"spec": {**SPEC, "objective": {"beta": -1}}}, "spec.objective.beta", "greater than 0"),
    ],
)
def test_config_errors_name_the_field(overrides: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_config(**overrides)
    assert field in error_fields(caught.value)
    assert text in str(caught.value)


def test_stage_must_be_in_the_runs_curriculum() -> None:
    with pytest.raises(ValidationError, match=r"stage 'align-4' is not in this run's stages"):
        make_config(stage="align-4")  # the default curriculum has three stages
    spec = {**SPEC, "curriculum": {"stages": 4}}
    assert make_config(stage="align-4", spec=spec).align_index == 4


def test_align_index_of_another_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="stage eval is not an align stage"):
        _ = make_config(stage="eval").align_index


def test_summary_of_a_result() -> None:
    result = StageResult(
        stage="align-1",
        attempt=2,
        started_at="2026-01-01T00:00:00Z",
        metrics={"loss.text": 0.5},
        outputs={"policy": "s3://bkt/p"},
    )
    summary = result.summary()
    assert (summary.stage, summary.status, summary.metrics) == (
        "align-1",
        "succeeded",
        {"loss.text": 0.5},
    )
    assert TerminationSummary.decode(summary.encode()) == summary


def test_small_summary_is_kept_whole() -> None:
    summary = TerminationSummary(
        stage="eval", status="succeeded", metrics={"eval.base.pope.f1": 0.8}
    )
    assert summary.encode() == (
        '{"stage":"eval","status":"succeeded","metrics":{"eval.base.pope.f1":0.8},"outputs":{}}'
    )


# JSON escapes a quote as 2 bytes and a control character as 6: the cut must measure bytes.
MESSAGE = '"\n\x01é' * 3000


def test_huge_summary_fits_the_termination_message() -> None:
    metrics = {f"debug.histogram.bucket_{i:05d}": float(i) for i in range(2000)}
    metrics |= {"eval.align-3.synthetic.chair_s": 0.25, "loss.text": 0.69, "records": 120.0}
    summary = TerminationSummary(
        stage="eval", status="retryable", metrics=metrics, message=MESSAGE
    )

    text = summary.encode()

    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    doc = json.loads(text)
    assert doc["truncated"] is True
    # The metrics the operator mirrors come first; debug ones fill the rest, in their order.
    kept = list(doc["metrics"])
    assert kept[:3] == ["eval.align-3.synthetic.chair_s", "loss.text", "records"]
    assert kept[3:] == [f"debug.histogram.bucket_{i:05d}" for i in range(len(kept) - 3)]
    assert len(kept) > 3
    # The message keeps its head, cut to half the limit, and says it was cut.
    assert doc["message"].endswith("…") and MESSAGE.startswith(doc["message"][:-1])
    assert len(json.dumps(doc["message"])) <= TERMINATION_MESSAGE_LIMIT // 2
    decoded = TerminationSummary.decode(text)
    assert decoded is not None and decoded.metrics["loss.text"] == 0.69
    # The reader learns that metrics are missing (the operator then reads the result document).
    assert decoded.truncated is True
    whole = TerminationSummary.decode(TerminationSummary(stage="eval", status="succeeded").encode())
    assert whole.truncated is None and "truncated" not in whole.encode()


def test_summary_with_only_huge_mirrored_metrics_keeps_a_head_of_them() -> None:
    metrics = {f"eval.base.synthetic.metric_{i:04d}": i / 3 for i in range(500)}
    text = TerminationSummary(stage="eval", status="succeeded", metrics=metrics).encode()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    kept = json.loads(text)["metrics"]
    assert 0 < len(kept) < 500 and list(kept) == list(metrics)[: len(kept)]
    assert kept["eval.base.synthetic.metric_0001"] == 0.333333  # 6 significant digits



@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "OOMKilled",
        "{not json",
        "[1, 2]",
        '{"stage": "eval"}',
        '{"stage":"e","status":"odd"}',
    ],
)
def test_decoding_anything_else_gives_none(text: str | None) -> None:
    assert TerminationSummary.decode(text) is None


def test_spec_stage_names() -> None:
    spec = MFPORunSpec.model_validate({**SPEC, "curriculum": {"stages": 2}})
    assert spec.stage_names() == ["datagen", "score", "align-1", "align-2", "eval"]


def test_non_finite_metrics_stay_out_of_the_summary_json() -> None:
    """NaN is not JSON: a status patch holding it is refused by the API server, so the summary
    (which the operator copies into the status) leaves such metrics out and says which."""
    summary = TerminationSummary(
        stage="align-1", status="succeeded", metrics={"loss": float("nan"), "reward_margin.text": 0.5,
                                                      "grad_norm": float("inf")}
    )
    text = summary.encode()
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the summary"))
    assert doc["metrics"] == {"reward_margin.text": 0.5}
    assert doc["message"] == "non-finite metrics left out: loss, grad_norm"
    assert TerminationSummary.decode(text).metrics == {"reward_margin.text": 0.5}
