"""examples/: both manifests valid against the committed CRD and the pydantic model, and shaped
for what they promise (a CPU-only local quickstart; an 8-GPU LLaVA-1.5-7B cluster run)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from mfpo_core import storage
from mfpo_operator.crd import DEFAULT_CRD_PATH
from mfpo_operator.validation import load_manifest, strict_form

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["quickstart.yaml", "llava-1.5-7b.yaml"])
def test_example_is_valid_against_the_committed_crd(name: str) -> None:
    crd = yaml.safe_load(DEFAULT_CRD_PATH.read_text())
    schema = strict_form(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator(schema).validate(yaml.safe_load((EXAMPLES / name).read_text()))
    load_manifest(EXAMPLES / name)  # the pydantic model and its cross-field rules


def test_quickstart_runs_locally_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_manifest(EXAMPLES / "quickstart.yaml").spec
    assert spec.resources.gpus_per_node == 0
    assert (spec.training.precision, spec.training.batch_size) == ("fp32", 4)
    assert spec.training.gradient_accumulation == 1
    assert (spec.model.finetune, spec.data.format) == ("lora", "synthetic")
    assert spec.image_preference.grounding.method == "annotation"
    assert spec.curriculum.stages == 3
    assert [b.name for b in spec.evaluation.benchmarks] == ["synthetic"]
    uris = {
        "model": spec.model.uri,
        "data": spec.data.uri,
        "storage": spec.storage.uri,
        "eval": spec.evaluation.benchmarks[0].uri,
    }
    runs = EXAMPLES.resolve().parent / "runs" / "quickstart"  # relative to the manifest's directory
    assert uris == {
        "model": f"file://{runs}/base-model",
        "data": f"file://{runs}/world/train",
        "storage": f"file://{runs}/artifacts",
        "eval": f"file://{runs}/world",  # both evaluation splits
    }
    monkeypatch.chdir(tmp_path)  # the same wherever `mfpo run` is started
    assert storage.local_path(spec.storage.uri) == runs / "artifacts"


def test_llava_example_is_a_cluster_run() -> None:
    run = load_manifest(EXAMPLES / "llava-1.5-7b.yaml")
    spec = run.spec
    assert (spec.model.family, spec.resources.gpus_per_node, spec.resources.nodes) == (
        "llava",
        8,
        1,
    )
    assert spec.training.deepspeed_stage in (2, 3) and spec.training.precision == "bf16"
    assert all(
        uri.startswith("s3://mfpo/") for uri in (spec.model.uri, spec.data.uri, spec.storage.uri)
    )
    assert spec.storage.secret_name and spec.data.format == "rlaif-v"
    grounding = spec.image_preference.grounding
    assert grounding.method == "grounding-sam" and grounding.model_uri and grounding.sam_uri
    assert {b.name for b in spec.evaluation.benchmarks} == {"object-halbench", "amber", "pope"}
    resources = spec.resources
    assert resources.queue_name and resources.priority_class_name and resources.tolerations
    assert run.metadata.namespace == "mfpo"


def test_llava_example_evaluates_the_pope_split_it_names() -> None:
    # It named `options: {split: adversarial}`, a key POPE never read: every split ran.
    (pope,) = [b for b in load_manifest(EXAMPLES / "llava-1.5-7b.yaml").spec.evaluation.benchmarks if b.name == "pope"]
    assert pope.options.splits == ["adversarial"]
