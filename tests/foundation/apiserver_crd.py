"""What kube-apiserver checks when a CustomResourceDefinition is created, replicated in Python.

`crd_errors(crd)` returns the field errors the API server (apiextensions-apiserver of Kubernetes
v1.32, as vendored by MicroShift release-4.19) would answer `kubectl apply` of an
apiextensions.k8s.io/v1 CRD with, formatted as it formats them
(`<path>: <type>[: <value>]: <detail>`). Every check names the Go function it replicates;
tests/foundation/test_crd_apiserver_rules.py lists which rules are covered and which are not.

No Python library does this: kubernetes-validate and jsonschema check a CRD's own shape against
the CRD's OpenAPI definition (types of fields), not the API server's semantic rules
(structural schemas, metadata, defaults, CEL), so they are written out here by hand, kept close
to the Go so that each can be compared line by line.

Go sources (apiextensions-apiserver = staging/src/k8s.io/apiextensions-apiserver):
  V  pkg/apis/apiextensions/validation/validation.go
  S  pkg/apiserver/schema/validation.go, complete.go, convert.go
  D  pkg/apiserver/schema/defaulting/validation.go, pruning/algorithm.go
  C  pkg/apis/apiextensions/validation/cel_validation.go (and apiserver_cel.py)
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apiserver_cel as cel
import celpy
import jsonschema
import kubernetes_cel

# ------------------------------------------------------------------------ errors

REQUIRED, FORBIDDEN, INVALID = "Required value", "Forbidden", "Invalid value"
NOT_SUPPORTED, DUPLICATE, TOO_MANY, INTERNAL = (
    "Unsupported value",
    "Duplicate value",
    "Too many",
    "Internal error",
)
_OMIT = object()


@dataclass(frozen=True)
class GoStruct:
    """A bad value the API server prints as a Go struct literal (%#v): shown by its type only;
    `normalized` reduces the server's text to the same form."""

    type_name: str

    def __str__(self) -> str:
        return f"{self.type_name}{{…}}"


SCHEMA_VALUE = GoStruct("apiextensions.JSONSchemaProps")
RULE_VALUE = GoStruct("apiextensions.ValidationRule")


def without_struct_dumps(message: str) -> str:
    """A server's error text with its Go struct dumps of bad values (%#v: up to hundreds of KB,
    with pointer addresses that change on every request) reduced to their type."""
    return re.sub(
        r"Invalid value: (\[\])?(apiextensions\.\w+)\{.*\}: ",
        r"Invalid value: \1\2{…}: ",
        message,
        flags=re.DOTALL,
    )


def normalized(message: str) -> str:
    """A server's error text with the parts this replica does not reproduce reduced to what it
    does: Go struct dumps to their type, the text of Go's regexp and cel-go's compile errors to
    their first line's message."""
    message = without_struct_dumps(message)
    message = re.sub(
        r"(must be a valid regular expression, but isn't: ).*", r"\1…", message, flags=re.DOTALL
    )
    return re.sub(
        r"(compilation failed: )ERROR: <input>:\d+:\d+: ([^\n]*).*",
        r"\1\2",
        message,
        flags=re.DOTALL,
    )


def _go_value(value: Any) -> str:
    """apimachinery field.Error.ErrorBody's rendering of a bad value (simple types)."""
    if value is None:  # a nil value is printed as the string "null"
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, GoStruct):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return _go_syntax(value)


def _go_number(value: float) -> str:
    """Go's %v of a JSON number (int64, or float64 in its shortest form)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _go_syntax(value: Any) -> str:
    """Go's %#v of a decoded JSON value (map[string]interface {}, []interface {}, ...)."""
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)}:{_go_syntax(value[k])}" for k in sorted(value))
        return f"map[string]interface {{}}{{{items}}}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_syntax(v) for v in value) + "}"
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_number(value)
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class FieldError:
    """apimachinery/pkg/util/validation/field.Error."""

    path: str
    type: str
    detail: str = ""
    value: Any = field(default=_OMIT, compare=False)

    def __str__(self) -> str:
        body = self.type
        if self.type not in (REQUIRED, FORBIDDEN, INTERNAL) and self.value is not _OMIT:
            body += f": {_go_value(self.value)}"
        if self.detail:
            body += f": {self.detail}"
        return f"{self.path}: {body}"


def _not_supported(path: str, value: Any, valid: list[str]) -> FieldError:
    return FieldError(
        path, NOT_SUPPORTED, "supported values: " + ", ".join(f'"{v}"' for v in valid), value
    )


# ------------------------------------------------------------------ name formats

# apimachinery/pkg/util/validation/validation.go
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _regex_error(message: str, regex: re.Pattern[str], *examples: str) -> str:
    """apimachinery validation.RegexError."""
    shown = "".join(f"{' or ' if i else ''}'{e}', " for i, e in enumerate(examples))
    return f"{message} (e.g. {shown}regex used for validation is '{regex.pattern}')"


def _dns1035_label(value: str) -> list[str]:
    errs = [] if len(value) <= 63 else ["must be no more than 63 characters"]
    if not DNS1035_LABEL.fullmatch(value):
        errs.append(
            _regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                "with an alphabetic character, and end with an alphanumeric character",
                DNS1035_LABEL,
                "my-name",
                "abc-123",
            )
        )
    return errs


def _dns1123_subdomain(value: str) -> list[str]:
    errs = [] if len(value) <= 253 else ["must be no more than 253 characters"]
    if not DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character",
                DNS1123_SUBDOMAIN,
                "example.com",
            )
        )
    return errs


# ------------------------------------------------------------- the CRD's own fields

PRINTER_COLUMN_TYPES = [
    "boolean",
    "date",
    "integer",
    "number",
    "string",
]  # V printerColumnDatatypes
PRINTER_COLUMN_FORMATS = [
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
]
OPENAPI_TYPES = ["array", "boolean", "integer", "number", "object", "string"]  # V openapiV3Types
VALIDATION_REASONS = [
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
]
# V allowedFieldsAtRootSchema, as JSON keys
ROOT_KEYS_WITH_STATUS = {
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
}
PROTECTED_GROUP_SUFFIXES = (".k8s.io", ".kubernetes.io")  # apihelpers.IsProtectedCommunityGroup


def _internal_layout(spec: dict[str, Any]) -> dict[str, str]:
    """Where the API server reports a version's schema, subresources and columns: the v1 ->
    internal conversion (apis/apiextensions/v1/conversion.go) moves each to the top level
    (spec.validation, spec.subresources, spec.additionalPrinterColumns) when every version
    has the same one."""
    versions = spec.get("versions") or [{}]
    layout = {}
    for key, top in (
        ("schema", "spec.validation"),
        ("subresources", "spec.subresources"),
        ("additionalPrinterColumns", "spec.additionalPrinterColumns"),
    ):
        same = all(v.get(key) == versions[0].get(key) for v in versions)
        layout[key] = top if same else "spec.versions[{i}]." + key
    return layout


def _names_errors(names: dict[str, Any]) -> Iterator[FieldError]:
    """V ValidateCustomResourceDefinitionNames (and the required names of the spec)."""
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            yield FieldError(f"spec.names.{key}", REQUIRED)
    for key in ("plural", "singular"):
        if names.get(key) and (errs := _dns1035_label(names[key])):
            yield FieldError(f"spec.names.{key}", INVALID, ",".join(errs), names[key])
    for key in ("kind", "listKind"):
        if names.get(key) and (errs := _dns1035_label(names[key].lower())):
            detail = "may have mixed case, but should otherwise match: " + ",".join(errs)
            yield FieldError(f"spec.names.{key}", INVALID, detail, names[key])
    for key in ("shortNames", "categories"):
        for i, name in enumerate(names.get(key, [])):
            if errs := _dns1035_label(name):
                yield FieldError(f"spec.names.{key}[{i}]", INVALID, ",".join(errs), name)
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        yield FieldError(
            "spec.names.listKind",
            INVALID,
            "kind and listKind may not be the same",
            names["listKind"],
        )


def _column_errors(column: dict[str, Any], path: str) -> Iterator[FieldError]:
    """V ValidateCustomResourceColumnDefinition."""
    if not column.get("name"):
        yield FieldError(f"{path}.name", REQUIRED)
    kind = column.get("type")
    must = "must be one of " + ",".join(PRINTER_COLUMN_TYPES)
    if not kind:
        yield FieldError(f"{path}.type", REQUIRED, must)
    elif kind not in PRINTER_COLUMN_TYPES:
        yield FieldError(f"{path}.type", INVALID, must, kind)
    if column.get("format") and column["format"] not in PRINTER_COLUMN_FORMATS:
        yield FieldError(
            f"{path}.format",
            INVALID,
            "must be one of " + ",".join(PRINTER_COLUMN_FORMATS),
            column["format"],
        )
    json_path = column.get("jsonPath", "")
    if not json_path:
        yield FieldError(f"{path}.JSONPath", REQUIRED)
    elif not json_path.startswith("."):
        yield FieldError(
            f"{path}.JSONPath", INVALID, "must be a simple json path starting with .", json_path
        )


def _subresources_errors(subresources: dict[str, Any] | None, path: str) -> Iterator[FieldError]:
    """V ValidateCustomResourceDefinitionSubresources (scale paths)."""
    scale = (subresources or {}).get("scale")
    if scale is None:
        return
    for key, under in (("specReplicasPath", ".spec."), ("statusReplicasPath", ".status.")):
        value = scale.get(key, "")
        if not value:
            yield FieldError(f"{path}.scale.{key}", REQUIRED)
        elif not value.startswith("."):
            yield FieldError(
                f"{path}.scale.{key}", INVALID, "must be a simple json path starting with .", value
            )
        elif not value.startswith(under):
            yield FieldError(
                f"{path}.scale.{key}", INVALID, f"should be a json path under {under[:-1]}", value
            )


def _spec_errors(crd: dict[str, Any]) -> Iterator[FieldError]:
    """V ValidateCustomResourceDefinition / validateCustomResourceDefinitionSpec, minus the schema."""
    spec = crd.get("spec", {})
    group, names = spec.get("group", ""), spec.get("names", {})
    name = crd.get("metadata", {}).get("name", "")
    if not name:
        yield FieldError("metadata.name", REQUIRED, "name or generateName is required")
    else:
        details = _dns1123_subdomain(name)
        if name != f"{names.get('plural')}.{group}":
            details.append('must be spec.names.plural+"."+spec.group')
        for detail in details:
            yield FieldError("metadata.name", INVALID, detail, name)
    if not group:
        yield FieldError("spec.group", REQUIRED)
    elif errs := _dns1123_subdomain(group):
        yield FieldError("spec.group", INVALID, ",".join(errs), group)
    elif "." not in group:
        yield FieldError("spec.group", INVALID, "should be a domain with at least one dot", group)
    scope = spec.get("scope", "")
    if not scope:
        yield FieldError("spec.scope", REQUIRED)
    elif scope not in ("Cluster", "Namespaced"):
        yield _not_supported("spec.scope", scope, ["Cluster", "Namespaced"])
    if spec.get("preserveUnknownFields"):
        yield FieldError(
            "spec.preserveUnknownFields",
            INVALID,
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
            True,
        )
    versions = spec.get("versions", [])
    for i, version in enumerate(versions):
        if errs := _dns1035_label(version.get("name", "")):
            yield FieldError(
                f"spec.versions[{i}].name", INVALID, ",".join(errs), version.get("name", "")
            )
        if not (version.get("schema") or {}).get("openAPIV3Schema"):
            yield FieldError(
                f"spec.versions[{i}].schema.openAPIV3Schema", REQUIRED, "schemas are required"
            )
        if version.get("deprecationWarning") is not None and not version.get("deprecated"):
            yield FieldError(
                f"spec.versions[{i}].deprecationWarning",
                INVALID,
                "can only be set for deprecated versions",
                version["deprecationWarning"],
            )
    version_names = [v.get("name") for v in versions]
    all_versions = GoStruct("[]apiextensions.CustomResourceDefinitionVersion")
    if len(set(version_names)) != len(version_names):
        yield FieldError(
            "spec.versions", INVALID, "must contain unique version names", all_versions
        )
    storage = [v.get("name") for v in versions if v.get("storage")]
    if len(storage) != 1:
        yield FieldError(
            "spec.versions",
            INVALID,
            "must have exactly one version marked as storage version",
            all_versions,
        )
    # V ValidateCustomResourceDefinitionStoredVersions, with status.storedVersions as defaulted
    # on create (the first storage version: apis/apiextensions/v1/defaults.go)
    stored = storage[:1]
    for name in storage[1:]:
        yield FieldError(
            "status.storedVersions", INVALID, f"must have the storage version {name}", stored
        )
    yield from _names_errors(names)
    layout = _internal_layout(spec)
    for i, version in enumerate(versions):
        where = layout["additionalPrinterColumns"].format(i=i)
        for j, column in enumerate(version.get("additionalPrinterColumns", [])):
            yield from _column_errors(column, f"{where}[{j}]")
        yield from _subresources_errors(
            version.get("subresources"), layout["subresources"].format(i=i)
        )
    conversion = spec.get("conversion") or {}
    strategy = conversion.get("strategy", "None")
    if strategy not in ("None", "Webhook"):
        yield _not_supported("spec.conversion.strategy", strategy, ["None", "Webhook"])
    elif strategy == "Webhook" and not conversion.get("webhook"):
        yield FieldError(
            "spec.conversion.webhook", REQUIRED, "webhook must be set when strategy is Webhook"
        )
    if group == "k8s.io" or group == "kubernetes.io" or group.endswith(PROTECTED_GROUP_SUFFIXES):
        annotations = crd.get("metadata", {}).get("annotations") or {}
        if "api-approved.kubernetes.io" not in annotations:
            yield FieldError(
                "metadata.annotations[api-approved.kubernetes.io]",
                REQUIRED,
                'protected groups must have approval annotation "api-approved.kubernetes.io", '
                "see https://github.com/kubernetes/enhancements/pull/1111",
            )


def _any_default(schema: Any) -> bool:
    """V schemaHasDefaults (through every sub-schema)."""
    if isinstance(schema, dict):
        return "default" in schema or any(
            _any_default(v) for k, v in schema.items() if k != "default"
        )
    if isinstance(schema, list):
        return any(_any_default(v) for v in schema)
    return False


# ----------------------------------------------------------- structural schemas (S)

ROOT, ITEM, FIELD = "root", "item", "field"
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# NewStructural's validateUnsupportedFields (S convert.go), as JSON keys and the Go names it prints
UNSUPPORTED = {
    "id": "id",
    "$schema": "schema",
    "$ref": "$ref",
    "patternProperties": "patternProperties",
    "dependencies": "dependencies",
    "additionalItems": "additionalItems",
    "definitions": "definitions",
}
# Keys of a JSONSchemaProps whose Go zero value is false / "" (absent otherwise counts as set).
BOOL_KEYS = {
    "nullable",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "uniqueItems",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
}
STRING_KEYS = {"description", "type", "format", "title", "pattern"}
# Keys NewStructural drops (not part of a Structural): they never count.
NON_STRUCTURAL_KEYS = {"externalDocs", "example"}


def _is_set(key: str, value: Any) -> bool:
    """Whether a JSONSchemaProps field differs from its Go zero value."""
    if key in BOOL_KEYS:
        return bool(value)
    if key in STRING_KEYS:
        return value != ""
    if isinstance(value, (list, dict)) and key not in ("default", "example"):
        return len(value) > 0
    return True


def _child(path: str, name: str) -> str:
    return f"{path}.{name}"


def _prop(path: str, name: str) -> str:
    return f"{path}.properties[{name}]"


def _new_structural_errors(schema: dict[str, Any], path: str) -> Iterator[FieldError]:
    """S convert.go NewStructural's refusals (reported only when nothing else is)."""
    for key, go_name in UNSUPPORTED.items():
        if _is_set(key, schema.get(key, "")) and key in schema:
            yield FieldError(path, INVALID, f"OpenAPIV3Schema '{go_name}' is not supported", "")
            return
    if isinstance(schema.get("items"), list):
        yield FieldError(
            path, INVALID, "OpenAPIV3Schema 'items' must be a schema, but is an array", ""
        )
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        yield FieldError(
            path,
            INVALID,
            "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined",
            "",
        )
    for sub in _subschemas(schema):
        yield from _new_structural_errors(sub, path)


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from schema.get("properties", {}).values()
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield schema[key]
    for key in ("allOf", "anyOf", "oneOf"):
        yield from schema.get(key, [])


def _structural_invariants(s: dict[str, Any], level: str, path: str) -> Iterator[FieldError]:
    """S validateStructuralInvariants."""
    kind = s.get("type", "")
    if kind == "array" and not isinstance(s.get("items"), dict):
        yield FieldError(_child(path, "items"), REQUIRED, "must be specified")
    if isinstance(s.get("items"), dict):
        yield from _structural_invariants(s["items"], ITEM, _child(path, "items"))
    for name, sub in s.get("properties", {}).items():
        yield from _structural_invariants(sub, FIELD, _prop(path, name))
    if "additionalProperties" in s:
        if level == ROOT:
            yield FieldError(
                _child(path, "additionalProperties"), FORBIDDEN, "must not be used at the root"
            )
        if isinstance(s["additionalProperties"], dict):
            yield from _structural_invariants(
                s["additionalProperties"], FIELD, _child(path, "additionalProperties")
            )
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    # validateExtensions
    if int_or_string and preserve:
        yield FieldError(
            _child(path, "x-kubernetes-preserve-unknown-fields"),
            INVALID,
            "must be false if x-kubernetes-int-or-string is true",
            True,
        )
    if int_or_string and embedded:
        yield FieldError(
            _child(path, "x-kubernetes-embedded-resource"),
            INVALID,
            "must be false if x-kubernetes-int-or-string is true",
            True,
        )
    skip_any_of = s.get("anyOf") == INT_OR_STRING_ANY_OF
    all_of = s.get("allOf") or []
    skip_first_all_of_any_of = bool(all_of) and all_of[0].get("anyOf") == INT_OR_STRING_ANY_OF
    yield from _value_validation(s, skip_any_of, skip_first_all_of_any_of, level, path)
    check_metadata = level == ROOT or embedded
    if embedded and kind != "object":
        detail = "must be object if x-kubernetes-embedded-resource is true"
        if not kind:
            yield FieldError(_child(path, "type"), REQUIRED, detail)
        else:
            yield FieldError(_child(path, "type"), INVALID, detail, kind)
    elif not kind and not int_or_string and not preserve:
        where = {
            ROOT: "at the root",
            ITEM: "for specified array items",
            FIELD: "for specified object fields",
        }
        yield FieldError(_child(path, "type"), REQUIRED, f"must not be empty {where[level]}")
    if embedded and "additionalProperties" in s:
        yield FieldError(
            _child(path, "additionalProperties"),
            FORBIDDEN,
            "must not be used if x-kubernetes-embedded-resource is set",
        )
    if level == ROOT and kind and kind != "object":
        yield FieldError(_child(path, "type"), INVALID, "must be object at the root", kind)
    props = s.get("properties", {})
    for meta_field in ("kind", "apiVersion"):
        if meta_field in props and check_metadata and props[meta_field].get("type", "") != "string":
            yield FieldError(
                _child(_prop(path, meta_field), "type"),
                INVALID,
                "must be string",
                props[meta_field].get("type", ""),
            )
    if "metadata" in props:
        yield from _metadata_invariants(
            props["metadata"], check_metadata, level, _prop(path, "metadata")
        )
    if embedded and not preserve and not props:
        yield FieldError(
            _child(path, "properties"),
            REQUIRED,
            "must not be empty if x-kubernetes-embedded-resource is true without "
            "x-kubernetes-preserve-unknown-fields",
        )


def _metadata_invariants(
    s: dict[str, Any], check_metadata: bool, level: str, path: str
) -> Iterator[FieldError]:
    """S validateStructuralMetadataInvariants: the root `metadata` may say nothing but its type
    (object) and the properties name and/or generateName (anything under those is ignored here)."""
    if check_metadata and s.get("type", "") != "object":
        yield FieldError(_child(path, "type"), INVALID, "must be object", s.get("type", ""))
    if level != ROOT:
        return
    props = s.get("properties") or {}
    names_only = set(props) <= {"name", "generateName"}
    rest = {
        k: v
        for k, v in s.items()
        if k not in ("type", "default", "properties", *NON_STRUCTURAL_KEYS)
    }
    if not names_only or any(_is_set(k, v) for k, v in rest.items()):
        yield FieldError(
            path,
            FORBIDDEN,
            "must not specify anything other than name and generateName, "
            "but metadata is implicitly specified",
        )


def _value_validation(
    v: dict[str, Any], skip_any_of: bool, skip_first_all_of_any_of: bool, level: str, path: str
) -> Iterator[FieldError]:
    """S validateValueValidation: junctors hold value validations only; patterns compile."""
    if not skip_any_of:
        for i, sub in enumerate(v.get("anyOf", [])):
            yield from _nested_value_validation(sub, False, level, f"{path}.anyOf[{i}]")
    for i, sub in enumerate(v.get("allOf", [])):
        yield from _nested_value_validation(
            sub, skip_first_all_of_any_of and i == 0, level, f"{path}.allOf[{i}]"
        )
    for i, sub in enumerate(v.get("oneOf", [])):
        yield from _nested_value_validation(sub, False, level, f"{path}.oneOf[{i}]")
    if isinstance(v.get("not"), dict):
        yield from _nested_value_validation(v["not"], False, level, f"{path}.not")
    if v.get("pattern") and (problem := _re2_problem(v["pattern"])):
        yield FieldError(
            _child(path, "pattern"),
            INVALID,
            f"must be a valid regular expression, but isn't: {problem}",
            v["pattern"],
        )


# Perl syntax Python's re accepts and Go's RE2 (regexp/syntax) refuses.
RE2_UNSUPPORTED = re.compile(r"\(\?[=!]|\(\?<[=!]|\(\?P=|\\[1-9]|[*+?}]\+")


def _re2_problem(pattern: str) -> str | None:
    """Whether Go's regexp.Compile refuses a pattern: Python's re for the grammar, plus the Perl
    features RE2 leaves out (lookaround, backreferences, possessive quantifiers)."""
    try:
        re.compile(pattern)
    except re.error as err:
        return f"error parsing regexp: {err}"
    if match := RE2_UNSUPPORTED.search(pattern):
        return f"error parsing regexp: invalid or unsupported Perl syntax: `{match.group()}`"
    return None


NESTED_FORBIDDEN = [  # S validateNestedValueValidation: (key, type, detail)
    ("type", "must be empty to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
]


def _nested_value_validation(
    v: dict[str, Any], skip_any_of: bool, level: str, path: str
) -> Iterator[FieldError]:
    yield from _value_validation(v, skip_any_of, False, level, path)
    if isinstance(v.get("items"), dict):
        yield from _nested_value_validation(v["items"], False, level, _child(path, "items"))
    for name, sub in v.get("properties", {}).items():
        yield from _nested_value_validation(sub, False, FIELD, _prop(path, name))
    if v.get("additionalProperties") is True or isinstance(v.get("additionalProperties"), dict):
        yield FieldError(
            _child(path, "additionalProperties"), FORBIDDEN, "must be undefined to be structural"
        )
    for key, detail in NESTED_FORBIDDEN:
        if key in v and (
            key in ("default", "x-kubernetes-list-type", "x-kubernetes-map-type")
            or _is_set(key, v[key])
        ):
            yield FieldError(_child(path, key), FORBIDDEN, detail)
    if "metadata" in v.get("properties", {}):
        yield FieldError(
            _prop(path, "metadata"), FORBIDDEN, "must not be specified in a nested context"
        )


def _completeness(
    v: dict[str, Any], s: dict[str, Any] | None, s_path: str, v_path: str
) -> Iterator[FieldError]:
    """S complete.go validateStructuralCompleteness (from the root's junctors, as the Go does)."""
    if s is None:
        yield FieldError(s_path, REQUIRED, f"because it is defined in {v_path}")
        return
    if isinstance(v.get("not"), dict):
        yield from _nested_completeness(v["not"], s, s_path, f"{v_path}.not")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(v.get(key, [])):
            yield from _nested_completeness(sub, s, s_path, f"{v_path}.{key}[{i}]")


def _nested_completeness(
    v: dict[str, Any], s: dict[str, Any], s_path: str, v_path: str
) -> Iterator[FieldError]:
    yield from _completeness(v, s, s_path, v_path)
    if isinstance(v.get("items"), dict):
        items = s.get("items") if isinstance(s.get("items"), dict) else None
        if items is None:
            yield FieldError(
                _child(s_path, "items"), REQUIRED, f"because it is defined in {v_path}.items"
            )
        else:
            yield from _nested_completeness(
                v["items"], items, _child(s_path, "items"), f"{v_path}.items"
            )
    for name, sub in v.get("properties", {}).items():
        if name not in s.get("properties", {}):
            yield FieldError(
                _prop(s_path, name), REQUIRED, f"because it is defined in {_prop(v_path, name)}"
            )
        else:
            yield from _nested_completeness(
                sub, s["properties"][name], _prop(s_path, name), _prop(v_path, name)
            )


def structural_errors(schema: dict[str, Any], path: str) -> list[FieldError]:
    """S ValidateStructural."""
    return sorted(
        [*_structural_invariants(schema, ROOT, path), *_completeness(schema, schema, path, path)],
        key=str,
    )


# ----------------------------------------------------------------- defaults (D)


def prune(value: Any, s: dict[str, Any] | None, resource_root: bool = False) -> Any:
    """D pruning/algorithm.go prune: drop object fields the schema does not specify."""
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields") is True:
        if isinstance(value, dict):
            return {
                k: prune(v, s["properties"][k]) if k in s.get("properties", {}) else v
                for k, v in value.items()
            }
        return value
    if isinstance(value, dict):
        if s is None:
            return {}
        out = {}
        for k, v in value.items():
            if (resource_root or s.get("x-kubernetes-embedded-resource")) and k in (
                "apiVersion",
                "kind",
                "metadata",
            ):
                out[k] = v
            elif k in s.get("properties", {}):
                out[k] = prune(v, s["properties"][k])
            elif "additionalProperties" in s:
                extra = s["additionalProperties"]
                out[k] = prune(v, extra if isinstance(extra, dict) else None)
        return out
    if isinstance(value, list):
        items = s.get("items") if s is not None and isinstance(s.get("items"), dict) else None
        return [prune(v, items) for v in value]
    return value


def _as_draft4(node: Any) -> Any:
    """An OpenAPI v3 schema node as JSON Schema draft 4 (nullable -> null type), for kube-openapi's
    schema validator (which jsonschema stands in for: see the test module's docstring)."""
    if isinstance(node, list):
        return [_as_draft4(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _as_draft4(v)
        for k, v in node.items()
        if not k.startswith("x-kubernetes") and k != "properties"
    }
    if "properties" in node:
        out["properties"] = {k: _as_draft4(v) for k, v in node["properties"].items()}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    out.pop("default", None)
    return out


def cel_value(value: Any, s: dict[str, Any] | None) -> Any:
    """A JSON value as the API server hands it to CEL (apiserver/pkg/cel/common/values.go):
    `number` fields are doubles even when written as 1; objects and lists recursively."""
    if s is None:
        return celpy.json_to_cel(value)
    if isinstance(value, dict):
        extra = s.get("additionalProperties")
        return celpy.celtypes.MapType(
            {
                celpy.celtypes.StringType(k): cel_value(
                    v, s.get("properties", {}).get(k, extra if isinstance(extra, dict) else None)
                )
                for k, v in value.items()
            }
        )
    if isinstance(value, list):
        items = s.get("items") if isinstance(s.get("items"), dict) else None
        return celpy.celtypes.ListType([cel_value(v, items) for v in value])
    if (
        s.get("type") == "number"
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return celpy.celtypes.DoubleType(value)
    return celpy.json_to_cel(value)


@functools.cache
def _cel_program(rule: str) -> celpy.Runner:
    return kubernetes_cel.program(rule)  # the standard library and Kubernetes' quantity()


def _cel_rule_errors(value: Any, s: dict[str, Any], path: str) -> Iterator[FieldError]:
    """schema/cel/validation.go Validator.Validate on one value: every rule of every node the value
    reaches, evaluated with cel-python (semantics, not cost)."""
    if value is None:
        return
    for rule in s.get("x-kubernetes-validations", []):
        program = _cel_program(rule["rule"])
        self = cel_value(value, s)  # a default is validated as an update from itself (D validate)
        if not bool(program.evaluate({"self": self, "oldSelf": self})):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            yield FieldError(
                path, INVALID, message, s.get("type", "")
            )  # the node's type, as the Go
    if isinstance(value, dict):
        for name, sub in s.get("properties", {}).items():
            if name in value:
                yield from _cel_rule_errors(value[name], sub, f"{path}.{name}")
    if isinstance(value, list) and isinstance(s.get("items"), dict):
        for i, item in enumerate(value):
            yield from _cel_rule_errors(item, s["items"], f"{path}[{i}]")


JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}


def _kube_openapi_error(err: jsonschema.ValidationError, where: str) -> FieldError:
    """One jsonschema error as kube-openapi words it and apiserver/validation/validation.go
    (kubeOpenAPIResultToFieldErrors) turns it into a field error."""
    parts = [str(p) for p in err.absolute_path]
    keyword, bound, value, schema = err.validator, err.validator_value, err.instance, err.schema
    if keyword == "required":
        missing = re.match(r"'(.+)' is a required property", err.message)
        parts.append(missing.group(1) if missing else "?")
    name = ".".join(parts)
    path = f"{where}.{name}" if name else where
    if keyword == "required":
        return FieldError(path, REQUIRED)
    if keyword == "enum":
        return _not_supported(
            path, value, [v if isinstance(v, str) else json.dumps(v) for v in bound]
        )
    if keyword == "maxLength":
        return FieldError(path, "Too long", f"may not be more than {bound} bytes")
    if keyword in ("maxItems", "maxProperties"):
        return FieldError(path, TOO_MANY, f"must have at most {bound} items", len(value))
    wording = {
        "minLength": f"should be at least {bound} chars long",
        "pattern": f"should match '{bound}'",
        "minItems": f"should have at least {bound} items",
        "minProperties": f"should have at least {bound} properties",
        "multipleOf": f"should be a multiple of {_go_number(bound) if isinstance(bound, (int, float)) else bound}",
    }
    if keyword == "type":
        wanted = bound if isinstance(bound, str) else ",".join(b for b in bound if b != "null")
        got = "null" if value is None else JSON_TYPE_NAMES[type(value)]
        return FieldError(
            path, INVALID, f"{name} in body must be of type {wanted}: {json.dumps(got)}", got
        )
    if keyword in ("minimum", "maximum"):
        exclusive = schema.get(f"exclusive{keyword.capitalize()}", False)
        relation = ("greater" if keyword == "minimum" else "less") + (
            " than" if exclusive else " than or equal to"
        )
        return FieldError(
            path, INVALID, f"{name} in body should be {relation} {_go_number(bound)}", value
        )
    return FieldError(path, INVALID, f"{name} in body {wording.get(keyword, err.message)}", value)


def _embedded_resource_errors(value: dict[str, Any], path: str) -> Iterator[FieldError]:
    """schema/objectmeta/validation.go validateEmbeddedResource, for apiVersion and kind."""
    for key in ("apiVersion", "kind"):
        if key not in value:
            yield FieldError(_child(path, key), REQUIRED, "must not be empty")
        elif not isinstance(value[key], str):
            yield FieldError(_child(path, key), INVALID, "must be a string", value[key])
        elif not value[key]:
            yield FieldError(_child(path, key), INVALID, "must not be empty", value[key])


def _schema_validator(s: dict[str, Any]) -> jsonschema.Draft4Validator:
    """kube-openapi's schema validator, approximated by jsonschema's draft 4 (no value is of a
    type it does not know, as in kube-openapi)."""
    return _validator_class(frozenset(_unknown_types(s)))(_as_draft4(s))


@functools.cache
def _validator_class(unknown_types: frozenset[str]) -> Any:
    if not unknown_types:
        return jsonschema.Draft4Validator
    checker = jsonschema.Draft4Validator.TYPE_CHECKER.redefine_many(
        {t: (lambda _checker, _instance: False) for t in unknown_types}
    )
    return jsonschema.validators.extend(jsonschema.Draft4Validator, type_checker=checker)


def _unknown_types(s: Any) -> set[str]:
    if isinstance(s, dict):
        found = (
            {s["type"]}
            if isinstance(s.get("type"), str) and s["type"] not in [*OPENAPI_TYPES, "null"]
            else set()
        )
        return found.union(*(_unknown_types(v) for v in s.values()))
    if isinstance(s, list):
        return set().union(*(_unknown_types(v) for v in s))
    return set()


def defaults_errors(
    s: dict[str, Any], path: str, inside_meta: bool = False, root: bool = True
) -> Iterator[FieldError]:
    """D ValidateDefaults / validate: every default is pruned, valid for its schema, and passes
    the CEL rules of its node and of the nodes inside it; one at a resource root (the schema's
    root or an x-kubernetes-embedded-resource) names its apiVersion and kind. (Defaults inside
    the root's metadata, apiVersion or kind are refused by the OpenAPI checks; the ObjectMeta
    validation the Go also runs on them is not replicated.)"""
    resource_root = root or bool(s.get("x-kubernetes-embedded-resource"))
    if resource_root:
        inside_meta = False
    if "default" in s and not inside_meta:
        yield from _default_errors(s, _child(path, "default"), resource_root)
    if isinstance(s.get("items"), dict):
        yield from defaults_errors(s["items"], _child(path, "items"), inside_meta, root=False)
    for name, sub in s.get("properties", {}).items():
        meta = inside_meta or (resource_root and name in ("metadata", "apiVersion", "kind"))
        yield from defaults_errors(sub, _prop(path, name), meta, root=False)


def _default_errors(s: dict[str, Any], where: str, resource_root: bool) -> Iterator[FieldError]:
    default = s["default"]
    if prune(copy.deepcopy(default), s, resource_root) != default:
        yield FieldError(where, INVALID, "must not have unknown fields", default)
    if resource_root and isinstance(default, dict):  # objectmeta.Validate (not its metadata part)
        meta_errors = list(_embedded_resource_errors(default, where))
        if meta_errors:
            yield from meta_errors
            return
    schema_errors = list(_schema_validator(s).iter_errors(default))
    for err in schema_errors:
        yield _kube_openapi_error(err, where)
    if not schema_errors:
        yield from _cel_rule_errors(default, s, where)


# ------------------------------------------------------------ OpenAPI checks (V)


@dataclass
class _Context:
    """V specStandardValidatorV3 plus C CELSchemaContext, for one schema node."""

    allow_defaults: bool = True
    disallow_reason: str = ""
    inside_resource_meta: bool = False
    forbid_old_self_path: str | None = None
    cardinality: int | None = 1  # None: unbounded (C MaxCardinality)
    cel: bool = True  # C: a CEL context exists (structural checks passed)

    def with_(self, **changes: Any) -> _Context:
        return _Context(**{**self.__dict__, **changes})


@dataclass
class CostReport:
    """C TotalCost, plus every rule's cost for the tests to read."""

    total: int = 0
    rules: list[tuple[str, str, int]] = field(default_factory=list)  # (path, rule, cost)

    def observe(self, path: str, rule: str, cost: int) -> None:
        self.total = min(self.total + cost, cel.MAX_UINT64)
        self.rules.append((path, rule, cost))

    def most_expensive(self) -> list[tuple[str, int]]:
        big = [(p, c) for p, _, c in self.rules if c >= cel.STATIC_ESTIMATED_CRD_COST_LIMIT // 100]
        return sorted(big, key=lambda pc: -pc[1])[:4]


def _type_errors(schema: dict[str, Any], path: str, ctx: _Context) -> Iterator[FieldError]:
    """V specStandardValidatorV3.validate."""
    kind = schema.get("type", "")
    if kind and kind not in OPENAPI_TYPES:
        yield _not_supported(_child(path, "type"), kind, OPENAPI_TYPES)
    if "default" in schema and not ctx.allow_defaults:
        detail = "must not be set" + (f" {ctx.disallow_reason}" if ctx.disallow_reason else "")
        yield FieldError(_child(path, "default"), FORBIDDEN, detail)
    for key, name in (
        ("id", "id"),
        ("additionalItems", "additionalItems"),
        ("patternProperties", "patternProperties"),
        ("definitions", "definitions"),
        ("dependencies", "dependencies"),
        ("$ref", "$ref"),
    ):
        if key in schema and (
            key in ("additionalItems", "dependencies", "$ref") or _is_set(key, schema[key])
        ):
            yield FieldError(_child(path, key), FORBIDDEN, f"{name} is not supported")
    if kind == "null":
        yield FieldError(
            _child(path, "type"),
            FORBIDDEN,
            "type cannot be set to null, use nullable as an alternative",
        )
    if isinstance(schema.get("items"), list) and schema["items"]:
        yield FieldError(
            _child(path, "items"), FORBIDDEN, "items must be a schema object and not an array"
        )
    if ctx.inside_resource_meta and schema.get("x-kubernetes-embedded-resource"):
        yield FieldError(
            _child(path, "x-kubernetes-embedded-resource"),
            FORBIDDEN,
            "must not be used inside of resource meta",
        )


def _list_map_errors(schema: dict[str, Any], path: str) -> Iterator[FieldError]:
    """V: x-kubernetes-map-type, -list-type, -list-map-keys, and validateMapListKeysMapSet."""
    kind, items = (
        schema.get("type", ""),
        schema.get("items") if isinstance(schema.get("items"), dict) else None,
    )
    map_type, list_type = schema.get("x-kubernetes-map-type"), schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys") or []
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        yield FieldError(
            _child(path, "x-kubernetes-preserve-unknown-fields"),
            INVALID,
            "must be true or undefined",
            False,
        )
    if map_type is not None and kind != "object":
        detail = "must be object if x-kubernetes-map-type is specified"
        yield (
            FieldError(_child(path, "type"), REQUIRED, detail)
            if not kind
            else FieldError(_child(path, "type"), INVALID, detail, kind)
        )
    if map_type is not None and map_type not in ("atomic", "granular"):
        yield _not_supported(
            _child(path, "x-kubernetes-map-type"), map_type, ["atomic", "granular"]
        )
    if list_type is not None and kind != "array":
        detail = "must be array if x-kubernetes-list-type is specified"
        yield (
            FieldError(_child(path, "type"), REQUIRED, detail)
            if not kind
            else FieldError(_child(path, "type"), INVALID, detail, kind)
        )
    elif list_type == "set" and items is not None:
        if (
            items.get("type") == "array"
            and items.get("x-kubernetes-list-type", "atomic") != "atomic"
        ):
            yield FieldError(
                _child(path, "items.x-kubernetes-list-type"),
                INVALID,
                "must be atomic as item of a list with x-kubernetes-list-type=set",
                items["x-kubernetes-list-type"],
            )
        if items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
            yield FieldError(
                _child(path, "items.x-kubernetes-map-type"),
                INVALID,
                "must be atomic as item of a list with x-kubernetes-list-type=set",
                None,
            )
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        yield _not_supported(
            _child(path, "x-kubernetes-list-type"), list_type, ["atomic", "set", "map"]
        )
    if keys and list_type != "map":
        detail = "must be map if x-kubernetes-list-map-keys is non-empty"
        yield (
            FieldError(_child(path, "x-kubernetes-list-type"), REQUIRED, detail)
            if list_type is None
            else FieldError(_child(path, "x-kubernetes-list-type"), INVALID, detail, list_type)
        )
    if list_type == "map":
        if not keys:
            yield FieldError(
                _child(path, "x-kubernetes-list-map-keys"),
                REQUIRED,
                "must not be empty if x-kubernetes-list-type is map",
            )
        if items is None:
            yield FieldError(
                _child(path, "items"),
                REQUIRED,
                "must have a schema if x-kubernetes-list-type is map",
            )
        elif items.get("type") != "object":
            yield FieldError(
                _child(path, "items.type"),
                INVALID,
                "must be object if parent array's x-kubernetes-list-type is map",
                items.get("type", ""),
            )
        else:
            for key in keys:
                prop = items.get("properties", {}).get(key)
                if prop is None:
                    yield FieldError(
                        _child(path, "x-kubernetes-list-map-keys"),
                        INVALID,
                        "entries must all be names of item properties",
                        keys,
                    )
                elif prop.get("type") in ("array", "object"):
                    yield FieldError(
                        _child(_prop(_child(path, "items"), key), "type"),
                        INVALID,
                        "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        "object",
                    )
            if len(set(keys)) != len(keys):
                yield FieldError(
                    _child(path, "x-kubernetes-list-map-keys"),
                    INVALID,
                    "must not contain duplicate entries",
                    keys,
                )
    # validateMapListKeysMapSet
    if items is not None and list_type in ("set", "map"):
        if items.get("nullable"):
            yield FieldError(
                _child(path, "items.nullable"),
                FORBIDDEN,
                f"cannot be nullable when x-kubernetes-list-type is {list_type}",
            )
        if list_type == "map":
            for key in keys:
                prop = items.get("properties", {}).get(key)
                if prop is None:
                    continue
                where = _prop(_child(path, "items"), key)
                if key not in items.get("required", []) and "default" not in prop:
                    yield FieldError(
                        _child(where, "default"),
                        REQUIRED,
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    )
                if prop.get("nullable"):
                    yield FieldError(
                        _child(where, "nullable"),
                        FORBIDDEN,
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    )


def _rule_shape_errors(schema: dict[str, Any], path: str) -> Iterator[FieldError]:
    """V: the fields of each x-kubernetes-validations entry."""
    for i, rule in enumerate(schema.get("x-kubernetes-validations", [])):
        where = f"{_child(path, 'x-kubernetes-validations')}[{i}]"
        text, message = rule.get("rule", "").strip(), rule.get("message", "")
        if not text:
            yield FieldError(_child(where, "rule"), REQUIRED, "rule is not specified")
        elif message and not message.strip():
            yield FieldError(
                _child(where, "message"), INVALID, "message must be non-empty if specified", message
            )
        elif re.search(r"[\n\r]", message.strip()):
            yield FieldError(
                _child(where, "message"), INVALID, "message must not contain line breaks", message
            )
        elif re.search(r"[\n\r]", text) and not message.strip():
            yield FieldError(
                _child(where, "message"),
                REQUIRED,
                "message must be specified if rule contains line breaks",
            )
        if (
            rule.get("messageExpression") is not None
            and rule["messageExpression"]
            and not rule["messageExpression"].strip()
        ):
            yield FieldError(
                _child(where, "messageExpression"),
                REQUIRED,
                "messageExpression must be non-empty if specified",
            )
        if rule.get("reason") is not None and rule["reason"] not in VALIDATION_REASONS:
            yield _not_supported(_child(where, "reason"), rule["reason"], VALIDATION_REASONS)
        field_path = rule.get("fieldPath", "")
        if field_path and not field_path.strip():
            yield FieldError(
                _child(where, "fieldPath"),
                INVALID,
                "fieldPath must be non-empty if specified",
                field_path,
            )
        if re.search(r"[\n\r]", field_path):
            yield FieldError(
                _child(where, "fieldPath"),
                INVALID,
                "fieldPath must not contain line breaks",
                field_path,
            )
        if field_path.strip() and not _field_path_valid(schema, field_path.strip()):
            yield FieldError(
                _child(where, "fieldPath"), INVALID, "fieldPath must be a valid path", field_path
            )


def _field_path_valid(schema: dict[str, Any], path: str) -> bool:
    """schema/cel/validation.go ValidFieldPath, for dotted paths and ['key'] steps."""
    node = schema
    for dotted, quoted in re.findall(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]", path):
        name = dotted or quoted
        if name in node.get("properties", {}):
            node = node["properties"][name]
        elif isinstance(node.get("additionalProperties"), dict) and quoted:
            node = node["additionalProperties"]
        else:
            return False
    return bool(re.fullmatch(r"(\.[^.\[\]]+|\['(?:[^'\\]|\\.)*'\])+", path))


def _cel_errors(
    schema: dict[str, Any], path: str, ctx: _Context, is_root: bool, costs: CostReport
) -> Iterator[FieldError]:
    """V: compile each rule (apiserver_cel), charge its cost, check oldSelf's place."""
    node_type = cel.decl_type(schema, is_root or bool(schema.get("x-kubernetes-embedded-resource")))
    for i, rule in enumerate(schema.get("x-kubernetes-validations", [])):
        where = _child(f"{_child(path, 'x-kubernetes-validations')}[{i}]", "rule")
        text = rule.get("rule", "")
        if not text.strip():
            continue
        try:
            compiled = cel.compile_rule(text, node_type)
        except cel.CompileError as err:
            yield FieldError(where, INVALID, f"compilation failed: {err}", RULE_VALUE)
            continue
        except cel.NotBool as err:
            yield FieldError(where, INVALID, str(err), RULE_VALUE)
            continue
        cost = cel.expression_cost(compiled, ctx.cardinality)
        if cost > cel.STATIC_ESTIMATED_COST_LIMIT:
            yield FieldError(
                where,
                FORBIDDEN,
                cel.cost_error_message(
                    "estimated rule cost", cost, cel.STATIC_ESTIMATED_COST_LIMIT
                ),
            )
        costs.observe(where, text, cost)
        if compiled.uses_old_self and ctx.forbid_old_self_path is not None:
            yield FieldError(
                where,
                INVALID,
                f"oldSelf cannot be used on the uncorrelatable portion of the schema within {ctx.forbid_old_self_path}",
                text,
            )
        elif not compiled.uses_old_self and rule.get("optionalOldSelf") is not None:
            yield FieldError(
                _child(where[: -len(".rule")], "optionalOldSelf"),
                INVALID,
                "may not be set if oldSelf is not used in rule",
                rule["optionalOldSelf"],
            )


def _child_cardinality(schema: dict[str, Any], ctx: _Context) -> int | None:
    """C childContext: a child occurs (parent's cardinality x the parent's maxItems/maxProperties) times."""
    factor = cel.max_elements(schema)
    return (
        None
        if ctx.cardinality is None or factor is None
        else min(ctx.cardinality * factor, cel.MAX_UINT64)
    )


def openapi_errors(
    schema: dict[str, Any], path: str, ctx: _Context, is_root: bool, costs: CostReport
) -> tuple[list[FieldError], list[FieldError]]:
    """V ValidateCustomResourceDefinitionOpenAPISchema: (schema errors, CEL errors)."""
    errs = list(_type_errors(schema, path, ctx))
    cel_errs: list[FieldError] = []

    def descend(sub: dict[str, Any], sub_path: str, sub_ctx: _Context, cel_child: bool) -> None:
        sub_errs, sub_cel = openapi_errors(
            sub, sub_path, sub_ctx.with_(cel=ctx.cel and cel_child), False, costs
        )
        errs.extend(sub_errs)
        cel_errs.extend(sub_cel)

    if schema.get("uniqueItems"):
        errs.append(
            FieldError(
                _child(path, "uniqueItems"),
                FORBIDDEN,
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    child_card = _child_cardinality(schema, ctx)
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        if schema.get("properties") and extra is not True:
            errs.append(
                FieldError(
                    _child(path, "additionalProperties"),
                    FORBIDDEN,
                    "additionalProperties and properties are mutual exclusive",
                )
            )
        if isinstance(extra, dict):
            sub_ctx = ctx.with_(cardinality=child_card)
            if ctx.inside_resource_meta:
                sub_ctx = sub_ctx.with_(
                    allow_defaults=False,
                    disallow_reason="inside additionalProperties applying to object metadata",
                )
            descend(extra, _child(path, "additionalProperties"), sub_ctx, True)
    for name, sub in schema.get("properties", {}).items():
        sub_ctx = ctx.with_(cardinality=child_card)
        if (
            schema.get("x-kubernetes-map-type") not in (None, "granular", "atomic")
            and ctx.forbid_old_self_path is None
        ):
            sub_ctx = sub_ctx.with_(forbid_old_self_path=path)
        if (is_root or schema.get("x-kubernetes-embedded-resource")) and name in (
            "metadata",
            "kind",
            "apiVersion",
        ):
            sub_ctx = sub_ctx.with_(inside_resource_meta=True)
            if is_root:
                sub_ctx = sub_ctx.with_(
                    allow_defaults=False, disallow_reason=f"in top-level {name}"
                )
        descend(sub, _prop(path, name), sub_ctx, True)
    if isinstance(schema.get("not"), dict):
        descend(schema["not"], _child(path, "not"), ctx, False)
    for key in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(schema.get(key, [])):
            descend(sub, f"{path}.{key}[{i}]", ctx, False)
    if isinstance(schema.get("items"), dict):
        sub_ctx = ctx.with_(cardinality=child_card)
        if schema.get("x-kubernetes-list-type") != "map" and ctx.forbid_old_self_path is None:
            sub_ctx = sub_ctx.with_(forbid_old_self_path=path)
        descend(schema["items"], _child(path, "items"), sub_ctx, True)
    errs.extend(_list_map_errors(schema, path))
    errs.extend(_rule_shape_errors(schema, path))
    # "If any schema related validation errors have been found at this level or deeper, skip
    # CEL expression validation."
    if schema.get("x-kubernetes-validations") and not errs and ctx.cel:
        cel_errs.extend(_cel_errors(schema, path, ctx, is_root, costs))
    return errs, cel_errs


# ------------------------------------------------------------------- one schema


def schema_errors(
    schema: dict[str, Any], path: str, status_enabled: bool, costs: CostReport | None = None
) -> list[FieldError]:
    """V validateCustomResourceDefinitionValidation, for one openAPIV3Schema at `path`
    (e.g. spec.validation.openAPIV3Schema)."""
    costs = costs if costs is not None else CostReport()
    errs: list[FieldError] = []
    parent = path.rsplit(".", 1)[0]
    if status_enabled:
        if schema.get("type", "") != "object" and "type" in schema:
            errs.append(
                FieldError(
                    _child(parent, "openAPIV3Schema.type"),
                    INVALID,
                    'only "object" is allowed as the type at the root of the schema if the status subresource is enabled',
                    schema["type"],
                )
            )
        elif any(_is_set(k, v) for k, v in schema.items() if k not in ROOT_KEYS_WITH_STATUS):
            errs.append(
                FieldError(
                    path,
                    INVALID,
                    "only [Description Type Format Title Maximum ExclusiveMaximum Minimum "
                    "ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf "
                    "Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] "
                    "fields are allowed at the root of the schema if the status subresource is enabled",
                    SCHEMA_VALUE,
                )
            )
    if schema.get("nullable"):
        errs.append(
            FieldError(_child(path, "nullable"), FORBIDDEN, "nullable cannot be true at the root")
        )
    init_errs = list(_new_structural_errors(schema, path))
    with_cel = False
    if not init_errs:
        structural = structural_errors(schema, path)
        if structural:
            errs.extend(structural)
        else:
            defaults = list(defaults_errors(schema, path))
            errs.extend(defaults)
            with_cel = not defaults
    schema_errs, cel_errs = openapi_errors(schema, path, _Context(cel=with_cel), True, costs)
    errs.extend(schema_errs + cel_errs)
    if not errs and init_errs:
        errs.extend(init_errs)
    if with_cel and costs.total > cel.STATIC_ESTIMATED_CRD_COST_LIMIT:
        for where, _ in costs.most_expensive():
            errs.append(
                FieldError(
                    where,
                    FORBIDDEN,
                    "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
                )
            )
        errs.append(
            FieldError(
                path,
                FORBIDDEN,
                cel.cost_error_message(
                    "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                    costs.total,
                    cel.STATIC_ESTIMATED_CRD_COST_LIMIT,
                ),
            )
        )
    return errs


def with_server_defaults(crd: dict[str, Any]) -> dict[str, Any]:
    """apis/apiextensions/v1/defaults.go SetDefaults_CustomResourceDefinitionSpec: singular and
    listKind from the kind, conversion strategy None."""
    crd = copy.deepcopy(crd)
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if not names.get("singular"):
        names["singular"] = names.get("kind", "").lower()
    if not names.get("listKind") and names.get("kind"):
        names["listKind"] = names["kind"] + "List"
    spec.setdefault("conversion", {"strategy": "None"})
    return crd


def crd_errors(crd: dict[str, Any], costs: CostReport | None = None) -> list[FieldError]:
    """Every error kube-apiserver v1.32 would answer the creation of this CRD with (the subset of
    rules listed in the test module), formatted as the API server formats them."""
    crd = with_server_defaults(crd)
    errs = list(_spec_errors(crd))
    spec = crd.get("spec", {})
    layout = _internal_layout(spec)
    versions = spec.get("versions", [])
    if any(
        _any_default((v.get("schema") or {}).get("openAPIV3Schema")) for v in versions
    ) and spec.get("preserveUnknownFields"):
        errs.append(
            FieldError(
                "spec.preserveUnknownFields",
                INVALID,
                "must be false in order to use defaults in the schema",
                True,
            )
        )
    checked = set()
    for i, version in enumerate(versions):
        where = layout["schema"].format(i=i)
        if where in checked:
            continue  # one top-level schema, checked once
        checked.add(where)
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not schema:
            continue
        if layout["subresources"] == "spec.subresources":
            status = any("status" in (v.get("subresources") or {}) for v in versions)
        else:
            status = "status" in (version.get("subresources") or {})
        errs.extend(schema_errors(schema, f"{where}.openAPIV3Schema", status, costs))
    return errs
