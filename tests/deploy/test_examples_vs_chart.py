"""Every example MFPORun runs against the chart it is meant for: the chart, rendered by the real
helm binary with the example's values file (`examples/<name>-values.yaml`, release `mfpo` in
the run's namespace), creates the ServiceAccount, the storage Secret (or names the one the
user creates), the Kueue LocalQueue and the MinIO endpoint that the run names. And the chart's
NOTES, rendered the same way, tell a fresh install what is missing and the next command."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import CHART, REPO, run, tool
from mfpo_core.api import MFPORun
from mfpo_operator.validation import load_manifest

EXAMPLES = REPO / "examples"
RELEASE = "mfpo"  # the release name every doc and example header installs


def example_runs() -> list[Path]:
    return sorted(
        path
        for path in EXAMPLES.glob("*.yaml")
        if (yaml.safe_load(path.read_text()) or {}).get("kind") == "MFPORun"
    )


def cluster_examples() -> list[Path]:
    return [p for p in example_runs() if load_manifest(p).spec.storage.uri.startswith("s3://")]


def chart_values_of(example: Path) -> Path:
    return example.with_name(f"{example.stem}-values.yaml")


def render_for(run: MFPORun, values: Path) -> list[dict[str, Any]]:
    out = run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        run.metadata.namespace,
        "--values",
        str(values),
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def run_helm(*args: str) -> str:
    return run(tool("helm"), *args).stdout


def find(docs: list[dict[str, Any]], kind: str, name: str, namespace: str) -> dict[str, Any]:
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return doc
    rendered = sorted(
        f"{d['metadata'].get('namespace')}/{d['metadata']['name']}"
        for d in docs
        if d["kind"] == kind
    )
    pytest.fail(f"the chart renders no {kind} {namespace}/{name}; it renders {rendered}")


def test_every_example_is_local_or_has_its_chart_values():
    runs = example_runs()
    assert {p.name for p in runs} >= {"quickstart.yaml", "llava-1.5-7b.yaml"}
    for path in runs:
        spec = load_manifest(path).spec
        if spec.storage.uri.startswith("file://"):
            # A local run: nothing of the chart is named, nothing to agree with.
            assert not (
                spec.resources.service_account_name
                or spec.resources.queue_name
                or spec.storage.secret_name
            ), path.name
        else:
            assert chart_values_of(path).is_file(), (
                f"{path.name} runs in a cluster but {chart_values_of(path).name} is missing"
            )


@pytest.mark.parametrize("example", cluster_examples(), ids=lambda p: p.name)
def test_cluster_example_agrees_with_the_rendered_chart(example: Path):
    run = load_manifest(example)
    spec, namespace = run.spec, run.metadata.namespace
    values = yaml.safe_load(chart_values_of(example).read_text())
    docs = render_for(run, chart_values_of(example))

    # Stage pods run as this ServiceAccount: a missing one is "serviceaccount not found".
    assert spec.resources.service_account_name, "a cluster example names its ServiceAccount"
    find(docs, "ServiceAccount", spec.resources.service_account_name, namespace)

    if spec.resources.queue_name:
        find(docs, "LocalQueue", spec.resources.queue_name, namespace)

    storage = values["storage"]
    if storage["mode"] == "bundled":
        bucket = storage.get("bundled", {}).get("bucket", "mfpo")
        find(docs, "Secret", spec.storage.secret_name, namespace)
        host, port = spec.storage.endpoint.split(":")
        service, service_namespace = host.split(".")[:2]
        find(docs, "Service", service, service_namespace)
        assert port == "9000" and spec.storage.secure is False
        assert spec.storage.uri.startswith(f"s3://{bucket}/")
    else:
        external = storage["external"]
        assert spec.storage.endpoint == external["endpoint"]
        assert spec.storage.secure == external.get("secure", True)
        assert spec.storage.secret_name == external["existingSecret"]
        # The user creates that Secret: the example's header says how, with this very name.
        header = example.read_text().split("apiVersion:")[0]
        assert f"-n {namespace} create secret generic {spec.storage.secret_name}" in header


def render_notes(tmp_path: Path, *set_values: str) -> str:
    """NOTES.txt as `helm install` prints it. helm 3 renders NOTES only in `helm install`
    (even with --dry-run=client it needs a reachable cluster: helm/helm#13144), `helm template
    --show-only` refuses NOTES.txt and parses every other output as YAML; so the test renders
    a copy of the chart in which the same text is a named template, emitted as a YAML string,
    by the same engine with the same values."""
    chart = tmp_path / "mfpo"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_under_test.tpl").write_text(
        '{{- define "notes-under-test" }}' + notes + "{{- end }}"
    )
    (chart / "templates" / "notes-under-test.yaml").write_text(
        'notes: {{ include "notes-under-test" . | toJson }}\n'
    )
    args = [
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        "mfpo",
        "--show-only",
        "templates/notes-under-test.yaml",
    ]
    for item in set_values:
        args += ["--set", item]
    return yaml.safe_load(run_helm(*args))["notes"]


def test_notes_of_a_default_install_name_the_missing_storage_and_the_next_command(tmp_path):
    notes = render_notes(tmp_path)
    assert "<host:port>" not in notes
    assert "No storage is configured yet" in notes
    assert "kubectl -n mfpo create secret generic mfpo-s3" in notes
    assert (
        "helm upgrade mfpo charts/mfpo --namespace mfpo --reuse-values "
        "--set storage.external.endpoint="
    ) in notes
    assert "--set storage.mode=bundled" in notes  # or a trial MinIO


def test_notes_of_a_configured_install_print_the_runs_storage_block(tmp_path):
    notes = render_notes(
        tmp_path,
        "storage.external.endpoint=minio.storage.svc:9000",
        "storage.external.existingSecret=mfpo-s3",
    )
    assert "No storage is configured yet" not in notes
    assert "endpoint: minio.storage.svc:9000" in notes and "secretName: mfpo-s3" in notes
    assert "serviceAccountName: mfpo-stage" in notes
    assert "kubectl apply -f" in notes  # the next step: a run


def test_notes_of_a_bundled_install_point_at_the_bundled_minio(tmp_path):
    notes = render_notes(tmp_path, "storage.mode=bundled")
    assert "endpoint: mfpo-minio.mfpo.svc:9000" in notes and "secretName: mfpo-minio" in notes
    assert "docs/first-run.md" in notes


def test_notes_of_an_install_without_its_operator_say_so_and_how_to_turn_it_on(tmp_path):
    notes = render_notes(tmp_path, "operator.replicas=0")
    assert "the in-cluster operator does not run" in notes
    assert "rollout status" not in notes  # a Deployment of 0 replicas never rolls out a pod
    assert "--reuse-values --set operator.replicas=1" in notes
    assert "rollout status deployment/mfpo" in render_notes(tmp_path / "on")
