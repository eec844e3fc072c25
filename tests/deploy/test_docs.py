"""The docs stay true to the code: every manifest in them validates (MFPORuns against the API
and the CRD schema, Kubernetes objects with kubernetes-validate), every values snippet
renders through the chart's schema, every linked or named repository file exists, and the
alert table lists exactly the alerts the chart ships."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import CHART, REPO, render
from mfpo_operator.validation import validate_manifest

DOCS = sorted((REPO / "docs").glob("*.md"))
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# Backticked repository paths, e.g. `charts/mfpo/files/alerts.yaml`.
REPO_PATH = re.compile(
    r"`((?:charts|images|scripts|operator|runtime|examples|tests|crds|docs|"
    r"\.github)/[\w./-]+)`"
)


def yaml_blocks() -> list[tuple[str, str]]:
    return [
        (f"{doc.name}#{i}", block)
        for doc in DOCS
        for i, block in enumerate(YAML_BLOCK.findall(doc.read_text()))
    ]


def test_docs_cover_the_walkthrough():
    names = {doc.name for doc in DOCS}
    assert {
        "install.md",
        "first-run.md",
        "grafana.md",
        "failures.md",
        "upgrade.md",
        "troubleshooting.md",
        "architecture.md",
    } <= names


@pytest.mark.parametrize("where,block", yaml_blocks(), ids=[w for w, _ in yaml_blocks()])
def test_yaml_blocks_are_valid(where: str, block: str, tmp_path: Path):
    doc = yaml.safe_load(block)
    if block.startswith("# values"):
        path = tmp_path / "values.yaml"
        path.write_text(block)
        assert render(path), where  # helm checks it against values.schema.json
    elif doc.get("kind") == "MFPORun":
        run = validate_manifest(doc, source=where)
        assert run.metadata.name
    else:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_links_and_named_files_exist(doc: Path):
    text = doc.read_text()
    for target in LINK.findall(re.sub(r"`[^`\n]*`", "", text)):  # code spans hold no links
        if "://" not in target:
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
    for path in REPO_PATH.findall(text):
        path = path.rstrip(".")
        if "<" not in path and "*" not in path:
            assert (REPO / path).exists(), f"{doc.name} names {path}, which does not exist"


def test_alert_table_lists_the_shipped_alerts():
    shipped = {
        rule["alert"]
        for group in yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    table = re.findall(
        r"^\| (MFPO\w+) \|", (REPO / "docs" / "grafana.md").read_text(), re.MULTILINE
    )
    assert set(table) == shipped
