"""Manifests read as kubectl reads them.

Held to kubectl's own Go code (go_reference: 539 files through apimachinery's util/yaml and
sigs.k8s.io/yaml, Kubernetes v1.32's vendored copies) and to what kubectl v1.31 applied on
kube-apiserver v1.32.13 (apiserver_answers.json, "kubectl": merge keys, tags, separators).

kubectl converts YAML to JSON with sigs.k8s.io/yaml `YAMLToJSON` (yaml.go), which unmarshals
with go-yaml v2 and resolves each plain scalar in goyaml.v2/resolve.go `resolve()`:
  - a fixed map first: y/yes/true/on... -> true, n/no/false/off... -> false, ""/~/null -> null,
    .nan/.inf/-.inf;
  - a scalar starting with '.': strconv.ParseFloat;
  - one starting with a digit or a sign: underscores removed, then strconv.ParseInt(s, 0, 64)
    (0x, 0o, 0b prefixes; a leading 0 means octal), then ParseUint, then the yamlStyleFloat
    regexp `^[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?$` with ParseFloat;
  - anything else, and every quoted scalar, is a string.
The JSON is then written by Go's encoding/json (float64 1000 is written `1000`; NaN/Inf are
"json: unsupported value") and the API server reads a number that parses as int64 as an int.
"""

import json
import time
from pathlib import Path
from typing import Any

import apiserver_cases
import go_reference
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mfpo_operator import kubectl_yaml
from mfpo_operator.kubectl_yaml import (
    DuplicateKey,
    KubectlYamlError,
    MergeOverride,
    as_api_server_reads,
    load_all,
    load_all_checked,
)
from mfpo_operator.validation import ManifestError, check_file, load_manifest, read_manifest

# (as written, as the API server receives it from kubectl)
SPELLINGS = [
    ("2e-4", 0.0002),  # yamlStyleFloat: no dot needed (YAML 1.1 / PyYAML: a string)
    ("2E-4", 0.0002),
    ("2.0e-4", 0.0002),
    ("1e3", 1000),  # float64 1000, written `1000` by encoding/json: an int for the server
    ("1.5", 1.5),
    (".5", 0.5),  # the '.' hint: ParseFloat
    ("+.5", 0.5),
    ("-.5", -0.5),
    ("1.", 1),
    ("+1", 1),  # ParseInt accepts a sign
    ("-1", -1),
    ("-0.0", 0),  # -0 is written `-0`, which ParseInt reads as 0
    ("1_000", 1000),  # underscores removed before ParseInt
    ("1_0.5", 10.5),  # ... and before the float regexp
    ("0x1F", 31),  # base 0: hexadecimal
    ("0X1f", 31),
    ("0o17", 15),
    ("0b101", 5),
    ("-0b11", -3),
    ("010", 8),  # base 0: a leading zero is octal (YAML 1.2 core reads 10)
    ("08", 8),  # not octal: the float regexp takes it
    ("9223372036854775807", 2**63 - 1),
    ("18446744073709551615", float(2**64 - 1)),  # uint64 beyond int64: float64 on the server
    ("yes", True),
    ("on", True),
    ("N", False),
    ("off", False),
    ("~", None),
    ("null", None),
    ("1e400", "1e400"),  # ParseFloat overflows: go-yaml keeps the string
    (".5_0", ".5_0"),  # ParseFloat allows '_' only after a base prefix
    ("0x", "0x"),
    ("1e", "1e"),
    ("'2e-4'", "2e-4"),  # quoted: always a string
    ('"1e3"', "1e3"),
    ("!!str 10", "10"),
]


@pytest.mark.parametrize(("written", "expected"), SPELLINGS)
def test_scalars_resolve_as_kubectl_sends_them(written, expected):
    (doc,) = load_all(f"value: {written}\n")
    assert doc["value"] == expected
    assert type(doc["value"]) is type(expected)


@pytest.mark.parametrize("written", [".inf", "-.Inf", ".nan"])
def test_non_finite_numbers_are_refused_like_kubectl(written):
    # encoding/json cannot write them: YAMLToJSON fails ("json: unsupported value: +Inf").
    with pytest.raises(ValueError, match=r"spec\.beta: .*not a JSON number"):
        load_all(f"spec:\n  beta: {written}\n")


def test_keys_become_json_strings_and_merge_keys_work():
    (doc,) = load_all("on: 1\n10: x\nbase: &b {k: 1}\nother:\n  <<: *b\n  m: 2\n")
    assert doc == {"true": 1, "10": "x", "base": {"k": 1}, "other": {"k": 1, "m": 2}}


QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"  # tests/foundation/..


@pytest.mark.parametrize("spelling", ["2e-4", "2E-4", ".0002", "2_0e-5"])
def test_an_unquoted_exponent_learning_rate_is_a_number(tmp_path, spelling):
    text = QUICKSTART.read_text().replace("learningRate: 2.0e-4", f"learningRate: {spelling}")
    assert f"learningRate: {spelling}" in text
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert load_manifest(path).spec.training.learning_rate == pytest.approx(2e-4)


def test_an_integer_field_written_with_an_exponent_is_an_integer(tmp_path):
    # The API server receives `1000` for `1e3`, a valid integer for the CRD.
    text = QUICKSTART.read_text().replace("checkpointEverySteps: 50", "checkpointEverySteps: 1e2")
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert load_manifest(path).spec.training.checkpoint_every_steps == 100


def test_an_infinite_beta_names_the_field(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(QUICKSTART.read_text().replace("beta: 0.1", "beta: .inf"))
    with pytest.raises(ManifestError, match=r"spec\.objective\.beta: .*not a JSON number"):
        load_manifest(path)


# -------------------------------------------------------- a key written twice in one mapping

TWICE = """\
apiVersion: mfpo.dev/v1alpha1
kind: MFPORun
metadata:
  name: twice
spec:
  model: {uri: "file:///models/tiny"}
  data: {uri: "file:///data/train", format: synthetic}
  storage: {uri: "file:///runs"}
  objective:
    beta: 0.5
    eta: 0
    beta: 0.2
"""


def test_a_key_written_twice_keeps_the_last_value_and_is_reported_with_both_lines(tmp_path):
    """kubectl v1.31.9 against kube-apiserver v1.32.13 (the lab): `kubectl apply -f`, with
    --validate=strict too, and `kubectl apply --server-side` stored beta 0.2 and said nothing."""
    (doc,), duplicates = load_all_checked(TWICE)
    assert doc["spec"]["objective"] == {"beta": 0.2, "eta": 0}
    assert duplicates == [DuplicateKey("spec.objective", "beta", 10, 12)]
    assert str(duplicates[0]) == (
        "line 12: spec.objective.beta: the key 'beta' is written twice in one mapping (lines 10 and 12); "
        "kubectl keeps only the value on line 12, silently"
    )
    path = tmp_path / "twice.yaml"
    path.write_text(TWICE)
    run, warnings = read_manifest(path)
    assert run.spec.objective.beta == 0.2
    assert warnings == [f"{path}: {duplicates[0]}"]


def test_duplicates_are_found_in_lists_documents_and_flow_mappings_and_merges_are_not_duplicates():
    text = (
        "a: {x: 1, x: 2}\n"
        "list:\n- {name: n, name: m}\n"
        "base: &b {p: 1}\n"
        "merged:\n  <<: *b\n  p: 2\n"  # an explicit key overrides a merged one: no mistake
        "---\n"
        "kind: Second\nkind: Third\n"
    )
    documents, duplicates = load_all_checked(text)
    assert documents[0]["merged"] == {"p": 2} and documents[1] == {"kind": "Third"}
    assert [(d.path, d.key, d.first_line, d.line) for d in duplicates] == [
        ("a", "x", 1, 1), ("list[0]", "name", 3, 3), ("", "kind", 9, 10),
    ]  # fmt: skip


def test_keys_that_become_one_json_key_are_duplicates_whose_winner_kubectl_does_not_define():
    """go-yaml keeps 1 and "1" apart; Go's map order then picks the one kubectl sends: on the
    lab, a ConfigMap with data `1: "int key"` and `"1": "string key"` came back with either
    value over 12 dry runs (3 and 9 times). `yes` and `true` are one boolean: the last wins."""
    _, duplicates = load_all_checked('1: a\n"1": b\ntrue: c\nyes: d\n')
    assert [(d.key, d.either_wins) for d in duplicates] == [("1", True), ("true", False)]
    assert "kubectl keeps one of the two values, which one is not defined" in str(duplicates[0])


# ------------------------------------- every case, against kubectl's own Go code and the lab


def _as_the_server_reads(raw: Any) -> Any:
    """A JSON document kubectl sends, as the API server decodes it (int64 where it parses)."""

    def number(text: str) -> Any:
        value = int(text)
        return value if -(2**63) <= value < 2**63 else float(text)

    return as_api_server_reads(json.loads(json.dumps(raw), parse_int=number))


def _same(a: Any, b: Any) -> bool:
    """Equal, with the types JSON distinguishes (1 is not 1.0 nor true)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


GO = go_reference.answers()


def test_the_recorded_answers_are_those_of_these_cases() -> None:
    assert set(GO["yaml"]) == set(go_reference.yaml_cases())
    assert len(go_reference.YAML_HAND_WRITTEN) > 130 and len(GO["yaml"]) > 500


@pytest.mark.parametrize("text", go_reference.yaml_cases(), ids=lambda t: repr(t)[:60])
def test_every_file_reads_as_kubectls_go_code_reads_it(text: str) -> None:
    """What apimachinery's util/yaml and sigs.k8s.io/yaml (go-yaml v2's fork) made of each file
    (go_reference/main.go, Kubernetes v1.32's vendored code): the same documents, or a refusal.
    The 400 random documents mix merge keys, anchors, aliases, tags and odd scalars."""
    answer = GO["yaml"][text]
    if "error" in answer:
        with pytest.raises(ValueError):  # KubectlYamlError: a clean error naming the line
            load_all(text)
        return
    expected = [_as_the_server_reads(doc) for doc in answer["documents"]]
    if text == '{"a": "\\ud800"}':  # kubectl sends the bytes; the server's decoder makes U+FFFD
        expected = [{"a": "\ufffd"}]
    assert _same(load_all(text), expected), (load_all(text), expected)


LAB = json.loads((Path(__file__).with_name("apiserver_answers.json")).read_text())["kubectl"]


@pytest.mark.parametrize(
    ("case", "field", "expected"),
    [
        # decode.go mapping(): a merge writes into the mapping where it stands; a later explicit
        # key overrides it, a later merge overrides an explicit key (YAML's merge spec would not).
        ("merge after an explicit key", "epochs", 7),
        ("merge before an explicit key", "epochs", 3),
        # decode.go merge(): a sequence is merged from its end, so the first mapping wins.
        ("a list of merges", "epochs", 2),
        ("a list of merges and a key", ("epochs", "seed", "batchSize"), (2, 4, 2)),
        ("a nested merge", ("epochs", "seed"), (2, 4)),
    ],
)
def test_merge_keys_are_read_as_kubectl_read_them_on_the_lab(case, field, expected) -> None:
    """`kubectl apply --dry-run=server` of each file on kube-apiserver v1.32.13 (apiserver_cases
    KUBECTL_CASES, recorded): the stored spec.training, and mfpo's reading of the same file."""
    (stored,) = LAB[case]["objects"]
    (doc,) = load_all(apiserver_cases.KUBECTL_CASES[case])
    fields = field if isinstance(field, tuple) else (field,)
    values = expected if isinstance(expected, tuple) else (expected,)
    for name, value in zip(fields, values):
        assert stored["spec"]["training"][name] == value  # the lab's
        assert doc["spec"]["training"][name] == value  # ours


def test_an_alias_merged_then_overridden_is_read_as_kubectl_read_it() -> None:
    (stored,) = LAB["an alias merged, then a key"]["objects"]
    (doc,) = load_all(apiserver_cases.KUBECTL_CASES["an alias merged, then a key"])
    assert stored["annotations"] == doc["metadata"]["annotations"] == {"team": "b", "tier": "x"}


@pytest.mark.parametrize("case", ["a merge of a number", "a merge of an alias of a list"])
def test_a_merge_of_what_is_not_a_mapping_is_refused_as_kubectl_refused_it(case) -> None:
    assert "map merge requires map or sequence of maps as the value" in LAB[case]["error"]
    with pytest.raises(KubectlYamlError, match=r"^line (9|10): map merge requires map or sequence of maps as the value"):
        load_all(apiserver_cases.KUBECTL_CASES[case])


@pytest.mark.parametrize(
    ("case", "value"),
    [("!!binary", "abc"), ("!!binary of a byte that is not UTF-8", "\ufffd"), ("a tag kubectl ignores", "bar")],
)
def test_tags_are_read_as_kubectl_read_them_on_the_lab(case, value) -> None:
    """go-yaml base64-decodes !!binary into a string (decode.go scalar()), which encoding/json
    writes with U+FFFD for a byte that is not UTF-8; any other tag it does not know is ignored."""
    (stored,) = LAB[case]["objects"]
    (doc,) = load_all(apiserver_cases.KUBECTL_CASES[case])
    assert stored["annotations"]["rack"] == doc["metadata"]["annotations"]["rack"] == value


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("a separator followed by content", "line 1: invalid Yaml document separator: apiVersion: mfpo.dev/v1alpha1"),
        ("a flow mapping first", "not valid JSON (the file starts with '{', so kubectl reads it as JSON)"),
    ],
)
def test_files_kubectl_cannot_read_are_refused(case, message) -> None:
    assert LAB[case]["error"].startswith("error: error parsing STDIN")
    with pytest.raises(KubectlYamlError) as caught:
        load_all(apiserver_cases.KUBECTL_CASES[case])
    assert str(caught.value).startswith(message)


# ------------------------------------------------------- a merge key over a key: a warning

def test_a_merge_that_replaces_an_explicit_key_is_a_warning_naming_both_lines() -> None:
    text = "training:\n  epochs: 3\n  <<: {epochs: 7, seed: 1}\n"
    (doc,), warnings = load_all_checked(text)
    assert doc == {"training": {"epochs": 7, "seed": 1}}  # kubectl's value
    assert warnings == [MergeOverride("training", "epochs", 2, 3)]
    assert str(warnings[0]) == (
        "line 3: training.epochs: the merge key '<<' on line 3 replaces the value of 'epochs' set on line 2; "
        "kubectl keeps the merged value (YAML's merge rule would keep the one written in the mapping): "
        "move the '<<' first"
    )


@pytest.mark.parametrize(
    "text",
    [
        "t: {<<: {a: 1}, a: 2}",  # the intended use: the mapping's own key after the merge
        "t: {<<: [{a: 1}, {a: 2}]}",  # within a list of merges the first wins, as YAML means it
        "b: &b {a: 1}\nt: {<<: *b, a: 2}",
        "t: {<<: {a: 1}, <<: {b: 2}}",  # two merges of different keys
    ],
)
def test_merges_that_mean_what_yaml_means_are_not_warned_of(text) -> None:
    assert load_all_checked(text)[1] == []


def test_a_later_merge_over_an_earlier_one_is_a_warning_too() -> None:
    _, warnings = load_all_checked("t:\n  <<: {a: 1}\n  <<: {a: 2}\n")
    assert warnings == [MergeOverride("t", "a", 2, 3, by_merge=True)]
    assert "set on the merge on line 2" in str(warnings[0])


def test_warnings_inside_an_anchor_used_twice_are_said_once() -> None:
    text = "b: &b {x: 1, x: 2}\nc: {<<: *b}\nd: {<<: *b}\n"
    _, warnings = load_all_checked(text)
    assert [(w.key, w.first_line, w.line) for w in warnings] == [("x", 1, 1)]


# ------------------------------------------------------------------- clean refusals only

def test_a_billion_laughs_is_refused_as_go_yaml_refuses_it() -> None:
    """decode.go allowedAliasRatio: a document mostly made of alias expansions is refused
    ("document contains excessive aliasing") before it is built."""
    lol = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    lol += "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]\n" for i in range(8))
    started = time.monotonic()
    with pytest.raises(KubectlYamlError, match="document contains excessive aliasing"):
        load_all(lol)
    assert time.monotonic() - started < 10


def test_an_anchor_inside_itself_is_refused() -> None:
    with pytest.raises(KubectlYamlError, match="anchor 'a' value contains itself"):
        load_all("a: &a [1, *a]\n")


@pytest.mark.parametrize("depth", [kubectl_yaml.MAX_DEPTH + 1, 5000])
def test_deep_nesting_is_a_clean_refusal(depth) -> None:
    # Beyond MAX_DEPTH the decoder refuses; beyond 1000 flow levels libyaml's parser already does.
    with pytest.raises(KubectlYamlError, match=f"nested more than {kubectl_yaml.MAX_DEPTH} levels deep|exceeded maximum nesting depth"):
        load_all("a: " + "[" * depth + "]" * depth)
    with pytest.raises(KubectlYamlError, match="nested more than"):
        load_all("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, min(300, depth))) + "  " * 300 + "x: 1\n")


def test_nesting_within_the_limit_reads() -> None:
    depth = kubectl_yaml.MAX_DEPTH - 1
    (doc,) = load_all("a: " + "[" * depth + "]" * depth)
    for _ in range(depth - 1):
        doc = doc["a"] if isinstance(doc, dict) else doc[0]


_PIECES = st.sampled_from([
    "a", "b", "<<", "&x", "*x", "&y", "*y", "!!binary", "!!int", "!!str", "!!null", "!!float", "!!bool",
    "!!timestamp", "!foo", "!", "!!merge", "~", "null", "yes", "1e3", "0x1F", "-0b1", ".inf", ".nan",
    "18446744073709551615", "9223372036854775808", "YWJj", "/w==", "{", "}", "[", "]", ",", ":", ": ", "- ",
    "? ", "\n", "\n  ", "\n    ", "'", '"', "#", "---", "...", "%YAML 1.1", "\t", " ", "|", ">", "\\x00",
    "2024-02-30", "1.5", "1_0", "\ud7ff", "\u2028", "\x85",
])  # fmt: skip


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_no_yaml_input_gives_anything_but_documents_or_a_clean_error(text) -> None:
    """Tags, anchors, aliases, merges, odd keys and scalars in any order: kubectl_yaml either
    reads the file or refuses it with KubectlYamlError (a ValueError naming what kubectl would
    say); `mfpo validate`'s reader turns that into one line naming the file."""
    try:
        load_all_checked(text)
    except KubectlYamlError:
        pass
    check = check_file("odd.yaml", text)
    if check.error is not None:
        assert str(check.error).startswith("odd.yaml: ")
    for document in check.documents:
        assert document.run is not None or document.error is not None or document.kind != "MFPORun"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
))
def test_any_value_under_spec_gives_a_clean_verdict(value) -> None:
    """Whatever a manifest holds (huge ints, NaN, nested lists under known fields), validation
    ends in a run or a ManifestError listing problems: never a traceback."""
    doc = {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "fuzz"},
           "spec": {"model": {"uri": "file:///m"}, "data": {"uri": "file:///d", "format": "synthetic"},
                    "storage": {"uri": "file:///r"}, "training": {"epochs": value}, "resources": {"memory": value}}}  # fmt: skip
    text = json.dumps(doc, allow_nan=True)
    check = check_file("fuzz.json", text)
    assert check.error is not None or all(d.run is not None or d.error is not None for d in check.documents)
