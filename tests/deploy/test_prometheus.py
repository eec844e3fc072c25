"""A real Prometheus server (Debian's, from scripts/install-tools.sh) scrapes the real operator
(kopf against kmock, its metrics served as `mfpo-operator` serves them) and a stage's metrics
endpoint, plus a Pushgateway for a stage that ends before a scrape; the chart's alert rules are
loaded into it. Every dashboard panel query and every alert expression is then evaluated by that
server against what it scraped.

The stage processes are stand-ins (named so below): they run the runtime's real StageMetrics
(its registry, its HTTP server, its push) with fixed numbers, instead of training a model.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import kubernetes
import pytest
import yaml
from dashboard_preview import render
from deploy_helpers import CHART, REPO, tool
from mfpo_core.contract import TerminationSummary
from prometheus_client import start_http_server
from promql_names import metric_names

# The real operator against kmock: the helpers of tests/operator/ (not a package).
sys.path.insert(0, str(REPO / "tests" / "operator"))
from kube_world import (
    Kube,
    declare_resources,
    eventually,
    run_manifest,
    running_operator,
    write_kubeconfig,
)

DASHBOARD = CHART / "files" / "dashboard.json"
ALERTS = CHART / "files" / "alerts.yaml"
# Alerts whose condition is a duration the test cannot wait for (6 h without a transition; a
# p99 reconcile above 5 s): every series they read must be scraped, the condition itself not.
TIME_THRESHOLD_ONLY = {"MFPORunStuck", "MFPOReconcileSlow"}

# A stand-in stage process: the runtime's StageMetrics with fixed numbers, served on a port
# (scraped while it "runs") or pushed once to a Pushgateway (a stage shorter than a scrape).
STAND_IN_STAGE = """
import sys, time
from mfpo_runtime.metrics import StageMetrics
stage, mode = sys.argv[1], sys.argv[2]
m = StageMetrics("ml", "demo", stage, 1)
if stage == "datagen":
    m.inc("mfpo_datagen_records_total", 8); m.inc("mfpo_datagen_skipped_records_total", 1)
    m.inc("mfpo_datagen_grounding_fallbacks_total", 2); m.inc("mfpo_datagen_regions_lost_total", 1)
    m.inc("mfpo_tracking_errors_total", 1)
    m.inc("mfpo_score_records_total", 8); m.set("mfpo_score_semantic_entropy_mean", 0.7)
    m.set("mfpo_eval_score", 0.2, benchmark="synthetic", metric="chair_s", stage="align-2")
else:
    for term, value in (("text", 0.6), ("image", 0.7), ("anchor", 0.5)):
        m.set("mfpo_train_loss", value, term=term)
    m.set("mfpo_train_objective", 1.8)
    m.set("mfpo_train_reward_chosen", 0.3); m.set("mfpo_train_reward_rejected", 0.1)
    m.set("mfpo_train_reward_perturbed", 0.35)
    m.set("mfpo_train_reward_margin", 0.2, modality="text")
    m.set("mfpo_train_reward_margin", -0.05, modality="image")
    m.set("mfpo_train_reward_accuracy_ratio", 0.75, modality="text")
    m.set("mfpo_train_reward_accuracy_ratio", 0.25, modality="image")
    m.set("mfpo_train_modality_balance_ratio", -0.25)
    m.set("mfpo_train_samples_per_second", 4.0); m.set("mfpo_train_tokens_per_second", 512.0)
    m.set("mfpo_train_learning_rate", 2e-4)
if mode == "push":
    m.push()
    sys.exit(0)
m.serve()
print("serving", flush=True)
while True:  # a training loop's counter, scraped live
    m.inc("mfpo_train_steps_total"); time.sleep(0.5)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_http(url: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not answer on {url}: {err}") from err
            time.sleep(0.2)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict]:
        params = urllib.parse.urlencode({"query": expr})
        body = get_json(f"{self.url}/api/v1/query?{params}")
        assert body["status"] == "success", body
        return body["data"]["result"]

    def targets_up(self) -> dict[str, float]:
        return {s["metric"]["job"]: float(s["value"][1]) for s in self.query("up")}

    def alerts(self) -> list[dict]:
        return get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]


def start(args: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard target, the variables set to match all."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$namespace", ".*").replace("$run", ".*")
            queries.append((panel["title"], expr))
    return queries


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


async def drive_operator(kube: Kube) -> None:
    """Three runs through the real operator: one succeeds with scores that regressed and an image
    margin that collapsed, one fails twice and is being retried, one fails for good."""
    await kube.create_run(run_manifest("demo", curriculum={"stages": 2}))
    await kube.create_run(run_manifest("flaky", retries={"maxAttempts": 3, "backoffSeconds": 0}))
    await kube.create_run(run_manifest("broken"))
    summaries = {
        "align-1": {"reward_margin.image": -0.1, "reward_margin.text": 0.3},
        "align-2": {"reward_margin.image": 0.2, "reward_margin.text": 0.4},
        "eval": {
            "eval.base.synthetic.chair_s": 0.2,
            "eval.align-1.synthetic.chair_s": 0.25,  # worse than base by 25 %
            "eval.align-2.synthetic.chair_s": 0.3,  # worse than align-1 by 20 %
            "eval.base.synthetic.f1": 0.8,
            "eval.align-2.synthetic.f1": 0.7,
        },
    }
    for stage in ["datagen", "score", "align-1", "align-2", "eval"]:
        job = f"demo-{stage}-a1"
        await eventually(lambda job=job: job in kube.jobs(), what=f"job {job}")
        metrics = summaries.get(stage, {})
        await kube.finish_job(
            job, summary=TerminationSummary(stage=stage, status="succeeded", metrics=metrics)
        )
    for attempt in (1, 2):
        job = f"flaky-datagen-a{attempt}"
        await eventually(lambda job=job: job in kube.jobs(), what=f"job {job}")
        await kube.finish_job(job, exit_code=1)
    await eventually(lambda: "flaky-datagen-a3" in kube.jobs(), what="flaky's third attempt")
    await eventually(lambda: "broken-datagen-a1" in kube.jobs(), what="job broken-datagen-a1")
    bad = TerminationSummary(stage="datagen", status="bad-input", message="record 3: no image")
    await kube.finish_job("broken-datagen-a1", exit_code=65, summary=bad)
    await eventually(lambda: kube.status("demo").get("phase") == "Succeeded", what="demo done")
    await eventually(lambda: kube.status("broken").get("phase") == "Failed", what="broken failed")


async def test_prometheus_scrapes_the_operator_and_stages_and_every_query_returns_series(
    kmock, tmp_path, monkeypatch, processes
):
    prometheus_bin, pushgateway_bin = tool("prometheus"), tool("prometheus-pushgateway")
    declare_resources(kmock)
    config = write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
    monkeypatch.setenv("MFPO_OPERATOR_TICK_SECONDS", "0.2")
    kube = Kube(kmock)

    operator_port, stage_port, gateway_port, prometheus_port = (free_port() for _ in range(4))
    processes.append(
        start(
            [pushgateway_bin, f"--web.listen-address=127.0.0.1:{gateway_port}"],
            tmp_path,
            "pushgateway",
        )
    )
    # The stage processes inherit these, as a stage pod gets them from its Job.
    monkeypatch.setenv("MFPO_METRICS_PORT", str(stage_port))
    monkeypatch.setenv("MFPO_PUSHGATEWAY", f"127.0.0.1:{gateway_port}")
    processes.append(
        start([sys.executable, "-c", STAND_IN_STAGE, "align-1", "serve"], tmp_path, "stage")
    )
    scrape = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    prometheus_config = {
        "global": {**scrape, "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "operator", "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
            # The chart's PodMonitor sets honorLabels: the series keep their own run/stage labels.
            {"job_name": "stage", "honor_labels": True, "static_configs": [{"targets": [f"127.0.0.1:{stage_port}"]}]},
            {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}]},
        ],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
    processes.append(start([
        prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}",
    ], tmp_path, "prometheus"))  # fmt: skip
    prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}")
    wait_http(f"{prometheus.url}/-/ready", "prometheus")
    wait_http(f"http://127.0.0.1:{gateway_port}/-/ready", "the pushgateway")

    async with running_operator() as memo:
        # What `mfpo-operator --metrics-port` does with the operator's registry.
        server, _thread = start_http_server(
            operator_port, addr="127.0.0.1", registry=memo.metrics.registry
        )
        try:
            await drive_operator(kube)
            # A short stage (datagen, score, eval stand-in) that ends before any scrape: pushed.
            pushed = await asyncio.create_subprocess_exec(
                sys.executable, "-c", STAND_IN_STAGE, "datagen", "push"
            )
            assert await asyncio.wait_for(pushed.wait(), timeout=60) == 0
            await eventually(
                lambda: prometheus.targets_up() == {"operator": 1.0, "stage": 1.0, "pushgateway": 1.0}
                and prometheus.query("mfpo_datagen_records_total")
                and prometheus.query("mfpo_run_phase{run='broken', phase='Failed'} == 1"),
                timeout=30, what="every target up and the runs' series scraped",
            )  # fmt: skip
            # rate()/increase() need two samples of every series: a few more scrapes.
            await eventually(
                lambda: prometheus.query("rate(mfpo_train_steps_total[5m]) > 0")
                and prometheus.query('count_over_time(mfpo_run_phase{run="demo", phase="Succeeded"}[5m]) >= 2'),
                timeout=15, what="two scrapes of the finished runs",
            )  # fmt: skip

            empty = [
                f"panel {title!r}: {expr}"
                for title, expr in panel_queries()
                if not prometheus.query(expr)
            ]
            assert not empty, "dashboard queries that return no series:\n" + "\n".join(empty)

            silent = []
            for rule in alert_rules():
                if rule["alert"] in TIME_THRESHOLD_ONLY:
                    silent += [f"alert {rule['alert']}: no series of {name}"
                               for name in sorted(metric_names(rule["expr"])) if not prometheus.query(name)]  # fmt: skip
                elif not prometheus.query(rule["expr"]):
                    silent.append(f"alert {rule['alert']}: {' '.join(rule['expr'].split())}")
            assert not silent, "alert expressions that return no series:\n" + "\n".join(silent)

            # MFPOStageFailed has no `for`: Prometheus fires it on the next rule evaluation.
            def firing() -> set[tuple[str, str, str]]:
                return {(a["labels"]["alertname"], a["labels"].get("run", ""), a["labels"].get("stage", ""))
                        for a in prometheus.alerts() if a["state"] == "firing"}  # fmt: skip

            await eventually(lambda: ("MFPOStageFailed", "broken", "datagen") in firing(),
                             timeout=10, what="MFPOStageFailed firing for broken/datagen")  # fmt: skip
            assert ("MFPOStageFailed", "demo", "datagen") not in firing()
            assert ("MFPOHallucinationRegressed", "demo", "align-1") in firing()

            # The preview of the main panels; MFPO_DASHBOARD_PREVIEW=docs/dashboard-preview.png
            # refreshes the one in docs/.
            out = Path(os.environ.get("MFPO_DASHBOARD_PREVIEW") or tmp_path / "preview.png")
            render(prometheus.url, json.loads(DASHBOARD.read_text()), out)
            assert out.stat().st_size > 10_000
        finally:
            server.shutdown()
