"""Render the dashboard's main panels from what a Prometheus server scraped (matplotlib), so
that docs/ can show what the dashboard shows. Used by test_prometheus.py; docs/grafana.md
says how the committed preview was made."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Panel titles of charts/mfpo/files/dashboard.json, drawn in this order.
# (Stage durations are left out: the emulated Job controller stamps fixed 2025 times, so the
# test world's durations mean nothing; reconcile latency is NaN once the runs stop changing.)
MAIN_PANELS = (
    "Runs by phase",
    "Reward margin per modality per stage (final)",
    "CHAIR per stage",
    "Loss terms",
    "Reward accuracy per modality",
    "Datagen records",
)
SERIES_LABELS = ("run", "stage", "phase", "modality", "term", "metric")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def _name(metric: dict[str, str]) -> str:
    return " ".join(metric[k] for k in SERIES_LABELS if k in metric) or "value"


def render(prometheus_url: str, dashboard: dict, out: Path, seconds: float = 60.0) -> Path:
    """One subplot per main panel: bars of the latest values for bar panels, lines over the last
    `seconds` for time series; a panel whose queries return nothing is an error."""
    panels = {p["title"]: p for p in dashboard["panels"]}
    end = time.time()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, title in zip(axes.flat, MAIN_PANELS):
        panel = panels[title]
        drawn = 0
        for target in panel["targets"]:
            expr = target["expr"].replace("$namespace", ".*").replace("$run", ".*")
            if panel["type"] == "timeseries":
                params = urllib.parse.urlencode(
                    {"query": expr, "start": end - seconds, "end": end, "step": 1}
                )
                for series in _get(f"{prometheus_url}/api/v1/query_range?{params}")["result"]:
                    t = [float(v[0]) - end for v in series["values"]]
                    ax.plot(
                        t, [float(v[1]) for v in series["values"]], label=_name(series["metric"])
                    )
                    drawn += 1
            else:
                params = urllib.parse.urlencode({"query": expr, "time": end})
                result = _get(f"{prometheus_url}/api/v1/query?{params}")["result"]
                for series in sorted(result, key=lambda s: _name(s["metric"])):
                    ax.barh(_name(series["metric"]), float(series["value"][1]))
                    drawn += 1
        if not drawn:
            raise AssertionError(f"panel {title!r}: its queries returned no series")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if panel["type"] == "timeseries":
            ax.set_xlabel("seconds before now", fontsize=7)
            ax.legend(fontsize=6, loc="best")
    fig.suptitle("MFPO dashboard, main panels (rendered from a test's Prometheus)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
