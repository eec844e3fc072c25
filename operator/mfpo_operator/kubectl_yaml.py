"""Read YAML the way `kubectl apply -f` does, so that `mfpo run` and the cluster see one value.

kubectl turns a YAML file into JSON with sigs.k8s.io/yaml's `YAMLToJSON`, which unmarshals with
go-yaml v2 (sigs.k8s.io/yaml/yaml.go, goyaml.v2/resolve.go) and marshals the result with Go's
encoding/json; the API server then reads JSON numbers as int64 when they parse as one, else as
float64 (k8s.io/apimachinery/pkg/util/json). PyYAML follows YAML 1.1 instead, where `2e-4` is a
string and `010` a decimal. No Python library implements go-yaml v2's resolver (ruamel.yaml's
YAML 1.2 core schema differs: no `yes`/`on` booleans, no `_` in numbers, `010` is decimal), so
`go_resolve` transcribes it; PyYAML still does the parsing (structure, quoting, anchors).

Called by `validation.load_manifest`. Pure.
"""

from __future__ import annotations

import math
import re
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


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream, valued as kubectl would send it (empty ones dropped)."""
    documents = [d for d in yaml.load_all(text, Loader=_GoYamlLoader) if d is not None]
    return [as_api_server_reads(d) for d in documents]
