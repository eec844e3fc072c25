"""validation.py: manifests rejected as kubectl would, with every problem listed by field path."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apiserver_cases
import pytest
from mfpo_core import api
from mfpo_operator.crd import resource_schema
from mfpo_operator.validation import (
    ManifestError,
    _as_stored,
    check_file,
    load_manifest,
    prune_nulls,
    validate_manifest,
)
from pydantic import ValidationError

GOOD = {
    "apiVersion": "mfpo.dev/v1alpha1",
    "kind": "MFPORun",
    "metadata": {"name": "demo"},
    "spec": {
        "model": {"uri": "file:///models/tiny"},
        "data": {"uri": "file:///data/train", "format": "synthetic"},
        "storage": {"uri": "file:///runs"},
    },
}


def changed(**changes: Any) -> dict[str, Any]:
    """GOOD with dotted-path changes, e.g. changed(**{"spec.objective.beta": -1})."""
    doc = copy.deepcopy(GOOD)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is KeyError:
            node.pop(last)
        else:
            node[last] = value
    return doc


def problems(doc: Any) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(doc)
    return caught.value.problems


def test_good_manifest_gives_the_typed_run_with_defaults() -> None:
    run = validate_manifest(GOOD)
    assert isinstance(run, api.MFPORun)
    assert run.spec.objective.beta == 0.1 and run.spec.objective.eta == 0.0
    assert run.spec.image_preference.noise.step == 500
    assert run.spec.stage_names()[-1] == "eval"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"spec.objective.beta": -1},
            "spec.objective.beta: Invalid value: -1: must be greater than 0",
        ),
        (
            {"spec.objective.beta": 11},
            "spec.objective.beta: Invalid value: 11: must be less than or equal to 10",
        ),
        (
            {"spec.objective.beta": "high"},
            'spec.objective.beta: Invalid value: "high": must be of type number',
        ),
        (
            {"spec.model.family": "gpt-4v"},
            (
                'spec.model.family: Unsupported value: "gpt-4v": '
                'supported values: "llava", "llava-next", "qwen2-vl"'
            ),
        ),
        ({"spec.data": KeyError}, "spec.data: Required value"),
        ({"spec.training.colour": "red"}, "spec.training.colour: Forbidden: unknown field"),
        (
            {"spec.storage.uri": "minio/bucket"},
            (
                'spec.storage.uri: Invalid value: "minio/bucket": must be a storage URI: s3://<bucket>/<key> '
                "(bucket: 3-63 lowercase letters, digits, '.' or '-'), file:///<absolute path> or "
                "file://./<relative path>"
            ),
        ),
        (
            {"spec.model.uri": "hf://llava-hf/llava-1.5-7b-hf"},
            (
                'spec.model.uri: Invalid value: "hf://llava-hf/llava-1.5-7b-hf": must be a storage URI: '
                "s3://<bucket>/<key> (bucket: 3-63 lowercase letters, digits, '.' or '-'), file:///<absolute path> "
                "or file://./<relative path>, or a local path without ':'"
            ),
        ),
        (
            {"spec.evaluation": {"benchmarks": [{"name": "mmhal"}]}},
            (
                'spec.evaluation.benchmarks[0].name: Unsupported value: "mmhal": '
                'supported values: "synthetic", "object-halbench", "amber", "pope"'
            ),
        ),
        (
            {"spec.evaluation": {"benchmarks": []}},
            'spec.evaluation.benchmarks: Invalid value: "array": must have at least 1 items',
        ),
        ({"metadata.name": "x" * 41}, "metadata.name: Too long: may not be more than 40 bytes"),
        (
            {"spec.imagePreference": {"noise": {"step": 1000}}},
            (
                'spec.imagePreference.noise: Invalid value: "object": '
                "imagePreference.noise.step (1000) must be below scheduleSteps (1000)"
            ),
        ),
        (
            {"spec.imagePreference": {"grounding": {"method": "clipseg"}}},
            (
                'spec.imagePreference.grounding: Invalid value: "object": '
                "grounding.modelUri is required when grounding.method is clipseg"
            ),
        ),
        (
            {"spec.objective": {"weights": {"text": 0, "image": 0, "anchor": 0}}},
            (
                'spec.objective.weights: Invalid value: "object": '
                "objective.weights: at least one of text, image, anchor must be positive"
            ),
        ),
        (
            {"spec.model.lora": {"targetModules": "(unclosed"}},
            (
                'spec.model.lora.targetModules: Invalid value: "(unclosed": '
                "targetModules is not a valid regular expression: "
                "missing ), unterminated subpattern at position 0"
            ),
        ),
    ],
)
def test_each_problem_in_kubectls_words(changes: dict[str, Any], expected: str) -> None:
    assert problems(changed(**changes)) == [expected]


def test_every_problem_is_listed_sorted_by_field() -> None:
    doc = changed(
        **{
            "spec.objective.beta": 0,
            "spec.model.family": "blip",
            "spec.storage": KeyError,
            "spec.imagePreference": {"noise": {"step": 7, "scheduleSteps": 5}},
        }
    )
    with pytest.raises(ManifestError) as caught:
        validate_manifest(doc, source="run.yaml")
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "spec.imagePreference.noise",
        "spec.model.family",
        "spec.objective.beta",
        "spec.storage",
    ]
    assert str(caught.value).startswith('run.yaml: The MFPORun "demo" is invalid:\n* spec.')


def test_a_field_reported_by_the_schema_is_not_repeated_by_pydantic() -> None:
    # beta=-1 fails both passes; unknown keys too: each is said once.
    assert len(problems(changed(**{"spec.objective.beta": -1, "spec.objective.x": 1}))) == 2


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            changed(kind="Deployment"),
            ['kind: Unsupported value: "Deployment": supported values: "MFPORun"'],
        ),
        (
            changed(apiVersion="mfpo.dev/v1"),
            ['apiVersion: Unsupported value: "mfpo.dev/v1": supported values: "mfpo.dev/v1alpha1"'],
        ),
        (["a", "list"], ['(document): Invalid value: "array": must be a mapping']),
    ],
)
def test_wrong_kind_or_version_or_shape(doc: Any, expected: list[str]) -> None:
    assert problems(doc) == expected


def test_a_live_body_from_the_api_server_validates() -> None:
    body = changed(
        metadata={
            "name": "demo",
            "namespace": "ml",
            "uid": "1f2e",
            "generation": 3,
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"mfpo.dev/retry": "1"},
        },
        status={
            "phase": "Running",
            "currentStage": "align-1",
            "kopf": {"progress": {"reconcile": {"retries": 1}}},
        },
    )
    run = validate_manifest(body)
    assert run.status is not None and run.status.phase == "Running"


# -------------------------------------------------- the schema and pydantic agree


def bound_violations(schema: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, Any]]:
    """(dotted path, a value the schema forbids) for every bounded scalar field of the spec."""
    for name, node in schema.get("properties", {}).items():
        where = f"{path}.{name}"
        if node.get("type") == "object":
            yield from bound_violations(node, where)
            continue
        step = 1 if node.get("type") == "integer" else 0.5
        if "minimum" in node:
            below = node["minimum"] if node.get("exclusiveMinimum") else node["minimum"] - step
            yield where, below
        if "maximum" in node:
            above = node["maximum"] if node.get("exclusiveMaximum") else node["maximum"] + step
            yield where, above
        if "enum" in node:
            yield where, "not-a-listed-value"
        if "pattern" in node:  # a value the pattern refuses ("no scheme" is a valid local path)
            yield where, next(v for v in ("no scheme", "https://hub.example/m") if not re.search(node["pattern"], v))


VIOLATIONS = list(bound_violations(resource_schema()["properties"]["spec"]))


def test_violations_cover_the_spec() -> None:
    assert len(VIOLATIONS) > 60


@pytest.mark.parametrize(("path", "value"), VIOLATIONS, ids=[f"{p}={v}" for p, v in VIOLATIONS])
def test_schema_and_pydantic_reject_the_same_values(path: str, value: Any) -> None:
    doc = changed(**{path: value})
    # What kubectl rejects (the CRD schema) ...
    assert [p for p in problems(doc) if p.startswith(path + ":")], path
    # ... the pydantic model, which `mfpo run` and the runtime use, rejects as well.
    with pytest.raises(ValidationError):
        api.MFPORun.model_validate(doc)


# ------------------------------------------------------------------- YAML files


def test_load_manifest(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "apiVersion: mfpo.dev/v1alpha1\nkind: MFPORun\nmetadata: {name: demo}\n"
        "spec:\n  model: {uri: file:///m}\n  data: {uri: file:///d, format: synthetic}\n  storage: {uri: file:///s}\n"
        "---\n"  # a trailing separator is not a second document
    )
    assert load_manifest(path).metadata.name == "demo"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no object; expected exactly one MFPORun"),
        ("kind: MFPORun\n---\nkind: MFPORun\n", "holds 2 MFPORuns ((document 1, no name), (document 2, no name)); `mfpo run` runs one MFPORun per file"),
        ("spec: [unclosed\n", "not valid YAML"),
        ("apiVersion: v1\nkind: ConfigMap\n", 'kind: Unsupported value: "ConfigMap"'),
        (
            "apiVersion: mfpo.dev/v1alpha1\nkind: MFPORun\nmetadata: {name: x}\nspec: {}\n",
            "spec.data: Required value",
        ),
    ],
)
def test_load_manifest_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ManifestError) as caught:
        load_manifest(missing)
    assert str(caught.value) == f"cannot read {missing}: No such file or directory"


# ------------------------------------ accepted-but-wrong manifests (refused at apply)

# resource.Quantity spellings judged by the API server's parser, ParseQuantity in
# k8s.io/apimachinery/pkg/api/resource/quantity.go: <signedNumber><suffix>, number forms
# "1", "1.5", "1.", ".5", suffixes Ki..Ei, n u m "" k M G T P E, or e/E with an integer
# exponent. Negative values parse, but Pod validation rejects negative requests
# (ValidateResourceQuantityValue: "must be greater than or equal to 0"), so the run does too.
QUANTITIES_ACCEPTED = [
    "32Gi", "500m", "1e3", "4", 4, 0, "0", "1.5", "5.", ".5", "+1", "1.G", "0.5Gi",
    "100n", "3u", "12k", "2M", "1E", "1E3", "1e-3", "1.5e+3", "1Ei", "7Pi",
]  # fmt: skip
QUANTITIES_REJECTED = [
    "32GB",  # "GB" is no suffix: the issue's case, refused only at Job create before
    "32gi", "1ki", "1K", "1KiB", "Gi", "", "1e", "1e3.5", "1.5.5", "0x10", "1 Gi", "e3",
    "-1", -1,  # parse, but Pod validation refuses negative requests
    0.5, 2.5,  # int-or-string: a JSON float is neither
    True,
]  # fmt: skip


@pytest.mark.parametrize("value", QUANTITIES_ACCEPTED, ids=repr)
def test_kubernetes_quantities_are_accepted(value: Any) -> None:
    """Every spelling of the grammar, for the CPU; memory and /dev/shm take whole bytes only
    (tests/foundation/test_byte_quantities.py)."""
    run = validate_manifest(changed(**{"spec.resources.cpu": value}))
    assert run.spec.resources.cpu == str(value)


@pytest.mark.parametrize("value", QUANTITIES_REJECTED, ids=repr)
def test_what_is_not_a_kubernetes_quantity_is_refused_naming_the_field(value: Any) -> None:
    (problem,) = problems(changed(**{"spec.resources.memory": value}))
    assert problem.startswith("spec.resources.memory: Invalid value:"), problem
    assert "must be a Kubernetes quantity (e.g. 32Gi, 500m, 1e3 or 4)" in problem
    with pytest.raises(ValidationError, match="resources.memory"):
        api.MFPORun.model_validate(changed(**{"spec.resources.memory": value}))


@pytest.mark.parametrize("name", ["", "Minio_Creds", "-minio", "minio.", "a" * 254])
def test_a_secret_name_that_names_no_secret_is_refused(name: str) -> None:
    found = problems(changed(**{"spec.storage.secretName": name}))
    assert found and all(p.startswith("spec.storage.secretName: ") for p in found), found


def test_a_dns_subdomain_secret_name_is_accepted() -> None:
    run = validate_manifest(changed(**{"spec.storage.secretName": "minio.creds-1"}))
    assert run.spec.storage.secret_name == "minio.creds-1"


def benchmarks(*entries: dict[str, Any]) -> dict[str, Any]:
    return changed(**{"spec.evaluation": {"benchmarks": list(entries)}})


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (  # the issue's case: the second silently read back the first one's result
            [{"name": "pope", "uri": "s3://bkt/pope"}, {"name": "pope", "uri": "s3://bkt/pope"}],
            "benchmarks[1] lists pope on the same data as an earlier entry",
        ),
        (  # both on the run's own synthetic world
            [{"name": "synthetic"}, {"name": "synthetic", "maxSamples": 5}],
            "benchmarks[1] lists synthetic on the same data",
        ),
        (  # same data under another label is still the same benchmark twice
            [{"name": "pope", "uri": "s3://bkt/p"}, {"name": "pope", "uri": "s3://bkt/p", "label": "again"}],
            "benchmarks[1] lists pope on the same data",
        ),
        (  # other data, but both would write results named "pope"
            [{"name": "pope", "uri": "s3://bkt/p"}, {"name": "pope", "uri": "s3://bkt/q"}],
            "benchmarks[1]: its results would be named pope like an earlier entry's",
        ),
        (
            [{"name": "amber", "uri": "s3://bkt/a"}, {"name": "pope", "uri": "s3://bkt/p", "label": "amber"}],
            "benchmarks[1]: its results would be named amber",
        ),
    ],
)
def test_the_same_benchmark_twice_is_refused(entries: list[dict[str, Any]], expected: str) -> None:
    (problem,) = problems(benchmarks(*entries))
    assert problem.startswith('spec.evaluation: Invalid value: "object": ') and expected in problem, problem


def test_an_empty_options_map_of_older_manifests_still_applies() -> None:
    # Objects stored by the previous CRD carry its default `options: {}`.
    run = validate_manifest(benchmarks({"name": "synthetic", "options": {}}))
    assert run.spec.evaluation.benchmarks[0].options.splits is None  # the world's eval splits


def test_entries_of_one_benchmark_on_other_data_with_labels_are_accepted() -> None:
    run = validate_manifest(benchmarks(
        {"name": "pope", "uri": "file:///b/pope-coco", "pope": {"splits": ["adversarial"]}},
        {"name": "pope", "uri": "file:///b/pope-gqa", "label": "pope-gqa"},
    ))  # fmt: skip
    assert [b.result_label for b in run.spec.evaluation.benchmarks] == ["pope", "pope-gqa"]
    assert [b.options.splits for b in run.spec.evaluation.benchmarks] == [
        ["adversarial"], ["random", "popular", "adversarial"]
    ]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (  # the dead key of examples/llava-1.5-7b.yaml: ignored before, POPE ran every split
            {"name": "pope", "options": {"split": "adversarial"}},
            (
                'spec.evaluation.benchmarks[0]: Invalid value: "object": options were replaced by '
                "typed options per benchmark: move them under synthetic, objectHalbench, amber or pope"
            ),
        ),
        (
            {"name": "pope", "pope": {"split": "adversarial"}},
            "spec.evaluation.benchmarks[0].pope.split: Forbidden: unknown field",
        ),
        (
            {"name": "pope", "pope": {"splits": ["hard"]}},
            (
                'spec.evaluation.benchmarks[0].pope.splits[0]: Unsupported value: "hard": '
                'supported values: "random", "popular", "adversarial"'
            ),
        ),
        (
            {"name": "pope", "uri": "s3://bkt/pope", "amber": {"queries": "q.json"}},
            (
                'spec.evaluation.benchmarks[0]: Invalid value: "object": amber options are only '
                "allowed when name is amber"
            ),
        ),
        (
            {"name": "synthetic", "synthetic": {"reliance": "false"}},
            'spec.evaluation.benchmarks[0].synthetic.reliance: Invalid value: "false": must be of type boolean',
        ),
        (
            {"name": "object-halbench", "objectHalbench": {"judge": "llm", "judgeModel": "m"}},
            "objectHalbench: judge llm needs judgeUrl and judgeModel",
        ),
    ],
)
def test_benchmark_options_are_typed_per_benchmark(entry: dict[str, Any], expected: str) -> None:
    (problem,) = problems(benchmarks(entry))
    assert expected in problem, problem


@pytest.mark.parametrize(
    "uri", ["http://user:secret@mlflow:5000", "https://token@mlflow.example", "mlflow:5000", "ftp://mlflow"]
)
def test_a_tracking_uri_with_credentials_or_no_http_scheme_is_refused(uri: str) -> None:
    doc = changed(**{"spec.tracking": {"mlflow": {"uri": uri}}})
    found = problems(doc)
    assert found and all(p.startswith("spec.tracking.mlflow.uri: ") for p in found), found
    with pytest.raises(ValidationError, match="tracking.mlflow.uri"):
        api.MFPORun.model_validate(doc)


def test_tracking_defaults_to_the_mfpo_experiment() -> None:
    run = validate_manifest(changed(**{"spec.tracking": {"mlflow": {"uri": "http://mlflow.mlflow:5000/base"}}}))
    assert run.spec.tracking.mlflow.experiment == "mfpo"
    assert run.spec.tracking.mlflow.secret_name is None
    assert validate_manifest(GOOD).spec.tracking is None


# ------------------------------------------ nulls, as the API server prunes and defaults them

LAB = json.loads(Path(__file__).with_name("apiserver_answers.json").read_text())
NULL_CASES = [name for name in apiserver_cases.OBJECT_CASES if name.startswith("null ")]


def _without_empty(value: Any) -> Any:
    """Absent, null (a nullable field kept null) and empty alike: the same run to the operator."""
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v not in ({}, [], None)}
    return value


@pytest.mark.parametrize("name", NULL_CASES)
def test_nulls_mean_what_they_mean_to_the_api_server(name: str) -> None:
    """apiextensions-apiserver prunes a null where the schema is not nullable, then defaults it
    (schema/defaulting prunenulls.go, algorithm.go): `training: ~`, `objective: {beta: null}`,
    `nodeSelector: ~` are accepted with their defaults, `tracking: ~` (nullable) stays unset, a
    null list item or required field is refused. Each case was sent to kube-apiserver v1.32.13;
    what it stored is what mfpo reads."""
    answer = LAB["objects"][name]
    doc = apiserver_cases.object_case(name)
    if "errors" in answer:
        with pytest.raises(ManifestError):
            validate_manifest(doc)
        return
    run = validate_manifest(doc)
    assert _without_empty(_as_stored(run.spec.to_wire())) == _without_empty(answer["spec"])


@pytest.mark.parametrize(
    ("case", "section"),
    [
        ("training with every field commented out", "training"),
        ("training: ~", "training"),
        ("objective: {beta: null}", "objective"),
        ("resources: {nodeSelector: }", "resources"),
    ],
)
def test_the_issues_empty_sections_are_read_as_kubectl_apply_stored_them(tmp_path: Path, case: str, section: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(apiserver_cases.KUBECTL_CASES[case])
    run = load_manifest(path)
    (stored,) = LAB["kubectl"][case]["objects"]
    assert _without_empty(_as_stored(run.spec.to_wire()))[section] == _without_empty(stored["spec"])[section]


def test_prune_nulls_follows_the_schema_not_the_value() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "object"}, "b": {"type": "string", "nullable": True}, "c": {"type": "array", "items": {"type": "object"}},
        "m": {"type": "object", "additionalProperties": {"type": "string"}},
    }}  # fmt: skip
    doc = {"a": None, "b": None, "c": [None], "m": {"k": None, "j": "x"}, "unknown": None}
    assert prune_nulls(doc, schema) == {"b": None, "c": [None], "m": {"j": "x"}, "unknown": None}


# ------------------------------------------------------- lists, as kubectl applies them

@pytest.mark.parametrize(
    ("case", "names"),
    [
        ("a v1 List of two runs", ["l1", "l2"]),
        ("an MFPORunList, an item without kind", ["r1"]),
        ("an MFPORun with items", ["i1"]),
    ],
)
def test_the_items_of_a_list_are_the_objects_kubectl_applied(tmp_path: Path, case: str, names: list[str]) -> None:
    """kubectl applies the items of any object with `items` (apimachinery's unstructured
    decoder takes it for a list; cli-runtime FlattenListVisitor), an item without kind and
    apiVersion taking the list's kind without "List": the lab created exactly these runs."""
    assert [o["name"] for o in LAB["kubectl"][case]["objects"]] == names
    check = check_file(tmp_path / "list.yaml", apiserver_cases.KUBECTL_CASES[case])
    assert [(d.kind, d.name, d.error) for d in check.documents] == [("MFPORun", n, None) for n in names]
    assert all(d.run is not None for d in check.documents)


@pytest.mark.parametrize("case", ["an empty List", "a v1 List item without kind"])
def test_lists_kubectl_refuses_are_not_passed(tmp_path: Path, case: str) -> None:
    assert LAB["kubectl"][case]["error"].startswith("error: ")
    check = check_file(tmp_path / "list.yaml", apiserver_cases.KUBECTL_CASES[case])
    assert not any(d.run for d in check.documents)
    if check.documents:
        (document,) = check.documents
        assert str(document.error).endswith("document 1 items[0]: kind: Required value (kubectl: apiVersion not set, kind not set)")


def test_mfpo_run_takes_a_list_of_one_run(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(apiserver_cases.KUBECTL_CASES["an MFPORunList, an item without kind"])
    assert load_manifest(path).metadata.name == "r1"


def test_mfpo_run_refuses_several_runs_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(apiserver_cases.KUBECTL_CASES["a v1 List of two runs"])
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert str(caught.value) == (
        f"{path}: holds 2 MFPORuns (l1, l2); `mfpo run` runs one MFPORun per file: put each in its own file"
    )


def test_an_invalid_item_of_a_list_is_named_by_its_place(tmp_path: Path) -> None:
    text = apiserver_cases.KUBECTL_CASES["a v1 List of two runs"].replace("format: synthetic}, storage: {uri: 'file:///r'}}\n- ", "format: synthetic}, storage: {uri: 'file:///r'}, objective: {beta: -1}}\n- ", 1)
    check = check_file(tmp_path / "list.yaml", text)
    first, second = check.documents
    assert second.run is not None and first.error is not None
    assert str(first.error) == (
        f'{tmp_path / "list.yaml"}: document 1 items[0]: The MFPORun "l1" is invalid:\n'
        "* spec.objective.beta: Invalid value: -1: must be greater than 0"
    )


# ------------------------------------------------- models are named by where they lie

@pytest.mark.parametrize("name", [n for n in apiserver_cases.OBJECT_CASES if n.startswith(("model.uri", "grounding.modelUri"))])
def test_a_model_is_a_storage_location_as_the_crd_on_the_api_server_says(name: str) -> None:
    """A Hugging Face id (`llava-hf/llava-1.5-7b-hf`) or any relative path where a model is named
    is refused, by the CRD on kube-apiserver v1.32.13 and by mfpo; absolute paths and URIs are not."""
    server_accepted = "errors" not in LAB["objects"][name]
    try:
        validate_manifest(apiserver_cases.object_case(name))
    except ManifestError as err:
        assert not server_accepted, err
    else:
        assert server_accepted, LAB["objects"][name]


def test_a_hub_id_is_refused_saying_how_to_get_the_model_into_storage() -> None:
    (problem,) = problems(changed(**{"spec.model.uri": "llava-hf/llava-1.5-7b-hf"}))
    assert problem.startswith('spec.model.uri: Invalid value: "llava-hf/llava-1.5-7b-hf": llava-hf/llava-1.5-7b-hf is a relative path')
    assert "hf download <id> --local-dir DIR" in problem and "docs/own-data.md#the-model" in problem


# ------------------------------------------ data and benchmarks are named by where they lie, too

DATA_LOCATIONS = [
    ("prefs/train.jsonl", False), ("./prefs/train.jsonl", False), ("openbmb/RLAIF-V-Dataset", False),
    ("/data/prefs/train.jsonl", True), ("file://./prefs/train.jsonl", True), ("file:///data/prefs", True),
    ("file:///data/s3-like/mine", True),
]  # fmt: skip  (s3:// would also need storage.endpoint: tested with model.uri)


@pytest.mark.parametrize("uri, accepted", DATA_LOCATIONS)
def test_data_and_benchmark_uris_follow_the_model_uris_location_rule(uri: str, accepted: bool) -> None:
    """Hostile-user report: `data.uri: prefs/train.jsonl` passed `mfpo validate`, then was read
    from the shell's directory (from another directory: 'does not exist'), while a relative
    model.uri was refused. pydantic and the CRD's CEL rule (model.uri's expression, whose answers
    the real kube-apiserver gave in apiserver_answers.json) agree for both fields."""
    import celpy
    import kubernetes_cel
    from mfpo_operator import crd

    spec = crd.resource_schema()["properties"]["spec"]["properties"]
    schemas = [spec["data"]["properties"]["uri"], spec["evaluation"]["properties"]["benchmarks"]["items"]["properties"]["uri"]]
    for schema in schemas:
        rules = schema["x-kubernetes-validations"]
        cel = all(bool(kubernetes_cel.program(r["rule"]).evaluate({"self": celpy.json_to_cel(uri)})) for r in rules)
        assert cel == accepted, (uri, rules)
    for doc in (changed(**{"spec.data.uri": uri}), changed(**{"spec.evaluation.benchmarks": [{"name": "pope", "uri": uri}]})):
        try:
            validate_manifest(doc)
        except ManifestError as err:
            assert not accepted, err.problems
        else:
            assert accepted, doc["spec"]


def test_a_relative_data_uri_is_refused_with_the_fix() -> None:
    (problem,) = problems(changed(**{"spec.data.uri": "prefs/train.jsonl"}))
    assert problem.startswith('spec.data.uri: Invalid value: "prefs/train.jsonl": prefs/train.jsonl is a relative path')
    assert "write file://./prefs/train.jsonl for a path next to the manifest" in problem
