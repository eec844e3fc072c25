"""The API server's static cost estimate of a CRD's CEL rules, replicated for the subset of CEL
our rules use.

When a CustomResourceDefinition is created, kube-apiserver (apiextensions-apiserver) compiles
every `x-kubernetes-validations` rule and estimates its worst-case cost; a rule whose estimate,
times how often its node can occur in one object, exceeds 10,000,000 -- or rules whose sum
exceeds 100,000,000 -- make the whole CRD invalid. Nothing in Python computes that estimate, so
this module is a line-by-line replica of the Go code that does (Kubernetes v1.32, cel-go v0.22,
as vendored by MicroShift release-4.19):

- `decl_type`: k8s.io/apiserver/pkg/cel/common/schemas.go SchemaDeclType -- what CEL knows of a
  schema node: its fields, and the largest size a string, list or map can have (maxLength x 4
  bytes, maxItems, maxProperties; without them, what fits in a 3 MiB request).
- `estimate_cost`: cel-go checker/cost.go (`coster`), with the API server's options
  (apiserver/pkg/cel/environment/base.go: has() costs 0) and size estimator
  (apiextensions-apiserver/pkg/apiserver/schema/cel/compilation.go sizeEstimator, including its
  quirk that any identifier's path starts at the rule's own node), over macros expanded as
  cel-go's parser/macro.go expands them (all, exists, exists_one, map, filter).
- `cardinality` and `expression_cost`: apis/apiextensions/validation/cel_validation.go
  (extractMaxElements, childContext) and validation.go getExpressionCost / getCostErrorMessage.

The rule text is parsed with cel-python's parser (a CEL grammar, no type checker); the type
checking here is only what the cost model needs (field types along `self...` paths, operand kinds
for overload choice, an undefined field or an unknown function is a compile error). A construct
outside the subset raises `NotModelled` rather than guessing a cost.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import lark
from celpy.celparser import CELParser

# k8s.io/apiserver/pkg/apis/cel/config.go
MAX_REQUEST_SIZE_BYTES = 3 * 1024 * 1024
# apis/apiextensions/validation/validation.go
STATIC_ESTIMATED_COST_LIMIT = 10_000_000
STATIC_ESTIMATED_CRD_COST_LIMIT = 100_000_000
# cel-go common/cost.go
SELECT_AND_IDENT_COST = 1
CONST_COST = 0
LIST_CREATE_BASE_COST = 10
MAP_CREATE_BASE_COST = 30
STRING_TRAVERSAL_COST_FACTOR = 0.1
REGEX_STRING_LENGTH_COST_FACTOR = 0.25
# apiserver/pkg/cel/limits.go
MAX_DATETIME_SIZE_JSON = 32
MAX_DURATION_SIZE_JSON = 32
JSON_DATE_SIZE = 12
MIN_STRING_SIZE = 2
MIN_BOOL_SIZE = 4
MIN_NUMBER_SIZE = 1
MIN_DURATION_SIZE_JSON = 3
MIN_DATETIME_SIZE_JSON = 21

MAX_UINT64 = 2**64 - 1
ACCUMULATOR = "__result__"  # cel-go parser.AccumulatorName
TYPE_NAMES = {
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
}
# CEL reserved words a property name cannot be used as without escaping (apiserver/pkg/cel/escaping.go)
CEL_RESERVED = {
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
}


class NotModelled(Exception):
    """The rule uses CEL this replica does not estimate: extend it, do not guess."""


class CompileError(Exception):
    """What the API server reports as `compilation failed` for a rule."""


class NotBool(Exception):
    """What the API server reports as `cel expression must evaluate to a bool`."""


# ------------------------------------------------------------------ uint64 arithmetic


def _add(x: int, y: int) -> int:
    return min(x + y, MAX_UINT64)


def _mul(x: int, y: int) -> int:
    return min(x * y, MAX_UINT64)


def _by_factor(x: int, factor: float) -> int:
    """cel-go multiplyByCostFactor: ceil(float64(x) * factor), saturating."""
    product = float(x) * factor
    if product >= 2.0**64:
        return MAX_UINT64
    return math.ceil(product)


@dataclass(frozen=True)
class Estimate:
    """cel-go's CostEstimate / SizeEstimate (the same arithmetic)."""

    min: int
    max: int

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(_add(self.min, other.min), _add(self.max, other.max))

    def times(self, other: Estimate) -> Estimate:
        return Estimate(_mul(self.min, other.min), _mul(self.max, other.max))

    def by_factor(self, factor: float) -> Estimate:
        return Estimate(_by_factor(self.min, factor), _by_factor(self.max, factor))

    def union(self, other: Estimate) -> Estimate:
        return Estimate(min(self.min, other.min), max(self.max, other.max))


ZERO = Estimate(0, 0)
ONE = Estimate(1, 1)
UNBOUNDED = Estimate(0, MAX_UINT64)


# ------------------------------------------------------------------ declared types


@dataclass
class DeclType:
    """apiserver/pkg/cel/types.go DeclType, reduced to what cost estimation reads."""

    kind: str  # object, map, list, string, bytes, int, uint, double, bool, dyn, timestamp, duration, type, null
    max_elements: int = 0
    min_serialized_size: int = 0
    fields: dict[str, DeclType] = field(default_factory=dict)
    elem: DeclType | None = None  # list items, map values
    key: DeclType | None = None  # map keys

    @property
    def is_scalar(self) -> bool:  # cel-go checker/cost.go isScalar
        return self.kind in ("bool", "double", "duration", "int", "timestamp", "uint")


def _simple(kind: str, min_size: int) -> DeclType:
    return DeclType(kind, 0, min_size)


STRING = _simple("string", MIN_STRING_SIZE)
DYN = _simple("dyn", 1)
TYPE = _simple("type", 1)


def _with_type_and_object_meta(schema: dict[str, Any]) -> dict[str, Any]:
    """apiextensions-apiserver/pkg/apiserver/schema/cel/model/schemas.go WithTypeAndObjectMeta:
    at a resource root, kind, apiVersion and metadata.{name,generateName} are always visible
    (and a metadata schema without both names is replaced by the plain one)."""
    props = schema.get("properties", {})
    meta = props.get("metadata", {})
    meta_props = meta.get("properties") or {}
    if (
        props.get("kind", {}).get("type") == "string"
        and props.get("apiVersion", {}).get("type") == "string"
        and meta.get("type") == "object"
        and meta_props.get("name", {}).get("type") == "string"
        and meta_props.get("generateName", {}).get("type") == "string"
    ):
        return schema
    string = {"type": "string"}
    return {
        **schema,
        "properties": {
            **props,
            "kind": string,
            "apiVersion": string,
            "metadata": {"type": "object", "properties": {"name": string, "generateName": string}},
        },
    }


def escape(name: str) -> str | None:
    """apiserver/pkg/cel/escaping.go Escape, for the plain names our schemas use."""
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        return None  # escaping of '.', '-', '/' not modelled: such a field is not selectable here
    if name in CEL_RESERVED:
        return f"__{name}__"
    return name


def decl_type(schema: dict[str, Any], is_resource_root: bool = False) -> DeclType | None:
    """apiserver/pkg/cel/common/schemas.go SchemaDeclType."""
    if schema.get("x-kubernetes-int-or-string"):
        return DeclType("dyn", MAX_REQUEST_SIZE_BYTES - 2, 1)
    if is_resource_root:
        schema = _with_type_and_object_meta(schema)
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            return None
        item_type = decl_type(items, bool(items.get("x-kubernetes-embedded-resource")))
        if item_type is None:
            return None
        if "maxItems" in schema:
            max_items = max(0, schema["maxItems"])
        else:  # estimateMaxArrayItemsFromMinSize
            max_items = (MAX_REQUEST_SIZE_BYTES - 2) // (item_type.min_serialized_size + 1)
        return DeclType("list", max_items, 2, elem=item_type)
    if kind == "object":
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            value_type = decl_type(
                additional, bool(additional.get("x-kubernetes-embedded-resource"))
            )
            if value_type is None:
                return None
            if "maxProperties" in schema:
                max_props = max(0, schema["maxProperties"])
            else:  # estimateMaxAdditionalPropertiesFromMinSize
                max_props = (MAX_REQUEST_SIZE_BYTES - 2) // (value_type.min_serialized_size + 6)
            return DeclType("map", max_props, 2, elem=value_type, key=STRING)
        required = set(schema.get("required", []))
        fields: dict[str, DeclType] = {}
        min_size = 2  # {}
        for name, prop in schema.get("properties", {}).items():
            field_type = decl_type(prop, bool(prop.get("x-kubernetes-embedded-resource")))
            if field_type is None:
                continue
            escaped = escape(name)
            if escaped is not None:
                fields[escaped] = field_type
            if name in required and "default" not in prop:
                min_size += len(name) + field_type.min_serialized_size + 4
        return DeclType("object", 0, min_size, fields=fields)
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "byte":
            size = (
                max(0, schema["maxLength"]) if "maxLength" in schema else MAX_REQUEST_SIZE_BYTES - 2
            )
            return DeclType("bytes", size, MIN_STRING_SIZE)
        if fmt == "duration":
            return DeclType("duration", MAX_DURATION_SIZE_JSON, MIN_DURATION_SIZE_JSON)
        if fmt == "date":
            return DeclType("timestamp", JSON_DATE_SIZE, JSON_DATE_SIZE)
        if fmt == "date-time":
            return DeclType("timestamp", MAX_DATETIME_SIZE_JSON, MIN_DATETIME_SIZE_JSON)
        if "maxLength" in schema:  # maxLength counts runes; a rune is up to 4 bytes
            size = max(0, schema["maxLength"]) * 4
        elif schema.get("enum"):
            size = max(len(v) for v in schema["enum"] if isinstance(v, str))
        else:
            size = MAX_REQUEST_SIZE_BYTES - 2
        return DeclType("string", size, MIN_STRING_SIZE)
    if kind == "boolean":
        return _simple("bool", MIN_BOOL_SIZE)
    if kind == "number":
        return _simple("double", MIN_NUMBER_SIZE)
    if kind == "integer":
        return _simple("int", MIN_NUMBER_SIZE)
    return None


def max_cardinality(min_serialized_size: int) -> int:
    """compilation.go maxCardinality: how often a node this small fits in one request."""
    return MAX_REQUEST_SIZE_BYTES // (min_serialized_size + 1)


def max_elements(schema: dict[str, Any]) -> int | None:
    """cel_validation.go extractMaxElements: the factor by which a node multiplies how often its
    children can occur (None: unbounded)."""
    kind = schema.get("type")
    if kind == "object":
        if "additionalProperties" in schema:
            return max(0, schema["maxProperties"]) if "maxProperties" in schema else None
        return 1
    if kind == "array":
        return max(0, schema["maxItems"]) if "maxItems" in schema else None
    return 1


# ------------------------------------------------------------------ the AST


@dataclass(eq=False)
class Expr:
    """A checked expression: cel-go's ast.Expr with the type the checker gave it."""

    kind: str  # literal, ident, select, call, list, map, comprehension
    value: Any = None  # literal: the Python value; ident: the name
    lit_kind: str = ""  # literal: int, uint, double, string, bytes, bool, null
    operand: Expr | None = None  # select
    field_name: str = ""  # select
    test_only: bool = False  # select: has()
    function: str = ""  # call
    target: Expr | None = None  # call: member function's receiver
    args: list[Expr] = field(default_factory=list)  # call args, list elements, map k1 v1 k2 v2
    # comprehension (cel-go ComprehensionExpr)
    iter_range: Expr | None = None
    iter_var: str = ""
    accu_init: Expr | None = None
    loop_condition: Expr | None = None
    loop_step: Expr | None = None
    result: Expr | None = None
    type: DeclType | None = None  # set by the checker


def _lit(value: Any, lit_kind: str) -> Expr:
    return Expr("literal", value=value, lit_kind=lit_kind)


def _ident(name: str) -> Expr:
    return Expr("ident", value=name)


def _call(function: str, *args: Expr, target: Expr | None = None) -> Expr:
    return Expr("call", function=function, args=list(args), target=target)


_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}


def _unquote(token: str) -> str:
    raw = token[0] in "rR"
    body = token[1:] if raw else token
    quote = body[:3] if body[:3] in ('"""', "'''") else body[0]
    body = body[len(quote) : -len(quote)]
    if raw:
        return body
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        else:  # octal \ooo
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
    return "".join(out)


def _literal(token: lark.Token) -> Expr:
    text = str(token)
    kind = token.type
    if kind == "INT_LIT":
        return _lit(int(text, 0) if "x" not in text else int(text, 16), "int")
    if kind == "UINT_LIT":
        return _lit(int(text[:-1], 0), "uint")
    if kind == "FLOAT_LIT":
        return _lit(float(text), "double")
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return _lit(_unquote(text), "string")
    if kind == "BYTES_LIT":
        return _lit(_unquote(text[1:]).encode("latin-1"), "bytes")
    if kind == "BOOL_LIT":
        return _lit(text == "true", "bool")
    if kind == "NULL_LIT":
        return _lit(None, "null")
    raise NotModelled(f"literal {text!r}")


_BINARY = {
    "relation_lt": "_<_",
    "relation_le": "_<=_",
    "relation_gt": "_>_",
    "relation_ge": "_>=_",
    "relation_eq": "_==_",
    "relation_ne": "_!=_",
    "relation_in": "@in",
    "addition_add": "_+_",
    "addition_sub": "_-_",
    "multiplication_mul": "_*_",
    "multiplication_div": "_/_",
    "multiplication_mod": "_%_",
}
_QUANTIFIERS = {"all", "exists", "exists_one"}


class _Builder:
    """cel-python's parse tree -> cel-go's AST, macros expanded as parser/macro.go does."""

    def build(self, tree: lark.Tree | lark.Token) -> Expr:
        if isinstance(tree, lark.Token):
            raise NotModelled(f"token {tree!r}")
        handler = getattr(self, f"_{tree.data}", None)
        if handler is None:
            raise NotModelled(f"CEL construct {tree.data}")
        return handler([c for c in tree.children if c is not None])

    def _expr(self, children: list[Any]) -> Expr:
        if len(children) == 1:
            return self.build(children[0])
        cond, if_true, if_false = (self.build(c) for c in children)
        return _call("_?_:_", cond, if_true, if_false)

    def _logical(self, children: list[Any], function: str) -> Expr:
        if len(children) == 1:
            return self.build(children[0])
        return _call(function, self.build(children[0]), self.build(children[1]))

    def _conditionalor(self, children: list[Any]) -> Expr:
        return self._logical(children, "_||_")

    def _conditionaland(self, children: list[Any]) -> Expr:
        return self._logical(children, "_&&_")

    def _binary(self, children: list[Any]) -> Expr:
        if len(children) == 1:
            return self.build(children[0])
        op, rhs = children
        (lhs,) = op.children
        return _call(_BINARY[op.data], self.build(lhs), self.build(rhs))

    _relation = _addition = _multiplication = _binary

    def _unary(self, children: list[Any]) -> Expr:
        if len(children) == 1:
            return self.build(children[0])
        op, operand = children
        return _call("!_" if op.data == "unary_not" else "-_", self.build(operand))

    def _member(self, children: list[Any]) -> Expr:
        return self.build(children[0])

    _primary = _member

    def _paren_expr(self, children: list[Any]) -> Expr:
        return self.build(children[0])

    def _literal(self, children: list[Any]) -> Expr:
        return _literal(children[0])

    def _ident(self, children: list[Any]) -> Expr:
        return _ident(str(children[0]))

    def _member_dot(self, children: list[Any]) -> Expr:
        operand, name = children
        return Expr("select", operand=self.build(operand), field_name=str(name))

    def _member_index(self, children: list[Any]) -> Expr:
        return _call("_[_]", self.build(children[0]), self.build(children[1]))

    def _exprlist(self, children: list[Any]) -> list[Expr]:
        return [self.build(c) for c in children]

    def _args(self, exprlist: Any) -> list[Expr]:
        return [] if exprlist is None else self._exprlist(exprlist.children)

    def _ident_arg(self, children: list[Any]) -> Expr:
        name, exprlist = str(children[0]), children[1] if len(children) > 1 else None
        args = self._args(exprlist)
        if name == "has":
            (arg,) = args
            if arg.kind != "select":
                raise CompileError("invalid argument to has() macro")
            arg.test_only = True
            return arg
        return _call(name, *args)

    def _member_dot_arg(self, children: list[Any]) -> Expr:
        target, name = self.build(children[0]), str(children[1])
        exprlist = children[2] if len(children) > 2 else None
        if name in _QUANTIFIERS | {"map", "filter"}:
            return self._macro(name, target, exprlist.children if exprlist else [])
        return _call(name, *self._args(exprlist), target=target)

    def _macro(self, name: str, target: Expr, raw_args: list[Any]) -> Expr:
        """parser/macro.go makeQuantifier, MakeMap, MakeFilter."""
        var = self.build(raw_args[0])
        if var.kind != "ident":
            raise CompileError(f"{name}: argument must be a simple name")
        body = [self.build(a) for a in raw_args[1:]]
        accu = lambda: _ident(ACCUMULATOR)  # a fresh node each time, as eh.NewAccuIdent()
        if name == "all":
            init, cond = _lit(True, "bool"), _call("@not_strictly_false", accu())
            step, result = _call("_&&_", accu(), body[0]), accu()
        elif name == "exists":
            init = _lit(False, "bool")
            cond = _call("@not_strictly_false", _call("!_", accu()))
            step, result = _call("_||_", accu(), body[0]), accu()
        elif name == "exists_one":
            init, cond = _lit(0, "int"), _lit(True, "bool")
            step = _call("_?_:_", body[0], _call("_+_", accu(), _lit(1, "int")), accu())
            result = _call("_==_", accu(), _lit(1, "int"))
        elif name == "map":
            init, cond = Expr("list"), _lit(True, "bool")
            step = _call("_+_", accu(), Expr("list", args=[body[-1]]))
            if len(body) == 2:
                step = _call("_?_:_", body[0], step, accu())
            result = accu()
        else:  # filter
            init, cond = Expr("list"), _lit(True, "bool")
            step = _call("_?_:_", body[0], _call("_+_", accu(), Expr("list", args=[var])), accu())
            result = accu()
        return Expr(
            "comprehension",
            iter_range=target,
            iter_var=var.value,
            accu_init=init,
            loop_condition=cond,
            loop_step=step,
            result=result,
        )

    def _list_lit(self, children: list[Any]) -> Expr:
        return Expr("list", args=self._args(children[0] if children else None))

    def _map_lit(self, children: list[Any]) -> Expr:
        entries = [self.build(c) for c in children[0].children] if children and children[0] else []
        return Expr("map", args=entries)


_parser = CELParser()


@functools.cache
def _parse_tree(rule: str) -> lark.Tree:
    try:
        return _parser.parse(rule)
    except Exception as err:  # celpy raises its own parse error types
        raise CompileError(f"Syntax error: {err}") from err


def parse(rule: str) -> Expr:
    """A fresh AST of the rule (the checker annotates it)."""
    return _Builder().build(_parse_tree(rule))


# ------------------------------------------------------------------ the checker


def _list_of(elem: DeclType, size: int = 0) -> DeclType:
    return DeclType("list", size, 2, elem=elem)


_LITERAL_TYPES = {
    "int": _simple("int", 1),
    "uint": _simple("uint", 1),
    "double": _simple("double", 1),
    "string": STRING,
    "bytes": _simple("bytes", 2),
    "bool": _simple("bool", 4),
    "null": _simple("null", 4),
}
BOOL = _LITERAL_TYPES["bool"]
INT = _LITERAL_TYPES["int"]
# apiserver/pkg/cel/types.go QuantityDeclType: an opaque object (cel.ObjectType("kubernetes.Quantity")).
QUANTITY = _simple("quantity", 8)
# library/quantity.go's functions our rules call: (receiver kind or None, argument kinds) -> result.
# Costs (library/cost.go CostEstimator.EstimateCallCost): the member functions 1 plus their
# arguments'; quantity() and isQuantity() the traversal of their string (`_case_cost`).
QUANTITY_FUNCTIONS = {
    "quantity": (None, ("string",), QUANTITY),
    "isQuantity": (None, ("string",), BOOL),
    "compareTo": ("quantity", ("quantity",), INT),
    "sub": ("quantity", ("quantity|int",), QUANTITY),
    "asApproximateFloat": ("quantity", (), _LITERAL_TYPES["double"]),
}
NUMERIC = {"int", "uint", "double"}


def _comparable(a: DeclType, b: DeclType) -> bool:
    if "dyn" in (a.kind, b.kind):
        return True
    if a.kind in NUMERIC and b.kind in NUMERIC:
        return True  # the API server's CEL has cross-type numeric comparisons
    return a.kind == b.kind


class Checker:
    """Types every node, as cel-go's checker does for the subset modelled here."""

    def __init__(self, root: DeclType):
        self.root = root
        self.scopes: list[dict[str, DeclType]] = [{"self": root, "oldSelf": root}]
        self.uses_old_self = False

    def lookup(self, name: str) -> DeclType:
        for scope in reversed(self.scopes):
            if name in scope:
                if name == "oldSelf" and scope is self.scopes[0]:
                    self.uses_old_self = True
                return scope[name]
        if name in TYPE_NAMES:
            return TYPE
        raise CompileError(f"undeclared reference to '{name}'")

    def check(self, e: Expr) -> DeclType:
        e.type = getattr(self, f"_check_{e.kind}")(e)
        return e.type

    def _check_literal(self, e: Expr) -> DeclType:
        return _LITERAL_TYPES[e.lit_kind]

    def _check_ident(self, e: Expr) -> DeclType:
        return self.lookup(e.value)

    def _check_select(self, e: Expr) -> DeclType:
        operand = self.check(e.operand)
        if operand.kind == "object":
            if e.field_name not in operand.fields:
                raise CompileError(f"undefined field '{e.field_name}'")
            found = operand.fields[e.field_name]
        elif operand.kind == "map":
            found = operand.elem
        elif operand.kind == "dyn":
            found = DYN
        else:
            raise CompileError(f"type '{operand.kind}' does not support field selection")
        return BOOL if e.test_only else found

    def _check_list(self, e: Expr) -> DeclType:
        elems = [self.check(a) for a in e.args]
        kinds = {t.kind for t in elems}
        return _list_of(elems[0] if len(kinds) == 1 else DYN)

    def _check_map(self, e: Expr) -> DeclType:
        for a in e.args:
            self.check(a)
        values = [t.type for t in e.args[1::2]]
        value = values[0] if values and len({v.kind for v in values}) == 1 else DYN
        return DeclType("map", 0, 2, elem=value, key=STRING)

    def _check_comprehension(self, e: Expr) -> DeclType:
        rng = self.check(e.iter_range)
        if rng.kind == "list":
            var_type = rng.elem
        elif rng.kind == "map":
            var_type = rng.key
        elif rng.kind == "dyn":
            var_type = DYN
        else:
            raise CompileError(
                f"expression of type '{rng.kind}' cannot be range of a comprehension"
            )
        accu = self.check(e.accu_init)
        if e.accu_init.kind == "list":  # map/filter build a list of the step's element type
            accu = _list_of(DYN)
        self.scopes.append({e.iter_var: var_type, ACCUMULATOR: accu})
        self.check(e.loop_condition)
        step = self.check(e.loop_step)
        if accu.kind == "list":
            self.scopes[-1][ACCUMULATOR] = step
        result = self.check(e.result)
        self.scopes.pop()
        return result

    def _check_call(self, e: Expr) -> DeclType:
        target = self.check(e.target) if e.target is not None else None
        args = [self.check(a) for a in e.args]
        fn = e.function
        if fn in ("_&&_", "_||_", "!_", "@not_strictly_false"):
            for t in args:
                if t.kind not in ("bool", "dyn"):
                    raise CompileError(
                        f"found no matching overload for '{fn}' applied to '({t.kind})'"
                    )
            return BOOL
        if fn in ("_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_"):
            a, b = args
            if not _comparable(a, b):
                raise CompileError(
                    f"found no matching overload for '{fn}' applied to '({a.kind}, {b.kind})'"
                )
            return BOOL
        if fn == "@in":
            if args[1].kind not in ("list", "map", "dyn"):
                raise CompileError(
                    f"found no matching overload for 'in' applied to '{args[1].kind}'"
                )
            return BOOL
        if fn == "_?_:_":
            cond, a, b = args
            if cond.kind not in ("bool", "dyn"):
                raise CompileError("conditional needs a bool condition")
            return a if a.kind == b.kind or b.kind == "null" else (b if a.kind == "null" else DYN)
        if fn in ("_+_", "_-_", "_*_", "_/_", "_%_", "-_"):
            return args[0] if args[0].kind != "dyn" or len(args) == 1 else args[-1]
        if fn == "_[_]":
            coll = args[0]
            return coll.elem if coll.kind in ("list", "map") else DYN
        if fn in ("startsWith", "endsWith", "contains", "matches"):
            if target is None or target.kind not in ("string", "dyn"):
                raise CompileError(f"found no matching overload for '{fn}'")
            return BOOL
        if fn == "size":
            return INT
        if fn == "type":
            return TYPE
        if fn in ("int", "uint", "double", "string", "bytes", "bool", "dyn"):
            return DYN if fn == "dyn" else _LITERAL_TYPES[fn]
        if fn in QUANTITY_FUNCTIONS:
            receiver, params, result = QUANTITY_FUNCTIONS[fn]
            kinds = [t.kind for t in args]
            receiver_ok = (target is None) if receiver is None else (target is not None and target.kind in (receiver, "dyn"))
            arguments_ok = len(kinds) == len(params) and all(
                k == "dyn" or k in p.split("|") for k, p in zip(kinds, params)
            )
            if not (receiver_ok and arguments_ok):
                raise CompileError(f"found no matching overload for '{fn}' applied to '({', '.join(kinds)})'")
            return result
        raise NotModelled(f"function {fn}()")


# ------------------------------------------------------------------ the coster


class Coster:
    """cel-go checker/cost.go coster, with the API server's size estimator and options."""

    def __init__(self, root: DeclType):
        self.root = root
        self.paths: dict[int, list[str]] = {}
        self.iter_ranges: dict[str, list[Expr]] = {}
        self.computed_sizes: dict[int, Estimate] = {}

    # -- sizes

    def _estimate_size(self, path: list[str] | None) -> Estimate | None:
        """schema/cel/compilation.go sizeEstimator.EstimateSize: the path's first element is
        taken to be `self` (whatever it names), the rest walks the rule node's type."""
        if not path:
            return None
        node = self.root
        for name in path[1:]:
            if name in ("@items", "@values"):
                node = node.elem
            elif name == "@keys":
                node = node.key
            else:
                node = node.fields.get(name) if node.kind == "object" else None
            if node is None:
                return None
        return Estimate(0, node.max_elements)

    def _computed_size(self, e: Expr) -> Estimate | None:
        if id(e) in self.computed_sizes:
            return self.computed_sizes[id(e)]
        if e.kind == "literal":
            if e.lit_kind == "string":
                return Estimate(len(e.value), len(e.value))  # runes
            if e.lit_kind == "bytes":
                return Estimate(len(e.value), len(e.value))
            return ONE
        if e.kind == "list":
            return Estimate(len(e.args), len(e.args))
        if e.kind == "map":
            return Estimate(len(e.args) // 2, len(e.args) // 2)
        return None

    def size(self, e: Expr) -> Estimate:
        """coster.sizeEstimate over newAstNode(e)."""
        computed = self._computed_size(e)
        if computed is not None:
            return computed
        path = self.paths.get(id(e))
        if path and path[0] == ACCUMULATOR:
            path = None
        estimated = self._estimate_size(path)
        if estimated is not None:
            return estimated
        if e.type is not None and e.type.is_scalar:
            return ONE
        return UNBOUNDED

    # -- costs

    def cost(self, e: Expr) -> Estimate:
        return getattr(self, f"_cost_{e.kind}")(e)

    def _cost_literal(self, e: Expr) -> Estimate:
        return Estimate(CONST_COST, CONST_COST)

    def _cost_ident(self, e: Expr) -> Estimate:
        ranges = self.iter_ranges.get(e.value)
        if ranges:
            rng = ranges[-1]
            suffix = (
                "@items" if rng.type.kind == "list" else "@keys" if rng.type.kind == "map" else None
            )
            if suffix:
                self.paths[id(e)] = [*self.paths.get(id(rng), []), suffix]
        else:
            self.paths[id(e)] = [e.value]
        return Estimate(SELECT_AND_IDENT_COST, SELECT_AND_IDENT_COST)

    def _cost_select(self, e: Expr) -> Estimate:
        if e.test_only:  # has(): the API server sets PresenceTestHasCost(false)
            return ZERO + self.cost(e.operand)
        total = self.cost(e.operand)
        if e.operand.type.kind in ("map", "object"):
            total = total + Estimate(SELECT_AND_IDENT_COST, SELECT_AND_IDENT_COST)
        self.paths[id(e)] = [*self.paths.get(id(e.operand), []), e.field_name]
        return total

    def _cost_list(self, e: Expr) -> Estimate:
        total = ZERO
        for a in e.args:
            total = total + self.cost(a)
        return total + Estimate(LIST_CREATE_BASE_COST, LIST_CREATE_BASE_COST)

    def _cost_map(self, e: Expr) -> Estimate:
        total = ZERO
        for a in e.args:
            total = total + self.cost(a)
        return total + Estimate(MAP_CREATE_BASE_COST, MAP_CREATE_BASE_COST)

    def _cost_comprehension(self, e: Expr) -> Estimate:
        total = self.cost(e.iter_range) + self.cost(e.accu_init)
        self.iter_ranges.setdefault(e.iter_var, []).append(e.iter_range)
        loop = self.cost(e.loop_condition)
        step = self.cost(e.loop_step)
        self.iter_ranges[e.iter_var].pop()
        total = total + self.cost(e.result)
        count = self.size(e.iter_range)
        self.computed_sizes[id(e)] = count
        return total + count.times(step + loop)

    def _cost_call(self, e: Expr) -> Estimate:
        arg_costs = [self.cost(a) for a in e.args]
        total = ZERO
        if e.target is not None:
            total = total + self.cost(e.target)
        if e.function == "_[_]":
            coll = e.args[0].type.kind
            if coll in ("list", "map"):
                self.paths[id(e)] = [
                    *self.paths.get(id(e.args[0]), []),
                    "@items" if coll == "list" else "@values",
                ]
        cost, result_size = self._function_cost(e, arg_costs)
        if result_size is not None:
            self.computed_sizes[id(e)] = result_size
        return total + cost

    def _overload_cases(self, e: Expr) -> list[str]:
        """The cost cases of cel-go's functionCost that the call's overloads hit (a dyn operand
        keeps every overload it could match: their union is charged)."""
        fn, kinds = e.function, {a.type.kind for a in e.args}

        def matches(*accepted: str) -> bool:
            return kinds <= {*accepted, "dyn"}

        if fn in ("_<_", "_<=_", "_>_", "_>=_"):
            cases = ["compare-sized"] if matches("string") or matches("bytes") else []
            if matches(*NUMERIC) or matches("bool") or matches("timestamp") or matches("duration"):
                cases.append("default")
            return cases
        if fn in ("_==_", "_!=_"):
            return ["compare-sized"]
        if fn == "_+_":
            cases = ["concat"] if matches("string") or matches("bytes") else []
            cases += ["add-list"] if matches("list") else []
            if matches(*NUMERIC) or matches("timestamp", "duration"):
                cases.append("default")
            return cases
        if fn == "@in":
            collection = e.args[1].type.kind
            return {"list": ["in-list"], "map": ["default"]}.get(collection, ["in-list", "default"])
        return [fn]

    def _function_cost(
        self, e: Expr, arg_costs: list[Estimate]
    ) -> tuple[Estimate, Estimate | None]:
        arg_sum = ZERO
        for c in arg_costs:
            arg_sum = arg_sum + c
        fn_cost, result_size = Estimate(MAX_UINT64, 0), None
        for case in self._overload_cases(e):
            cost, size = self._case_cost(case, e, arg_costs, arg_sum)
            fn_cost = fn_cost.union(cost)
            if size is not None:
                result_size = size if result_size is None else result_size.union(size)
        return fn_cost, result_size

    def _case_cost(
        self, case: str, e: Expr, arg_costs: list[Estimate], arg_sum: Estimate
    ) -> tuple[Estimate, Estimate | None]:
        args = e.args
        if case in ("startsWith", "endsWith"):
            return self.size(args[0]).by_factor(STRING_TRAVERSAL_COST_FACTOR) + arg_sum, None
        if case == "contains":
            text = self.size(e.target).by_factor(STRING_TRAVERSAL_COST_FACTOR)
            sub = self.size(args[0]).by_factor(STRING_TRAVERSAL_COST_FACTOR)
            return text.times(sub) + arg_sum, None
        if case == "matches":
            text = (self.size(e.target) + ONE).by_factor(STRING_TRAVERSAL_COST_FACTOR)
            regex = self.size(args[0]).by_factor(REGEX_STRING_LENGTH_COST_FACTOR)
            return text.times(regex) + arg_sum, None
        if case in ("quantity", "isQuantity"):
            # EstimateCallCost charges the string's traversal under `if target != nil`, which
            # holds for a global call too: cel-go's costCall passes a pointer to an empty node.
            return self.size(args[0]).by_factor(STRING_TRAVERSAL_COST_FACTOR) + arg_sum, None
        if case == "in-list":
            return self.size(args[1]).by_factor(1) + arg_sum, None
        if case in ("_&&_", "_||_"):
            lhs, rhs = arg_costs
            return Estimate(lhs.min, (lhs + rhs).max), None
        if case == "_?_:_":
            size = self.size(args[1]).union(self.size(args[2]))
            return arg_costs[0] + arg_costs[1].union(arg_costs[2]), size
        if case in ("concat", "add-list"):
            result = self.size(args[0]) + self.size(args[1])
            if case == "add-list":
                return ONE + arg_sum, result
            return result.by_factor(STRING_TRAVERSAL_COST_FACTOR) + arg_sum, result
        if case == "compare-sized":
            lhs, rhs = self.size(args[0]), self.size(args[1])
            smallest_max = min(lhs.max, rhs.max)
            low = 1 if smallest_max > 0 else 0
            return Estimate(low, smallest_max).by_factor(
                STRING_TRAVERSAL_COST_FACTOR
            ) + arg_sum, None
        return ONE + arg_sum, None


# ------------------------------------------------------------------ per rule


@dataclass
class CompiledRule:
    max_cost: int  # CompilationResult.MaxCost
    max_cardinality: int  # CompilationResult.MaxCardinality (used when the node is unbounded)
    uses_old_self: bool
    result_type: str


def compile_rule(rule: str, node_type: DeclType) -> CompiledRule:
    """schema/cel/compilation.go compileRule: type-check, then estimate the cost."""
    expr = parse(rule)
    checker = Checker(node_type)
    result = checker.check(expr)
    if result.kind != "bool":
        raise NotBool("cel expression must evaluate to a bool")
    cost = Coster(node_type).cost(expr)
    return CompiledRule(
        max_cost=cost.max,
        max_cardinality=max_cardinality(node_type.min_serialized_size),
        uses_old_self=checker.uses_old_self,
        result_type=result.kind,
    )


def expression_cost(compiled: CompiledRule, cardinality: int | None) -> int:
    """validation.go getExpressionCost: the rule's cost times how often its node can occur."""
    factor = cardinality if cardinality is not None else compiled.max_cardinality
    if compiled.max_cost == 0:
        return 0
    return _mul(compiled.max_cost, factor)


def cost_error_message(cost_name: str, cost: int, limit: int) -> str:
    """validation.go getCostErrorMessage."""
    factor = cost / limit
    if factor > 100.0:
        shown = "more than 100x"
    elif factor < 1.5:
        shown = f"{factor:f}x"
    else:
        shown = f"{factor:.1f}x"
    return (
        f"{cost_name} exceeds budget by factor of {shown} (try simplifying the rule, or adding "
        "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
