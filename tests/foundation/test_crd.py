"""The generated CRD: up to date with api.py, structural, valid, and rejecting bad manifests."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from mfpo_core import api
from mfpo_operator import crd
from mfpo_operator.validation import _strict, strict_form
from pydantic import BaseModel

CRD_FILE = crd.DEFAULT_CRD_PATH

GOOD = {
    "apiVersion": "mfpo.dev/v1alpha1",
    "kind": "MFPORun",
    "metadata": {"name": "demo", "labels": {"team": "vision"}},
    "spec": {
        "model": {"uri": "s3://mfpo/models/llava"},
        "data": {"uri": "s3://mfpo/data/rlaif-v", "format": "rlaif-v"},
        "storage": {"uri": "s3://mfpo/runs", "endpoint": "minio:9000", "secretName": "minio"},
        "objective": {"beta": 0.2, "weights": {"text": 1, "image": 0.5, "anchor": 0}},
    },
}


@functools.cache
def _parsed_file() -> dict[str, Any]:
    return yaml.load(CRD_FILE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def on_disk() -> dict[str, Any]:
    """The CRD file as committed (a fresh copy: tests may change it)."""
    return copy.deepcopy(_parsed_file())


def disk_schema() -> dict[str, Any]:
    return on_disk()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its field path."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def at(path: str) -> dict[str, Any]:
    node = disk_schema()
    for part in path.split("."):
        node = node["properties"][part]
    return node


# ----------------------------------------------------------------- staleness


def test_crd_file_is_up_to_date() -> None:
    problem = crd.check(CRD_FILE)
    assert problem is None, problem


def test_check_fails_on_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render_crd_yaml().replace("maxLength: 40", "maxLength: 63"))

    assert crd.main(["--check", "--path", str(stale)]) == 1
    err = capsys.readouterr().err
    assert f"{stale} is stale" in err and "python -m mfpo_operator.crd --write" in err
    assert "-                maxLength: 63" in err and "+                maxLength: 40" in err

    docs = tmp_path / "api.md"
    assert crd.main(["--write", "--path", str(stale), "--docs", str(docs)]) == 0
    assert crd.main(["--check", "--path", str(stale), "--docs", str(docs)]) == 0
    assert crd.main(["--check", "--path", str(tmp_path / "absent.yaml"), "--docs", str(docs)]) == 1
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------- API reference


def test_api_reference_is_up_to_date() -> None:
    problem = crd.check_docs(crd.DEFAULT_DOCS_PATH)
    assert problem is None, problem


def test_check_fails_on_a_stale_api_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crd_file, docs = tmp_path / "crd.yaml", tmp_path / "api.md"
    assert crd.main(["--write", "--path", str(crd_file), "--docs", str(docs)]) == 0
    docs.write_text(docs.read_text().replace("Weight of L_image", "Weight of the image term"))
    assert crd.main(["--check", "--path", str(crd_file), "--docs", str(docs)]) == 1
    err = capsys.readouterr().err
    assert f"{docs} is stale" in err and "+| `image` | number | `1.0` | Weight of L_image" in err


def test_api_reference_lists_every_field_with_type_default_and_validation() -> None:
    text = crd.DEFAULT_DOCS_PATH.read_text()
    for model in crd._model_graph(api.MFPORunSpec).values():
        assert f"## {model.__name__}\n" in text, model
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in text, (model, name)
    assert (
        "| `weights` | [TermWeights](#termweights) | its fields' defaults | Weights of L_text, "
        "L_image and L_anchor (paper: 1, 1, 1). |  |"
    ) in text
    assert "| `beta` | number | `0.1` | Inverse temperature of the implicit reward. | > 0.0; ≤ 10.0 |" in text
    assert "| `splits` | []string | `[\"random\", \"popular\", \"adversarial\"]` |" in text
    assert "CEL: storage.uri is immutable once the run exists" in text
    assert "- pope options are only allowed when name is pope" in text
    assert "[api.md](api.md)" in (crd.DEFAULT_DOCS_PATH.parent / "README.md").read_text()


# ------------------------------------------------------------ the CRD itself


def test_crd_is_a_valid_kubernetes_object() -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(on_disk(), version, strict=True)  # raises when invalid
    broken = on_disk()
    broken["spec"]["scope"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_names_subresource_and_columns() -> None:
    spec = on_disk()["spec"]
    assert on_disk()["metadata"]["name"] == "mfporuns.mfpo.dev"
    assert (spec["group"], spec["scope"]) == ("mfpo.dev", "Namespaced")
    assert spec["names"] == {
        "kind": "MFPORun",
        "listKind": "MFPORunList",
        "plural": "mfporuns",
        "singular": "mfporun",
        "shortNames": api.SHORT_NAMES,
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]] == [
        ("Phase", ".status.phase"),
        ("Stage", ".status.currentStage"),
        ("Progress", ".status.progress"),
        ("Age", ".metadata.creationTimestamp"),
        ("Reason", '.status.conditions[?(@.type=="Progressing")].reason'),
        ("Message", '.status.conditions[?(@.type=="Progressing")].message'),
    ]
    # priority 1: only `kubectl get -o wide` shows them.
    assert [c.get("priority", 0) for c in version["additionalPrinterColumns"]] == [0] * 4 + [1] * 2


# The one anyOf a structural schema allows: an int-or-string node (resource.Quantity) with
# exactly these branches (apiextensions-apiserver pkg/apiserver/schema ValidateStructural).
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def test_schema_is_structural() -> None:
    for path, node in nodes(disk_schema()):
        assert not {"$ref", "$defs", "title", "oneOf", "allOf", "const"} & set(node), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == INT_OR_STRING and "type" not in node, path
            continue
        assert "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not isinstance(node.get("additionalProperties"), bool), path
        assert not ("properties" in node and "additionalProperties" in node), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_defaults_are_valid_for_their_field() -> None:
    checked = 0
    for path, node in nodes(disk_schema()):
        if "default" in node:
            jsonschema.Draft4Validator(_strict(node)).validate(node["default"])
            checked += 1
    assert checked > 50


def test_preserve_unknown_fields_only_where_api_py_says_so() -> None:
    preserved = {
        p for p, n in nodes(disk_schema()) if n.get("x-kubernetes-preserve-unknown-fields")
    }
    # status: extra="ignore" (kopf writes its own keys). Nothing of the spec: an unknown field
    # there (a typo in affinity included) is refused, never pruned.
    assert preserved == {"status"}


def test_fields_carry_ranges_enums_defaults_and_descriptions() -> None:
    assert at("spec.objective.beta") == {
        "description": "Inverse temperature of the implicit reward.",
        "type": "number",
        "default": 0.1,
        "maximum": 10.0,
        "minimum": 0.0,
        "exclusiveMinimum": True,
    }
    assert at("spec.model.family")["enum"] == ["llava", "llava-next", "qwen2-vl"]
    assert at("spec.training.deepspeedStage")["enum"] == [0, 2, 3]
    assert at("spec.storage.uri")["pattern"] == api.STORAGE_PREFIX_PATTERN
    assert at("spec.data.maxSamples") == {
        "description": "Use at most this many records (all if unset).",
        "type": "integer",
        "nullable": True,
        "minimum": 1,
        "maximum": 2**31 - 1,
    }
    assert at("spec.evaluation.benchmarks")["default"] == [{"name": "synthetic"}]
    assert at("spec.evaluation.benchmarks")["minItems"] == 1
    assert at("spec.imagePreference.noise")["default"] == {}  # the API server fills in the rest
    assert disk_schema()["properties"]["spec"]["required"] == ["model", "data", "storage"]
    assert at("metadata.name")["maxLength"] == 40


def test_immutability_rules() -> None:
    for path in ("spec.model.uri", "spec.storage.uri"):
        # the URI type's rules (a model's: its location too), then this field's
        bucket, *location, rule = at(path)["x-kubernetes-validations"]
        assert bucket["message"] == api.S3_BUCKET_MESSAGE
        assert location == ([api.MODEL_LOCATION_RULE] if path == "spec.model.uri" else [])
        assert rule["rule"] == "self == oldSelf"
        assert "immutable" in rule["message"]


def test_cross_field_rules_in_cel() -> None:
    noise, alpha_bar = at("spec.imagePreference.noise")["x-kubernetes-validations"]
    assert noise["rule"] == (
        "(has(self.step) ? self.step : 500) < (has(self.scheduleSteps) ? self.scheduleSteps : 1000)"
    )
    start, end = "(has(self.betaStart) ? self.betaStart : 0.0001)", "(has(self.betaEnd) ? self.betaEnd : 0.02)"
    largest = f"({start} > {end} ? {start} : {end})"
    assert alpha_bar["rule"] == (
        f"(has(self.schedule) ? self.schedule : 'linear') != 'linear' || "
        f"double((has(self.scheduleSteps) ? self.scheduleSteps : 1000)) * {largest} <= 700.0 * (1.0 - {largest})"
    )
    model_uri, sam_uri = at("spec.imagePreference.grounding")["x-kubernetes-validations"]
    method = "(has(self.method) ? self.method : 'annotation')"
    assert model_uri["rule"] == (
        f"!({method} in ['clipseg', 'grounding-sam']) "
        "|| (has(self.modelUri) && self.modelUri != '')"
    )
    assert sam_uri["rule"] == (
        f"{method} != 'grounding-sam' || (has(self.samUri) && self.samUri != '')"
    )
    (weights,) = at("spec.objective.weights")["x-kubernetes-validations"]
    assert weights["rule"] == (
        "(has(self.text) ? self.text : 1.0) > 0.0 || (has(self.image) ? self.image : 1.0) > 0.0"
        " || (has(self.anchor) ? self.anchor : 1.0) > 0.0"
    )


def test_every_pydantic_cross_field_rule_has_a_cel_twin() -> None:
    with_validators = {
        model
        for model in crd._model_graph(api.MFPORunSpec).values()
        if model.__pydantic_decorators__.model_validators
    }
    assert with_validators == set(crd.CROSS_FIELD_RULES)
    assert all(issubclass(m, BaseModel) for m in with_validators)


# ------------------------------------------------------- manifests vs the schema


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Errors of the on-disk schema, with kubectl's strict field validation."""
    validator = jsonschema.Draft4Validator(strict_form(disk_schema()))
    return sorted(
        ".".join(str(p) for p in e.absolute_path) + ": " + e.message
        for e in validator.iter_errors(doc)
    )


def with_change(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return doc


def test_good_manifest_passes_the_schema() -> None:
    assert schema_errors(GOOD) == []
    # A typo inside affinity is refused like anywhere else (the API server would drop it).
    assert schema_errors(with_change("spec.resources.affinity", {"nodeAffinity": {"x": 1}})) == [
        "spec.resources.affinity.nodeAffinity: Additional properties are not allowed ('x' was unexpected)"
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "spec.objective.beta",
            -1,
            "spec.objective.beta: -1 is less than or equal to the minimum of 0",
        ),
        ("spec.objective.colour", "red", "'colour' was unexpected"),
        ("spec.model.family", "gpt-4v", "spec.model.family: 'gpt-4v' is not one of"),
        ("spec.data", KeyError, "spec: 'data' is a required property"),
        ("spec.storage.uri", "http://minio/x", "does not match '^(s3://"),
        (
            "spec.training.deepspeedStage",
            1,
            "spec.training.deepspeedStage: 1 is not one of [0, 2, 3]",
        ),
        (
            "spec.evaluation",
            {"benchmarks": []},
            "spec.evaluation.benchmarks: [] should be non-empty",
        ),
        ("metadata.name", "Not_A_DNS_Label", "metadata.name: 'Not_A_DNS_Label' does not match"),
    ],
)
def test_bad_manifests_fail_the_schema(path: str, value: Any, expected: str) -> None:
    errors = schema_errors(with_change(path, value))
    assert len(errors) == 1 and expected in errors[0], errors


def test_cross_field_rule_is_enforced_through_pydantic() -> None:
    doc = with_change("spec.imagePreference", {"noise": {"step": 1000, "scheduleSteps": 1000}})
    assert schema_errors(doc) == []  # CEL, not JSON Schema, says this at kubectl apply
    with pytest.raises(
        ValueError, match=r"noise\.step \(1000\) must be below scheduleSteps \(1000\)"
    ):
        api.MFPORun.model_validate(doc)


# ------------------------------------------------------------ kubectl explain


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    # `kubectl explain mfporun.spec...` prints each field's description from this schema
    # (a list's items and a map's values are explained by their field). The root `metadata`
    # may carry nothing but its type and name (the structural-schema rule): kubectl explains it
    # from ObjectMeta.
    undescribed = [
        path
        for path, node in nodes(disk_schema())
        if path not in ("", "metadata")
        and not path.endswith(("[]", "{}"))
        and not node.get("description")
    ]
    assert undescribed == []


def test_explain_shows_the_weights_object_and_its_defaults() -> None:
    weights = at("spec.objective.weights")
    assert weights["type"] == "object" and "L_text" in weights["description"]
    assert weights["default"] == {}
    assert {name: sub["default"] for name, sub in weights["properties"].items()} == {
        "text": 1.0, "image": 1.0, "anchor": 1.0
    }  # fmt: skip


def test_every_default_in_api_py_is_stated_in_the_schema() -> None:
    # kubectl explain prints a field's default from the schema; the API server applies it.
    def missing(model: type[BaseModel], node: dict[str, Any], path: str) -> Iterator[str]:
        for name, field in model.model_fields.items():
            wire = field.alias or name
            prop = node["properties"][wire]
            sub = prop.get("items", prop)
            for inner in crd._models_in(field.annotation):
                yield from missing(inner, sub, f"{path}.{wire}")
            if field.is_required():
                continue
            # None and empty collections state nothing worth a default
            default = field.default_factory() if field.default_factory else field.default
            if default not in (None, [], {}) and "default" not in prop:
                yield f"{path}.{wire}"

    spec = disk_schema()["properties"]["spec"]
    assert list(missing(api.MFPORunSpec, spec, "spec")) == []
