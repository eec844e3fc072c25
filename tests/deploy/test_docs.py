"""The docs stay true to the code: every manifest in them validates (MFPORuns against the API
and the CRD schema, Kubernetes objects with kubernetes-validate), every values snippet
renders through the chart's schema, every linked or named repository file exists, and the
alert table lists exactly the alerts the chart ships."""

from __future__ import annotations

import json
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
        "own-data.md",
        "local-gpu.md",
    } <= names
    index = (REPO / "docs" / "README.md").read_text()
    assert all(f"({name})" in index for name in names - {"README.md"}), (
        "docs/README.md links every page"
    )


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


def fenced(doc: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (REPO / "docs" / doc).read_text(), re.DOTALL)


def write_images_named(rows: list[dict], root: Path) -> None:
    from PIL import Image

    for row in rows:
        (root / row["image"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (200, 40, 40)).save(root / row["image"])


@pytest.mark.parametrize(
    "language,data_format,file_name",
    [("jsonl", "rlaif-v", "train.jsonl"), ("json", "llava", "llava.json")],
)
def test_own_data_examples_are_what_the_readers_read(
    tmp_path: Path, language, data_format, file_name
):
    from mfpo_runtime.data.formats import Sample, iter_samples

    (block,) = fenced("own-data.md", language)
    rows = (
        [json.loads(line) for line in block.splitlines()]
        if language == "jsonl"
        else json.loads(block)
    )
    write_images_named(rows, tmp_path)
    (tmp_path / file_name).write_text(block)
    samples = list(iter_samples(str(tmp_path / file_name), data_format))
    assert len(samples) == len(rows) >= 3
    bad = [s for s in samples if not isinstance(s, Sample)]
    assert not bad, bad
    assert all(s.record.question and s.record.chosen and s.record.rejected for s in samples)


def test_first_run_evaluates_both_splits_of_the_world_it_prepares():
    text = (REPO / "docs" / "first-run.md").read_text()
    (world,) = re.findall(r"mfpo_runtime\.data\.scenes --out (\S+)", text)
    run = next(yaml.safe_load(b) for b in YAML_BLOCK.findall(text) if "kind: MFPORun" in b)
    (synthetic,) = [b for b in run["spec"]["evaluation"]["benchmarks"] if b["name"] == "synthetic"]
    # The world's root: the synthetic benchmark then reads both splits (eval and
    # eval-counterprior, mfpo_runtime.eval.synthetic); a split's directory gives that one only.
    assert synthetic["uri"] == world and "splits" not in synthetic.get("options", {})


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_mc_is_introduced_before_it_is_used(doc: Path):
    """The first `mc` command of a page sets its alias, after the port-forward it goes through."""
    lines = [line.strip() for line in doc.read_text().splitlines()]
    commands = [i for i, line in enumerate(lines) if line.startswith("mc ")]
    if not commands:
        return
    first = lines[commands[0]]
    assert first.startswith("mc alias set "), f"{doc.name}: `{first}` comes before `mc alias set`"
    forward = [
        line for line in lines[: commands[0]] if "kubectl" in line and "port-forward" in line
    ]
    assert forward, f"{doc.name}: the alias's endpoint is never port-forwarded"
