"""What an MFPORun puts into a Job and its pods is held to the API server's own rules.

Outside references, each named where it is used:
- the published Kubernetes OpenAPI schemas that kubernetes-validate ships (the core/v1 and
  meta/v1 types: fields, their types, required fields), as a strict decoder;
- apimachinery's and the core API's validation functions and their upstream test vectors
  (k8s.io/apimachinery/pkg/util/validation/validation_test.go, pkg/apis/core/validation/
  validation_test.go, Kubernetes v1.32);
- kube-apiserver v1.32.13 itself (the lab, by hand): every manifest of
  `REFUSED_BY_THE_API_SERVER` passed main's validation, and the Job main's builder made from
  it was refused by `kubectl create --dry-run=server --validate=strict` with the message
  quoted beside it (or, where noted, the Job was created and its pods or its deadline failed).
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import apiserver_cases
import celpy
import go_reference
import jsonschema
import kubernetes_cel
import kubernetes_validate
import pytest
from mfpo_core import api, k8s
from mfpo_operator import crd
from mfpo_operator.kube import jobs
from mfpo_operator.validation import ManifestError, validate_manifest
from pydantic import BaseModel, TypeAdapter, ValidationError

GOOD = {
    "apiVersion": "mfpo.dev/v1alpha1",
    "kind": "MFPORun",
    "metadata": {"name": "demo", "namespace": "ml"},
    "spec": {
        "model": {"uri": "file:///models/tiny"},
        "data": {"uri": "file:///data/train", "format": "synthetic"},
        "storage": {"uri": "file:///runs"},
    },
}

# Every kind of term, requirement and selector of core/v1 Affinity, valid.
FULL_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["H100"]},
                        {"key": "node.kubernetes.io/maintenance", "operator": "DoesNotExist"},
                        {"key": "nvidia.com/gpu.count", "operator": "Gt", "values": ["3"]},
                    ],
                    "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-7"]}],
                }
            ]
        },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}}
        ],
    },
    "podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 1,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "minio"}},
                    "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
                    "topologyKey": "topology.kubernetes.io/zone",
                },
            }
        ]
    },
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "labelSelector": {"matchExpressions": [{"key": "mfpo.dev/stage", "operator": "NotIn", "values": ["eval"]}]},
                "namespaces": ["ml", "ml-shared"],
                "topologyKey": "kubernetes.io/hostname",
                "matchLabelKeys": ["mfpo.dev/run"],
                "mismatchLabelKeys": ["mfpo.dev/attempt"],
            }
        ]
    },
}


def with_resources(**resources: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["resources"] = resources
    return doc


OBJECT_ANSWERS = json.loads(Path(__file__).with_name("apiserver_answers.json").read_text())["objects"]


def refusal(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(doc)
    return caught.value.problems


# ------------------------------------------------ the types, against the published schemas

# Our models of the embedded types -> their definitions in Kubernetes' OpenAPI schemas.
UPSTREAM = {
    k8s.Affinity: "io.k8s.api.core.v1.Affinity",
    k8s.NodeAffinity: "io.k8s.api.core.v1.NodeAffinity",
    k8s.NodeSelector: "io.k8s.api.core.v1.NodeSelector",
    k8s.NodeSelectorTerm: "io.k8s.api.core.v1.NodeSelectorTerm",
    k8s.NodeSelectorRequirement: "io.k8s.api.core.v1.NodeSelectorRequirement",
    k8s.NodeFieldSelectorRequirement: "io.k8s.api.core.v1.NodeSelectorRequirement",  # in matchFields
    k8s.PreferredSchedulingTerm: "io.k8s.api.core.v1.PreferredSchedulingTerm",
    k8s.PodAffinity: "io.k8s.api.core.v1.PodAffinity",
    k8s.PodAntiAffinity: "io.k8s.api.core.v1.PodAntiAffinity",
    k8s.PodAffinityTerm: "io.k8s.api.core.v1.PodAffinityTerm",
    k8s.WeightedPodAffinityTerm: "io.k8s.api.core.v1.WeightedPodAffinityTerm",
    k8s.LabelSelector: "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    k8s.LabelSelectorRequirement: "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
    k8s.Toleration: "io.k8s.api.core.v1.Toleration",
}
VERSIONS = ["1.32.0", kubernetes_validate.latest_version()]


def definitions(version: str) -> dict[str, Any]:
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    return json.loads((folder / "_definitions.json").read_text())


def upstream_type(node: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A published field's type: a definition name, ("array", item type), "map" or a scalar."""
    if "$ref" in node:
        return node["$ref"].split("/")[-1]
    types = [t for t in ([node["type"]] if isinstance(node["type"], str) else node["type"]) if t != "null"]
    (kind,) = types
    if kind == "array":
        return ("array", upstream_type(node["items"], defs))
    if kind == "object":
        return "map"
    return kind


def our_type(model: type[BaseModel], wire: str) -> Any:
    node = crd.openapi_schema(model)["properties"][wire]
    field = next(f for n, f in model.model_fields.items() if (f.alias or n) == wire)
    inner = crd._models_in(field.annotation)
    if node["type"] == "array":
        return ("array", UPSTREAM[inner[0]] if inner else node["items"]["type"])
    if node["type"] == "object":
        return UPSTREAM[inner[0]] if inner else "map"
    return node["type"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("model", list(UPSTREAM), ids=lambda m: m.__name__)
def test_each_embedded_type_has_the_published_fields_types_and_required_fields(model, version) -> None:
    defs = definitions(version)["$defs"]
    published = defs[UPSTREAM[model]]
    ours = crd.openapi_schema(model)
    assert set(ours["properties"]) == set(published["properties"]), (version, model)
    for wire, node in published["properties"].items():
        assert our_type(model, wire) == upstream_type(node, defs), (model, wire)
    # What the schema requires, we require; we require more only where the API server's
    # validation does (matchFields takes exactly one value).
    extra = {"values"} if model is k8s.NodeFieldSelectorRequirement else set()
    assert set(ours.get("required", [])) == set(published.get("required", [])) | extra


def strict_decoder(definition: str, version: str = "1.32.0") -> jsonschema.Validator:
    """The published strict schema of one type (unknown fields refused), as kubernetes-validate
    validates whole objects with it."""
    doc = definitions(version)
    return jsonschema.Draft202012Validator({**doc, "$ref": f"#/$defs/{definition}"})


def pydantic_accepts(model: type[BaseModel], value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


def structural_mutations(value: Any) -> list[tuple[str, Any]]:
    """Every structural mistake of one document: an unknown field in each object (a typo), each
    leaf of the wrong JSON type. The published schema refuses every one, and so does the API
    server with strict field validation; without it (the operator's client does not ask for it)
    the API server drops an unknown field with only a warning."""

    def changed(where: tuple, new_value: Any) -> Any:
        if not where:
            return new_value
        doc = copy.deepcopy(value)
        node = doc
        for part in where[:-1]:
            node = node[part]
        node[where[-1]] = new_value
        return doc

    out: list[tuple[str, Any]] = []

    def walk(node: Any, where: tuple) -> None:
        if isinstance(node, dict):
            out.append((f"{where}: an unknown field", changed(where, {**node, "typoField": 1})))
            for key, sub in node.items():
                walk(sub, (*where, key))
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                walk(sub, (*where, index))
        else:
            out.append((f"{where}: the wrong type", changed(where, 7 if isinstance(node, str) else "7")))

    walk(value, ())
    return out


def test_affinity_is_decoded_as_strictly_as_the_published_schema_decodes_it() -> None:
    decoder = strict_decoder("io.k8s.api.core.v1.Affinity")
    assert decoder.is_valid(FULL_AFFINITY) and pydantic_accepts(k8s.Affinity, FULL_AFFINITY)
    mutations = structural_mutations(FULL_AFFINITY)
    required = [
        ("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"),
        ("podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", 0, "topologyKey"),
        ("podAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "weight"),
        ("podAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "podAffinityTerm"),
        ("nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "preference"),
        ("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms", 0, "matchExpressions", 0, "operator"),
    ]
    for where in required:
        doc = copy.deepcopy(FULL_AFFINITY)
        node = doc
        for part in where[:-1]:
            node = node[part]
        del node[where[-1]]
        mutations.append((f"{where} left out", doc))
    assert len(mutations) > 40
    for name, doc in mutations:
        assert not decoder.is_valid(doc), name  # the reference refuses it...
        assert not pydantic_accepts(k8s.Affinity, doc), name  # ... and so do we


def test_the_crd_refuses_an_unknown_field_inside_affinity_instead_of_keeping_it() -> None:
    node = crd.resource_schema()["properties"]["spec"]["properties"]["resources"]["properties"]["affinity"]
    assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(node)  # no free-form object left
    typo = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExcution": {}}}
    problems = refusal(with_resources(affinity=typo))
    assert problems == [
        "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExcution: Forbidden: unknown field"
    ]


def test_the_jobs_of_a_run_with_every_kind_of_scheduling_rule_pass_the_published_schema() -> None:
    doc = with_resources(
        affinity=FULL_AFFINITY,
        tolerations=[
            {"operator": "Exists"},  # every taint
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 0},
            {"key": "spot", "value": "false"},  # operator Equal by default
        ],
        nodeSelector={"nvidia.com/gpu.product": "H100", "example.com/empty-value": ""},
        priorityClassName="training.high",
        serviceAccountName="mfpo-runner",
        queueName="gpu-queue",
    )
    run = validate_manifest(doc)
    ref = jobs.RunRef("demo", "ml", "uid-1")
    for stage in run.spec.stage_names():
        for manifest in jobs.attempt_manifests(ref, run.spec, stage, 1, f"demo-{stage}-a1"):
            kubernetes_validate.validate(manifest, "1.32", strict=True)
    pod = jobs.job(ref, run.spec, "align-1", 1, "demo-align-1-a1")["spec"]["template"]["spec"]
    assert pod["affinity"] == FULL_AFFINITY  # what was written, field for field
    assert pod["tolerations"][3] == {"key": "spot", "value": "false"}


# ---------------------------------------------------- names and labels (apimachinery)

# k8s.io/apimachinery/pkg/util/validation/validation_test.go (v1.32): TestIsQualifiedName,
# TestIsValidLabelValue, TestIsDNS1123Label, TestIsDNS1123Subdomain.
QUALIFIED_NAMES_GOOD = [
    "simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple",
    "now-with-dashes/now-with-dashes", "now.with.dots/simple", "now-with.dashes-and.dots/simple",
    "1-num.2-num/3-num", "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123", "example.com/Uppercase_Is_OK_123",
    "requests.storage-foo", "a" * 63, "a" * 253 + "/" + "b" * 63,
]  # fmt: skip
QUALIFIED_NAMES_BAD = [
    "nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash", "Example.com/abc",
    "example_com/abc", "example.com/", "/simple", "a" * 64, "a" * 254 + "/abc",
]  # fmt: skip
LABEL_VALUES_GOOD = ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, ""]
LABEL_VALUES_BAD = [
    "nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad", "-starts-with-dash",
    "ends-with-dash-", ".starts.with.dot", "ends.with.dot.", "a" * 64,
]  # fmt: skip
DNS_LABELS_GOOD = ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a" * 63]
DNS_LABELS_BAD = [
    "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1",
    "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a", "a b", "1 ", " 1", "1 2", "a" * 64,
]  # fmt: skip
DNS_SUBDOMAINS_GOOD = [
    "a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a.a", "ab.a",
    "abc.a", "a1.a", "a-1.a", "a--1--2--b.a", "a.1", "ab.1", "abc.1", "a1.1", "a-1.1", "a--1--2--b.1", "0.a",
    "01.a", "012.a", "1a.a", "1-a.a", "1--a--b--2", "0.1", "01.1", "012.1", "1a.1", "1-a.1", "1--a--b--2.1",
    "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55", "a" * 253,
]  # fmt: skip
DNS_SUBDOMAINS_BAD = [
    "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1",
    "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a", "a b", "1 ", " 1", "1 2", "A.a", "aB.a",
    "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1", "1A.1", "0.A", "01.A", "012.A", "1A.a", "1a.A", "A.B.C.D.E",
    "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee", "a@b", "a,b", "a_b", "a;b", "a:b", "a%b", "a?b", "a$b",
    "a" * 254,
]  # fmt: skip


def crd_accepts(schema: dict[str, Any], value: Any) -> bool:
    """What the CRD's form of a type accepts: the schema (pattern, maxLength...) and its CEL rules."""
    plain = {k: v for k, v in schema.items() if k != "x-kubernetes-validations"}
    if not jsonschema.Draft4Validator(plain).is_valid(value):
        return False
    env = celpy.Environment()
    return all(
        bool(env.program(env.compile(r["rule"])).evaluate({"self": celpy.json_to_cel(value)}))
        for r in schema.get("x-kubernetes-validations", [])
    )


CASES = [
    ("label key", k8s.LabelKey, k8s.LABEL_KEY_SCHEMA, QUALIFIED_NAMES_GOOD, QUALIFIED_NAMES_BAD),
    ("label value", k8s.LabelValue, k8s.LABEL_VALUE_SCHEMA, LABEL_VALUES_GOOD, LABEL_VALUES_BAD),
    ("DNS-1123 label", k8s.DNS1123Label, None, DNS_LABELS_GOOD, DNS_LABELS_BAD),
    ("DNS-1123 subdomain", k8s.DNS1123Subdomain, None, DNS_SUBDOMAINS_GOOD, DNS_SUBDOMAINS_BAD),
]


@pytest.mark.parametrize(("name", "kind", "schema", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_names_as_apimachinery_validates_them_in_pydantic_and_in_the_crd(name, kind, schema, good, bad) -> None:
    adapter = TypeAdapter(kind)
    schema = schema or adapter.json_schema()
    for value in good:
        adapter.validate_python(value)
        assert crd_accepts(schema, value), (name, value)
    for value in bad:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)
        assert not crd_accepts(schema, value), (name, value)


def test_map_keys_are_label_keys_in_the_crd_too() -> None:
    """nodeSelector and matchLabels: a structural schema cannot constrain a map's keys, so the
    CRD says it in CEL; the same verdicts as IsQualifiedName's upstream vectors."""
    schema = k8s.label_map_rule(k8s.MAX_LABELS)
    adapter = TypeAdapter(k8s.LabelMap)
    for key in QUALIFIED_NAMES_GOOD:
        assert crd_accepts(schema, {key: "v"}) and adapter.validate_python({key: "v"}), key
    for key in QUALIFIED_NAMES_BAD:
        assert not crd_accepts(schema, {key: "v"}), key
        with pytest.raises(ValidationError):
            adapter.validate_python({key: "v"})


def test_annotations_as_validate_annotations_checks_them() -> None:
    # Keys are qualified names once lowercased (so Example.com/abc is fine here); 256 KiB in all.
    assert k8s.annotation_problems({"Example.com/abc": "x", "a" * 63: ""}) == []
    assert k8s.annotation_problems({"only/one/slash": "x"}) == [
        ("annotation key 'only/one/slash': must be a label key: an optional DNS subdomain prefix (at most 253 "
        "characters) and '/', then a name of at most 63 alphanumerics, '-', '_' or '.' that starts and ends "
        "alphanumeric, e.g. 'nvidia.com/gpu.product'")
    ]
    assert k8s.annotation_problems({"k": "x" * (256 * 1024 - 1)}) == []
    assert k8s.annotation_problems({"k": "x" * (256 * 1024)}) == [
        "annotations are 262145 bytes in all; the API server's limit is 262144"
    ]


def test_the_manifests_own_labels_annotations_and_namespace_are_checked_as_the_api_server_does() -> None:
    doc = copy.deepcopy(GOOD)
    doc["metadata"].update(namespace="ML", labels={"team": "vision research"}, annotations={"a/b/c": "x"})
    assert refusal(doc) == [
        ('metadata.annotations: Invalid value: "object": annotation key \'a/b/c\': must be a label key: an optional '
        "DNS subdomain prefix (at most 253 characters) and '/', then a name of at most 63 alphanumerics, '-', '_' "
        "or '.' that starts and ends alphanumeric, e.g. 'nvidia.com/gpu.product'"),
        ("metadata.labels.team: Invalid value: \"vision research\": must be a label value: empty, or at most 63 "
        "alphanumerics, '-', '_' or '.' that start and end alphanumeric"),
        ('metadata.namespace: Invalid value: "ML": must be a DNS-1123 label: lowercase alphanumerics or \'-\', '
        "starting and ending alphanumeric"),
    ]


# ------------------------------------------------------------------ tolerations


# pkg/apis/core/validation/validation_test.go TestValidatePodSpec's toleration cases, and
# ValidateTolerations' three rules; every refusal also seen on the lab (REFUSED_BY_THE_API_SERVER).
TOLERATIONS = [
    ({"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}, True),
    ({"operator": "Exists"}, True),
    ({"key": "", "operator": "Exists"}, True),  # an empty key is not checked: every key
    ({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20}, True),
    ({"key": "nospecialchars^=@", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}, False),
    ({"key": "foo", "operator": "In", "value": "bar", "effect": "NoSchedule"}, False),
    ({"key": "foo", "operator": "Exists", "value": "bar", "effect": "NoSchedule"}, False),
    ({"operator": "Equal", "value": "bar", "effect": "NoSchedule"}, False),
    ({"value": "bar"}, False),  # no key, operator Equal by default
    ({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 20}, False),
    ({"key": "foo", "operator": "Exists", "tolerationSeconds": 20}, False),
    ({"key": "foo", "effect": "NoScheduleNoAdmit"}, False),  # not implemented: refused
]  # fmt: skip


@pytest.mark.parametrize(("toleration", "accepted"), TOLERATIONS)
def test_tolerations_as_validate_tolerations_judges_them(toleration, accepted) -> None:
    assert pydantic_accepts(k8s.Toleration, toleration) is accepted


# --------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("resources", "accepted"),
    [
        ({"ttlSecondsAfterFinished": 2**31 - 1}, True),  # int32 in batch/v1 JobSpec
        ({"ttlSecondsAfterFinished": 2**31}, False),  # lab: "cannot unmarshal number 2147483648 ... of type int32"
        ({"activeDeadlineSeconds": 9_223_372_036}, True),  # lab: the Job runs
        ({"activeDeadlineSeconds": 9_223_372_037}, False),  # lab: accepted, then Failed DeadlineExceeded at once
        ({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 9_223_372_036}]}, True),
        ({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 9_223_372_037}]}, False),
    ],
)  # fmt: skip
def test_numbers_fit_the_go_types_and_durations_they_become(resources, accepted) -> None:
    """int32 fields overflow the API server's decoder; seconds beyond (2^63-1)/1e9 overflow
    the time.Duration the Job controller (pastActiveDeadline) and the taint manager
    (getMinTolerationTime) compute from them."""
    assert k8s.DURATION_SECONDS_MAX == (2**63 - 1) // 1_000_000_000 == 9_223_372_036
    assert pydantic_accepts(api.ResourcesSpec, resources) is accepted
    if accepted:  # and the Job made from it decodes
        run = validate_manifest(with_resources(**resources))
        job = jobs.job(jobs.RunRef("demo", "ml", "u"), run.spec, "score", 1, "demo-score-a1")
        kubernetes_validate.validate(job, "1.32", strict=True)


# ------------------------------------------------------------------- the image


@pytest.mark.parametrize(
    ("image", "accepted"),
    [
        ("ghcr.io/mfpo/runtime:0.1.0", True),
        ("registry.example.com:5000/team/runtime@sha256:" + "a" * 64, True),
        ("localhost/mfpo-runtime:dev", True),
        ("mfpo/runtime", True),
        ("[::1]:5000/mfpo/runtime:v1", True),
        ("", False),  # API server: "containers[0].image: Required value"
        ("ghcr.io/mfpo/runtime:0.1.0 ", False),  # lab: pods refused, "must not have leading or trailing whitespace"
        (" ghcr.io/mfpo/runtime", False),
        ("ghcr.io/MFPO/runtime", False),  # kubelet: InvalidImageName (repository must be lowercase)
        ("ghcr.io/mfpo/runtime:", False),
        ("ghcr.io/mfpo/runtime@sha256:abc", False),  # a sha256 digest has 64 hex digits
        ("ghcr.io//runtime", False),
    ],
)
def test_the_runtime_image_is_a_reference_the_kubelet_can_parse(image, accepted) -> None:
    """distribution/reference's grammar (regexp.go referencePat), which the kubelet's
    ParseNormalizedNamed applies (InvalidImageName otherwise); the API server itself refuses
    only an empty image, and in a pod one with surrounding whitespace."""
    spec = {"model": {"uri": "file:///m"}, "data": {"uri": "file:///d", "format": "synthetic"},
            "storage": {"uri": "file:///runs"}, "runtimeImage": image}  # fmt: skip
    assert pydantic_accepts(api.MFPORunSpec, spec) is accepted


IMAGES_GO = go_reference.answers()["images"]
IMAGE_SCHEMA = crd.resource_schema()["properties"]["spec"]["properties"]["runtimeImage"]


def test_the_recorded_image_answers_are_those_of_these_cases() -> None:
    assert set(IMAGES_GO) == set(go_reference.image_cases())


def crd_accepts_image(image: str) -> bool:
    if len(image) > IMAGE_SCHEMA["maxLength"] or not re.fullmatch(IMAGE_SCHEMA["pattern"], image):
        return False
    return all(
        bool(kubernetes_cel.program(rule["rule"]).evaluate({"self": celpy.json_to_cel(image)}))
        for rule in IMAGE_SCHEMA["x-kubernetes-validations"]
    )


@pytest.mark.parametrize("image", go_reference.image_cases(), ids=lambda i: repr(i)[:50])
def test_an_image_is_accepted_where_distribution_reference_parses_it(image: str) -> None:
    """reference.ParseNormalizedNamed (distribution/reference v0.6.0, the kubelet's parser, run by
    go_reference/main.go) on 360 references: 32-hex and upper-case sha256 digests, sha384/512,
    md5, repository paths of 255 and 256 characters after the registry, Docker Hub names that
    pass 255 once `library/` is added, image IDs. mfpo's check (`image_reference_problems`) and
    the CRD (its pattern and CEL rules, evaluated here) accept exactly what Go parses."""
    parses = "name" in IMAGES_GO[image]
    assert (k8s.image_reference_problems(image) == []) is parses, IMAGES_GO[image]
    assert crd_accepts_image(image) is parses, IMAGES_GO[image]


@pytest.mark.parametrize("name", [n for n in apiserver_cases.OBJECT_CASES if n.startswith("runtimeImage ")])
def test_images_are_refused_where_the_crd_on_the_api_server_refused_them(name: str) -> None:
    server_accepted = "errors" not in OBJECT_ANSWERS[name]
    doc = apiserver_cases.object_case(name)
    assert pydantic_accepts(api.MFPORun, doc) is server_accepted, OBJECT_ANSWERS[name]


def test_an_image_refusal_says_what_the_kubelet_would() -> None:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["runtimeImage"] = "ghcr.io/mfpo/runtime@sha256:" + "a" * 32
    (problem,) = refusal(doc)
    assert problem.startswith('spec.runtimeImage: Invalid value: "ghcr.io/mfpo/runtime@sha256:aaaa')
    assert "a digest sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex> in lower case" in problem
    doc["spec"]["runtimeImage"] = "ghcr.io/" + "/".join(["abcdefghij"] * 30)
    (problem,) = refusal(doc)
    assert "repository name must not be more than 255 characters (its path abcdefghij/abcdefghij" in problem


# ----------------------------------------------------------------- the object's metadata

OBJECT_META = {
    k8s.ObjectMeta: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    k8s.OwnerReference: "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    k8s.ManagedFieldsEntry: "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry",
}
FULL_METADATA = {
    "name": "demo", "namespace": "ml", "generateName": "demo-", "uid": "0b7c", "resourceVersion": "12",
    "generation": 3, "selfLink": "/apis/x", "creationTimestamp": "2024-05-01T12:00:00Z",
    "deletionTimestamp": "2024-05-02T12:00:00.5+02:00", "deletionGracePeriodSeconds": 30,
    "labels": {"team": "vision", "mfpo.dev/tier": ""}, "annotations": {"example.com/owner": "ana"},
    "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u", "controller": True, "blockOwnerDeletion": False}],
    "finalizers": ["mfpo.dev/artifacts"],
    "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "mfpo.dev/v1alpha1", "time": "2024-05-01T12:00:00Z",
                       "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}, "subresource": ""}],
}  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("model", list(OBJECT_META), ids=lambda m: m.__name__)
def test_metadata_has_the_published_fields_and_required_fields(model, version) -> None:
    published = definitions(version)["$defs"][OBJECT_META[model]]
    ours = {f.alias or n for n, f in model.model_fields.items()}
    assert ours == set(published["properties"]), (version, model)
    required = {f.alias or n for n, f in model.model_fields.items() if f.is_required()}
    assert required == set(published.get("required", []))


def test_metadata_is_decoded_as_strictly_as_the_published_schema_decodes_it() -> None:
    """Every typo and every wrong type in a full ObjectMeta: the published strict schema (what
    the API server's strict decoding says: `unknown field "metadata.lables"`) refuses each, and
    so does mfpo."""
    decoder = strict_decoder("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    assert decoder.is_valid(FULL_METADATA) and pydantic_accepts(k8s.ObjectMeta, FULL_METADATA)
    mutations = [(n, d) for n, d in structural_mutations(FULL_METADATA) if "fieldsV1" not in n]  # FieldsV1: any object
    assert len(mutations) > 25
    for name, doc in mutations:
        assert not decoder.is_valid(doc), name
        assert not pydantic_accepts(k8s.ObjectMeta, doc), name


@pytest.mark.parametrize("name", [n for n in apiserver_cases.OBJECT_CASES if n.startswith("metadata ")])
def test_metadata_is_refused_where_the_api_server_refused_it(name: str) -> None:
    """Dry-run creates on kube-apiserver v1.32.13 with strict field validation (kubectl's
    default): unknown fields (lables, clusterName, Name), wrong types, two controllers, an Event
    owner, orphan with foregroundDeletion, a bad date; and what it takes (a null label, server
    fields it replaces)."""
    server_accepted = "errors" not in OBJECT_ANSWERS[name]
    try:
        validate_manifest(apiserver_cases.object_case(name))
    except ManifestError as err:
        assert not server_accepted, err
    else:
        assert server_accepted, OBJECT_ANSWERS[name]


def test_a_typo_in_metadata_is_named_as_an_unknown_field() -> None:
    doc = copy.deepcopy(GOOD)
    doc["metadata"]["lables"] = {"team": "a"}
    assert refusal(doc) == ["metadata.lables: Forbidden: unknown field"]


# ---------------------------------------- what the lab's API server refused, refused here

LONG = "a" * 64
NODE_TERM = lambda expr: {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}}
ANTI = lambda term: {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
HOST = "kubernetes.io/hostname"

# name -> (spec.resources, what the API server said of the Job main's builder made from it)
REFUSED_BY_THE_API_SERVER = {
    "toleration Exists with a value": (
        {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "true", "effect": "NoSchedule"}]},
        "tolerations[0].operator: Invalid value: \"true\": value must be empty when `operator` is 'Exists'"),
    "tolerationSeconds without NoExecute": (
        {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}]},
        "tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"),
    "toleration without key, operator Equal": (
        {"tolerations": [{"operator": "Equal", "value": "x"}]},
        "tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty"),
    "toleration key with two slashes": (
        {"tolerations": [{"key": "a/b/c", "operator": "Exists"}]},
        "tolerations[0].key: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters"),
    "toleration value of 64 characters": (
        {"tolerations": [{"key": "k", "operator": "Equal", "value": LONG}]},
        "tolerations[0].operator: Invalid value: \"aaa...\": must be no more than 63 characters"),
    "toleration key prefix of 254 characters": (
        {"tolerations": [{"key": "a" * 254 + "/k", "operator": "Exists"}]},
        "tolerations[0].key: Invalid value: ...: prefix part must be no more than 253 characters"),
    "nodeSelector key with a space": (
        {"nodeSelector": {"gpu type": "h100"}},
        "nodeSelector: Invalid value: \"gpu type\": name part must consist of alphanumeric characters"),
    "nodeSelector value with a slash": (
        {"nodeSelector": {"gpu": "nvidia/h100"}},
        "nodeSelector: Invalid value: \"nvidia/h100\": a valid label must be an empty string or consist of ..."),
    "affinity with a typo (Excution)": (
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExcution": {"nodeSelectorTerms": []}}}},
        ("strict: unknown field ...requiredDuringSchedulingIgnoredDuringExcution; without strict field validation "
        "(the operator's client) the Job was created without the constraint, with only a Warning")),
    "affinity without nodeSelectorTerms": (
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}},
        "nodeSelectorTerms: Required value: must have at least one node selector term"),
    "affinity In without values": (
        {"affinity": NODE_TERM({"key": "gpu", "operator": "In"})},
        "matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
    "affinity Exists with values": (
        {"affinity": NODE_TERM({"key": "gpu", "operator": "Exists", "values": ["x"]})},
        "matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
    "affinity Gt with two values": (
        {"affinity": NODE_TERM({"key": "gpu", "operator": "Gt", "values": ["1", "2"]})},
        "matchExpressions[0].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
    "affinity operator Equals": (
        {"affinity": NODE_TERM({"key": "gpu", "operator": "Equals", "values": ["x"]})},
        "matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator"),
    "affinity matchFields on a label": (
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.labels", "operator": "In", "values": ["x"]}]}]}}}},
        "matchFields[0].key: Invalid value: \"metadata.labels\": not a valid field selector key"),
    "preferred weight 0": (
        {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 0, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}},
        "preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100"),
    "preferred weight 101": (
        {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 101, "podAffinityTerm": {"topologyKey": HOST}}]}}},
        "preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 101: must be in the range 1-100"),
    "pod anti-affinity without topologyKey": (
        {"affinity": ANTI({"labelSelector": {"matchLabels": {"app": "x"}}})},
        "topologyKey: Required value: can not be empty"),
    "pod anti-affinity with an empty topologyKey": (
        {"affinity": ANTI({"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": ""})},
        "topologyKey: Required value: can not be empty"),
    "labelSelector value with a space": (
        {"affinity": ANTI({"labelSelector": {"matchLabels": {"app": "a b"}}, "topologyKey": HOST})},
        "labelSelector.matchLabels: Invalid value: \"a b\": a valid label must be an empty string or ..."),
    "labelSelector In without values": (
        {"affinity": ANTI({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}, "topologyKey": HOST})},
        "labelSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
    "matchLabelKeys without labelSelector": (
        {"affinity": ANTI({"topologyKey": HOST, "matchLabelKeys": ["mfpo.dev/run"]})},
        "matchLabelKeys: Forbidden: must not be specified when labelSelector is not set"),
    "a key in matchLabelKeys and mismatchLabelKeys": (
        {"affinity": ANTI({"labelSelector": {}, "topologyKey": HOST, "matchLabelKeys": ["mfpo.dev/run"],
                           "mismatchLabelKeys": ["mfpo.dev/run"]})},
        "matchLabelKeys[0]: Invalid value: \"mfpo.dev/run\": exists in both matchLabelKeys and mismatchLabelKeys"),
    "a key in matchLabelKeys and labelSelector": (
        {"affinity": ANTI({"labelSelector": {"matchLabels": {"mfpo.dev/run": "x"}}, "topologyKey": HOST,
                           "matchLabelKeys": ["mfpo.dev/run"]})},
        ("Job created; every pod refused (FailedCreate): Invalid value: \"mfpo.dev/run\": exists in both "
        "matchLabelKeys and labelSelector")),
    "namespaces entry not a DNS label": (
        {"affinity": ANTI({"labelSelector": {}, "topologyKey": HOST, "namespaces": ["Team_A"]})},
        "namespace: Invalid value: \"Team_A\": a lowercase RFC 1123 label must consist of ..."),
    "priorityClassName with uppercase": (
        {"priorityClassName": "GPU-High"},
        "priorityClassName: Invalid value: \"GPU-High\": a lowercase RFC 1123 subdomain must consist of ..."),
    "serviceAccountName with an underscore": (
        {"serviceAccountName": "mfpo_runner"},
        "serviceAccountName: Invalid value: \"mfpo_runner\": a lowercase RFC 1123 subdomain must consist of ..."),
    "queueName with a space": (
        {"queueName": "gpu queue"},
        "metadata.labels: Invalid value: \"gpu queue\": a valid label must be an empty string or consist of ..."),
    "queueName of 64 characters": (
        {"queueName": LONG},
        "metadata.labels: Invalid value: \"aaa...\": must be no more than 63 characters"),
    "ttlSecondsAfterFinished over int32": (
        {"ttlSecondsAfterFinished": 2**31},
        "cannot unmarshal number 2147483648 into Go struct field JobSpec.spec.ttlSecondsAfterFinished of type int32"),
    "activeDeadlineSeconds over int64": (
        {"activeDeadlineSeconds": 2**63},
        "cannot unmarshal number 9223372036854776000 into Go struct field JobSpec.spec.activeDeadlineSeconds of type int64"),
    "tolerationSeconds over int64": (
        {"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2**63}]},
        "cannot unmarshal number 9223372036854776000 into Go struct field Toleration...tolerationSeconds of type int64"),
    "activeDeadlineSeconds overflowing a Duration": (
        {"activeDeadlineSeconds": 9_223_372_037},
        "Job created, then Failed with DeadlineExceeded within seconds (9223372036 runs)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED_BY_THE_API_SERVER))
def test_what_the_api_server_refused_is_refused_at_validation_naming_the_field(case: str) -> None:
    resources, _api_server_said = REFUSED_BY_THE_API_SERVER[case]
    problems = refusal(with_resources(**resources))
    assert problems and all(p.startswith("spec.resources") for p in problems), problems
    assert not pydantic_accepts(api.MFPORunSpec, {**GOOD["spec"], "resources": resources})


@pytest.mark.parametrize("image", ["", "ghcr.io/mfpo/runtime:0.1.0 "])
def test_images_the_api_server_refused_are_refused_at_validation(image: str) -> None:
    # lab: "" -> "containers[0].image: Required value"; the trailing space -> Job created, every
    # pod refused: "must not have leading or trailing whitespace".
    doc = copy.deepcopy(GOOD)
    doc["spec"]["runtimeImage"] = image
    (problem,) = refusal(doc)
    assert problem.startswith("spec.runtimeImage: Invalid value:")
