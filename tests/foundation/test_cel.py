"""The CRD's CEL rules, evaluated with cel-python, agree with api.py's pydantic validators.

The API server compiles these rules when the CRD is applied and runs them at `kubectl apply`;
`mfpo run` and the operator run the pydantic validators. Here both judge the same objects, so
kubectl and the local runner accept and reject the same things. Values are typed as the API
server types them (a `number` field is a double in CEL even when written as 1), and objects
are judged both as written and after the API server has filled in the schema's defaults,
over every combination of the values that matter (absent, zero, empty, on and around bounds).
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any

import celpy
import kubernetes_cel
import pytest
from mfpo_core import api, k8s
from mfpo_operator import crd
from pydantic import BaseModel, ValidationError

ABSENT = object()


def schema_at(*path: str) -> dict[str, Any]:
    node = crd.resource_schema()
    for part in path:
        node = node["items"] if part == "items" else node["properties"][part]
    return node


@functools.cache
def compiled(rule: str) -> celpy.Runner:
    return kubernetes_cel.program(rule)  # with Kubernetes' quantity() library


def as_the_api_server_types_it(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    return {
        key: float(v) if props.get(key, {}).get("type") == "number" else v
        for key, v in value.items()
    }


def with_defaults(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    defaults = {k: p["default"] for k, p in schema["properties"].items() if "default" in p}
    return {**defaults, **value}


def cel_accepts(value: dict[str, Any], schema: dict[str, Any]) -> bool:
    activation = {"self": celpy.json_to_cel(as_the_api_server_types_it(value, schema))}
    return all(
        bool(compiled(rule["rule"]).evaluate(activation))
        for rule in schema["x-kubernetes-validations"]
    )


def pydantic_accepts(model: type[BaseModel], value: dict[str, Any]) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


def assert_agree(model: type[BaseModel], schema: dict[str, Any], value: dict[str, Any]) -> None:
    value = {k: v for k, v in value.items() if v is not ABSENT}
    expected = pydantic_accepts(model, value)
    assert cel_accepts(value, schema) == expected, value
    assert cel_accepts(with_defaults(value, schema), schema) == expected, value


def all_rules() -> list[str]:
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        found.extend(r["rule"] for r in node.get("x-kubernetes-validations", []))
        for sub in node.get("properties", {}).values():
            walk(sub)
        if isinstance(node.get("items"), dict):
            walk(node["items"])

    walk(crd.resource_schema())
    return found


def test_every_rule_compiles() -> None:
    rules = all_rules()
    # 2 immutability + noise + 2 grounding + weights + storage endpoint + judge + 4 benchmark
    # options + the removed options map + a benchmark's data + 2 distinct benchmarks + one judge key
    # + 3 quantities (cpu not negative; memory, shmSize whole bytes within bounds) + s3 inputs
    # need the endpoint + synthetic needs a world (22)
    # + alpha-bar stays positive + 16 storage URIs' bucket rule
    # + tolerations (3, and the key's prefix) + nodeSelector's keys
    # + 2 node requirements (3 value counts and the key's prefix each)
    # + 4 pod affinity terms (3 label-key rules, topologyKey, 2 label selectors of 4 rules each
    #   (keys of matchLabels, the key's prefix, 2 value counts), matchLabelKeys, mismatchLabelKeys)
    # + the runtime image (not an image ID; its repository path's length) + 3 model locations
    # + a Succeeded run's spec frozen (at the root) + 2 data locations (data.uri, a benchmark's uri)
    assert len(rules) == 22 + 1 + 16 + 4 + 1 + 2 * 4 + 4 * (3 + 1 + 2 * 4 + 2) + 2 + 3 + 1 + 2
    for rule in rules:
        compiled(rule)


def test_immutability_is_a_transition_rule() -> None:
    (rule,) = [compiled(r["rule"]) for r in schema_at("spec", "model", "uri")["x-kubernetes-validations"] if "oldSelf" in r["rule"]]
    same = {"self": celpy.json_to_cel("s3://mdl/a"), "oldSelf": celpy.json_to_cel("s3://mdl/a")}
    moved = {"self": celpy.json_to_cel("s3://mdl/b"), "oldSelf": celpy.json_to_cel("s3://mdl/a")}
    assert bool(rule.evaluate(same)) and not bool(rule.evaluate(moved))


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ({}, True),  # 500 < 1000 by default
        ({"step": 999}, True),
        ({"step": 1000}, False),
        ({"scheduleSteps": 500}, False),
        ({"step": 0, "scheduleSteps": 1}, True),
    ],
)
def test_noise_rule_by_hand(value: dict[str, Any], accepted: bool) -> None:
    schema = schema_at("spec", "imagePreference", "noise")
    assert cel_accepts(value, schema) is accepted
    assert pydantic_accepts(api.NoiseSpec, value) is accepted


def test_noise_rule_agrees() -> None:
    schema = schema_at("spec", "imagePreference", "noise")
    steps = [ABSENT, 0, 1, 499, 500, 501, 999, 1000, 1001]
    schedule_steps = [ABSENT, 1, 2, 500, 501, 1000, 1001]
    for step, length in itertools.product(steps, schedule_steps):
        assert_agree(api.NoiseSpec, schema, {"step": step, "scheduleSteps": length})


def test_grounding_rules_agree() -> None:
    schema = schema_at("spec", "imagePreference", "grounding")
    methods = [ABSENT, *[m.value for m in api.GroundingMethod]]
    uris = [ABSENT, "s3://mfpo/models/x"]  # "" is refused by the field's minLength, CEL or not
    for method, model_uri, sam_uri in itertools.product(methods, uris, uris):
        value = {"method": method, "modelUri": model_uri, "samUri": sam_uri}
        assert_agree(api.GroundingSpec, schema, value)


def test_weights_rule_agrees() -> None:
    schema = schema_at("spec", "objective", "weights")
    weights = [ABSENT, 0, 0.0, 0.25, 1, 3.0]
    for text, image, anchor in itertools.product(weights, repeat=3):
        assert_agree(api.TermWeights, schema, {"text": text, "image": image, "anchor": anchor})


def test_storage_endpoint_rule_agrees() -> None:
    """An s3:// storage.uri needs an endpoint (no silent AWS default), at kubectl apply too."""
    schema = schema_at("spec", "storage")
    for uri, endpoint in itertools.product(
        ["s3://mfpo/runs", "file:///runs"], [ABSENT, "minio:9000", "s3.amazonaws.com"]
    ):
        assert_agree(api.StorageSpec, schema, {"uri": uri, "endpoint": endpoint})
    assert not cel_accepts({"uri": "s3://mfpo/runs"}, schema)
    assert not cel_accepts({"uri": "s3://mfpo/runs", "endpoint": ""}, schema)
    assert schema["properties"]["endpoint"]["pattern"]  # host:port, as pydantic's


def rules_hold(schema: dict[str, Any], value: Any) -> bool:
    activation = {"self": celpy.json_to_cel(value)}
    return all(bool(compiled(r["rule"]).evaluate(activation)) for r in schema["x-kubernetes-validations"])


def test_judge_rule_agrees() -> None:
    schema = schema_at("spec", "evaluation", "benchmarks", "items", "objectHalbench")
    judges = [ABSENT, "rules", "llm"]
    endpoints = [ABSENT, "http://judge:8000/v1"]
    for judge, url, model in itertools.product(judges, endpoints, [ABSENT, "judge-1"]):
        assert_agree(api.ObjectHalBenchOptions, schema, {"judge": judge, "judgeUrl": url, "judgeModel": model})


def test_options_member_rules_agree() -> None:
    schema = schema_at("spec", "evaluation", "benchmarks", "items")
    members = {"synthetic": {}, "objectHalbench": {}, "amber": {}, "pope": {}}
    for name in [b.value for b in api.BenchmarkName]:
        for member in [None, *members]:
            for legacy in [ABSENT, {}, {"splits": "random"}]:
                value = {"name": name, **({member: {}} if member else {}), "options": legacy}
                value = {k: v for k, v in value.items() if v is not ABSENT}
                assert rules_hold(schema, value) == pydantic_accepts(api.BenchmarkSpec, value), value


def test_distinct_benchmark_rules_agree() -> None:
    schema = schema_at("spec", "evaluation")
    entries = [
        {"name": "synthetic"},
        {"name": "pope", "uri": "s3://bkt/p"},
        {"name": "pope", "uri": "s3://bkt/q"},
        {"name": "pope", "uri": "s3://bkt/q", "label": "pope-q"},
        {"name": "amber", "uri": "s3://bkt/p"},
        {"name": "amber", "uri": "s3://bkt/a", "label": "pope"},
        {"name": "synthetic", "label": "pope-q"},
    ]
    for count in (1, 2, 3):
        for chosen in itertools.product(entries, repeat=count):
            value = {"benchmarks": list(chosen)}
            assert rules_hold(schema, value) == pydantic_accepts(api.EvaluationSpec, value), value


def test_pairwise_rules_are_bounded_for_the_api_servers_cost_estimate() -> None:
    # The API server estimates each rule's worst-case cost from maxItems/maxLength and refuses
    # a CRD whose rule may exceed the budget ("Validation rules cost" in Kubernetes' CRD docs):
    # all(exists_one(...)) over an unbounded list of unbounded strings would be refused.
    benchmarks = schema_at("spec", "evaluation", "benchmarks")
    assert benchmarks["maxItems"] == 16
    item = benchmarks["items"]["properties"]
    assert item["uri"]["maxLength"] == 1024 and item["label"]["maxLength"] == 40
    assert item["name"]["maxLength"] == 32  # an enum alone does not bound the estimate


@pytest.mark.parametrize("value", [0, 1, 4, -1, "4", "-1", "32Gi"])
def test_quantity_rule_agrees(value: Any) -> None:
    schema = schema_at("spec", "resources", "memory")
    pattern_ok = not isinstance(value, str) or re.fullmatch(schema["pattern"], value) is not None
    kubectl_accepts = pattern_ok and rules_hold(schema, value)
    assert kubectl_accepts == pydantic_accepts(api.ResourcesSpec, {"memory": value}), value


def test_s3_inputs_need_the_storage_endpoint_rule_agrees() -> None:
    """Every s3:// input is read through spec.storage's endpoint: without one it is refused at apply."""
    schema = schema_at("spec")
    base = {"model": {"uri": "file:///m"}, "data": {"uri": "file:///d"}, "storage": {"uri": "file:///runs"}}
    variants = [
        {},
        {"model": {"uri": "s3://bkt/m"}},
        {"data": {"uri": "s3://bkt/d"}},
        {"imagePreference": {"grounding": {"method": "clipseg", "modelUri": "s3://bkt/clipseg"}}},
        {"evaluation": {"benchmarks": [{"name": "pope", "uri": "s3://bkt/pope"}]}},
        {"evaluation": {"benchmarks": [{"name": "synthetic"}]}},
    ]
    for variant, endpoint in itertools.product(variants, [ABSENT, "minio:9000"]):
        storage = {"uri": "file:///runs", **({} if endpoint is ABSENT else {"endpoint": endpoint})}
        value = {**base, **variant, "storage": storage}
        expected = pydantic_accepts(api.MFPORunSpec, value)
        assert cel_accepts(with_defaults(value, schema), schema) == expected, value
    assert not pydantic_accepts(api.MFPORunSpec, {**base, "model": {"uri": "s3://bkt/m"}})


def test_the_synthetic_benchmark_needs_a_world_rule_agrees() -> None:
    """Without a uri the synthetic benchmark reads the run's own world: refused at apply for
    any other data format (else every stage trains, then eval fails)."""
    schema = schema_at("spec")
    base = {"model": {"uri": "file:///m"}, "storage": {"uri": "file:///runs"}}
    datas = [{"uri": "file:///d"}, {"uri": "file:///d", "format": "synthetic"}, {"uri": "file:///d", "format": "llava"}]
    evaluations = [
        ABSENT,
        {},
        {"benchmarks": [{"name": "synthetic"}]},
        {"benchmarks": [{"name": "synthetic", "uri": "file:///world"}]},
        {"benchmarks": [{"name": "pope", "uri": "file:///pope"}]},
        {"benchmarks": [{"name": "pope", "uri": "file:///pope"}, {"name": "synthetic"}]},
    ]
    for data, evaluation in itertools.product(datas, evaluations):
        value = {**base, "data": data, **({} if evaluation is ABSENT else {"evaluation": evaluation})}
        expected = pydantic_accepts(api.MFPORunSpec, value)
        assert cel_accepts(with_defaults(value, schema), schema) == expected, value
    assert not pydantic_accepts(api.MFPORunSpec, {**base, "data": {"uri": "file:///d"}})
    assert pydantic_accepts(api.MFPORunSpec, {**base, "data": datas[1]})
    with pytest.raises(ValidationError, match=r"evaluation.benchmarks\[1\]: the synthetic benchmark without a uri"):
        api.MFPORunSpec.model_validate({**base, "data": datas[0], "evaluation": evaluations[-1]})


# ------------------------------------------- core/v1 rules (mfpo_core.k8s) and their twins


def k8s_schema(model: type[BaseModel]) -> dict[str, Any]:
    return crd.openapi_schema(model)


def test_toleration_rules_agree() -> None:
    """ValidateTolerations' three cross-field rules, in CEL at kubectl apply and in pydantic."""
    schema = k8s_schema(k8s.Toleration)
    keys, operators = [ABSENT, "", "nvidia.com/gpu"], [ABSENT, "Equal", "Exists"]
    values, effects, seconds = [ABSENT, "", "true"], [ABSENT, "NoSchedule", "NoExecute"], [ABSENT, 0, 300]
    for key, operator, value, effect, wait in itertools.product(keys, operators, values, effects, seconds):
        toleration = {"key": key, "operator": operator, "value": value, "effect": effect, "tolerationSeconds": wait}
        assert_agree(k8s.Toleration, schema, toleration)
    assert not pydantic_accepts(k8s.Toleration, {"operator": "Exists", "value": "x"})


@pytest.mark.parametrize(
    ("model", "operators"),
    [
        (k8s.NodeSelectorRequirement, ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]),
        (k8s.LabelSelectorRequirement, ["In", "NotIn", "Exists", "DoesNotExist"]),
    ],
)
def test_requirement_value_counts_agree(model: type[BaseModel], operators: list[str]) -> None:
    schema = k8s_schema(model)
    for operator, values in itertools.product(operators, [ABSENT, [], ["1"], ["1", "2"]]):
        assert_agree(model, schema, {"key": "zone", "operator": operator, "values": values})


def test_pod_affinity_term_label_key_rules_agree() -> None:
    """validateMatchLabelKeysAndMismatchLabelKeys: keys need a labelSelector, a key is not in
    both lists, and a matchLabelKeys key is not in the labelSelector (the pod is refused)."""
    schema = k8s_schema(k8s.PodAffinityTerm)
    selectors = [
        ABSENT,
        {},
        {"matchLabels": {"mfpo.dev/run": "x"}},
        {"matchExpressions": [{"key": "mfpo.dev/run", "operator": "Exists"}]},
        {"matchLabels": {"team": "a"}},
    ]
    key_lists = [ABSENT, [], ["mfpo.dev/run"], ["mfpo.dev/stage"]]
    for selector, match, mismatch in itertools.product(selectors, key_lists, key_lists):
        term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": selector,
                "matchLabelKeys": match, "mismatchLabelKeys": mismatch}  # fmt: skip
        assert_agree(k8s.PodAffinityTerm, schema, term)


def test_alpha_bar_rule_agrees_around_its_bound() -> None:
    """Linear schedule: scheduleSteps * b / (1 - b) <= 700, b = max(betaStart, betaEnd)."""
    schema = schema_at("spec", "imagePreference", "noise")
    steps = [ABSENT, 1, 700, 1000, 10_000]
    betas = [ABSENT, 1e-4, 0.02, 0.0654, 0.0655, 0.41, 0.5, 0.99, 0.999]
    for schedule, length, start, end in itertools.product([ABSENT, "linear", "cosine"], steps, betas, betas):
        value = {"schedule": schedule, "scheduleSteps": length, "betaStart": start, "betaEnd": end}
        if length is not ABSENT:
            value["step"] = 0
        assert_agree(api.NoiseSpec, schema, value)
    # 10000 * b / (1 - b) <= 700 holds up to b = 0.07 / 1.07 = 0.06542...
    assert pydantic_accepts(api.NoiseSpec, {"scheduleSteps": 10_000, "betaEnd": 0.0654})
    assert not pydantic_accepts(api.NoiseSpec, {"scheduleSteps": 10_000, "betaEnd": 0.0655})
    assert pydantic_accepts(api.NoiseSpec, {"scheduleSteps": 10_000, "betaEnd": 0.0655, "schedule": "cosine"})


def test_every_new_rule_is_cheap_for_the_api_servers_cost_estimate() -> None:
    """A rule that iterates a list or a map's keys needs the list bounded, and every string
    it reads a maxLength (the API server prices a rule by the worst case around it)."""
    resources = schema_at("spec", "resources")["properties"]
    assert resources["tolerations"]["maxItems"] == k8s.MAX_TOLERATIONS
    assert resources["nodeSelector"]["maxProperties"] == k8s.MAX_LABELS
    term = k8s_schema(k8s.PodAffinityTerm)["properties"]
    for name in ("matchLabelKeys", "mismatchLabelKeys", "namespaces"):
        assert term[name]["maxItems"] <= k8s.MAX_NAMESPACES and term[name]["items"]["maxLength"] <= k8s.LABEL_KEY_MAX
    selector = k8s_schema(k8s.LabelSelector)["properties"]
    assert selector["matchExpressions"]["maxItems"] == k8s.MAX_REQUIREMENTS
    assert selector["matchLabels"]["maxProperties"] == k8s.MAX_LABELS
