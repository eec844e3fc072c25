"""Kubernetes' own rules for what an MFPORun puts into a Job and its pods.

A manifest that passes `mfpo` validation and the CRD must not produce a Job or pod that the API
server refuses, or one it keeps after dropping part of it (the API server drops an unknown
field of an embedded object with only a warning: a typo in `affinity` would run a GPU stage with
no node constraint). So the pod-spec parts of `spec.resources` are typed here as core/v1 types
(a test holds their fields to the published Kubernetes OpenAPI schemas), and every name, label
and number that flows into the Job is held to the API server's validation, transcribed from
Kubernetes v1.32 (no Python library implements it; the `kubernetes` client checks only that
required fields are set):

    k8s.io/apimachinery/pkg/util/validation/validation.go   IsQualifiedName, IsValidLabelValue,
                                                             IsDNS1123Label, IsDNS1123Subdomain
    k8s.io/apimachinery/pkg/apis/meta/v1/validation         ValidateLabelSelector(Requirement)
    k8s.io/apimachinery/pkg/api/validation/objectmeta.go    ValidateAnnotations (256 KiB in all)
    k8s.io/kubernetes/pkg/apis/core/validation/validation.go ValidateTolerations, validateAffinity,
        ValidateNodeSelectorRequirement, ValidateNodeFieldSelectorRequirement,
        ValidatePreferredSchedulingTerms, validatePodAffinityTerm,
        validateMatchLabelKeysAndMismatchLabelKeys

Each rule is stated twice on purpose: as a Python check (exact, with the API server's wording)
and as the CRD's schema (pattern, maxLength, maxItems and, where the schema cannot say it, a
CEL rule in `mfpo_operator.crd`), so that `kubectl apply` refuses the same manifests. Lists
carry maxItems far above any real pod spec: the API server prices a CEL rule by the worst-case
size of the lists around it and refuses a CRD that could cost too much.

Pure: pydantic only, no I/O. Imported by `api`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

# ----------------------------------------------------------- apimachinery's names

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63  # the name part of a label key
LABEL_VALUE_MAX = 63
LABEL_KEY_MAX = DNS1123_SUBDOMAIN_MAX + 1 + QUALIFIED_NAME_MAX
ANNOTATIONS_TOTAL_MAX = 256 * 1024  # TotalAnnotationSizeLimitB: keys and values, in bytes
INT32_MAX = 2**31 - 1
# A count of seconds the controllers turn into a Go time.Duration (int64 nanoseconds): the Job
# controller's pastActiveDeadline and the taint manager's getMinTolerationTime compute
# `time.Duration(seconds) * time.Second`, which wraps negative above this (the Job would fail at
# once with DeadlineExceeded; the pod would be evicted at once).
DURATION_SECONDS_MAX = (2**63 - 1) // 10**9

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
# The same name part, its length bounded in the pattern (so that the CRD's pattern says it).
_QUALIFIED_NAME_BOUNDED = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"

DNS1123_LABEL_PATTERN = f"^{_DNS1123_LABEL}$"
DNS1123_SUBDOMAIN_PATTERN = f"^{_DNS1123_SUBDOMAIN}$"
LABEL_VALUE_PATTERN = f"^({_QUALIFIED_NAME})?$"
LABEL_KEY_PATTERN = f"^({_DNS1123_SUBDOMAIN}/)?{_QUALIFIED_NAME_BOUNDED}$"
# The one part of IsQualifiedName a pattern cannot say next to the one above: the prefix before
# '/' has at most 253 characters. The CRD states it in CEL.
LABEL_KEY_PREFIX_PATTERN = f"^[^/]{{0,{DNS1123_SUBDOMAIN_MAX}}}(/[^/]*)?$"


def cel_string(text: str) -> str:
    """A CEL string literal (single-quoted; backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


LABEL_KEY_PREFIX_RULE = {
    "rule": f"self.matches({cel_string(LABEL_KEY_PREFIX_PATTERN)})",
    "message": f"the prefix of a label key (before '/') must be at most {DNS1123_SUBDOMAIN_MAX} characters",
}

LABEL_KEY_HINT = (
    "a label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name "
    "of at most 63 alphanumerics, '-', '_' or '.' that starts and ends alphanumeric, e.g. "
    "'nvidia.com/gpu.product'"
)
LABEL_VALUE_HINT = (
    "a label value: empty, or at most 63 alphanumerics, '-', '_' or '.' that start and end "
    "alphanumeric"
)


def dns1123_label_problems(value: str) -> list[str]:
    """IsDNS1123Label: at most 63 lowercase alphanumerics or '-', alphanumeric at both ends."""
    problems = [f"must be no more than {DNS1123_LABEL_MAX} characters"] if len(value) > DNS1123_LABEL_MAX else []
    if not re.fullmatch(_DNS1123_LABEL, value):
        problems.append("must be a DNS-1123 label: lowercase alphanumerics or '-', starting and ending alphanumeric")
    return problems


def dns1123_subdomain_problems(value: str) -> list[str]:
    """IsDNS1123Subdomain: at most 253 characters of dot-separated DNS-1123 labels."""
    problems = (
        [f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"] if len(value) > DNS1123_SUBDOMAIN_MAX else []
    )
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        problems.append(
            "must be a DNS-1123 subdomain: lowercase alphanumerics, '-' or '.', starting and ending alphanumeric"
        )
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """IsQualifiedName, the rule of label keys, annotation keys (lowercased) and topology keys."""
    parts = value.split("/")
    if len(parts) > 2:
        return [f"must be {LABEL_KEY_HINT}"]
    problems: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems += [f"prefix part {p}" for p in dns1123_subdomain_problems(prefix)]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        problems.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if not re.fullmatch(_QUALIFIED_NAME, name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
    return problems


def label_value_problems(value: str) -> list[str]:
    """IsValidLabelValue: empty, or a name part of at most 63 characters."""
    problems = [f"must be no more than {LABEL_VALUE_MAX} characters"] if len(value) > LABEL_VALUE_MAX else []
    if not re.fullmatch(f"({_QUALIFIED_NAME})?", value):
        problems.append(f"must be {LABEL_VALUE_HINT}")
    return problems


def _raise_problems(problems: list[str], value: str) -> None:
    if problems:  # the value itself is shown beside the message (kubectl's "Invalid value: ...")
        raise ValueError("; ".join(problems))


def _label_key(value: str) -> str:
    _raise_problems(qualified_name_problems(value), value)
    return value


def _label_value(value: str) -> str:
    _raise_problems(label_value_problems(value), value)
    return value


def _dns1123_label(value: str) -> str:
    _raise_problems(dns1123_label_problems(value), value)
    return value


def _dns1123_subdomain(value: str) -> str:
    _raise_problems(dns1123_subdomain_problems(value), value)
    return value


LABEL_KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "maxLength": LABEL_KEY_MAX,
    "pattern": LABEL_KEY_PATTERN,
    "x-kubernetes-validations": [LABEL_KEY_PREFIX_RULE],
}
LABEL_VALUE_SCHEMA: dict[str, Any] = {"type": "string", "maxLength": LABEL_VALUE_MAX, "pattern": LABEL_VALUE_PATTERN}

LabelKey = Annotated[str, AfterValidator(_label_key), WithJsonSchema(LABEL_KEY_SCHEMA)]
# A toleration's key: empty means every key (ValidateTolerations checks only a non-empty one).
TaintKey = Annotated[
    str,
    AfterValidator(lambda value: _label_key(value) if value else value),
    WithJsonSchema({**LABEL_KEY_SCHEMA, "pattern": f"^({LABEL_KEY_PATTERN[1:-1]})?$"}),
]
LabelValue = Annotated[str, AfterValidator(_label_value), WithJsonSchema(LABEL_VALUE_SCHEMA)]
DNS1123Label = Annotated[
    str,
    AfterValidator(_dns1123_label),
    WithJsonSchema({"type": "string", "maxLength": DNS1123_LABEL_MAX, "pattern": DNS1123_LABEL_PATTERN}),
]
DNS1123Subdomain = Annotated[
    str,
    AfterValidator(_dns1123_subdomain),
    WithJsonSchema({"type": "string", "maxLength": DNS1123_SUBDOMAIN_MAX, "pattern": DNS1123_SUBDOMAIN_PATTERN}),
]


def label_map_rule(max_keys: int) -> dict[str, Any]:
    """The CRD's form of map[LabelKey]LabelValue (nodeSelector, matchLabels): the values in the
    schema, the keys in CEL (a structural schema cannot constrain a map's keys)."""
    return {
        "type": "object",
        "maxProperties": max_keys,
        "additionalProperties": LABEL_VALUE_SCHEMA,
        "x-kubernetes-validations": [
            {
                "rule": (
                    f"self.all(k, size(k) <= {LABEL_KEY_MAX} && k.matches({cel_string(LABEL_KEY_PATTERN)}) "
                    f"&& k.matches({cel_string(LABEL_KEY_PREFIX_PATTERN)}))"
                ),
                "message": f"every key must be {LABEL_KEY_HINT}",
            }
        ],
    }


# Bounds of the embedded lists (for the API server's CEL cost estimate; far above real specs).
MAX_TOLERATIONS = 64
MAX_LABELS = 64
MAX_TERMS = 16
MAX_REQUIREMENTS = 16
MAX_VALUES = 128
MAX_NAMESPACES = 64


# map[string]string of label keys to label values (ValidateLabels): nodeSelector, matchLabels.
LabelMap = Annotated[
    dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS), WithJsonSchema(label_map_rule(MAX_LABELS))
]


# ------------------------------------------------------------------ core/v1 types


class CoreV1Model(BaseModel):
    """A Kubernetes type as the API server reads it: camelCase, unknown fields refused (kubectl's
    strict field validation), no type coercion (Go's JSON decoder takes no "7" for an int32),
    empty and absent alike (Go's zero values)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON form, as it goes into a Pod spec."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Toleration(CoreV1Model):
    """A pod toleration, as in a Pod's spec.tolerations (core/v1 Toleration)."""

    key: TaintKey | None = Field(None, description="Taint key tolerated; all keys when empty and operator is Exists.")
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="Equal (the default) matches value; Exists matches any value."
    )
    value: LabelValue | None = Field(None, description="Taint value tolerated (operator Equal); empty with Exists.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect tolerated; every effect when unset."
    )
    toleration_seconds: int | None = Field(
        None,
        ge=0,
        le=DURATION_SECONDS_MAX,
        description="With effect NoExecute only: how long the pod stays bound after the taint appears (0: evicted at once).",
    )

    @model_validator(mode="after")
    def _as_validate_tolerations(self) -> Toleration:
        """ValidateTolerations (core/validation/validation.go)."""
        if not self.key and self.operator != "Exists":
            raise ValueError('operator must be Exists when `key` is empty, which means "match all values and all keys"')
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("effect must be 'NoExecute' when `tolerationSeconds` is set")
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when `operator` is 'Exists'")
        return self


def _values_rule_problem(operator: str, values: list[str] | None) -> str | None:
    """The count of values an operator takes (ValidateNodeSelectorRequirement,
    ValidateLabelSelectorRequirement)."""
    count = len(values or [])
    if operator in ("In", "NotIn") and count == 0:
        return "values must be specified when `operator` is 'In' or 'NotIn'"
    if operator in ("Exists", "DoesNotExist") and count > 0:
        return "values may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
    if operator in ("Gt", "Lt") and count != 1:
        return "values must be specified single value when `operator` is 'Lt' or 'Gt'"
    return None


class NodeSelectorRequirement(CoreV1Model):
    """A node label requirement (core/v1 NodeSelectorRequirement, in matchExpressions)."""

    key: LabelKey = Field(..., description="The node label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        ..., description="How the label's value is compared with values."
    )
    values: list[str] | None = Field(
        None,
        max_length=MAX_VALUES,
        description="Values to compare with: some for In and NotIn, none for Exists and DoesNotExist, one integer for Gt and Lt.",
    )

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> NodeSelectorRequirement:
        problem = _values_rule_problem(self.operator, self.values)
        if problem:
            raise ValueError(problem)
        return self


class NodeFieldSelectorRequirement(CoreV1Model):
    """A node field requirement (core/v1 NodeSelectorRequirement in matchFields): the API server
    allows only the node's name (ValidateNodeFieldSelectorRequirement)."""

    key: Literal["metadata.name"] = Field(..., description="The node field: only metadata.name.")
    operator: Literal["In", "NotIn"] = Field(..., description="In or NotIn.")
    values: list[DNS1123Subdomain] = Field(
        ..., min_length=1, max_length=1, description="Exactly one node name."
    )


class NodeSelectorTerm(CoreV1Model):
    """Requirements a node must all meet (core/v1 NodeSelectorTerm)."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(
        None, max_length=MAX_REQUIREMENTS, description="Requirements on the node's labels."
    )
    match_fields: list[NodeFieldSelectorRequirement] | None = Field(
        None, max_length=MAX_REQUIREMENTS, description="Requirements on the node's fields."
    )


class NodeSelector(CoreV1Model):
    """Node terms, any of which a node may meet (core/v1 NodeSelector)."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        ..., min_length=1, max_length=MAX_TERMS, description="The terms (ORed); at least one."
    )


class PreferredSchedulingTerm(CoreV1Model):
    """A weighted node preference (core/v1 PreferredSchedulingTerm)."""

    weight: int = Field(..., ge=1, le=100, description="Weight in the range 1-100.")
    preference: NodeSelectorTerm = Field(..., description="The node term preferred.")


class NodeAffinity(CoreV1Model):
    """Node affinity scheduling rules (core/v1 NodeAffinity)."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        None, description="Nodes the pod may run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        None, max_length=MAX_TERMS, description="Nodes the scheduler prefers, by weight."
    )


class LabelSelectorRequirement(CoreV1Model):
    """A label requirement (meta/v1 LabelSelectorRequirement)."""

    key: LabelKey = Field(..., description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        ..., description="How the label's value is compared with values."
    )
    values: list[LabelValue] | None = Field(
        None, max_length=MAX_VALUES, description="Label values: some for In and NotIn, none for Exists and DoesNotExist."
    )

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> LabelSelectorRequirement:
        problem = _values_rule_problem(self.operator, self.values)
        if problem:
            raise ValueError(problem)
        return self


class LabelSelector(CoreV1Model):
    """A label query (meta/v1 LabelSelector): matchLabels and matchExpressions, ANDed."""

    match_labels: LabelMap | None = Field(None, description="Labels that must all be present with these values.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        None, max_length=MAX_REQUIREMENTS, description="Label requirements."
    )

    def keys(self) -> set[str]:
        """Every label key the selector names."""
        return set(self.match_labels or {}) | {e.key for e in self.match_expressions or []}


class PodAffinityTerm(CoreV1Model):
    """Pods (by labels and namespaces) this pod should be co-located with or kept from, within
    a topology domain (core/v1 PodAffinityTerm)."""

    label_selector: LabelSelector | None = Field(None, description="The pods, by label.")
    namespace_selector: LabelSelector | None = Field(None, description="The pods' namespaces, by label.")
    namespaces: list[DNS1123Label] | None = Field(
        None, max_length=MAX_NAMESPACES, description="The pods' namespaces, by name (this pod's when empty)."
    )
    topology_key: LabelKey = Field(
        ..., description="Node label whose value defines the topology domain, e.g. kubernetes.io/hostname."
    )
    match_label_keys: list[LabelKey] | None = Field(
        None,
        max_length=MAX_REQUIREMENTS,
        description="Keys of this pod's labels whose values the selected pods must share (Kubernetes 1.31+).",
    )
    mismatch_label_keys: list[LabelKey] | None = Field(
        None,
        max_length=MAX_REQUIREMENTS,
        description="Keys of this pod's labels whose values the selected pods must not share (Kubernetes 1.31+).",
    )

    @model_validator(mode="after")
    def _label_keys(self) -> PodAffinityTerm:
        """validateMatchLabelKeysAndMismatchLabelKeys. A key of matchLabelKeys is added to the
        labelSelector when the pod is created; if the labelSelector names it already, the API
        server refuses the pod, so it is refused here for any key."""
        match, mismatch = self.match_label_keys or [], self.mismatch_label_keys or []
        if (match or mismatch) and self.label_selector is None:
            raise ValueError("matchLabelKeys and mismatchLabelKeys must not be specified when labelSelector is not set")
        both = sorted(set(match) & set(mismatch))
        if both:
            raise ValueError(f"matchLabelKeys: {both[0]!r} exists in both matchLabelKeys and mismatchLabelKeys")
        named = sorted(set(match) & (self.label_selector.keys() if self.label_selector else set()))
        if named:
            raise ValueError(f"matchLabelKeys: {named[0]!r} exists in both matchLabelKeys and labelSelector")
        return self


class WeightedPodAffinityTerm(CoreV1Model):
    """A weighted pod affinity term (core/v1 WeightedPodAffinityTerm)."""

    weight: int = Field(..., ge=1, le=100, description="Weight in the range 1-100.")
    pod_affinity_term: PodAffinityTerm = Field(..., description="The term.")


class PodAffinity(CoreV1Model):
    """Pods to be co-located with (core/v1 PodAffinity)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        None, max_length=MAX_TERMS, description="Terms every placement must meet."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        None, max_length=MAX_TERMS, description="Terms the scheduler prefers, by weight."
    )


class PodAntiAffinity(CoreV1Model):
    """Pods to be kept from (core/v1 PodAntiAffinity)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        None, max_length=MAX_TERMS, description="Terms every placement must meet."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        None, max_length=MAX_TERMS, description="Terms the scheduler prefers, by weight."
    )


class Affinity(CoreV1Model):
    """Pod scheduling constraints, as in a Pod's spec.affinity (core/v1 Affinity)."""

    node_affinity: NodeAffinity | None = Field(None, description="Node affinity scheduling rules.")
    pod_affinity: PodAffinity | None = Field(None, description="Pods to be co-located with.")
    pod_anti_affinity: PodAntiAffinity | None = Field(None, description="Pods to be kept from.")


# ------------------------------------------------------------------- the container image

# The kubelet parses a container's image with distribution/reference's ParseNormalizedNamed and
# fails the pod with InvalidImageName when it cannot (kuberuntime applyDefaultImageTag); the API
# server only refuses an empty image or one with surrounding whitespace (validateContainerOnlyForPod).
# The grammar of reference/regexp.go (referencePat), with Go's \w and [[:xdigit:]] spelled out;
# not checked here: a repository path over 255 characters and a digest's algorithm-specific length.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
IMAGE_REFERENCE_PATTERN = rf"^{_NAME}(?::{_TAG})?(?:@{_DIGEST})?$"
IMAGE_REFERENCE_MAX = 1024


# --------------------------------------------------------------- object metadata


def annotation_problems(annotations: dict[str, str]) -> list[str]:
    """ValidateAnnotations: each key a qualified name once lowercased; keys and values at most
    256 KiB in all (bytes)."""
    problems = [
        f"annotation key {key!r}: {p}" for key in annotations for p in qualified_name_problems(key.lower())
    ]
    total = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if total > ANNOTATIONS_TOTAL_MAX:
        problems.append(f"annotations are {total} bytes in all; the API server's limit is {ANNOTATIONS_TOTAL_MAX}")
    return problems
