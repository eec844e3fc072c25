"""The dashboard JSON decodes with Grafana's own types (grafana-foundation-sdk, generated from
Grafana's schemas): every field it carries is one Grafana's schema knows, every panel type is a
known panel plugin with typed options, every target a Prometheus query."""

from __future__ import annotations

import json

import pytest
from deploy_helpers import CHART

sdk = pytest.importorskip(
    "grafana_foundation_sdk",
    reason="grafana-foundation-sdk (the dev extra) is not installed: make setup",
)
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.models import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard, RowPanel

DASHBOARD = json.loads((CHART / "files" / "dashboard.json").read_text())
# Fields Grafana writes that the SDK's schema leaves out: a query variable's `definition` (the
# query as the variable editor shows it; Grafana's own exports carry it).
NOT_IN_SDK = {"definition"}


def dropped_fields(source, decoded, path: str = "") -> list[str]:
    """Paths of the source's fields that did not survive a decode/encode round trip."""
    if isinstance(source, dict):
        return [
            found
            for key, value in source.items()
            for found in (
                [f"{path}/{key}"]
                if key not in decoded
                else dropped_fields(value, decoded[key], f"{path}/{key}")
            )
            if key not in NOT_IN_SDK
        ]
    if isinstance(source, list):
        if len(source) != len(decoded):
            return [path]
        return [
            f
            for i, (a, b) in enumerate(zip(source, decoded))
            for f in dropped_fields(a, b, f"{path}[{i}]")
        ]
    return [] if source == decoded else [f"{path}: {source!r} became {decoded!r}"]


def encode(obj):
    return obj.to_json() if hasattr(obj, "to_json") else str(obj)


@pytest.fixture(scope="module")
def dashboard() -> Dashboard:
    plugins.register_default_plugins()
    return Dashboard.from_json(DASHBOARD)


def test_every_field_is_in_grafanas_schema(dashboard):
    round_trip = json.loads(json.dumps(dashboard.to_json(), default=encode))
    assert not dropped_fields(DASHBOARD, round_trip)


def test_every_panel_is_a_known_plugin_with_prometheus_targets(dashboard):
    for panel in dashboard.panels:
        if isinstance(panel, RowPanel):
            continue
        assert runtime.panelcfg_config(panel.type_val) is not None, (
            f"panel {panel.title!r}: type {panel.type_val!r} is no Grafana panel plugin"
        )
        assert not isinstance(panel.options, dict), f"panel {panel.title!r}: options not typed"
        assert panel.targets, f"panel {panel.title!r} has no queries"
        for target in panel.targets:
            assert isinstance(target, prometheus.Dataquery) and target.expr, (
                f"panel {panel.title!r}: target {target!r} is not a Prometheus query"
            )
