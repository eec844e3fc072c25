"""The alert rules: promtool checks them and runs their unit tests (alerts_test.yaml), every
alert has a test case that fires, and the chart's rendered PrometheusRule passes promtool too."""

from __future__ import annotations

from pathlib import Path

import yaml
from deploy_helpers import CHART, one, render, run, tool

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
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule[
                "alert"
            ]


def test_rendered_prometheus_rule_passes_promtool(tmp_path: Path):
    rule = one(render(CHART / "ci" / "cluster-wide-values.yaml"), "PrometheusRule")
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", str(path)).stdout
