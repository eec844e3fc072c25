"""Read YAML the way `kubectl apply -f` does, so that `mfpo run` and the cluster see one value.

kubectl turns a YAML file into JSON with sigs.k8s.io/yaml's `YAMLToJSON`, which unmarshals with
go-yaml v2 (sigs.k8s.io/yaml/yaml.go, goyaml.v2/resolve.go) and marshals the result with Go's
encoding/json; the API server then reads JSON numbers as int64 when they parse as one, else as
float64 (k8s.io/apimachinery/pkg/util/json). PyYAML follows YAML 1.1 instead, where `2e-4` is a
string and `010` a decimal. No Python library implements go-yaml v2's resolver (ruamel.yaml's
YAML 1.2 core schema differs: no `yes`/`on` booleans, no `_` in numbers, `010` is decimal), so
`go_resolve` transcribes it; PyYAML still does the parsing (structure, quoting, anchors).

A key written twice in one mapping is read as kubectl reads it (go-yaml v2 keeps the last value,
silently: checked against kube-apiserver v1.32 with `kubectl apply` and `kubectl apply
--server-side`), and reported as a `DuplicateKey` naming both lines, so that `mfpo run` and
`mfpo validate` can warn.

Called by `validation.load_manifest`. Pure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

# go-yaml v2 resolve.go: resolveMapList, looked up before any number parsing.
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
# resolve.go's yamlStyleFloat, tried after the integer parses.
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's strconv.ParseInt(s, 0, 64): an optional sign, then 0x / 0o / 0b / a leading 0 (octal).
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
# Go's strconv.ParseFloat after a leading '.': decimal digits, an optional exponent.
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1
_GO_TAG = "tag:mfpo.dev,2024:go-yaml-v2-plain"


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), then ParseUint: None where Go fails."""
    match = _GO_INT.fullmatch(text)
    if not match:
        return None
    sign, digits = match.groups()
    body = digits.lower()
    if body.startswith(("0x", "0o", "0b")):
        value = int(body[2:], {"x": 16, "o": 8, "b": 2}[body[1]])
    else:
        value = int(body, 8) if body.startswith("0") else int(body)  # a leading 0: octal
    value = -value if sign == "-" else value
    return value if _INT64[0] <= value <= _UINT64_MAX else None


def go_resolve(text: str) -> Any:
    """The value go-yaml v2 gives a plain (unquoted, untagged) scalar, as resolve.go does it."""
    if text in _WORDS:
        return _WORDS[text]
    first = text[:1]
    if first == ".":
        return float(text) if _DOT_FLOAT.fullmatch(text) else text
    if not (first.isdigit() and first.isascii()) and first not in "+-":
        return text
    # go-yaml tries a timestamp (YYYY-M-D...) first; it stays the string written here,
    # where Go would re-format it as RFC 3339 (no manifest field holds a timestamp).
    plain = text.replace("_", "")
    as_int = _go_int(plain)
    if as_int is not None:
        return as_int
    if _YAML_STYLE_FLOAT.fullmatch(plain) and math.isfinite(float(plain)):
        return float(plain)  # Go's ParseFloat fails on overflow (1e400): then a string
    return text


def as_api_server_reads(value: Any, where: str = "") -> Any:
    """A go-yaml value after encoding/json and the API server's number decoding: map keys
    become strings (convertToJSONableObject), integral floats that fit int64 become ints
    (Go writes 1e3 as `1000`), NaN and infinities are errors (json: unsupported value)."""
    if isinstance(value, dict):
        keys = [_json_key(k, where) for k in value]
        return {
            key: as_api_server_reads(v, f"{where}.{key}" if where else key)
            for key, v in zip(keys, value.values())
        }
    if isinstance(value, list):
        return [as_api_server_reads(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(
                f"{where or '(document)'}: Invalid value: {value}: not a JSON number (kubectl refuses it)"
            )
        if value.is_integer() and abs(value) < 1e21 and _INT64[0] <= value <= _INT64[1]:
            return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > _INT64[1]:
        return float(value)  # a uint64 beyond int64: the API server reads it as float64
    return value


def _json_key(key: Any, where: str) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (str, int)):
        return str(key)
    raise ValueError(f"{where or '(document)'}: unsupported map key {key!r} (kubectl refuses it)")


class _GoYamlLoader(yaml.SafeLoader):
    """PyYAML's parser with go-yaml v2's resolution of plain scalars."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            if value == "<<":
                return "tag:yaml.org,2002:merge"
            return _GO_TAG
        return super().resolve(kind, value, implicit)


_GoYamlLoader.add_constructor(_GO_TAG, lambda loader, node: go_resolve(loader.construct_scalar(node)))


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping: kubectl silently keeps the value of the later one."""

    path: str  # the mapping's field path, e.g. spec.objective ("" for the document itself)
    key: str  # the key as the API server sees it (a JSON object key)
    first_line: int  # 1-based
    line: int  # the later occurrence, whose value wins
    # Written as different YAML values that become one JSON key (`1` and `"1"`): go-yaml keeps
    # both, then Go's map order decides which one kubectl sends.
    either_wins: bool = False

    def __str__(self) -> str:
        where = f"{self.path}.{self.key}" if self.path else self.key
        kept = (
            "kubectl keeps one of the two values, which one is not defined"
            if self.either_wins
            else f"kubectl keeps only the value on line {self.line}, silently"
        )
        return (
            f"line {self.line}: {where}: the key {self.key!r} is written twice in one mapping "
            f"(lines {self.first_line} and {self.line}); {kept}"
        )


def _key_of(node: yaml.Node) -> tuple[Any, str] | None:
    """The value go-yaml gives a YAML key node and the JSON object key it becomes (as
    `as_api_server_reads` makes it), or None for a key kubectl refuses anyway (a collection)."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    value = go_resolve(node.value) if node.tag == _GO_TAG else node.value
    try:
        return value, _json_key(value, "")
    except ValueError:
        return None


def _duplicate_keys(node: yaml.Node, path: str, seen: set[int]) -> list[DuplicateKey]:
    """Every key written twice in a mapping of the node tree. Merged keys (`<<: *anchor`) are
    not duplicates: a key written in the mapping overrides them, as YAML means it to."""
    if id(node) in seen:  # an alias: its nodes were checked where the anchor was written
        return []
    seen.add(id(node))
    found: list[DuplicateKey] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, tuple[Any, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            resolved = _key_of(key_node)
            if resolved is None:
                continue
            value, key = resolved
            line = key_node.start_mark.line + 1
            if key in first:
                earlier, first_line = first[key]
                either = type(earlier) is not type(value) or earlier != value
                found.append(DuplicateKey(path, key, first_line, line, either_wins=either))
            first[key] = (value, line)
            found += _duplicate_keys(value_node, f"{path}.{key}" if path else key, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _duplicate_keys(item, f"{path}[{index}]", seen)
    return found


def load_all_checked(text: str) -> tuple[list[Any], list[DuplicateKey]]:
    """Every document of a YAML stream, valued as kubectl would send it (empty ones dropped),
    and every key written twice in one mapping (in the order of the file)."""
    loader = _GoYamlLoader(text)
    documents: list[Any] = []
    duplicates: list[DuplicateKey] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            duplicates += _duplicate_keys(node, "", set())
            document = loader.construct_document(node)
            if document is not None:
                documents.append(as_api_server_reads(document))
    finally:
        loader.dispose()
    return documents, duplicates


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream, valued as kubectl would send it (empty ones dropped)."""
    return load_all_checked(text)[0]
