"""The Helm chart: lint, render every scenario, validate the manifests, and check what each
scenario must (and must not) grant, run and expose.

Built-in kinds are validated by kubernetes-validate (offline OpenAPI schemas, strict: unknown
fields fail); CRD-typed objects (ServiceMonitor, PodMonitor, PrometheusRule, KopfPeering,
LocalQueue) are checked structurally here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import (
    CHART,
    RELEASE_NAMESPACE,
    REPO,
    SCENARIOS,
    by_kind,
    helm_template,
    one,
    render,
    run,
    tool,
)
from mfpo_core.api import MFPORunSpec
from mfpo_operator import kube
from mfpo_operator.kube import jobs as kube_jobs
from mfpo_operator.kube.main import parse_args

K8S_VERSION = "1.30.0"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema here.
K8S_VERSIONS = ["1.29.0", "1.30.0", kubernetes_validate.latest_version()]
CUSTOM_KINDS = {
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
    "LocalQueue",
}
SCENARIO_IDS = [p.name.removesuffix("-values.yaml") for p in SCENARIOS]


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module", params=SCENARIOS, ids=SCENARIO_IDS)
def scenario(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param.name, render(request.param)


def scenario_docs(name: str) -> list[dict[str, Any]]:
    return render(CHART / "ci" / f"{name}-values.yaml")


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            specs.append(
                (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
            )
    return specs


# ----------------------------------------------------------------------------- lint & schema


def test_scenarios_exist():
    assert set(SCENARIO_IDS) >= {
        "namespaced",
        "cluster-wide",
        "bundled-minio",
        "networkpolicy",
        "kueue",
    }


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=["default", *SCENARIO_IDS])
def test_helm_lint_strict(values: Path | None):
    args = [tool("helm"), "lint", "--strict", str(CHART), "--namespace", RELEASE_NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    out = run(*args).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid(scenario, version: str):
    name, docs = scenario
    assert docs, f"{name} renders nothing"
    for doc in docs:
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version})"
        if doc["kind"] in CUSTOM_KINDS:
            check_custom_object(doc, where)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where} is not a valid {doc['kind']}: {err.message} at {list(err.path)}")


def test_chart_supports_the_oldest_validated_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={K8S_VERSIONS[0]}-0"


def check_custom_object(doc: dict[str, Any], where: str) -> None:
    """Structure of the CRD-typed objects we render (no offline schema for them)."""
    assert doc["metadata"]["name"], where
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind == "ServiceMonitor":
        assert spec["selector"]["matchLabels"], where
        assert all(e["port"] and e["honorLabels"] is True for e in spec["endpoints"]), where
    elif kind == "PodMonitor":
        assert spec["podMetricsEndpoints"][0]["port"] == "metrics", where
    elif kind == "PrometheusRule":
        for group in spec["groups"]:
            assert group["name"] and group["rules"], where
            for rule in group["rules"]:
                assert rule["expr"] and ("alert" in rule or "record" in rule), where
    else:
        assert kind == "LocalQueue", where
        assert doc["apiVersion"] == "kueue.x-k8s.io/v1beta1" and spec["clusterQueue"], where


BAD_VALUES = {
    "unknown top-level key": ({"replicas": 2}, "Additional property replicas is not allowed"),
    "unknown nested key": ({"operator": {"logLevl": "INFO"}}, "Additional property logLevl"),
    "watch mode enum": ({"watch": {"mode": "global"}}, "watch.mode"),
    "storage mode enum": ({"storage": {"mode": "gcs"}}, "storage.mode"),
    "namespace name": ({"watch": {"namespaces": ["Team_A"]}}, "watch.namespaces.0"),
    "port range": ({"operator": {"metricsPort": 80}}, "operator.metricsPort"),
    # kopf standalone, no peering or leader election: never two operators.
    "two operators": ({"operator": {"replicas": 2}}, "operator.replicas"),
    "alert severity": (
        {"prometheusRule": {"alerts": {"MFPORunStuck": {"severity": "page"}}}},
        "severity",
    ),
    "duration": ({"metrics": {"podMonitor": {"interval": "soon"}}}, "metrics.podMonitor.interval"),
    "digest": ({"image": {"digest": "latest"}}, "image.digest"),
    "kueue without cluster queue": ({"kueue": {"enabled": True}}, "clusterQueue"),
    "resources quantity": (
        {"operator": {"resources": {"limits": {"memory": "lots"}}}},
        "operator.resources.limits.memory",
    ),
}


@pytest.mark.parametrize("values,expected", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_fail_at_install(tmp_path: Path, values: dict, expected: str):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    result = helm_template(path, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "schema" in result.stderr and expected in result.stderr, result.stderr


def test_override_of_an_unknown_alert_fails(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"prometheusRule": {"alerts": {"MFPOTypo": {"for": "1h"}}}}))
    result = helm_template(path, check=False)
    assert result.returncode != 0
    assert "prometheusRule.alerts.MFPOTypo: no such alert" in result.stderr


# ------------------------------------------------------------------------- the operator pod


def test_operator_deployment(default_docs):
    deployment = one(by_kind(default_docs, "Deployment"), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/mfpo/operator:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert f"--namespace={RELEASE_NAMESPACE}" in container["args"]
    # One operator, kopf standalone: no peering flag (main.py passes standalone=True).
    assert not [a for a in container["args"] if "peering" in a or "priority" in a]
    assert "--role-binding=t-mfpo-operator" in container["args"]
    # The operator exits within 25 s of a SIGTERM (handlers.EXIT_TIMEOUT_SECONDS).
    assert pod["terminationGracePeriodSeconds"] == 30
    assert "--metrics-port=9090" in container["args"]
    assert "--metrics-address=0.0.0.0" in container["args"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == "t-mfpo"
    # Environment the operator reads (kube/handlers.py).
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MFPO_OPERATOR_WORKERS"] == "16"
    assert "MFPO_OPERATOR_WORKERS" in Path(kube.__file__).with_name("handlers.py").read_text()


def test_operator_replicas_is_a_value_so_an_upgrade_keeps_it():
    """`kubectl scale` is undone by the next `helm upgrade` (Helm's three-way merge patches the
    live object to the rendered manifest: helm.sh/docs/faq/changes_since_helm2, "Improved
    Upgrade Strategy"), so turning the in-cluster operator off for one run by hand is a value."""
    assert one(render(), "Deployment")["spec"]["replicas"] == 1
    # Unset (`--set key=null` removes it, as `helm upgrade --reuse-values` from a chart
    # without the key renders with that chart's defaults): one operator, as before.
    unset = render(set_values=("operator.replicas=null",))
    assert one(unset, "Deployment")["spec"]["replicas"] == 1
    off = render(set_values=("operator.replicas=0",))
    assert one(off, "Deployment")["spec"]["replicas"] == 0
    # Off, the ServiceAccount and its grants stay: a hand-run operator uses that token.
    assert by_kind(off, "ServiceAccount") and by_kind(off, "ClusterRole")


@pytest.mark.parametrize("port", ["operator.metricsPort=8080", "operator.healthPort=9090"])
def test_metrics_and_health_on_one_port_fail_at_install(port: str):
    """kopf's health server and prometheus-client's metrics server each bind their port; the
    second bind fails with EADDRINUSE and the operator exits (a CrashLoopBackOff). The values
    schema cannot compare two values (JSON Schema has no such keyword), so the template fails."""
    result = helm_template(set_values=(port,), check=False)
    assert result.returncode != 0, f"{port} was accepted"
    assert "operator.metricsPort and operator.healthPort are both" in result.stderr, result.stderr


def test_cluster_mode_watches_all_namespaces_and_pins_the_digest():
    container = one(scenario_docs("cluster-wide"), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    # mfpo-operator watches every namespace when given no --namespace.
    assert not [a for a in container["args"] if a.startswith("--namespace")]
    assert container["image"] == "ghcr.io/mfpo/operator@sha256:" + "0123456789abcdef" * 4


def test_every_pod_is_hardened(scenario):
    _, docs = scenario
    for where, pod in pod_specs(docs):
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, (
            where
        )
        for container in pod["containers"]:
            csc = container["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, where
            assert csc["readOnlyRootFilesystem"] is True, where
            assert csc["capabilities"] == {"drop": ["ALL"]}, where
            assert container["resources"]["limits"]["memory"], where


# -------------------------------------------------------------------------------------- RBAC

OPERATOR_RULES = {
    ("mfpo.dev", "mfporuns"): {"get", "list", "watch", "patch"},
    ("mfpo.dev", "mfporuns/status"): {"get", "patch"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"get", "list", "watch"},  # watch: stage pods that cannot start, evictions
    ("", "configmaps"): {"create", "get", "list", "delete"},
    ("", "services"): {"create", "get", "list", "delete"},
    ("", "events"): {"create", "list"},
    ("", "serviceaccounts"): {"get"},
    ("", "secrets"): {"get"},
}


def flatten_rules(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs; asserts that no rule uses a wildcard."""
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_namespaced_mode_grants_only_in_each_namespace_through_one_binding():
    # A RoleBinding per namespace to one ClusterRole: the binding alone carries the rights
    # there (so a finalizer on that one object keeps them while the namespace is deleted),
    # and nothing is granted cluster-wide (no ClusterRoleBinding).
    docs = scenario_docs("namespaced")
    assert not by_kind(docs, "Role") and not by_kind(docs, "ClusterRoleBinding")
    role = one([r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "t-mfpo"], "ClusterRole")
    assert flatten_rules(role["rules"]) == {
        **OPERATOR_RULES,
        ("rbac.authorization.k8s.io", "rolebindings"): {"get", "patch"},
    }
    # Its own RoleBinding only, the one --role-binding names.
    (own,) = [r for r in role["rules"] if r["apiGroups"] == ["rbac.authorization.k8s.io"]]
    assert own["resourceNames"] == ["t-mfpo-operator"]
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        # Not t-mfpo, the name of the Role-bound binding of earlier versions: the API server
        # refuses to change a binding's roleRef ("cannot change roleRef"), which an upgrade
        # patching that binding would try.
        assert binding["metadata"]["name"] == "t-mfpo-operator"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "t-mfpo", "namespace": RELEASE_NAMESPACE}
        ]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "t-mfpo"
        }
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--role-binding=t-mfpo-operator" in container["args"]
    # No kopf peering objects or grants: the operator runs standalone.
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev/")]


def test_cluster_mode_grants_one_cluster_role():
    docs = scenario_docs("cluster-wide")
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    (role,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "t-mfpo"]
    assert flatten_rules(role["rules"]) == {
        **OPERATOR_RULES,
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev/")]
    # A ClusterRoleBinding outlives any namespace: nothing to keep, no --role-binding.
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--namespace")]


def test_secrets_are_only_read_by_name_and_can_be_denied(scenario):
    _, docs = scenario
    for role in by_kind(docs, "Role") + by_kind(docs, "ClusterRole"):
        for rule in role["rules"]:
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"], role["metadata"]
    denied = render(set_values=("rbac.readStorageSecrets=false",))
    (role,) = [r for r in by_kind(denied, "ClusterRole") if r["metadata"]["name"] == "t-mfpo"]
    assert ("", "secrets") not in flatten_rules(role["rules"])


def test_stage_service_account_has_no_api_token():
    docs = scenario_docs("namespaced")
    stage = [sa for sa in by_kind(docs, "ServiceAccount") if sa["metadata"]["name"] == "mfpo-stage"]
    assert sorted(sa["metadata"]["namespace"] for sa in stage) == ["team-a", "team-b"]
    assert all(sa["automountServiceAccountToken"] is False for sa in stage)


# ------------------------------------------------------------------------------- monitoring


def test_monitors_scrape_operator_and_stage_pods(default_docs):
    service = one(default_docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = one(default_docs, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    pods = one(default_docs, "PodMonitor")["spec"]
    assert pods["selector"] == {"matchExpressions": [{"key": "mfpo.dev/run", "operator": "Exists"}]}
    assert pods["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    assert pods["podMetricsEndpoints"][0]["honorLabels"] is True
    cluster = one(scenario_docs("cluster-wide"), "PodMonitor")["spec"]
    assert cluster["namespaceSelector"] == {"any": True}


def test_dashboard_configmap_carries_the_file(default_docs):
    (config_map,) = [
        c for c in by_kind(default_docs, "ConfigMap") if c["metadata"]["name"] == "t-mfpo-dashboard"
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["mfpo.json"]) == json.loads(
        (CHART / "files" / "dashboard.json").read_text()
    )


def test_prometheus_rule_is_the_rule_file(default_docs):
    rule = one(default_docs, "PrometheusRule")
    assert (
        rule["spec"]["groups"]
        == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    )


def test_alert_overrides_apply():
    rule = one(scenario_docs("cluster-wide"), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts["MFPORunStuck"]["for"] == "2h"
    assert "MFPOReconcileSlow" not in alerts
    assert alerts["MFPOStageFailed"]["labels"]["severity"] == "critical"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_extra_rules_go_in_their_own_group(tmp_path: Path):
    path = tmp_path / "extra.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "prometheusRule": {
                    "extraRules": [
                        {"alert": "MFPOManyRuns", "expr": "count(mfpo_run_phase == 1) > 100"}
                    ]
                }
            }
        )
    )
    groups = one(render(path), "PrometheusRule")["spec"]["groups"]
    assert [g["name"] for g in groups] == ["mfpo-recording", "mfpo", "mfpo-extra"]
    assert groups[2]["rules"] == [
        {"alert": "MFPOManyRuns", "expr": "count(mfpo_run_phase == 1) > 100"}
    ]


# ----------------------------------------------------------------------- storage & scheduling


def test_external_storage_renders_no_minio():
    docs = scenario_docs("namespaced")
    assert not by_kind(docs, "Secret") and not by_kind(docs, "PersistentVolumeClaim")
    assert [d["metadata"]["name"] for d in by_kind(docs, "Deployment")] == ["t-mfpo"]


def test_bundled_minio():
    docs = scenario_docs("bundled-minio")
    (secret,) = by_kind(docs, "Secret")
    data = secret["stringData"]
    assert set(data) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MFPO_S3_ENDPOINT",
        "MFPO_S3_SECURE",
    }
    assert data["MFPO_S3_ENDPOINT"] == f"t-mfpo-minio.{RELEASE_NAMESPACE}.svc:9000"
    assert len(data["AWS_SECRET_ACCESS_KEY"]) == 40
    (minio,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "t-mfpo-minio"]
    assert minio["spec"]["strategy"]["type"] == "Recreate"
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    job = one(docs, "Job")
    assert (
        'mc mb --ignore-existing "mfpo/mfpo-trial"'
        in job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    )
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_bundled_minio_secret_in_every_prepared_namespace():
    docs = render(
        CHART / "ci" / "bundled-minio-values.yaml", set_values=("watch.namespaces={a,b}",)
    )
    secrets = by_kind(docs, "Secret")
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["a", "b", RELEASE_NAMESPACE]
    # One credential pair, the same everywhere.
    assert len({s["stringData"]["AWS_SECRET_ACCESS_KEY"] for s in secrets}) == 1


def test_network_policies():
    docs = scenario_docs("networkpolicy")
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(docs, "NetworkPolicy")}
    assert set(policies) == {"t-mfpo-operator", "t-mfpo-stages", "t-mfpo-minio"}
    operator_egress = policies["t-mfpo-operator"]["egress"]
    assert {"ipBlock": {"cidr": "10.96.0.1/32"}} in operator_egress[1]["to"]
    # The operator deletes artifacts (deleteOnRunDeletion): it reaches the bundled MinIO too.
    minio_pods = operator_egress[2]["to"][0]["podSelector"]["matchLabels"]
    assert minio_pods["app.kubernetes.io/component"] == "minio"
    minio_from = policies["t-mfpo-minio"]["ingress"][0]["from"]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        == "operator"
        for p in minio_from
    )
    stages = policies["t-mfpo-stages"]
    assert stages["podSelector"] == {
        "matchExpressions": [{"key": "mfpo.dev/run", "operator": "Exists"}]
    }
    assert stages["egress"][-2]["ports"] == [{"port": 9000, "protocol": "TCP"}]
    # The MLflow tracking server (networkPolicy.trackingPorts, trackingTo).
    assert stages["egress"][-1] == {
        "ports": [{"port": 5000, "protocol": "TCP"}],
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}}}],
    }
    assert not by_kind(render(), "NetworkPolicy")


def test_kueue_local_queue():
    (queue,) = by_kind(scenario_docs("kueue"), "LocalQueue")
    assert queue["metadata"] == {**queue["metadata"], "name": "mfpo", "namespace": "ml-research"}
    assert queue["spec"] == {"clusterQueue": "gpu-h100"}


# ------------------------------------------------------------------------------------- CRDs

CHART_CRD = CHART / "crds" / "mfpo.dev_mfporuns.yaml"
GENERATED_CRD = REPO / "crds" / "mfpo.dev_mfporuns.yaml"


def test_chart_crd_is_the_generated_crd():
    assert GENERATED_CRD.exists(), f"{GENERATED_CRD} is missing: run `make crds`"
    assert CHART_CRD.exists() and CHART_CRD.read_text() == GENERATED_CRD.read_text(), (
        "charts/mfpo/crds/ is stale: run `bash scripts/sync-chart-crds.sh`"
    )


def test_chart_crds_are_valid():
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] == "CustomResourceDefinition", path
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_crd_upgrade_hook_applies_every_chart_crd():
    docs = scenario_docs("cluster-wide")
    hook = [d for d in docs if d["metadata"]["name"] == "t-mfpo-crd-upgrade"]
    kinds = {d["kind"] for d in hook}
    assert kinds == {"ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Job"}
    assert all(d["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade" for d in hook)
    (config_map,) = [d for d in hook if d["kind"] == "ConfigMap"]
    files = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert sorted(config_map["data"]) == files
    for name in files:
        assert config_map["data"][name] == (CHART / "crds" / name).read_text().rstrip("\n")
    (job,) = [d for d in hook if d["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == [
        "apply",
        "--server-side",
    ]
    (role,) = [d for d in hook if d["kind"] == "ClusterRole"]
    assert set(role["rules"][0]["resourceNames"]) == {"mfporuns.mfpo.dev"}
    assert not [d for d in render() if d["metadata"]["name"] == "t-mfpo-crd-upgrade"]


# ----------------------------------------------------- held to the operator's own contract


def test_operator_accepts_the_rendered_args():
    for values in ("namespaced", "cluster-wide"):
        container = one(scenario_docs(values), "Deployment")["spec"]["template"]["spec"][
            "containers"
        ][0]
        args = parse_args(container["args"])  # argparse exits on an unknown flag
        assert args.metrics_port == 9090 and args.liveness == "http://0.0.0.0:8080/healthz"
        assert args.role_binding == ("t-mfpo-operator" if values == "namespaced" else None)
    assert parse_args(
        one(scenario_docs("namespaced"), "Deployment")["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
    ).namespace == ["team-a", "team-b"]
    assert parse_args(
        one(scenario_docs("cluster-wide"), "Deployment")["spec"]["template"]["spec"]["containers"][
            0
        ]["args"]
    ).verbose


def documented_rbac() -> dict[tuple[str, str], tuple[set[str], str]]:
    """The RBAC table in operator/mfpo_operator/kube/__init__.py's docstring:
    (group, resource) -> (verbs, note)."""
    table = kube.__doc__.split("RBAC the operator needs", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"^\s{4}(\S+(?: / \S+)?)\s+(\S+)\s+([a-z]+(?:, [a-z]+)*)\s*(.*)$", line)
        if not match:
            continue  # a continuation of the previous row's note
        groups, resource, verbs, note = match.groups()
        for group in groups.split(" / "):
            rows[(group.strip('"'), resource)] = (set(verbs.split(", ")), note)
    return rows


# Documented rows the chart leaves out, and why.
NOT_GRANTED = {
    # kopf does not observe namespaces when cluster-wide (kopf/_core/reactor/observation.py:
    # namespace_observer lists them only `if ... not clusterwide`), and in namespaced mode the
    # chart passes exact names.
    ("", "namespaces"),
}


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_rbac_is_what_the_operator_documents(mode: str):
    docs = scenario_docs(mode)
    role = next(r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "t-mfpo")
    granted = flatten_rules(role["rules"])
    expected = {}
    for key, (verbs, note) in documented_rbac().items():
        if key in NOT_GRANTED:
            continue
        if mode == "cluster-wide" and "(--namespace" in note:
            continue
        if mode == "namespaced" and ("(cluster-wide" in note or "discovery" in note):
            continue
        expected[key] = verbs
    assert expected, "no RBAC table found in mfpo_operator.kube's docstring"
    assert granted == expected


@pytest.mark.parametrize("stage", ["datagen", "align-1", "eval"])
def test_pod_monitor_and_network_policy_select_the_operators_stage_pods(stage: str):
    spec = MFPORunSpec.model_validate(
        {
            "model": {"uri": "s3://bkt/model"},
            "data": {"uri": "s3://bkt/data", "format": "synthetic"},
            "storage": {"uri": "s3://bkt/runs", "endpoint": "minio:9000"},
            "imagePreference": {"shards": 2},
            "resources": {"nodes": 2, "gpusPerNode": 8},
        }
    )
    job = kube_jobs.job(kube_jobs.RunRef("r1", "ml", "uid-1"), spec, stage, 1, f"r1-{stage}-a1")
    pod = job["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    docs = scenario_docs("networkpolicy")
    monitor = one(docs, "PodMonitor")["spec"]
    for expression in monitor["selector"]["matchExpressions"]:
        assert expression["operator"] == "Exists" and expression["key"] in pod["metadata"]["labels"]
    assert monitor["podMetricsEndpoints"][0]["port"] in ports
    policy = next(
        p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "t-mfpo-stages"
    )
    for expression in policy["spec"]["podSelector"]["matchExpressions"]:
        assert expression["key"] in pod["metadata"]["labels"]
    # The metrics ingress rule names the port by name: it must exist on the pod.
    assert {"port": "metrics", "protocol": "TCP"} in policy["spec"]["ingress"][1]["ports"]


# Free-form maps and Kubernetes objects passed through as they are.
FREE_FORM = {"global", "affinity", "nodeSelector", "podAnnotations", "podLabels", "annotations",
             "labels", "alerts"}  # fmt: skip


def test_values_schema_is_strict():
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        structured = "properties" in node or "patternProperties" in node
        if structured and path.rsplit(".", 1)[-1] not in FREE_FORM:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[]")

    walk(schema, "values")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]) - {"global"}
