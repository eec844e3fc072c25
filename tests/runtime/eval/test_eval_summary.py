"""The eval stage's termination summary for the flagship example (examples/llava-1.5-7b.yaml).

Kubernetes keeps at most 4096 bytes of a termination message (API reference, Container
terminationMessagePath / ContainerStateTerminated.message: "Will be truncated by the node if
greater than 4096 bytes. The total message length across all containers will be limited to
12kb"; see also https://kubernetes.io/docs/tasks/debug-application-cluster/determine-reason-pod-failure). The stage runs through `mfpo-stage` on result documents a
previous attempt left in storage (the stage reads them back instead of evaluating), so the
summary checked is the one the stage itself writes, with the benchmarks' real metric names.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from mfpo_core import ownership, storage
from mfpo_core.api import MFPORunSpec
from mfpo_core.contract import TERMINATION_MESSAGE_LIMIT, StageConfig, eval_result_uri, result_uri
from mfpo_runtime import stage
from mfpo_runtime.stages import evaluate

FLAGSHIP = Path(__file__).parents[3] / "examples" / "llava-1.5-7b.yaml"
# Metric names as the benchmarks write them (headline and not), per benchmark of the flagship.
BENCHMARK_METRICS = {
    "object-halbench": ["chair_s", "chair_i", "recall", "well_formed", "mean_length"],
    "amber": ["chair", "cover", "hal", "cog", "well_formed", "accuracy", "precision", "recall",
              "f1", "existence.accuracy", "existence.f1", "amber_score"],
    "pope": ["adversarial.accuracy", "adversarial.f1", "adversarial.yes_ratio", "accuracy", "f1",
             "yes_ratio", "precision", "recall"],
}  # fmt: skip


def flagship_eval(tmp_path: Path, termination_log: Path, monkeypatch: pytest.MonkeyPatch, **curriculum) -> tuple[
    StageConfig, dict
]:
    """Run the flagship's eval stage over stored result documents; returns (config, summary)."""
    doc = yaml.safe_load(FLAGSHIP.read_text())["spec"]
    doc["curriculum"] |= curriculum
    spec = MFPORunSpec.model_validate(doc)
    config = StageConfig(uid="uid-test", runner="operator", run="llava15-7b-mfpo", namespace="mfpo", stage="eval",
                         run_uri=f"file://{tmp_path}/runs/llava15-7b-mfpo", spec=spec)  # fmt: skip
    ownership.claim(config.run_uri, config.owner, [])  # as the run's first stage did
    values = random.Random(0)
    for policy, _ in evaluate.policies(config):
        for bench, names in BENCHMARK_METRICS.items():
            # Fractions of a few thousand samples: full-length floats, as real scores are.
            metrics = {name: values.randrange(1, 2999) / 2999 for name in names}
            uri = eval_result_uri(config.run_uri, policy, bench)
            storage.write_json({"metrics": metrics, "flags": []}, uri)
    path = tmp_path / "eval.json"
    path.write_text(config.to_json())
    monkeypatch.setenv("MFPO_TERMINATION_LOG", str(termination_log))
    monkeypatch.delenv("MFPO_METRICS_PORT", raising=False)
    codes: list[int] = []
    stage.main(["--config", str(path), "--no-progress"], exit=codes.append)
    assert codes == [0]
    text = termination_log.read_text()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    return config, json.loads(text, parse_constant=pytest.fail)  # strict JSON: no NaN


@pytest.mark.slow
def test_flagship_eval_summary_carries_every_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, summary = flagship_eval(tmp_path, tmp_path / "termination-log", monkeypatch)

    result = storage.read_json(result_uri(config.run_uri, "eval"))
    assert len(result["metrics"]) == 4 * 11  # base + align-1..3, 11 headline metrics each
    assert "truncated" not in summary
    assert summary["metrics"] == result["metrics"]  # exact values
    assert set(summary["outputs"]) == {"report", "results", "plot"}


@pytest.mark.slow
def test_a_longer_curriculum_keeps_the_headline_scores_within_4096_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve stages evaluated each: 143 scores do not fit; the final policy's and the base's do."""
    config, summary = flagship_eval(tmp_path, tmp_path / "termination-log", monkeypatch, stages=12)

    result = storage.read_json(result_uri(config.run_uri, "eval"))
    assert len(result["metrics"]) == 13 * 11  # the full set, in storage
    assert summary["truncated"] is True
    policies = list(dict.fromkeys(key.split(".")[1] for key in summary["metrics"]))
    priority = ["align-12", "base", *(f"align-{k}" for k in range(11, 0, -1))]
    assert 2 <= len(policies) < 13 and policies == priority[: len(policies)]
    for policy in ("align-12", "base"):
        for bench in BENCHMARK_METRICS:
            for name in evaluate.headline(bench):
                key = f"eval.{policy}.{bench}.{name}"
                assert summary["metrics"][key] == pytest.approx(result["metrics"][key], rel=1e-5), key
    assert set(summary["outputs"]) == {"report", "results", "plot"}
