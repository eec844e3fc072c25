"""Read a manifest file the way `kubectl apply -f` does, so that `mfpo` and the cluster see one value.

kubectl (cli-runtime resource/visitor.go StreamVisitor) reads a file through apimachinery's
util/yaml `YAMLOrJSONDecoder`: a file whose first non-blank character is `{` is a stream of
JSON values; any other is cut into documents at lines that start with `---` (`YAMLReader`: text
after the `---` other than a comment is an error) and each document becomes JSON through
sigs.k8s.io/yaml `YAMLToJSON`, which unmarshals the document's first YAML document with go-yaml
v2 (sigs.k8s.io/yaml/goyaml.v2, a fork of gopkg.in/yaml.v2) into interface{} and marshals it
with Go's encoding/json after `convertToJSONableObject` has made every map key a string. The
API server then reads a JSON number as int64 when it parses as one, else as float64
(k8s.io/apimachinery/pkg/util/json). Empty and `null` documents are skipped.

go-yaml differs from every Python YAML library, so its decoder is transcribed here (the vendored
copy of Kubernetes v1.32: goyaml.v2/decode.go, resolve.go) over the events of libyaml's parser,
which go-yaml's own parser is a port of (PyYAML's binding; its pure-Python parser when libyaml is
missing):

- plain scalars resolve by resolve.go (`y`/`on` are booleans, `2e-4` is a number, `010` octal,
  `1_000` a thousand); a tag (`!!int "3"`) resolves the text under that tag or is an error;
  `!!binary` is base64-decoded into a string (its invalid UTF-8 bytes each become U+FFFD, as
  encoding/json writes them); any other tag is ignored (`!foo bar` is the string "bar");
- a merge key `<<` takes a mapping, an alias of one, or a sequence of those (anything else is
  refused: "map merge requires map or sequence of maps as the value"); merging writes into the
  mapping being built, in the order the keys are written, so a merge *after* an explicit key
  replaces it (`{a: 1, <<: {a: 2}}` is `{a: 2}`, where the YAML merge specification keeps 1),
  and within a sequence of merges the earlier mapping wins (merged last);
- an alias is decoded again at each use; an anchor that contains itself, and a document whose
  decoding is mostly alias expansion (go-yaml's `allowedAliasRatio`: the "billion laughs"), are
  refused;
- map keys become JSON strings: integers in decimal, booleans `true`/`false`, floats as
  strconv.FormatFloat(f, 'g', -1, 32); a null key, a uint64 key and a mapping or sequence as a key
  are refused; keys that are different YAML values but one JSON string (`1` and `"1"`) leave
  which value kubectl sends to Go's map order.

What is read but likely a mistake comes back as warnings: a key written twice in one mapping
(`DuplicateKey`: go-yaml keeps the later value silently, checked against kube-apiserver v1.32 with
`kubectl apply` and `kubectl apply --server-side`) and a merge key that replaces a key written
before it in the same mapping (`MergeOverride`).

A document nested deeper than `MAX_DEPTH` levels is refused (go-yaml reads 10,000; no Kubernetes
object needs a hundred). Every failure is a `KubectlYamlError` naming the line.

Called by `validation` (`mfpo run`, `mfpo validate`). Pure.
"""

from __future__ import annotations

import binascii
import codecs
import json
import math
import re
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

MAX_DEPTH = 100  # levels of mappings and sequences in one document


class KubectlYamlError(ValueError):
    """A file kubectl would refuse to read; the message names the line where it can."""


# ------------------------------------------------------------ go-yaml v2's resolve.go

_TAG = "tag:yaml.org,2002:"
STR, BOOL, INT, FLOAT, NULL = _TAG + "str", _TAG + "bool", _TAG + "int", _TAG + "float", _TAG + "null"
TIMESTAMP, BINARY, MERGE = _TAG + "timestamp", _TAG + "binary", _TAG + "merge"
_RESOLVABLE = {"", STR, BOOL, INT, FLOAT, NULL, TIMESTAMP}  # resolvableTag

# resolveMapList, looked up before any number parsing. NaN is made fresh at each use: in Go no
# NaN equals another, so two NaN map keys are two keys.
_WORDS: dict[str, tuple[str, Any]] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), (BOOL, True)),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), (BOOL, False)),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), (NULL, None)),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), (FLOAT, "nan")),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), (FLOAT, math.inf)),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), (FLOAT, -math.inf)),
    "<<": (MERGE, "<<"),
}
# resolveTable: the first character's hint.
_HINTS = {"+": "S", "-": "S", ".": ".", **dict.fromkeys("0123456789", "D"), **dict.fromkeys("yYnNtTfFoO~", "M")}
# resolve.go's yamlStyleFloat, tried after the integer parses.
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's strconv.ParseFloat on a string that starts with '.': decimal digits, an optional exponent.
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
# Go's strconv.ParseInt(s, 0, 64): an optional sign, then 0x / 0o / 0b / a leading 0 (octal).
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
# parseTimestamp's layouts ("2006-1-2T15:4:5.999999999Z07:00", its lower-case t, "2006-1-2
# 15:4:5.999999999", "2006-1-2"), then time.Parse's range checks (`_valid_date_time`).
_TIMESTAMP = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"(?:(?P<sep>[Tt ])(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{1,2}):(?P<s>[0-9]{1,2})(?:[.,][0-9]{1,9})?"
    r"(?P<zone>Z|[-+][0-9]{2}:[0-9]{2})?)?"
)


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), then ParseUint(text, 0, 64): None where both fail."""
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
    if _INT64_MIN <= value <= _INT64_MAX or (not sign and value <= _UINT64_MAX):  # ParseUint: no sign
        return value
    return None


def _is_timestamp(text: str) -> bool:
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        return False
    if match["sep"] == " " and match["zone"]:  # "2006-1-2 15:4:5.999999999" has no zone
        return False
    if match["sep"] in ("T", "t") and not match["zone"]:
        return False
    year, month, day = int(match["y"]), int(match["mo"]), int(match["d"])
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]:
        return False
    if match["sep"]:
        hour, minute, second = int(match["h"]), int(match["mi"]), int(match["s"])
        if hour > 23 or minute > 59 or second > 59:
            return False
        if match["zone"] and match["zone"] != "Z" and (int(match["zone"][1:3]) > 23 or int(match["zone"][4:]) > 59):
            return False
    return True


def _resolve_text(tag: str, text: str) -> tuple[str, Any]:
    """resolve()'s body: the tag and value a scalar's text resolves to."""
    hint = "N" if text == "" else _HINTS.get(text[0])
    if hint and tag not in (STR, BINARY):
        if text in _WORDS:
            rtag, value = _WORDS[text]
            return rtag, float("nan") if value == "nan" else value
        if hint == ".":
            if _DOT_FLOAT.fullmatch(text) and math.isfinite(float(text)):
                return FLOAT, float(text)
        elif hint in "DS":
            if tag in ("", TIMESTAMP) and _is_timestamp(text):
                return TIMESTAMP, text
            plain = text.replace("_", "")
            as_int = _go_int(plain)
            if as_int is not None:
                return INT, as_int
            if _YAML_STYLE_FLOAT.fullmatch(plain) and math.isfinite(float(plain)):
                return FLOAT, float(plain)  # Go's ParseFloat fails on overflow (1e400): a string
            # resolve.go's later 0b / -0b branches accept nothing ParseInt(s, 0, 64) refused.
    return STR, text


def resolve(tag: str, text: str) -> tuple[str, Any]:
    """go-yaml v2's resolve(tag, in): a scalar's resolved tag and value. `tag` is "" for an
    untagged plain scalar; a tag go-yaml does not resolve (`!!binary`, `!foo`) keeps the text."""
    if tag not in _RESOLVABLE:
        return tag, text
    rtag, value = _resolve_text(tag, text)
    if tag in ("", rtag, STR):
        return rtag, value
    if tag == FLOAT and rtag == INT:
        return FLOAT, float(value)
    raise KubectlYamlError(f"cannot decode {_short(rtag)} `{text}` as a {_short(tag)}")


def go_resolve(text: str) -> Any:
    """The value go-yaml v2 gives a plain (unquoted, untagged) scalar."""
    return resolve("", text)[1]


def _go_string(data: bytes) -> str:
    """A Go string of arbitrary bytes as encoding/json writes it: each byte that does not start
    a valid UTF-8 sequence becomes U+FFFD (utf8.DecodeRuneInString's width 1)."""
    return data.decode("utf-8", errors="mfpo-go-replace")


def _replace_one_byte(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)
    return "\ufffd", err.start + 1


codecs.register_error("mfpo-go-replace", _replace_one_byte)


def _binary(text: str, line: int) -> str:
    """!!binary: base64.StdEncoding.DecodeString, which skips CR and LF and nothing else."""
    try:
        data = binascii.a2b_base64(text.replace("\r", "").replace("\n", ""), strict_mode=True)
    except binascii.Error:
        raise KubectlYamlError(f"line {line}: !!binary value contains invalid base64 data") from None
    return _go_string(data)


# ------------------------------------------------------------------ warnings


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping: kubectl silently keeps the value of the later one."""

    path: str  # the mapping's field path, e.g. spec.objective ("" for the document itself)
    key: str  # the key as the API server sees it (a JSON object key)
    first_line: int  # 1-based (0: not known, a JSON file)
    line: int  # the later occurrence, whose value wins
    # Written as different YAML values that become one JSON key (`1` and `"1"`): go-yaml keeps
    # both, then Go's map order decides which one kubectl sends.
    either_wins: bool = False

    def __str__(self) -> str:
        where = f"{self.path}.{self.key}" if self.path else self.key
        if not self.line:
            return f"{where}: the key {self.key!r} is written twice in one object; kubectl keeps the later value, silently"
        kept = (
            "kubectl keeps one of the two values, which one is not defined"
            if self.either_wins
            else f"kubectl keeps only the value on line {self.line}, silently"
        )
        return (
            f"line {self.line}: {where}: the key {self.key!r} is written twice in one mapping "
            f"(lines {self.first_line} and {self.line}); {kept}"
        )


@dataclass(frozen=True)
class MergeOverride:
    """A merge key (`<<`) that replaces a key set before it in the same mapping: go-yaml (and so
    kubectl) keeps the merged value, where YAML's merge rule keeps the mapping's own."""

    path: str
    key: str
    first_line: int  # where the replaced value was set: the key, or an earlier `<<`
    line: int  # the `<<` whose merged value wins
    by_merge: bool = False  # the replaced value came from an earlier `<<` of the mapping

    def __str__(self) -> str:
        where = f"{self.path}.{self.key}" if self.path else self.key
        before = f"the merge on line {self.first_line}" if self.by_merge else f"line {self.first_line}"
        return (
            f"line {self.line}: {where}: the merge key '<<' on line {self.line} replaces the value of "
            f"{self.key!r} set on {before}; kubectl keeps the merged value (YAML's merge rule would keep "
            f"the one written in the mapping): move the '<<' first"
        )


Warning = DuplicateKey | MergeOverride


# ------------------------------------------------------------- documents, as kubectl cuts them


def _go_is_space(char: str) -> bool:
    """unicode.IsSpace (Python's isspace also counts U+001C-U+001F)."""
    return char.isspace() and char not in "\x1c\x1d\x1e\x1f"


def is_json_stream(text: str) -> bool:
    """YAMLOrJSONDecoder's guess (GuessJSONStream): the first 4096 bytes, blanks skipped, start with '{'."""
    head = text.encode("utf-8", "surrogatepass")[:4096].decode("utf-8", "ignore")
    stripped = head.lstrip("".join(c for c in set(head) if _go_is_space(c)))
    return stripped.startswith("{")


def yaml_chunks(text: str) -> list[tuple[int, str]]:
    """YAMLReader.Read: the file cut at lines starting with `---`, as (first line, text); a
    separator followed by anything but blanks and a comment is an error."""
    chunks: list[tuple[int, str]] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file
    buffer: list[str] = []
    start = 1
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")  # bufio.ReadLine drops the \r of \r\n
        if line.startswith("---"):
            rest = line[3:].strip(" \t\n\v\f\r\x85\xa0")
            if rest and not rest.startswith("#"):
                raise KubectlYamlError(f"line {number}: invalid Yaml document separator: {rest}")
            if buffer:
                chunks.append((start, "\n".join(buffer) + "\n"))
                buffer = []
            continue
        if not buffer:
            start = number
        buffer.append(line)
    if buffer:
        chunks.append((start, "\n".join(buffer) + "\n"))
    return chunks


# ------------------------------------------------------------------ the node tree


@dataclass(eq=False)
class _Node:
    """go-yaml's parser node: what the decoder needs of an event."""

    kind: str  # scalar, mapping, sequence, alias
    line: int  # 1-based, in the file
    tag: str = ""  # as written (long form); "" when untagged
    value: str = ""  # a scalar's text
    implicit: bool = False  # a scalar's plain_implicit: plain and untagged, or tagged '!'
    children: list[_Node] = field(default_factory=list)  # mapping: key, value, key, value...
    target: _Node | None = None  # an alias's anchored node


_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it


def _compose(text: str, first_line: int) -> _Node | None:
    """The first document of `text` as a node tree (yaml.Unmarshal reads no further), or None.
    Built without recursion, so that nesting is limited by MAX_DEPTH alone."""
    parser = _Parser(text)
    offset = first_line - 1
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []
    root: _Node | None = None
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, (yaml.StreamStartEvent, yaml.DocumentStartEvent)):
                continue
            if isinstance(event, (yaml.DocumentEndEvent, yaml.StreamEndEvent)):
                break
            line = event.start_mark.line + 1 + offset
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                if not stack:
                    break
                continue
            node = _node_of(event, line, anchors)
            if stack:
                stack[-1].children.append(node)
            else:
                root = node
            if node.kind in ("mapping", "sequence"):
                stack.append(node)
            elif not stack:
                break
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1 + offset}: " if mark is not None else ""
        context = f" ({err.context})" if err.context else ""
        raise KubectlYamlError(f"{where}not valid YAML: {err.problem}{context}") from None
    except yaml.YAMLError as err:
        raise KubectlYamlError(f"not valid YAML: {err}") from None
    finally:
        parser.dispose()
    return root


def _node_of(event: yaml.Event, line: int, anchors: dict[str, _Node]) -> _Node:
    if isinstance(event, yaml.AliasEvent):
        target = anchors.get(event.anchor)
        if target is None:
            raise KubectlYamlError(f"line {line}: unknown anchor '{event.anchor}' referenced")
        return _Node("alias", line, value=event.anchor, target=target)
    if isinstance(event, yaml.ScalarEvent):
        node = _Node("scalar", line, event.tag or "", event.value, implicit=event.implicit[0])
    elif isinstance(event, yaml.MappingStartEvent):
        node = _Node("mapping", line, event.tag or "")
    else:
        node = _Node("sequence", line, event.tag or "")
    if event.anchor is not None:
        anchors[event.anchor] = node  # go-yaml lets a later anchor of the same name replace it
    return node


# ------------------------------------------------------------------ go-yaml's decoder


@dataclass
class _Entry:
    value: Any  # already as the API server reads it
    line: int  # where the key was written (for a merged key: the `<<`)
    merged: bool  # set by a `<<` of the mapping, not by its own key


def _go_key(value: Any) -> tuple[str, Any]:
    """A go-yaml value as a Go map key: its dynamic type and value (in Go 1 and 1.0 and true
    are three keys, as are 2**63 (uint64) and 2**63 - 1 (int))."""
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        return ("uint64" if value > _INT64_MAX else "int"), value
    if isinstance(value, float):
        return "float64", value
    if value is None:
        return "nil", None
    return "string", value


def _allowed_alias_ratio(decode_count: int) -> float:
    """decode.go allowedAliasRatio."""
    low, high = 400_000, 4_000_000
    if decode_count <= low:
        return 0.99
    if decode_count >= high:
        return 0.10
    return 0.99 - 0.89 * ((decode_count - low) / (high - low))


class _Decoder:
    """decode.go's decoder into interface{}: `unmarshal`, `mapping`, `sequence`, `merge`, with
    its counters against alias expansion, and the warnings of `DuplicateKey`/`MergeOverride`."""

    def __init__(self) -> None:
        self.decode_count = 0
        self.alias_count = 0
        self.alias_depth = 0
        self.expanding: set[int] = set()  # alias nodes being decoded (d.aliases)
        self.warnings: dict[tuple[Any, ...], Warning] = {}

    def unmarshal(self, node: _Node, path: str, depth: int) -> Any:
        self.decode_count += 1
        if self.alias_depth > 0:
            self.alias_count += 1
        if (
            self.alias_count > 100
            and self.decode_count > 1000
            and self.alias_count / self.decode_count > _allowed_alias_ratio(self.decode_count)
        ):
            raise KubectlYamlError(f"line {node.line}: document contains excessive aliasing")
        if node.kind == "alias":
            return self._alias(node, lambda target: self.unmarshal(target, path, depth))
        if node.kind == "scalar":
            return self._scalar(node)
        if depth >= MAX_DEPTH:
            raise KubectlYamlError(
                f"line {node.line}: {path or '(document)'}: nested more than {MAX_DEPTH} levels deep "
                "(no Kubernetes object needs that; mfpo reads no deeper)"
            )
        if node.kind == "sequence":
            return [self.unmarshal(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.children)]
        entries: dict[tuple[str, Any], _Entry] = {}
        self._fill(node, entries, path, depth)
        return self._json_object(entries, path)

    def _alias(self, node: _Node, decode: Any) -> Any:
        if id(node) in self.expanding:
            raise KubectlYamlError(f"line {node.line}: anchor '{node.value}' value contains itself")
        self.expanding.add(id(node))
        self.alias_depth += 1
        try:
            return decode(node.target)
        finally:
            self.alias_depth -= 1
            self.expanding.discard(id(node))

    def _scalar(self, node: _Node) -> Any:
        if node.tag == "" and not node.implicit:
            return node.value  # quoted and untagged: a string
        try:
            tag, value = resolve(node.tag, node.value)
        except KubectlYamlError as err:
            raise KubectlYamlError(f"line {node.line}: {err}") from None
        if tag == BINARY:
            return _binary(value, node.line)
        if tag == TIMESTAMP:
            return node.value  # decoded into interface{}, a timestamp stays its text
        return value

    def _key(self, node: _Node, path: str, depth: int) -> tuple[str, Any]:
        key = self.unmarshal(node, path, depth)
        if isinstance(key, (dict, list)):
            raise KubectlYamlError(f"line {node.line}: {path or '(document)'}: invalid map key: a mapping or sequence")
        return _go_key(key)

    def _fill(self, node: _Node, entries: dict[tuple[str, Any], _Entry], path: str, depth: int) -> None:
        """decode.go mapping(): the node's pairs written into `entries` in order, a merge key's
        mappings written where it stands."""
        own: dict[tuple[str, Any], int] = {}  # keys this mapping writes itself -> line
        writer: dict[tuple[str, Any], tuple[int, bool]] = {}  # key -> (line, by a merge) of this mapping
        pairs = node.children
        for i in range(0, len(pairs) - 1, 2):
            key_node, value_node = pairs[i], pairs[i + 1]
            if key_node.kind == "scalar" and key_node.value == "<<" and (key_node.implicit or key_node.tag == MERGE):
                merged: dict[tuple[str, Any], _Entry] = {}
                self._merge(value_node, merged, path, depth)
                for key, entry in merged.items():
                    if key in writer:
                        line, by_merge = writer[key]
                        if not by_merge or entries[key].value != entry.value:
                            self._warn(MergeOverride(path, _shown_key(key), line, key_node.line, by_merge))
                    entries[key] = _Entry(entry.value, key_node.line, merged=True)
                    writer[key] = (key_node.line, True)
                continue
            key = self._key(key_node, path, depth + 1)
            child = f"{path}.{_shown_key(key)}" if path else _shown_key(key)
            value = self.unmarshal(value_node, child, depth + 1)
            if key in own:
                self._warn(DuplicateKey(path, _shown_key(key), own[key], key_node.line))
            own[key] = key_node.line
            writer[key] = (key_node.line, False)
            entries[key] = _Entry(value, key_node.line, merged=False)

    def _merge(self, node: _Node, into: dict[tuple[str, Any], _Entry], path: str, depth: int) -> None:
        """decode.go merge(): a mapping, an alias of one, or a sequence of those, the sequence
        from its end so that the earlier mappings win."""
        if node.kind == "mapping":
            self._count(node)
            self._fill_checked(node, into, path, depth)
        elif node.kind == "alias":
            self._merge_alias(node, into, path, depth)
        elif node.kind == "sequence":
            for item in reversed(node.children):
                if item.kind == "alias":
                    self._merge_alias(item, into, path, depth)
                elif item.kind == "mapping":
                    self._count(item)
                    self._fill_checked(item, into, path, depth)
                else:
                    self._refuse_merge(item)
        else:
            self._refuse_merge(node)

    def _merge_alias(self, node: _Node, into: dict[tuple[str, Any], _Entry], path: str, depth: int) -> None:
        if node.target is not None and node.target.kind != "mapping":
            self._refuse_merge(node)
        self._count(node)

        def decode(target: _Node) -> None:
            self._count(target)
            self._fill_checked(target, into, path, depth)

        self._alias(node, decode)

    def _fill_checked(self, node: _Node, into: dict[tuple[str, Any], _Entry], path: str, depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise KubectlYamlError(f"line {node.line}: {path or '(document)'}: nested more than {MAX_DEPTH} levels deep")
        self._fill(node, into, path, depth)

    def _count(self, node: _Node) -> None:
        """The counting half of unmarshal() for a node decoded straight into a map (a merge)."""
        self.decode_count += 1
        if self.alias_depth > 0:
            self.alias_count += 1

    @staticmethod
    def _refuse_merge(node: _Node) -> None:
        raise KubectlYamlError(f"line {node.line}: map merge requires map or sequence of maps as the value")

    def _warn(self, warning: Warning) -> None:
        # An anchored mapping is decoded again at each alias: its warnings are said once.
        self.warnings.setdefault((type(warning), warning.key, warning.first_line, warning.line), warning)

    def _json_object(self, entries: dict[tuple[str, Any], _Entry], path: str) -> dict[str, Any]:
        """convertToJSONableObject: every key a string; keys that become one string collide."""
        out: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key, entry in entries.items():
            name = _json_key(key, path, entry.line)
            if name in out:
                self._warn(DuplicateKey(path, name, lines[name], entry.line, either_wins=True))
            out[name] = entry.value
            lines[name] = entry.line
        return out


def _shown_key(key: tuple[str, Any]) -> str:
    """A Go key as a field path shows it (the JSON key where there is one)."""
    kind, value = key
    try:
        return _json_key(key, "", 0)
    except KubectlYamlError:
        return "null" if kind == "nil" else str(value)


def _json_key(key: tuple[str, Any], path: str, line: int) -> str:
    kind, value = key
    if kind == "string":
        return value
    if kind == "int":
        return str(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float64":
        return _go_float32_g(value)
    where = f"line {line}: {path or '(document)'}" if line else (path or "(document)")
    go_type = {"nil": "%!s(<nil>)", "uint64": "uint64"}[kind]
    raise KubectlYamlError(f"{where}: unsupported map key of type: {go_type}, key: {value} (kubectl refuses it)")


def _go_float32_g(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32), with go-yaml's names for the infinities and NaN."""
    if math.isnan(value):
        return ".nan"
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        single = math.copysign(math.inf, value)
    if math.isinf(single):
        return ".inf" if single > 0 else "-.inf"
    sign = "-" if math.copysign(1.0, single) < 0 else ""
    if single == 0:
        return sign + "0"
    for precision in range(1, 10):  # the shortest digits that read back as the same float32
        text = f"{abs(single):.{precision - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == abs(single):
            break
    mantissa, exponent = text.split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    point = int(exponent) + 1  # digits are 0.<digits> x 10**point
    if point - 1 < -4 or point - 1 >= 6:  # %e (shortest: 'g' switches at 6)
        rest = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{rest}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


# ----------------------------------------------------- numbers, as the API server reads them


def as_api_server_reads(value: Any, where: str = "") -> Any:
    """A decoded value after encoding/json and the API server's number decoding: integral
    floats that fit int64 become ints (Go writes the float64 1e3 as `1000`, the shortest digits
    padded with zeros), NaN and infinities are errors (json: unsupported value)."""
    if isinstance(value, dict):
        return {k: as_api_server_reads(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [as_api_server_reads(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise KubectlYamlError(
                f"{where or '(document)'}: Invalid value: {value}: not a JSON number "
                f"(kubectl refuses it: json: unsupported value)"
            )
        if value.is_integer() and abs(value) < 1e21:
            as_written = int(Decimal(repr(value)))  # Go's 'f' format: shortest digits, then zeros
            if _INT64_MIN <= as_written <= _INT64_MAX:
                return as_written
    if isinstance(value, int) and not isinstance(value, bool) and value > _INT64_MAX:
        return float(value)  # a uint64 beyond int64: the API server reads it as float64
    return value


# ---------------------------------------------------------------------- JSON files


def _json_documents(text: str) -> tuple[list[Any], list[Warning]]:
    """A JSON stream as json.Decoder reads it: values separated by JSON blanks; a key written
    twice keeps the later value (encoding/json), reported without a line."""
    duplicates: list[Warning] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicates.append(DuplicateKey("", key, 0, 0))
            out[key] = value
        return out

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    decoder = json.JSONDecoder(
        object_pairs_hook=pairs,
        parse_int=lambda s: int(s) if _INT64_MIN <= int(s) <= _INT64_MAX else float(s),
        parse_constant=refuse_constant,
    )
    documents: list[Any] = []
    position, blanks = 0, re.compile(r"[ \t\r\n]*")
    while True:
        position = blanks.match(text, position).end()
        if position >= len(text):
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError as err:
            raise KubectlYamlError(
                f"not valid JSON (the file starts with '{{', so kubectl reads it as JSON): {err}"
            ) from None
        if value is not None:
            documents.append(as_api_server_reads(_no_lone_surrogates(value)))
    return documents, duplicates


def _no_lone_surrogates(value: Any) -> Any:
    """encoding/json decodes an unpaired \\ud800 escape as U+FFFD."""
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, dict):
        return {_no_lone_surrogates(k): _no_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_lone_surrogates(v) for v in value]
    return value


# ------------------------------------------------------------------------ entry points


def load_all_checked(text: str) -> tuple[list[Any], list[Warning]]:
    """Every document of a file, valued as kubectl sends it (empty and null ones dropped), and
    the warnings (keys written twice, merges over explicit keys) in the order of the file.
    KubectlYamlError (a ValueError) when kubectl would refuse the file; yaml.YAMLError when the
    text is not YAML at all."""
    if is_json_stream(text):
        return _json_documents(text)
    documents: list[Any] = []
    warnings: list[Warning] = []
    for first_line, chunk in yaml_chunks(text):
        root = _compose(chunk, first_line)
        if root is None:
            continue
        decoder = _Decoder()
        decoder.decode_count = 1  # the document node
        try:
            document = decoder.unmarshal(root, "", 0)
        except RecursionError:
            raise KubectlYamlError(f"line {root.line}: the document is nested too deeply to read") from None
        warnings += decoder.warnings.values()
        if document is not None:
            documents.append(as_api_server_reads(document))
    return documents, sorted(warnings, key=lambda w: (w.line, w.first_line))


def load_all(text: str) -> list[Any]:
    """Every document of a file, valued as kubectl sends it (empty and null ones dropped)."""
    return load_all_checked(text)[0]

