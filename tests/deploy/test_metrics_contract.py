"""The dashboard and the alert rules query only metrics the code exports, with labels those
metrics have; and the metrics that matter (reward margins, losses, eval scores, stage phases,
retries: in fact every exported metric) appear on the dashboard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from deploy_helpers import CHART
from mfpo_operator.kube.metrics import OPERATOR_METRICS
from mfpo_runtime.metrics import RUNTIME_METRICS, STAGE_LABELS
from promql_names import grafana_query_expr, grouping_labels, metric_names, selector_labels

# Labels Prometheus adds to every scraped series (target labels) besides the metric's own.
TARGET_LABELS = {"job", "instance", "pod", "container", "endpoint", "service", "namespace"}


def exported() -> dict[str, set[str]]:
    """Every series name the code exports -> its labels (histograms as _bucket/_sum/_count)."""
    series: dict[str, set[str]] = {}
    for name, (_, _, extra) in RUNTIME_METRICS.items():
        series[name] = {*STAGE_LABELS, *extra}
    for name, (kind, _, labels) in OPERATOR_METRICS.items():
        if kind == "histogram":
            series[f"{name}_bucket"] = {*labels, "le"}
            series[f"{name}_sum"] = series[f"{name}_count"] = set(labels)
        else:
            series[name] = set(labels)
    return series


def queryable() -> dict[str, set[str]]:
    """What the dashboard and alerts may read: exported series and the rules' recordings."""
    series = exported()
    return {**series, **recorded(series)}


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", grafana_query_expr(variable["query"]["query"])


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_exprs() -> Iterator[tuple[str, str]]:
    for rule in rules():
        if "alert" in rule:
            yield f"alert {rule['alert']}", rule["expr"]
        else:
            yield f"record {rule['record']}", rule["expr"]


def recorded(exported_series: dict[str, set[str]]) -> dict[str, set[str]]:
    """Series the rule file records itself: the labels of the series they read (the
    recordings here only relabel values with label_replace, never drop a label)."""
    return {
        rule["record"]: set().union(*(exported_series[n] for n in metric_names(rule["expr"])))
        for rule in rules()
        if "record" in rule
    }


def all_exprs() -> list[tuple[str, str]]:
    return [*dashboard_exprs(), *alert_exprs()]


# ------------------------------------------------------------------- the PromQL name finder


@pytest.mark.parametrize(
    "expr,names",
    [
        (
            'max by (run, stage) (mfpo_train_loss{namespace=~"$namespace", term="text"})',
            {"mfpo_train_loss"},
        ),
        (
            (
                "sum(rate(mfpo_train_steps_total[5m]))"
                " / sum(rate(mfpo_train_steps_total[$__rate_interval]))"
            ),
            {"mfpo_train_steps_total"},
        ),
        (
            (
                "histogram_quantile(0.99, sum by (le)"
                " (rate(mfpo_reconcile_duration_seconds_bucket[10m]))) > 5"
            ),
            {"mfpo_reconcile_duration_seconds_bucket"},
        ),
        (
            'a > on (namespace, run) group_left (x) 1.1 * b{m=~"c|d"} and on(run) c offset 1h',
            {"a", "b", "c"},
        ),
        ("time() - max by (run) (m) > 6 * 3600 and bool 1e3", {"m"}),
        ('count(up{job="x{y}"} == 1) or vector(0)', {"up"}),
        ("label_values(mfpo_run_phase, namespace)", {"mfpo_run_phase"}),
    ],
)
def test_metric_names(expr: str, names: set[str]):
    assert metric_names(grafana_query_expr(expr)) == names


def test_selector_and_grouping_labels():
    expr = 'max by (run, stage) (m{namespace=~"$ns", phase="Running"}) and on (run) n{a!="}"}'
    assert selector_labels(expr) == {"m": {"namespace", "phase"}, "n": {"a"}}
    assert grouping_labels(expr) == {"run", "stage"}


# ------------------------------------------------------------------------------ the contract


def test_the_operator_and_runtime_tables_follow_the_naming_rules():
    for name, (kind, _, labels) in {**RUNTIME_METRICS, **OPERATOR_METRICS}.items():
        assert name.startswith("mfpo_"), name
        assert (kind == "counter") == name.endswith("_total"), name
        assert set(labels) <= {
            "namespace",
            "run",
            "stage",
            "attempt",
            "modality",
            "term",
            "benchmark",
            "metric",
            "phase",
            "verb",  # the operator's API requests: a handful of verbs and resources
            "resource",
        }, name


@pytest.mark.parametrize("where,expr", all_exprs(), ids=[w for w, _ in all_exprs()])
def test_queries_read_only_exported_metrics(where: str, expr: str):
    known = queryable()
    unknown = metric_names(expr) - set(known)
    assert not unknown, f"{where} queries {sorted(unknown)}, which no code exports: {expr}"


@pytest.mark.parametrize("where,expr", all_exprs(), ids=[w for w, _ in all_exprs()])
def test_queries_match_labels_the_metrics_have(where: str, expr: str):
    known = queryable()
    for name, labels in selector_labels(expr).items():
        missing = labels - known[name] - TARGET_LABELS
        assert not missing, f"{where}: {name} has no label {sorted(missing)}"
    read = set().union(*(known[name] for name in metric_names(expr))) | TARGET_LABELS
    assert grouping_labels(expr) <= read, f"{where}: grouping by {grouping_labels(expr) - read}"


def test_every_exported_metric_is_on_the_dashboard():
    shown: set[str] = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))
    expected = set(RUNTIME_METRICS) | {
        f"{name}_bucket" if kind == "histogram" else name
        for name, (kind, _, _) in OPERATOR_METRICS.items()
    }
    assert expected - shown == set(), f"not on the dashboard: {sorted(expected - shown)}"


@pytest.mark.parametrize(
    "panel,metric,legend_labels",
    [
        ("Reward margin per modality (live)", "mfpo_train_reward_margin", {"stage", "modality"}),
        (
            "Reward margin per modality per stage (final)",
            "mfpo_run_reward_margin",
            {"stage", "modality"},
        ),
        ("Loss terms", "mfpo_train_loss", {"stage", "term"}),
        (
            "Evaluation scores per run",
            "mfpo_run_eval_score",
            {"run", "stage", "benchmark", "metric"},
        ),
        ("Stage timeline", "mfpo_stage_phase", {"run", "stage"}),
        ("Retries per hour", "mfpo_stage_retries_total", {"run", "stage"}),
    ],
)
def test_key_panels(panel: str, metric: str, legend_labels: set[str]):
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    found: dict[str, Any] = {p["title"]: p for p in dashboard["panels"]}
    assert panel in found, f"no panel {panel!r}"
    target = found[panel]["targets"][0]
    assert metric in metric_names(target["expr"])
    # Split per the labels that matter (per modality, per stage, per run...).
    assert legend_labels <= grouping_labels(target["expr"])


def test_dashboard_variables_and_uid():
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert dashboard["uid"] == "mfpo-overview"
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "namespace", "run"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            operators_own = ("mfpo_reconcile_duration_seconds", "mfpo_operator_api_request_duration_seconds")
            if not any(name in target["expr"] for name in operators_own):  # not per namespace
                assert 'namespace=~"$namespace"' in target["expr"], panel["title"]


def test_dashboard_layout_is_well_formed():
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["description"], f"{panel['title']} has no description"
