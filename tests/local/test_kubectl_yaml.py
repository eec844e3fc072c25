"""Manifests read as kubectl reads them.

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

from pathlib import Path

import pytest
from mfpo_operator.kubectl_yaml import DuplicateKey, load_all, load_all_checked
from mfpo_operator.validation import ManifestError, load_manifest, read_manifest

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


QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"


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
