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
from datetime import datetime
from decimal import ROUND_UP, Context, Decimal, localcontext
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
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

# The kubelet parses a container's image with distribution/reference's ParseNormalizedNamed
# (v0.6.0, as vendored by Kubernetes v1.32) and fails the pod with InvalidImageName when it cannot
# (kuberuntime applyDefaultImageTag); the API server only refuses an empty image or one with
# surrounding whitespace (validateContainerOnlyForPod). `image_reference_problems` transcribes
# ParseNormalizedNamed: normalize.go (splitDockerDomain: a first component with '.' or ':', in
# upper case, or `localhost` is a registry, else the image is Docker Hub's and a name without '/'
# gets `library/`), reference.go Parse (regexp.go's referencePat; the repository path at most
# RepositoryNameTotalLengthMax = 255 characters) and go-digest's Digest.Validate (only sha256,
# sha384 and sha512, with exactly 64, 96 and 128 lowercase hex digits). The CRD states the same:
# the grammar with those three digests as its pattern, the path's length and the 64-hex image ID
# in CEL (IMAGE_REFERENCE_RULES).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"  # Go's \w is ASCII
_DIGEST_GRAMMAR = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}  # go-digest anchoredEncodedRegexps
_DIGEST = "(?:" + "|".join(f"{alg}:[a-f0-9]{{{n}}}" for alg, n in DIGEST_HEX_LENGTHS.items()) + ")"
IMAGE_REFERENCE_PATTERN = rf"^{_NAME}(?::{_TAG})?(?:@{_DIGEST})?$"
IMAGE_REFERENCE_MAX = 1024
REPOSITORY_PATH_MAX = 255  # reference.go RepositoryNameTotalLengthMax
_DOCKER_HUB = ("docker.io", "index.docker.io")  # normalize.go defaultDomain, legacyDefaultDomain
_OFFICIAL_PREFIX = "library/"

_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST_GRAMMAR}))?")
_ANCHORED_NAME = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})")


def _split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go splitDockerDomain."""
    first, slash, rest = name.partition("/")
    if not slash:
        return "docker.io", _OFFICIAL_PREFIX + name
    if first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        domain, remote = ("docker.io" if first == "index.docker.io" else first), rest
    else:
        domain, remote = "docker.io", name
    if domain == "docker.io" and "/" not in remote:
        remote = _OFFICIAL_PREFIX + remote
    return domain, remote


def _digest_problem(digest: str) -> str | None:
    """go-digest Digest.Validate."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm not in DIGEST_HEX_LENGTHS:
        return f"unsupported digest algorithm {algorithm!r}: only sha256, sha384 and sha512"
    if len(encoded) != DIGEST_HEX_LENGTHS[algorithm]:
        return f"invalid checksum digest length: {algorithm} takes {DIGEST_HEX_LENGTHS[algorithm]} hex digits, not {len(encoded)}"
    if not re.fullmatch("[a-f0-9]+", encoded):
        return "invalid checksum digest format: hex digits in lower case"
    return None


def image_reference_problems(image: str) -> list[str]:
    """Why distribution/reference's ParseNormalizedNamed refuses `image` (what the kubelet
    calls), in its words, or nothing."""
    if len(image) > IMAGE_REFERENCE_MAX:
        return [f"must be no more than {IMAGE_REFERENCE_MAX} characters"]
    if re.fullmatch("[a-f0-9]{64}", image):
        return ["a name of 64 hex digits is an image ID, not a reference (cannot specify 64-byte hexadecimal strings)"]
    domain, remainder = _split_docker_domain(image)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        return [f"invalid reference format: repository name ({remote}) must be lowercase"]
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        return ["invalid reference format: [registry[:port]/]repository[:tag][@digest], the repository in lower case"]
    name = _ANCHORED_NAME.fullmatch(match[1])
    path = name[2] if name else match[1]
    if len(path) > REPOSITORY_PATH_MAX:
        return [f"repository name must not be more than {REPOSITORY_PATH_MAX} characters (its path {path[:40]}... has {len(path)})"]
    problem = _digest_problem(match[3]) if match[3] else None
    return [problem] if problem else []


def _image_reference(value: str) -> str:
    _raise_problems(image_reference_problems(value), value)
    return value


def _path_at_most(count: int, *, slashes: bool) -> str:
    """A repository path of at most `count` characters up to the tag or digest (the grammar is
    the pattern's: this only measures)."""
    chars = "[a-z0-9._/-]" if slashes else "[a-z0-9._-]"
    return f"{chars}{{1,{count}}}([:@].*)?$"


_OFFICIAL_MAX = REPOSITORY_PATH_MAX - len(_OFFICIAL_PREFIX)
_IS_REGISTRY = (
    f"self.matches({cel_string('^' + _DOMAIN_AND_PORT + '/')}) && "
    f"self.matches({cel_string('^([^/]*[.:A-Z][^/]*|localhost)/')})"
)
IMAGE_REFERENCE_RULES: list[dict[str, Any]] = [
    {
        "rule": "!self.matches('^[a-f0-9]{64}$')",
        "message": "a name of 64 hex digits is an image ID, not a reference",
    },
    {
        # The path splitDockerDomain leaves: the whole name, the name after a registry, or
        # library/<name> on Docker Hub.
        "rule": (
            f"!self.contains('/') ? self.matches({cel_string('^' + _path_at_most(_OFFICIAL_MAX, slashes=False))}) : "
            f"self.matches({cel_string('^(docker[.]io|index[.]docker[.]io)/[^/]*$')}) ? "
            f"self.matches({cel_string('^[^/]*/' + _path_at_most(_OFFICIAL_MAX, slashes=False))}) : "
            f"({_IS_REGISTRY}) ? self.matches({cel_string('^[^/]*/' + _path_at_most(REPOSITORY_PATH_MAX, slashes=True))}) : "
            f"self.matches({cel_string('^' + _path_at_most(REPOSITORY_PATH_MAX, slashes=True))})"
        ),
        "message": (
            f"the repository path must not be more than {REPOSITORY_PATH_MAX} characters "
            "(Docker Hub's library/ prefix included)"
        ),
    },
]
IMAGE_REFERENCE_HINT = (
    "a container image reference: [registry[:port]/]repository[:tag][@digest], the repository in lower "
    "case, a digest sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex> in lower case"
)
ImageReference = Annotated[
    str,
    AfterValidator(_image_reference),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": IMAGE_REFERENCE_MAX,
            "pattern": IMAGE_REFERENCE_PATTERN,
            "x-kubernetes-validations": IMAGE_REFERENCE_RULES,
        }
    ),
]


# ------------------------------------------------------------------------ quantities


class QuantityError(ValueError):
    """A string resource.ParseQuantity refuses."""


# k8s.io/apimachinery/pkg/api/resource/suffix.go: the decimal and binary SI suffixes.
_DECIMAL_SUFFIXES = {"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_QUANTITY_MAX_BINARY = Decimal(2**63 - 1)  # quantity.go maxAllowed: where a binary quantity is capped
_NANO = Decimal("1e-9")


def _quantity_parts(text: str) -> tuple[bool, str, str, str]:
    """quantity.go parseQuantityString: (positive, numerator, denominator, suffix)."""
    positive, pos, end = True, 0, len(text)
    if pos < end and text[0] in "+-":
        positive, pos = text[0] == "+", 1
    while pos < end and text[pos] == "0":  # leading zeros
        pos += 1
    if pos >= end:
        return positive, "0", "", ""
    start = pos
    while pos < end and text[pos].isascii() and text[pos].isdigit():
        pos += 1
    numerator = text[start:pos] or "0"
    denominator = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos].isascii() and text[pos].isdigit():
            pos += 1
        denominator = text[start:pos]
    suffix_start = pos
    while pos < end and text[pos] in "eEinumkKMGTP":
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos].isascii() and text[pos].isdigit():
        pos += 1
    if pos < end:
        raise QuantityError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    return positive, numerator, denominator, text[suffix_start:]


def parse_quantity(text: str) -> Decimal:
    """The value resource.ParseQuantity (Kubernetes v1.32) gives a string, exactly: the number
    times its suffix (an exponent as Go's int32 keeps it), rounded up to a multiple of 1e-9 (the
    smallest amount a Quantity holds), a binary-suffixed one capped at 2^63 - 1. No Python library
    parses Kubernetes quantities; this transcribes quantity.go."""
    if not text:
        raise QuantityError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    positive, numerator, denominator, suffix = _quantity_parts(text)
    base, exponent = 10, _DECIMAL_SUFFIXES.get(suffix)
    if exponent is None and suffix in _BINARY_SUFFIXES:
        base, exponent = 2, _BINARY_SUFFIXES[suffix]
    if exponent is None:
        if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[-+]?[0-9]+", suffix[1:]) and -(2**63) <= int(suffix[1:]) < 2**63:
            exponent = (int(suffix[1:]) + 2**31) % 2**32 - 2**31  # strconv.ParseInt, then int32()
        else:
            raise QuantityError("unable to parse quantity's suffix")
    digits = any(c.isascii() and c.isdigit() for c in text[: len(text) - len(suffix)])
    # Where quantity.go leaves its int64 fast path for inf.Dec, a number part without digits
    # fails ("unable to parse numeric part of quantity"): Pi, Ei, e-10.
    leaves_fast_path = (base == 2 and 15 - 1 - int(exponent * 3 / 10) - 1 < 0) or (base == 10 and exponent < -9)
    if not digits and leaves_fast_path:
        raise QuantityError("unable to parse numeric part of quantity")
    if abs(exponent) > 10**8:  # 10^(10^8) and beyond: out of every bound a field states
        raise QuantityError(f"the exponent {exponent} is out of range")
    with localcontext(Context(prec=len(text) + 60, Emax=10**9, Emin=-(10**9))):
        amount = Decimal(f"{numerator}.{denominator or '0'}")
        amount = amount.scaleb(exponent) if base == 10 else amount * 2**exponent
        if amount.as_tuple().exponent < -9:  # type: ignore[operator]
            amount = amount.quantize(_NANO, rounding=ROUND_UP)
        if base == 2 and amount > _QUANTITY_MAX_BINARY:
            amount = _QUANTITY_MAX_BINARY
        return amount if positive else -amount


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


# metav1.Time's UnmarshalJSON: time.Parse(time.RFC3339, ...), which takes a one-digit hour and a
# fractional second (Go's time package; checked on the lab: "2020-01-01T1:00:00Z" is taken,
# "2020-01-01t10:00:00Z" and "2020-02-30T10:00:00Z" are not).
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{1,2}):([0-9]{2}):([0-9]{2})([.,][0-9]+)?(Z|[-+]([0-9]{2}):([0-9]{2}))"
)


def _rfc3339(value: str) -> str:
    match = _RFC3339.fullmatch(value)
    try:
        if match is None:
            raise ValueError
        year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
        datetime(year, month, day, hour, minute, second)
        if match[9] is not None and (int(match[9]) > 23 or int(match[10]) > 59):
            raise ValueError
    except ValueError:
        raise ValueError("must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z") from None
    return value


Rfc3339Time = Annotated[str, AfterValidator(_rfc3339)]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# objectmeta.go BannedOwners: an Event cannot own anything.
_BANNED_OWNERS = {("", "v1", "Event"), ("events.k8s.io", "v1", "Event")}


class OwnerReference(CoreV1Model):
    """An owning object (meta/v1 OwnerReference), checked as validateOwnerReference checks it."""

    api_version: str = Field(..., description="API version of the referent.")
    kind: str = Field(..., description="Kind of the referent.")
    name: str = Field(..., description="Name of the referent.")
    uid: str = Field(..., description="UID of the referent.")
    controller: bool | None = Field(None, description="Whether the referent is the managing controller.")
    block_owner_deletion: bool | None = Field(None, description="Whether the owner's deletion waits for this object.")

    @model_validator(mode="after")
    def _as_validate_owner_reference(self) -> OwnerReference:
        group, _, version = self.api_version.rpartition("/")
        problems = []
        if not version:
            problems.append("apiVersion: version must not be empty")
        if not self.kind:
            problems.append("kind must not be empty")
        if not self.name:
            problems.append("name must not be empty")
        if not self.uid:
            problems.append("uid must not be empty")
        if (group, version, self.kind) in _BANNED_OWNERS:
            problems.append(f"{group}/{version}, Kind={self.kind} is disallowed from being an owner")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ManagedFieldsEntry(CoreV1Model):
    """A field manager's record (meta/v1 ManagedFieldsEntry); the API server replaces what a
    manifest states here, so only the types are checked."""

    manager: str | None = None
    operation: str | None = None
    api_version: str | None = None
    time: Rfc3339Time | None = None
    fields_type: str | None = None
    fields_v1: dict[str, Any] | None = None
    subresource: str | None = None


class ObjectMeta(CoreV1Model):
    """An object's metadata (meta/v1 ObjectMeta), decoded as strictly as the API server decodes
    it (kubectl's default strict field validation: `metadata.lables` is "unknown field") and
    checked as ValidateObjectMetaAccessor checks it on create (labels, annotations, owner
    references, finalizers). What the server sets itself (uid, resourceVersion, generation,
    timestamps, managedFields) is taken as typed and left to it."""

    name: str | None = Field(None, description="The object's name.")
    generate_name: str | None = Field(None, description="A prefix of a name the server generates.")
    namespace: DNS1123Label | None = Field(None, description="The object's namespace.")
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    creation_timestamp: Rfc3339Time | None = None
    deletion_timestamp: Rfc3339Time | None = None
    deletion_grace_period_seconds: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    labels: dict[LabelKey, LabelValue] | None = Field(None, description="Labels (ValidateLabels).")
    annotations: dict[str, str] | None = Field(None, description="Annotations (ValidateAnnotations).")
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[ManagedFieldsEntry] | None = None

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """ValidateAnnotations."""
        _raise_problems(annotation_problems(value or {}), "")
        return value

    @field_validator("owner_references")
    @classmethod
    def _one_controller(cls, value: list[OwnerReference] | None) -> list[OwnerReference] | None:
        """ValidateOwnerReferences: at most one reference is the controller."""
        controllers = [f"{r.kind}/{r.name}" for r in value or [] if r.controller]
        if len(controllers) > 1:
            raise ValueError(
                'Only one reference can have Controller set to true. Found "true" in references for '
                f"{controllers[0]} and {controllers[1]}"
            )
        return value

    @field_validator("finalizers")
    @classmethod
    def _finalizers(cls, value: list[str] | None) -> list[str] | None:
        """ValidateFinalizers: each a qualified name; orphan and foregroundDeletion exclusive."""
        finalizers = value or []
        problems = [f"finalizer {f!r}: {p}" for f in finalizers for p in qualified_name_problems(f)]
        if "orphan" in finalizers and "foregroundDeletion" in finalizers:
            problems.append("finalizer orphan and foregroundDeletion cannot be both set")
        _raise_problems(problems, "")
        return value
