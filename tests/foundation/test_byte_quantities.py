"""Memory and /dev/shm are whole bytes, within bounds, in pydantic and in the CRD alike.

Outside references:
- resource.ParseQuantity (k8s.io/apimachinery/pkg/api/resource/quantity.go, Kubernetes v1.32),
  run on 677 strings by go_reference/main.go: `k8s.parse_quantity` gives its exact value;
- kube-apiserver v1.32.13 (the lab, dry-run creates with the generated CRD installed,
  apiserver_cases.OBJECT_CASES "memory ..." / "shmSize ..."): which values its CEL rule refused;
- the Pod warning the API server gives a fractional byte value (pkg/api/pod/warnings.go:
  `fractional byte value "500m" is invalid, must be an integer`), then the kubelet's rounding up
  to 1 byte: why mfpo refuses what the API server only warns of.
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import apiserver_cases
import celpy
import go_reference
import kubernetes_cel
import pytest
from mfpo_core import api, k8s
from mfpo_operator import crd
from mfpo_operator.validation import ManifestError, validate_manifest
from pydantic import ValidationError

GO = go_reference.answers()["quantities"]
LAB = json.loads(Path(__file__).with_name("apiserver_answers.json").read_text())["objects"]


def test_the_recorded_answers_are_those_of_these_cases() -> None:
    assert set(GO) == set(go_reference.quantity_cases())


@pytest.mark.parametrize("text", go_reference.quantity_cases())
def test_parse_quantity_gives_the_value_resource_parse_quantity_gives(text: str) -> None:
    answer = GO[text]
    if "error" in answer:
        with pytest.raises(k8s.QuantityError):
            k8s.parse_quantity(text)
    else:
        assert k8s.parse_quantity(text) == Decimal(answer["value"])


def with_resources(**resources: Any) -> dict[str, Any]:
    doc = apiserver_cases.object_case("memory '32Gi'")
    doc["spec"]["resources"] = resources
    return doc


def accepted(doc: dict[str, Any]) -> bool:
    try:
        validate_manifest(doc)
    except ManifestError:
        return False
    return True


LAB_CASES = [name for name in apiserver_cases.OBJECT_CASES if name.startswith(("memory ", "shmSize "))]


@pytest.mark.parametrize("name", LAB_CASES)
def test_memory_and_shm_are_refused_where_the_api_server_refused_them(name: str) -> None:
    """The CRD's CEL rule on the real API server and mfpo's validation agree, case by case:
    512m, 1m, .5, 1e-9, 0.0001, 1n, 0 and 4 are refused; 1.5Gi, 0.5Gi and 1000000000000m (a
    billion bytes, however written) are whole bytes; 536870911.9999999999 is 512Mi to both (a
    quantity keeps nanos, rounding up)."""
    server_accepted = "errors" not in LAB[name]
    assert accepted(apiserver_cases.object_case(name)) is server_accepted, LAB[name]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("512m", "512m is 0.512 bytes (the suffix m means milli); write 512Mi"),
        ("1m", "1m is 0.001 bytes (the suffix m means milli); write 1Mi"),
        ("1.1Ki", "1.1Ki is 1126.4 bytes, not a whole number of bytes; write one, e.g. in Ki or Mi"),
        ("1e-9", "1e-9 is 0.000000001 bytes, not a whole number of bytes"),
        ("4", "4 is 4 bytes, below the minimum memory of 512Mi: a stage's libraries alone take about 390 MiB"),
        ("0", "0 is 0 bytes, below the minimum memory of 512Mi"),
        ("2Pi", "2Pi is 2251799813685248 bytes, above the maximum memory of 1Pi"),
    ],
)
def test_the_message_says_how_many_bytes_were_written_and_what_to_write(value: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(with_resources(memory=value))
    (problem,) = caught.value.problems
    assert problem.startswith(f'spec.resources.memory: Invalid value: "{value}": {message}'), problem


def test_shm_below_the_default_64_mib_is_refused_naming_why() -> None:
    with pytest.raises(ValidationError, match="63Mi is 66060288 bytes, below the minimum shmSize of 64Mi: every container gets 64 MiB"):
        api.ResourcesSpec.model_validate({"shmSize": "63Mi"})
    assert api.ResourcesSpec.model_validate({"shmSize": "64Mi"}).shm_size == "64Mi"


# ------------------------------------------------ the CRD's CEL rule, the pydantic twin's twin

SCHEMAS = {field: crd.resource_schema()["properties"]["spec"]["properties"]["resources"]["properties"][field] for field in ("memory", "shmSize")}


def cel_accepts(field: str, value: Any) -> bool:
    schema = SCHEMAS[field]
    if isinstance(value, str) and not re.fullmatch(schema["pattern"], value):
        return False  # the pattern refuses it before any rule
    (rule,) = schema["x-kubernetes-validations"]
    try:
        return bool(kubernetes_cel.program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}))
    except celpy.CELEvalError:
        return False  # the API server reports a rule that fails to evaluate as an error


def pydantic_accepts(field: str, value: Any) -> bool:
    try:
        api.ResourcesSpec.model_validate({field: value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("field", ["memory", "shmSize"])
def test_the_cel_rule_and_pydantic_agree_on_every_quantity(field: str) -> None:
    """Every string of the quantity cases (and integers around the bounds) as memory and as
    shmSize: the CRD's rule, evaluated with Kubernetes' quantity library (kubernetes_cel), and
    pydantic give one verdict. The rule's integer-part trick is exact below 2^53 bytes."""
    rng = random.Random(7)  # sizes a user writes, fractions of every length, across the bounds
    written = [f"{rng.randint(0, 4096)}.{rng.randint(0, 10**rng.randint(1, 12))}{rng.choice(['Ki', 'Mi', 'Gi', 'Ti', 'k', 'M', 'G', 'T', 'm', 'e9', 'e12'])}" for _ in range(400)]
    values: list[Any] = [*go_reference.quantity_cases(), *written, 0, 4, 67108863, 67108864, 536870911,
                         536870912, 2**50, 2**50 + 1, "1Pi", "1125899906842624", "1125899906842625"]  # fmt: skip
    disagree = [v for v in values if cel_accepts(field, v) != pydantic_accepts(field, v)]
    assert disagree == []
    assert sum(pydantic_accepts(field, v) for v in values) > 100  # the bounds leave plenty accepted
    assert sum(not pydantic_accepts(field, v) for v in written) > 150  # and fractions are refused


def test_the_minimum_memory_is_what_a_stage_needs_to_start() -> None:
    """The documented measurement behind MEMORY_MIN (api.py): importing every stage's libraries
    peaks at 390 MiB resident; 512Mi is the next power-of-two-ish bound above it."""
    assert k8s.parse_quantity(api.MEMORY_MIN) == 512 * 2**20 > 390 * 2**20
    assert k8s.parse_quantity(api.SHM_MIN) == 64 * 2**20
    schema = SCHEMAS["memory"]
    assert "from 512Mi to 1Pi" in schema["x-kubernetes-validations"][0]["message"]
    assert "from 512Mi to 1Pi" in api.ResourcesSpec.model_fields["memory"].description
