"""The alert rules: promtool checks them and runs their unit tests (alerts_test.yaml), every
alert has a test case that fires, and the chart's rendered PrometheusRule passes promtool too."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from deploy_helpers import CHART, one, render, run, tool
from mfpo_core.api import MFPORunSpec, RunPhase, StagePhase
from mfpo_operator.kube.metrics import OperatorMetrics
from mfpo_operator.plan import Attempt, AttemptState, plan
from mfpo_runtime.metrics import StageMetrics
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

RULES = CHART / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")


def alert_names(groups: list[dict]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules():
    out = run(tool("promtool"), "check", "rules", str(RULES)).stdout
    assert "SUCCESS" in out


def test_promtool_unit_tests_pass():
    result = run(tool("promtool"), "test", "rules", str(UNIT_TESTS))
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_unit_test():
    alerts = alert_names(yaml.safe_load(RULES.read_text())["groups"])
    cases = yaml.safe_load(UNIT_TESTS.read_text())
    assert cases["rule_files"] == ["../../charts/mfpo/files/alerts.yaml"]
    firing = {
        check["alertname"]
        for test in cases["tests"]
        for check in test["alert_rule_test"]
        if check.get("exp_alerts")
    }
    assert alerts == firing, f"alerts without a firing test: {sorted(alerts - firing)}"
    assert {
        "MFPOStageFailingRepeatedly",
        "MFPORunStuck",
        "MFPOImageRewardMarginCollapsed",
        "MFPOHallucinationRegressed",
    } <= alerts


def test_every_alert_has_a_severity_and_a_summary():
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in (r for r in group["rules"] if "alert" in r):
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule[
                "alert"
            ]


def test_rendered_prometheus_rule_passes_promtool(tmp_path: Path):
    rule = one(render(CHART / "ci" / "cluster-wide-values.yaml"), "PrometheusRule")
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", str(path)).stdout


# ------------------------------------------------- the alerts on the operator's real series


def operator_series_after_two_failures() -> list[tuple[str, dict[str, str], float]]:
    """The operator's exposition after datagen failed twice and waits for attempt 3: the
    real planner and OperatorMetrics, the clock at the Unix epoch (promtool's time 0)."""
    spec = MFPORunSpec.model_validate(
        {
            "model": {"uri": "s3://bkt/model"},
            "data": {"uri": "s3://bkt/data", "format": "synthetic"},
            "storage": {"uri": "s3://bkt/runs", "endpoint": "minio:9000"},
            "retries": {"maxAttempts": 5, "backoffSeconds": 30},
        }
    )
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    metrics, status, attempts = OperatorMetrics(), None, []
    for second, finished in ((0, None), (10, 1), (40, None), (50, 2)):
        now = epoch + timedelta(seconds=second)
        if finished:
            attempts[-1] = Attempt(
                "datagen", finished, AttemptState.failed, exit_code=1, finished_at=now
            )
        result = plan(spec, status, attempts, run="r1", now=now)
        metrics.observe("ml", "r1", result)
        status = result.status
        for action in result.actions:
            attempts.append(Attempt("datagen", action.attempt, AttemptState.running))
    return exposition(metrics.registry)


def exposition(registry) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample a registry serves, as Prometheus would scrape it."""
    text = generate_latest(registry).decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


def input_series(series: list[tuple[str, dict[str, str], float]], samples: int) -> list[dict]:
    """promtool input_series holding each sample's value constant."""
    return [
        {
            "series": name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
            "values": f"{value:g}x{samples}",
        }
        for name, labels, value in series
    ]


def promtool_test(tmp_path: Path, tests: list[dict]) -> None:
    path = tmp_path / "generated_test.yaml"
    doc = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run(tool("promtool"), "test", "rules", str(path), check=False)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_alerts_fire_on_the_operators_own_series(tmp_path: Path):
    series = operator_series_after_two_failures()
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in series}
    failures = values[("mfpo_stage_failures_total", (("namespace", "ml"), ("run", "r1"),
                                                     ("stage", "datagen")))]  # fmt: skip
    assert failures == 2
    last = values[("mfpo_run_last_transition_timestamp_seconds", (("namespace", "ml"),
                                                                  ("run", "r1")))]  # fmt: skip
    # Rules are evaluated on promtool's 1-minute grid: check at a grid point past 6 h 15 m.
    stuck_at = (int(last) + 6 * 3600 + 20 * 60) // 60 * 60
    since = stuck_at - int(last)
    humanized = f"{since // 3600}h {since % 3600 // 60}m {since % 60}s"  # humanizeDuration
    tests = {
        "tests": [
            {
                "interval": "5m",
                "input_series": input_series(series, 100),
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "MFPOStageFailingRepeatedly",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "ml",
                                    "run": "r1",
                                    "stage": "datagen",
                                },
                                "exp_annotations": {
                                    "summary": "MFPO stage ml/r1 datagen failed 2 times",
                                    "description": (
                                        "Stage datagen of run r1 has failed 2 attempts and is "
                                        "being retried from its last checkpoint. Look at the "
                                        "failed Job's pod: kubectl -n ml describe mfporun r1 "
                                        "(docs/failures.md)."
                                    ),
                                },
                            }
                        ],
                    },
                    {"eval_time": "5m", "alertname": "MFPORunStuck", "exp_alerts": []},
                    {
                        "eval_time": f"{stuck_at}s",
                        "alertname": "MFPORunStuck",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "ml",
                                    "run": "r1",
                                },
                                "exp_annotations": {
                                    "summary": "MFPO run ml/r1 has not moved for 6 hours",
                                    "description": (
                                        "Run r1 is Running but no stage has changed phase for "
                                        f"{humanized}. A Job may be pending for GPUs (Kueue, "
                                        "quota) or a stage may hang. See "
                                        "docs/troubleshooting.md."
                                    ),
                                },
                            }
                        ],
                    },
                    {"eval_time": "5m", "alertname": "MFPOStageFailed", "exp_alerts": []},
                ],
            }
        ],
    }
    promtool_test(tmp_path, tests["tests"])


def test_alert_label_values_are_ones_the_code_uses():
    text = RULES.read_text()
    phases = {v for group in re.findall(r'phase=~?"([^"]+)"', text) for v in group.split("|")}
    assert phases <= {p.value for p in StagePhase} | {p.value for p in RunPhase}
    modalities = set(re.findall(r'modality="([^"]+)"', text))
    assert modalities == {"text", "image"}


def test_image_margin_alert_fires_on_a_stage_pods_own_series(tmp_path: Path):
    collapsed = StageMetrics("ml", "r1", "align-2", attempt=1)
    collapsed.set("mfpo_train_reward_margin", -0.25, modality="image")
    collapsed.set("mfpo_train_reward_margin", 0.75, modality="text")
    healthy = StageMetrics("ml", "r2", "align-2", attempt=1)
    healthy.set("mfpo_train_reward_margin", 0.5, modality="image")
    healthy.set("mfpo_train_reward_margin", 0.75, modality="text")
    series = exposition(collapsed.registry) + exposition(healthy.registry)
    expected = {
        "exp_labels": {"severity": "warning", "namespace": "ml", "run": "r1", "stage": "align-2"},
        "exp_annotations": {
            "summary": "MFPO ml/r1 align-2: image reward margin collapsed (-0.25)",
            "description": (
                "The image reward margin of align-2 is -0.25 while the text margin is positive: "
                "the policy ignores the image. Check the datagen stage's grounding fallbacks and "
                "the objective's image weight (docs/troubleshooting.md)."
            ),
        },
    }
    name = "MFPOImageRewardMarginCollapsed"
    promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": input_series(series, 60),
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": name, "exp_alerts": []},
                    {"eval_time": "40m", "alertname": name, "exp_alerts": [expected]},
                ],
            }
        ],
    )
