"""Which metric names and labels a PromQL expression reads: for holding the chart's dashboard
and alert rules to the metrics the code exports (test_metrics_contract.py).

Hand-written because no maintained PromQL parser is installable here (the Go parser lives in
Prometheus; promtool has no offline "parse this expression" command). PromQL's lexical rules
make names easy to find once strings, label matchers, ranges and grouping clauses are removed:
what is left are functions (followed by "("), keywords, numbers and metric names.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\b(offset)\s+-?[0-9a-z]+|@\s*[0-9.]+")
_IDENT = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "start",
    "end",
}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^{}]*\})")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUP_LABELS = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^()]*)\)")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads, e.g. {"mfpo_train_loss"} for
    'max by (stage) (mfpo_train_loss{term="text"}[5m])'."""
    text = _STRING.sub('""', expr)
    # Strings first (they may hold braces), then innermost-first until nothing changes.
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    previous = None
    while previous != text:
        previous, text = text, _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}


def selector_labels(expr: str) -> dict[str, set[str]]:
    """Label names matched per metric in the expression's selectors:
    'm{a="1", b=~"x"}' -> {"m": {"a", "b"}}."""
    found: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(_STRING.sub('""', expr)):
        found.setdefault(name, set()).update(_MATCHER_LABEL.findall(matchers))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Labels named in by/without/on/ignoring clauses."""
    return {
        label.strip()
        for group in _GROUP_LABELS.findall(expr)
        for label in group.split(",")
        if label.strip()
    }


def grafana_query_expr(query: str) -> str:
    """The PromQL inside a Grafana variable query: label_values(EXPR, label) -> EXPR."""
    match = _LABEL_VALUES.match(query)
    return match.group(1) if match else query
