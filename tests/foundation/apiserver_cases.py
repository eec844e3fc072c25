"""The cases test_crd_apiserver_rules.py puts to the API server replica (apiserver_crd.py), and
the recorder of what a real API server answers to them.

- MUTANTS: deliberately broken copies of the generated MFPORun CRD, one or two rules broken each.
- COST_PROBES: a throw-away CRD (group costprobe.example.com) whose nodes each carry one CEL rule
  under a map of `maxProperties: M`, M chosen so that the rule's cost times M lands just above
  the 10,000,000 limit: the API server's "exceeds budget by factor of 1.000006x" then states the
  rule's cost to within 5/M (see the test module).

- TRANSITIONS: updates of a stored run (a spec edit, an annotation, a status write...) in each
  phase, for the CRD's transition rules (a Succeeded run's spec is frozen).

    python tests/foundation/apiserver_cases.py KUBECONFIG   record the answers of the API server
                                                           KUBECONFIG points at (dry run, but for
                                                           the TRANSITIONS' runs) into
                                                           apiserver_answers.json

Every CRD sent is renamed into the group costprobe.example.com and sent with dryRun=All, so a
shared cluster is left exactly as it was; each TRANSITIONS case creates a run `transition-case`
in `default` (the real mfporuns.mfpo.dev CRD installed), writes its status, sends the update
with dryRun=All and deletes the run. Answers are stored sorted, with the Go struct dumps
of bad values reduced to their type (`apiserver_crd.without_struct_dumps`).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apiserver_cel as cel
import yaml
from apiserver_crd import without_struct_dumps

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = [
    REPO / "crds" / "mfpo.dev_mfporuns.yaml",
    *sorted((REPO / "charts/mfpo/crds").glob("*.yaml")),
]
ANSWERS = Path(__file__).with_name("apiserver_answers.json")
PROBE_GROUP = "costprobe.example.com"
Crd = dict[str, Any]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _parsed(path: Path) -> list[Crd]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc]


def load_crds() -> list[Crd]:
    """Every CRD the project ships (fresh copies)."""
    return copy.deepcopy([doc for path in CRD_FILES for doc in _parsed(path)])


def mfporun_crd() -> Crd:
    return copy.deepcopy(_parsed(CRD_FILES[0])[0])


def renamed(crd: Crd) -> Crd:
    """The CRD in the throw-away group (so that a dry run never collides with the real one)."""
    crd = copy.deepcopy(crd)
    crd["spec"]["group"] = PROBE_GROUP
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{PROBE_GROUP}"
    return crd


# ------------------------------------------------------------------------- mutants


def _schema(crd: Crd) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _node(crd: Crd, path: str) -> dict[str, Any]:
    """The schema node at a dotted field path ('' the root, '[]' a list's items)."""
    node = _schema(crd)
    for part in filter(None, path.split(".")):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def _set(path: str, key: str, value: Any) -> Callable[[Crd], None]:
    return lambda crd: _node(crd, path).__setitem__(key, copy.deepcopy(value))


def _drop(path: str, key: str) -> Callable[[Crd], None]:
    return lambda crd: _node(crd, path).pop(key)


def _rules(path: str, *rules: dict[str, Any]) -> Callable[[Crd], None]:
    return _set(path, "x-kubernetes-validations", list(rules))


def _all(*mutations: Callable[[Crd], None]) -> Callable[[Crd], None]:
    def mutate(crd: Crd) -> None:
        for mutation in mutations:
            mutation(crd)

    return mutate


def _spec(key: str, value: Any) -> Callable[[Crd], None]:
    return lambda crd: crd["spec"].__setitem__(key, value)


def _names(key: str, value: Any) -> Callable[[Crd], None]:
    return lambda crd: crd["spec"]["names"].__setitem__(key, value)


def _group(group: str) -> Callable[[Crd], None]:
    def mutate(crd: Crd) -> None:
        crd["spec"]["group"] = group
        crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"

    return mutate


def _second_storage_version(crd: Crd) -> None:
    crd["spec"]["versions"].append({**copy.deepcopy(crd["spec"]["versions"][0]), "name": "v1beta1"})


def _column_type(crd: Crd) -> None:
    crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = "text"


def _labels_on_metadata(crd: Crd) -> None:
    labels = {"type": "object", "additionalProperties": {"type": "string"}}
    _node(crd, "metadata")["properties"]["labels"] = labels


BENCHMARKS = "spec.evaluation.benchmarks"
BENCHMARK = "spec.evaluation.benchmarks.[]"
AFFINITY = "spec.resources.affinity"

# id -> (the rule it breaks, how). The rule names are the test module's RULES keys.
MUTANTS: dict[str, tuple[str, Callable[[Crd], None]]] = {
    # structural schema: the root metadata (issue 23's bug and its relatives)
    "metadata-description": (
        "metadata-only-names",
        _set("metadata", "description", "Standard object metadata."),
    ),
    "metadata-labels": ("metadata-only-names", _labels_on_metadata),
    "metadata-rule": (
        "metadata-only-names",
        _set("metadata", "x-kubernetes-validations", [{"rule": "self.name != ''"}]),
    ),
    "metadata-not-object": ("metadata-object", _set("metadata", "type", "string")),
    "nested-metadata": (
        "no-nested-metadata",
        _set("spec", "anyOf", [{"properties": {"metadata": {"required": ["name"]}}}]),
    ),
    "kind-not-string": ("kind-apiversion-string", _set("kind", "type", "integer")),
    # structural schema: types and shapes
    "typeless-field": ("type-required", _drop("spec.model.uri", "type")),
    "typeless-items": ("type-required", _drop(BENCHMARK, "type")),
    "array-without-items": ("items-required", _drop(BENCHMARKS, "items")),
    "root-additional-properties": (
        "no-root-additional-properties",
        _set("", "additionalProperties", {"type": "string"}),
    ),
    "root-not-object": ("root-object", _set("", "type", "array")),
    "junctor-with-type": (
        "junctors-value-only",
        _set("spec.objective.beta", "anyOf", [{"type": "number", "minimum": 1}]),
    ),
    "junctor-with-description": (
        "junctors-value-only",
        _set("spec.objective.beta", "allOf", [{"description": "no", "minimum": 0}]),
    ),
    "junctor-with-default": (
        "junctors-value-only",
        _set("spec.objective.beta", "not", {"default": 3, "maximum": 0}),
    ),
    "junctor-incomplete": (
        "junctors-complete",
        _set("", "anyOf", [{"properties": {"spec": {"properties": {"nope": {"minimum": 1}}}}}]),
    ),
    "int-or-string-preserving": (
        "int-or-string-alone",
        _set("spec.resources.cpu", "x-kubernetes-preserve-unknown-fields", True),
    ),
    "bad-pattern": ("pattern-compiles", _set("spec.storage.uri", "pattern", "^(s3|file://.+")),
    "embedded-not-object": (
        "embedded-resource",
        _all(
            _set(AFFINITY, "x-kubernetes-embedded-resource", True),
            _set(AFFINITY, "type", "string"),
            _drop(AFFINITY, "properties"),  # affinity is a typed core/v1 Affinity
        ),
    ),
    "embedded-without-properties": (
        "embedded-resource",
        _all(
            _set(AFFINITY, "x-kubernetes-embedded-resource", True),
            _drop(AFFINITY, "properties"),
        ),
    ),
    # the root with the status subresource
    "root-default": ("status-root-fields", _set("", "default", {})),
    "root-nullable": ("root-not-nullable", _set("", "nullable", True)),
    # OpenAPI checks
    "unknown-type": ("openapi-types", _set("spec.objective.beta", "type", "float")),
    "null-type": ("openapi-types", _set("spec.objective.beta", "type", "null")),
    "default-under-metadata": ("no-defaults-in-metadata", _set("metadata.name", "default", "run")),
    "default-on-metadata": ("no-defaults-in-metadata", _set("metadata", "default", {})),
    "default-on-kind": ("no-defaults-in-metadata", _set("kind", "default", "MFPORun")),
    "unique-items": ("no-unique-items", _set(BENCHMARKS, "uniqueItems", True)),
    "properties-and-additional-properties": (
        "properties-xor-additional",
        _set("spec.storage", "additionalProperties", {"type": "string"}),
    ),
    "additional-properties-false": (
        "properties-xor-additional",
        _set("spec.storage", "additionalProperties", False),
    ),
    "ref": ("unsupported-keywords", _set("spec.storage", "$ref", "#/definitions/StorageSpec")),
    "preserve-false": (
        "preserve-true-or-absent",
        _set("spec.storage", "x-kubernetes-preserve-unknown-fields", False),
    ),
    "list-map-without-keys": ("list-type-rules", _set(BENCHMARKS, "x-kubernetes-list-type", "map")),
    "list-map-key-optional": (
        "list-type-rules",
        _all(
            _set(BENCHMARKS, "x-kubernetes-list-type", "map"),
            _set(BENCHMARKS, "x-kubernetes-list-map-keys", ["label"]),
        ),
    ),
    "list-set-of-objects": ("list-type-rules", _set(BENCHMARKS, "x-kubernetes-list-type", "set")),
    "bad-list-type": ("list-type-rules", _set(BENCHMARKS, "x-kubernetes-list-type", "bag")),
    "map-type-on-array": ("list-type-rules", _set(BENCHMARKS, "x-kubernetes-map-type", "atomic")),
    # x-kubernetes-validations
    "empty-rule": ("rule-fields", _rules("spec.storage", {"rule": " ", "message": "x"})),
    "blank-message": (
        "rule-fields",
        _rules("spec.storage", {"rule": "self.uri != ''", "message": "  "}),
    ),
    "multiline-message": (
        "rule-fields",
        _rules("spec.storage", {"rule": "self.uri != ''", "message": "one\ntwo"}),
    ),
    "multiline-rule-without-message": (
        "rule-fields",
        _rules("spec.storage", {"rule": "self.uri != ''\n&& true"}),
    ),
    "bad-reason": (
        "rule-fields",
        _rules("spec.storage", {"rule": "self.uri != ''", "reason": "FieldValueWrong"}),
    ),
    "bad-field-path": (
        "rule-fields",
        _rules("spec.storage", {"rule": "self.uri != ''", "fieldPath": ".nope"}),
    ),
    "undefined-field": ("rule-compiles", _rules("spec.storage", {"rule": "self.bucket != ''"})),
    "not-bool": ("rule-compiles", _rules("spec.storage", {"rule": "self.uri"})),
    "old-self-in-list": (
        "old-self-correlatable",
        _rules(f"{BENCHMARK}.uri", {"rule": "self == oldSelf", "message": "immutable"}),
    ),
    "optional-old-self-unused": (
        "old-self-correlatable",
        _rules("spec.storage", {"rule": "self.uri != ''", "optionalOldSelf": True}),
    ),
    # defaults
    "default-unknown-field": (
        "defaults-pruned",
        _set("spec.imagePreference.noise", "default", {"bogus": 1}),
    ),
    "default-out-of-range": ("defaults-valid", _set("spec.objective.beta", "default", -1)),
    "default-wrong-type": ("defaults-valid", _set("spec.training.seed", "default", "zero")),
    "default-breaks-cel": (
        "defaults-pass-cel",
        _set("spec.imagePreference.noise", "default", {"step": 1000}),
    ),
    # CEL cost
    "pairwise-rule-unbounded-list": ("cel-cost", _drop(BENCHMARKS, "maxItems")),
    "pairwise-rule-unbounded-strings": (
        "cel-cost",
        _all(_drop(f"{BENCHMARK}.uri", "maxLength"), _drop(f"{BENCHMARK}.label", "maxLength")),
    ),
    "string-rule-under-unbounded-list": (
        "cel-cost",
        _all(
            _rules(
                f"{BENCHMARK}.uri",
                {"rule": "self.startsWith('s3://') || self.startsWith('file://') || self == 'x'"},
            ),
            _drop(BENCHMARKS, "maxItems"),
            _drop(f"{BENCHMARK}.uri", "maxLength"),
        ),
    ),
    # the CRD's own fields
    "name-mismatch": (
        "crd-names",
        lambda crd: crd["metadata"].__setitem__("name", "mfporun." + crd["spec"]["group"]),
    ),
    "group-without-dot": ("crd-names", _group("mfpo")),
    "kind-equals-list-kind": ("crd-names", _names("listKind", "MFPORun")),
    "bad-short-name": ("crd-names", _names("shortNames", ["MF"])),
    "two-storage-versions": ("crd-versions", _second_storage_version),
    "bad-column-type": ("crd-columns", _column_type),
    "bad-scope": ("crd-scope", _spec("scope", "Global")),
    "preserve-unknown-fields": (
        "crd-preserve-unknown-fields",
        _spec("preserveUnknownFields", True),
    ),
    "protected-group": ("crd-api-approval", _group("mfpo.k8s.io")),
}


def mutant(name: str) -> Crd:
    """The renamed MFPORun CRD with one mutation applied."""
    crd = renamed(mfporun_crd())
    MUTANTS[name][1](crd)
    return crd


# --------------------------------------------------------------------- cost probes


def _string(max_length: int | None = None) -> dict[str, Any]:
    return {"type": "string", **({"maxLength": max_length} if max_length else {})}


def _object(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def _list(items: dict[str, Any], max_items: int | None = None) -> dict[str, Any]:
    return {"type": "array", "items": items, **({"maxItems": max_items} if max_items else {})}


def _without_rules(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_rules(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [_without_rules(v) for v in node]
    return node


def _rule_nodes(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, node with only that rule) for every rule of the generated CRD's spec."""
    found = []
    for i, rule in enumerate(node.get("x-kubernetes-validations", [])):
        found.append((f"{path}#{i}", {**_without_rules(node), "x-kubernetes-validations": [rule]}))
    for name, sub in node.get("properties", {}).items():
        found.extend(_rule_nodes(sub, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        found.extend(_rule_nodes(node["items"], f"{path}[]"))
    return found


# Rules the generated CRD does not use, each exercising one part of the cost model.
_EXTRA_PROBES: list[tuple[str, dict[str, Any], str]] = [
    (
        "type-denotation",
        {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "type(self) == string",
    ),
    ("unbounded-strings-equal", _object(a=_string(), b=_string()), "self.a == self.b"),
    ("unbounded-string-startsWith", _object(a=_string()), "self.a.startsWith('abc')"),
    ("unbounded-list-all", _object(l=_list(_string())), "self.l.all(x, x.startsWith('a'))"),
    ("in-list-field", _object(tags=_list(_string(8), 100)), "'a' in self.tags"),
    ("size-of-string", _object(x=_string(63)), "size(self.x) < 10"),
    ("matches", _object(x=_string(63)), "self.x.matches('^[a-z]+$')"),
    ("contains", _object(x=_string(63)), "self.x.contains('abc')"),
    ("concatenation", _object(x=_string(63)), "self.x + 'abc' == 'abcabc'"),
    (
        "exists-with-has",
        _object(l=_list(_object(u=_string(100)), 50)),
        "self.l.exists(e, has(e.u) && e.u.startsWith('s3://'))",
    ),
    (
        "conditional-sizes",
        _object(m=_string(20), n=_string(300)),
        "(has(self.m) ? self.m : 'default-value') == (has(self.n) ? self.n : '')",
    ),
    (
        "unbounded-map-size",
        _object(o={"type": "object", "additionalProperties": _string(10)}),
        "!has(self.o) || size(self.o) == 0",
    ),
    (
        "map-keys-all",
        _object(o={"type": "object", "maxProperties": 30, "additionalProperties": _string(10)}),
        "self.o.all(k, self.o[k] == k)",
    ),
    ("exists_one-ints", _object(l=_list({"type": "integer"}, 64)), "self.l.exists_one(x, x == 3)"),
    ("double-comparison", _object(d={"type": "number"}), "(has(self.d) ? self.d : 1.0) > 0.0"),
    (
        "enum-string",
        _object(e={"type": "string", "enum": ["alpha", "beta-gamma"]}),
        "self.e == 'beta-gamma'",
    ),
    ("in-list-literal", _object(e=_string(40)), "self.e in ['clipseg', 'grounding-sam', 'x']"),
    (
        "nested-all",
        _object(l=_list(_object(n=_string(30)), 20)),
        "self.l.all(a, self.l.all(b, a.n != b.n || a == b))",
    ),
    ("map-macro", _object(l=_list(_string(30), 20)), "self.l.map(x, x + 'a').all(y, y != 'b')"),
    (
        "filter-size",
        _object(l=_list(_string(30), 20)),
        "size(self.l.filter(x, x.startsWith('a'))) < 3",
    ),
    (
        "date-times-equal",
        _object(
            t={"type": "string", "format": "date-time"}, u={"type": "string", "format": "date-time"}
        ),
        "self.t == self.u",
    ),
    ("old-self", _string(500), "self == oldSelf"),
]


def _root_rule_nodes() -> list[tuple[str, dict[str, Any]]]:
    """(id, node with only that rule) for the rules at the generated CRD's root: the root's
    properties (spec, status...) under a map, where a rule sees the same types."""
    root = _schema(mfporun_crd())
    node = {"type": "object", "properties": _without_rules(root["properties"])}
    return [
        (f"root#{i}", {**node, "x-kubernetes-validations": [rule]})
        for i, rule in enumerate(root.get("x-kubernetes-validations", []))
    ]


def cost_probes() -> list[tuple[str, dict[str, Any]]]:
    """(id, node with one rule): the generated CRD's rules, then the extra ones."""
    probes = _rule_nodes(_schema(mfporun_crd())["properties"]["spec"], "spec")
    probes.extend(_root_rule_nodes())
    for name, node, rule in _EXTRA_PROBES:
        probes.append((name, {**node, "x-kubernetes-validations": [{"rule": rule}]}))
    return probes


def probe_multiplier(node: dict[str, Any]) -> int:
    """M: the fewest repetitions that take the rule's estimated cost above 10,000,000."""
    (rule,) = node["x-kubernetes-validations"]
    cost = cel.compile_rule(rule["rule"], cel.decl_type(node)).max_cost
    return math.ceil((cel.STATIC_ESTIMATED_COST_LIMIT + 1) / cost)


# Probes of the cardinality itself: a rule on the items of an unbounded list is charged for as
# many items as fit in a request (3 MiB / (the item's smallest JSON size + 1)).
CARDINALITY_PROBES: dict[str, dict[str, Any]] = {
    "rule-under-unbounded-list": _list(
        {
            **_object(a=_string(10), b=_string(10), c=_string(10)),
            "x-kubernetes-validations": [{"rule": "self.a == self.b && self.c == 'z'"}],
        }
    ),
    "rule-under-nested-bounded-lists": _list(
        _list(
            {
                **_object(a=_string(10)),
                "x-kubernetes-validations": [
                    {"rule": "self.a.startsWith('xyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyz')"}
                ],
            },
            2000,
        ),
        900,
    ),
}


# Where the API server draws the line: a rule costing 4 (`size(self.x) < 10`, see the probes),
# 2,500,000 times, costs exactly the limit and is accepted; one copy more is refused (probe
# "size-of-string"): the limit is inclusive.
AT_THE_LIMIT = {
    "type": "object",
    "maxProperties": 2_500_000,
    "additionalProperties": {
        **_object(x=_string(63)),
        "x-kubernetes-validations": [{"rule": "size(self.x) < 10"}],
    },
}


def cost_probe_crd() -> Crd:
    """One CRD holding every probe: spec.p<i> is a map of M copies of probe i's node."""
    props: dict[str, Any] = {}
    for i, (_, node) in enumerate(cost_probes()):
        props[f"p{i}"] = {
            "type": "object",
            "maxProperties": probe_multiplier(node),
            "additionalProperties": node,
        }
    props.update(CARDINALITY_PROBES)
    props["at-the-limit"] = AT_THE_LIMIT
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _object(spec=_object(**props))},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"costprobes.{PROBE_GROUP}"},
        "spec": {
            "group": PROBE_GROUP,
            "scope": "Namespaced",
            "versions": [version],
            "names": {"kind": "CostProbe", "plural": "costprobes"},
        },
    }


# ------------------------------------------------------------------- run names

# metadata.name of examples/quickstart.yaml replaced by each: does the API server enforce the
# CRD's metadata.name maxLength (40) and pattern (a DNS-1123 label)? (Answered with the real
# mfporuns.mfpo.dev CRD installed, by a dry-run create.)
RUN_NAMES = ["quickstart", "a" * 40, "a" * 41, "quickstart.v2", "x" * 64]


def run_named(name: str) -> dict[str, Any]:
    run = yaml.load((REPO / "examples" / "quickstart.yaml").read_text(), Loader=_Loader)
    run["metadata"] = {"name": name}
    return run


# --------------------------------------------------- manifests, as `kubectl apply` reads them

# Sent with the real mfporuns.mfpo.dev CRD installed: OBJECT_CASES through the API (a dry-run
# create with fieldValidation=Strict, what kubectl asks for), KUBECTL_CASES as files through
# `kubectl apply --dry-run=server -o json -f -` (kubectl's own YAML reading, lists and all).
MINIMAL_SPEC = {
    "model": {"uri": "file:///models/tiny"},
    "data": {"uri": "file:///data/train", "format": "synthetic"},
    "storage": {"uri": "file:///runs"},
}
SHA = "ghcr.io/mfpo/runtime@sha256:"
OBJECT_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # name -> (metadata, spec changes)
    **{
        f"memory {value!r}": ({}, {"resources": {"memory": value}})
        for value in ["512m", "1m", ".5", "1e-9", "0.0001", "1n", "0", "4", 4, "511Mi", "512Mi", 536870912,
                      536870911, "536870912", "0.5Gi", "1.5Gi", "1.1Ki", "1Pi", "1025Ti", "1000000000000m",
                      "536870911.9999999999", "536870912.0000000001", "1e9", "5e-1Gi", "32Gi", "9e+02Mi"]
    },
    **{
        f"shmSize {value!r}": ({}, {"resources": {"shmSize": value}})
        for value in ["0", "4", "500m", "63Mi", "64Mi", 67108864, "0.0625Gi", "8Gi"]
    },
    **{
        f"runtimeImage {label}": ({}, {"runtimeImage": image})
        for label, image in [
            ("sha256 of 32 hex", SHA + "a" * 32), ("sha256 of 64 hex", SHA + "a" * 64),
            ("sha256 in upper case", SHA + "A" * 64), ("sha384", "ghcr.io/x@sha384:" + "b" * 96),
            ("sha512", "ghcr.io/x@sha512:" + "c" * 128), ("md5", "ghcr.io/x@md5:" + "d" * 32),
            ("a path of 255", "ghcr.io/" + "a" * 255), ("a path of 256", "ghcr.io/" + "a" * 256),
            ("a path of 329", "ghcr.io/" + "/".join(["abcdefghij"] * 30)),
            ("docker hub, 247", "a" * 247), ("docker hub, 248", "a" * 248),
            ("docker.io, 248", "docker.io/" + "a" * 248), ("an image ID", "a" * 64),
            ("an upper-case registry", "Registry/x"), ("my_reg.io, 250", "my_reg.io/" + "x" * 250),
        ]
    },
    "model.uri a Hugging Face id": ({}, {"model": {"uri": "llava-hf/llava-1.5-7b-hf"}}),
    "model.uri a relative path": ({}, {"model": {"uri": "./models/tiny"}}),
    "model.uri an absolute path": ({}, {"model": {"uri": "/models/tiny"}}),
    "model.uri next to the manifest": ({}, {"model": {"uri": "file://./models/tiny"}}),
    "grounding.modelUri a Hugging Face id": ({}, {"imagePreference": {"grounding": {"method": "clipseg", "modelUri": "CIDAS/clipseg-rd64-refined"}}}),
    "metadata lables": ({"lables": {"team": "a"}}, {}),
    "metadata clusterName": ({"clusterName": "x"}, {}),
    "metadata Name": ({"Name": "x"}, {}),
    "metadata labels: an integer value": ({"labels": {"team": 1}}, {}),
    "metadata labels: a null value": ({"labels": {"team": None, "b": "x"}}, {}),
    "metadata two controllers": ({"ownerReferences": [
        {"apiVersion": "v1", "kind": "X", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "X", "name": "b", "uid": "2", "controller": True}]}, {}),
    "metadata an Event owner": ({"ownerReferences": [{"apiVersion": "v1", "kind": "Event", "name": "a", "uid": "1"}]}, {}),
    "metadata an owner without version": ({"ownerReferences": [{"apiVersion": "apps/", "kind": "X", "name": "a", "uid": "1"}]}, {}),
    "metadata finalizers orphan and foregroundDeletion": ({"finalizers": ["orphan", "foregroundDeletion"]}, {}),
    "metadata a finalizer with a space": ({"finalizers": ["a b"]}, {}),
    "metadata generation as a string": ({"generation": "7"}, {}),
    "metadata creationTimestamp 2020-02-30": ({"creationTimestamp": "2020-02-30T10:00:00Z"}, {}),
    "metadata creationTimestamp with a one-digit hour": ({"creationTimestamp": "2020-01-01T1:00:00Z"}, {}),
    "metadata every server-set field": ({"uid": "u", "resourceVersion": "5", "generation": 3, "selfLink": "/x",
                                         "creationTimestamp": "2020-01-01T10:00:00Z", "deletionGracePeriodSeconds": 5,
                                         "managedFields": [{"manager": "m", "operation": "Apply"}]}, {}),
    "null training": ({}, {"training": None}),
    "null objective.beta": ({}, {"objective": {"beta": None}}),
    "null nodeSelector": ({}, {"resources": {"nodeSelector": None}}),
    "null nodeSelector value": ({}, {"resources": {"nodeSelector": {"a": None}}}),
    "null tolerations item": ({}, {"resources": {"tolerations": [None]}}),
    "null tracking": ({}, {"tracking": None}),
    "null data": ({}, {"data": None}),
    "null model.uri": ({}, {"model": {"uri": None}}),
    "null unknown field": ({}, {"training": {"epocks": None}}),
}  # fmt: skip


# Issue 24: storage URIs the storage layer could not address faithfully, benchmark splits that
# are not the data's, the judge's key and URL (mfpo must refuse exactly what the server refuses).
_S3 = {"storage": {"uri": "s3://mfpo/runs", "endpoint": "minio.mfpo:9000"}}
_JUDGE = {"judge": "llm", "judgeUrl": "https://judge.example.net/v1", "judgeModel": "m"}


def _judged(*entries: dict[str, Any]) -> dict[str, Any]:
    benchmarks = [{"name": "object-halbench", "uri": f"s3://mfpo/bench/coco-{i}", "label": f"coco-{i}",
                   "objectHalbench": {**_JUDGE, **options}} for i, options in enumerate(entries)]  # fmt: skip
    return {**_S3, "evaluation": {"benchmarks": benchmarks}}


def _benchmark(entry: dict[str, Any]) -> dict[str, Any]:
    return {"evaluation": {"benchmarks": [entry]}}


OBJECT_CASES.update({
    "uri storage.uri with a fragment": ({}, {"storage": {"uri": "s3://mfpo/runs#team-a", "endpoint": "minio:9000"}}),
    "uri storage.uri with a query": ({}, {"storage": {"uri": "file:///x/runs?team=a"}}),
    "uri model.uri with a version query": ({}, {"model": {"uri": "s3://mfpo/models?versionId=3"}, **_S3}),
    "uri data.uri with an empty segment": ({}, {"data": {"uri": "file:///data//train"}}),
    "uri data.uri with a dot-dot segment": ({}, {"data": {"uri": "file:///data/../train"}}),
    "uri data.uri with a spaced dot-dot segment": ({}, {"data": {"uri": "file:///data/ .. /train"}}),
    "uri data.uri with a control character": ({}, {"data": {"uri": "file:///data/a\nb"}}),
    "uri pope.imageDir up a directory": ({}, _benchmark({"name": "pope", "uri": "file:///p", "pope": {"imageDir": "../images"}})),
    "uri odd but faithful names": ({}, {"model": {"uri": "file:///models/a b/c%20d/é/train=1/.x"}}),
    "uri the file system's root as storage.uri": ({}, {"storage": {"uri": "file:///"}}),
    "split misspelled": ({}, _benchmark({"name": "synthetic", "uri": "file:///w", "synthetic": {"splits": ["eval", "counterprior"]}})),
    "split listed twice": ({}, _benchmark({"name": "synthetic", "uri": "file:///w", "synthetic": {"splits": ["eval", "eval"]}})),
    "split a path": ({}, _benchmark({"name": "synthetic", "uri": "file:///w", "synthetic": {"splits": ["../../other-team/world/eval"]}})),
    "split pope's listed twice": ({}, _benchmark({"name": "pope", "uri": "file:///p", "pope": {"splits": ["random", "random"]}})),
    "judge key named by judgeKeyEnv": ({}, _judged({"judgeKeyEnv": "AWS_SECRET_ACCESS_KEY"})),
    "judge URL with user:password@": ({}, _judged({"judgeUrl": "https://user:pw@judge.example.net/v1"})),
    "judge URL with a query": ({}, _judged({"judgeUrl": "https://judge.example.net/v1?key=abc"})),
    "judge Secret key '..'": ({}, _judged({"judgeSecretRef": {"name": "judge", "key": ".."}})),
    "judge two keys": ({}, _judged({"judgeSecretRef": {"name": "judge", "key": "a"}}, {"judgeSecretRef": {"name": "judge", "key": "b"}})),
    "judge one key": ({}, _judged({"judgeSecretRef": {"name": "judge", "key": "api-key"}}, {"judgeSecretRef": {"name": "judge", "key": "api-key"}})),
})  # fmt: skip
ISSUE_24_CASES = [name for name in OBJECT_CASES if name.startswith(("uri ", "split ", "judge "))]


def object_case(name: str) -> dict[str, Any]:
    metadata, changes = OBJECT_CASES[name]
    spec = copy.deepcopy(MINIMAL_SPEC)
    for key, value in changes.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    return {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "case", **metadata}, "spec": spec}


KUBECTL_BASE = """apiVersion: mfpo.dev/v1alpha1
kind: MFPORun
metadata:
  name: case
spec:
  model: {uri: "file:///models/tiny"}
  data: {uri: "file:///data/train", format: synthetic}
  storage: {uri: "file:///runs"}
"""
_RUN = (
    "- apiVersion: mfpo.dev/v1alpha1\n  kind: MFPORun\n  metadata: {{name: {}}}\n"
    "  spec: {{model: {{uri: 'file:///m'}}, data: {{uri: 'file:///d', format: synthetic}}, storage: {{uri: 'file:///r'}}}}"
)
KUBECTL_CASES: dict[str, str] = {
    "merge after an explicit key": KUBECTL_BASE + "  training: {epochs: 3, <<: {epochs: 7}}\n",
    "merge before an explicit key": KUBECTL_BASE + "  training: {<<: {epochs: 7}, epochs: 3}\n",
    "a list of merges": KUBECTL_BASE + "  training: {<<: [{epochs: 2}, {epochs: 5}]}\n",
    "a list of merges and a key": KUBECTL_BASE + "  training: {seed: 1, <<: [{epochs: 2, seed: 4}, {epochs: 5, batchSize: 2}]}\n",
    "a nested merge": KUBECTL_BASE + "  training: {<<: [{epochs: 2}, {<<: {seed: 4}, epochs: 5}]}\n",
    "an alias merged, then a key": KUBECTL_BASE.replace(
        "  name: case\n", "  name: case\n  labels: &l {team: a, tier: x}\n  annotations: {<<: *l, team: b}\n"
    ),
    "a merge of a number": KUBECTL_BASE + "  training: {<<: 3}\n",
    "a merge of an alias of a list": KUBECTL_BASE.replace("metadata:\n", "metadata:\n  annotations: {a: &l [{b: c}]}\n") + "  training: {<<: *l}\n",
    "!!binary": KUBECTL_BASE.replace("  name: case\n", "  name: case\n  annotations: {rack: !!binary YWJj}\n"),
    "!!binary of a byte that is not UTF-8": KUBECTL_BASE.replace("  name: case\n", "  name: case\n  annotations: {rack: !!binary /w==}\n"),
    "a tag kubectl ignores": KUBECTL_BASE.replace("  name: case\n", "  name: case\n  annotations: {rack: !foo bar}\n"),
    "training with every field commented out": KUBECTL_BASE + "  training:\n#    epochs: 3\n",
    "training: ~": KUBECTL_BASE + "  training: ~\n",
    "objective: {beta: null}": KUBECTL_BASE + "  objective: {beta: null}\n",
    "resources: {nodeSelector: }": KUBECTL_BASE + "  resources: {nodeSelector: }\n",
    "metadata: {lables: ...}": KUBECTL_BASE.replace("  name: case\n", "  name: case\n  lables: {team: a}\n"),
    "a v1 List of two runs": "apiVersion: v1\nkind: List\nitems:\n" + _RUN.format("l1") + "\n" + _RUN.format("l2") + "\n",
    "an MFPORunList, an item without kind": (
        "apiVersion: mfpo.dev/v1alpha1\nkind: MFPORunList\nitems:\n"
        "- metadata: {name: r1}\n  spec: {model: {uri: 'file:///m'}, data: {uri: 'file:///d', format: synthetic}, storage: {uri: 'file:///r'}}\n"
    ),
    "an MFPORun with items": "apiVersion: mfpo.dev/v1alpha1\nkind: MFPORun\nitems:\n" + _RUN.format("i1") + "\n",
    "an empty List": "apiVersion: v1\nkind: List\nitems: []\n",
    "a v1 List item without kind": "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: k1}\n",
    "a separator followed by content": "--- " + KUBECTL_BASE,
    "a flow mapping first": "{apiVersion: mfpo.dev/v1alpha1, kind: MFPORun}\n",
}


def server_answer_object(run: dict[str, Any], kubeconfig: str) -> dict[str, Any]:
    """A dry-run create with strict field validation: the errors, or {} (and the spec as stored,
    for the runs with nulls, whose stored spec the tests compare)."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
    try:
        stored = api.create_namespaced_custom_object(
            "mfpo.dev", "v1alpha1", "default", "mfporuns", run, dry_run="All", field_validation="Strict"
        )
    except ApiException as err:
        body = json.loads(err.body)
        causes = body.get("details", {}).get("causes") or [{"field": "", "message": body["message"]}]
        return {"errors": sorted(without_struct_dumps(f"{c.get('field')}: {c.get('message')}") for c in causes)}
    return stored_object_summary(run, stored)


def stored_object_summary(run: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    has_null = "null" in json.dumps(run)
    return {"spec": stored["spec"]} if has_null else {}


# The sections of a stored spec the tests read (the rest is the CRD's defaults).
KUBECTL_SECTIONS = ("training", "objective", "resources")


def kubectl_answer(text: str, kubeconfig: str) -> dict[str, Any]:
    """`kubectl apply --dry-run=server -o json -f -` of a file: each object's kind, name,
    labels, annotations (without kubectl's own) and the spec's KUBECTL_SECTIONS, or kubectl's error."""
    done = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-o", "json", "-f", "-"],
        input=text, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return {"error": done.stderr.strip(), "stdout": done.stdout.strip()[:200]}
    shown = json.loads(done.stdout)
    items = shown["items"] if shown.get("kind") == "List" else [shown]
    own = "kubectl.kubernetes.io/last-applied-configuration"
    return {
        "objects": [
            {
                "kind": item["kind"],
                "name": item["metadata"]["name"],
                "labels": item["metadata"].get("labels", {}),
                "annotations": {k: v for k, v in item["metadata"].get("annotations", {}).items() if k != own},
                "spec": {k: v for k, v in item.get("spec", {}).items() if k in KUBECTL_SECTIONS},
            }
            for item in items
        ]
    }


# --------------------------------------------------------- updates of a stored run

# name -> (the stored run's status.phase or None, the update). An update is `spec` (a merge
# patch of the spec, through the main endpoint, as `kubectl edit`/`patch` sends it),
# `annotation` (metadata only: mfpo.dev/retry), `status` (a merge patch through the /status
# subresource, as the operator writes it) or `spec+status` (one patch through the main endpoint
# changing both: the API server drops its status part, apiextensions-apiserver
# pkg/registry/customresource/strategy.go PrepareForUpdate).
TRANSITION_RUN = "transition-case"
EDITED_SPEC = {"training": {"learningRate": 0.0005}}
TRANSITIONS: dict[str, tuple[str | None, str]] = {
    "no status, spec edited": (None, "spec"),
    "Pending, spec edited": ("Pending", "spec"),
    "Running, spec edited": ("Running", "spec"),
    "Suspended, spec edited": ("Suspended", "spec"),
    "Failed, spec edited": ("Failed", "spec"),
    "Succeeded, spec edited": ("Succeeded", "spec"),
    "Succeeded, spec edited with status.phase Failed in the same patch": ("Succeeded", "spec+status"),
    "Succeeded, the same spec patched": ("Succeeded", "same-spec"),
    "Succeeded, annotated mfpo.dev/retry": ("Succeeded", "annotation"),
    "Succeeded, status written": ("Succeeded", "status"),
}


def transition_patch(update: str) -> tuple[str, dict[str, Any]]:
    """(endpoint, merge patch) of an update: endpoint "" (the object) or "status"."""
    return {
        "spec": ("", {"spec": EDITED_SPEC}),
        "spec+status": ("", {"spec": EDITED_SPEC, "status": {"phase": "Failed"}}),
        "same-spec": ("", {"spec": {"model": MINIMAL_SPEC["model"]}}),
        "annotation": ("", {"metadata": {"annotations": {"mfpo.dev/retry": "1"}}}),
        "status": ("status", {"status": {"progress": "6/6"}}),
    }[update]


def server_answer_transition(name: str, kubeconfig: str) -> list[str]:
    """The errors the API server gives for the case's update of a stored run ([] if accepted)."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    phase, update = TRANSITIONS[name]
    api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
    where = ("mfpo.dev", "v1alpha1", "default", "mfporuns", TRANSITION_RUN)
    run = {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": TRANSITION_RUN},
           "spec": copy.deepcopy(MINIMAL_SPEC)}  # fmt: skip
    api.create_namespaced_custom_object(*where[:4], run)
    try:
        if phase is not None:
            api.patch_namespaced_custom_object_status(*where, {"status": {"phase": phase}})
        endpoint, patch = transition_patch(update)
        send = api.patch_namespaced_custom_object_status if endpoint else api.patch_namespaced_custom_object
        send(*where, patch, dry_run="All")
    except ApiException as err:
        body = json.loads(err.body)
        causes = body.get("details", {}).get("causes") or [{"field": "", "message": body["message"]}]
        return sorted(f"{c.get('field')}: {c.get('message')}" for c in causes)
    finally:
        api.delete_namespaced_custom_object(*where)
    return []


# ------------------------------------------------------------------ the real thing


def server_answer(crd: Crd, kubeconfig: str) -> list[str]:
    """`path: message` for each error a real API server gives creating `crd` (dry run)."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = client.ApiextensionsV1Api(config.new_client_from_config(kubeconfig))
    try:
        api.create_custom_resource_definition(crd, dry_run="All", _preload_content=False)
    except ApiException as err:
        body = json.loads(err.body)
        causes = body.get("details", {}).get("causes") or [
            {"field": "", "message": body["message"]}
        ]
        return sorted(without_struct_dumps(f"{c.get('field')}: {c.get('message')}") for c in causes)
    return []


def server_answer_run(run: dict[str, Any], kubeconfig: str) -> list[str]:
    """The lines `kubectl apply` prints for a run the API server refuses (dry run); [] if accepted.
    Needs the mfporuns.mfpo.dev CRD installed there."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
    group, version = run["apiVersion"].split("/")
    try:
        api.create_namespaced_custom_object(
            group, version, "default", "mfporuns", run, dry_run="All", field_validation="Strict"
        )  # strict: as kubectl apply sends it (--validate=strict, its default)
    except ApiException as err:
        if err.status == 409:  # AlreadyExists comes from storage, after validation passed
            return []
        body = json.loads(err.body)
        causes = body.get("details", {}).get("causes") or [{"field": "", "message": body["message"]}]
        return sorted(f"{c.get('field')}: {c.get('message')}" for c in causes)
    return []


def server_version(kubeconfig: str) -> str:
    from kubernetes import client, config

    info = client.VersionApi(config.new_client_from_config(kubeconfig)).get_code()
    return f"kube-apiserver {info.git_version} (commit {info.git_commit[:8]}, {info.go_version})"


def record(kubeconfig: str) -> dict[str, Any]:
    """What the API server answers to each generated CRD, mutant and the cost probe CRD."""
    return {
        "server": server_version(kubeconfig),
        "generated": {
            crd["metadata"]["name"]: server_answer(renamed(crd), kubeconfig) for crd in load_crds()
        },
        "mutants": {name: server_answer(mutant(name), kubeconfig) for name in MUTANTS},
        "cost_probes": server_answer(cost_probe_crd(), kubeconfig),
        "run_names": {name: server_answer_run(run_named(name), kubeconfig) for name in RUN_NAMES},
        "objects": {name: server_answer_object(object_case(name), kubeconfig) for name in OBJECT_CASES},
        "kubectl": {name: kubectl_answer(text, kubeconfig) for name, text in KUBECTL_CASES.items()},
        "transitions": {name: server_answer_transition(name, kubeconfig) for name in TRANSITIONS},
    }


if __name__ == "__main__":
    answers = record(sys.argv[1])
    ANSWERS.write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {ANSWERS} ({answers['server']})")
