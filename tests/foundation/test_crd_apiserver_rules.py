"""The generated CRDs pass what kube-apiserver checks when a CustomResourceDefinition is created.

A CRD the API server refuses breaks `kubectl apply -f crds/` and `helm install` for everyone
(issue 23: a `description` on the root `metadata` did). The checks are apiextensions-apiserver's
(Kubernetes v1.32, as vendored by MicroShift release-4.19), replicated in apiserver_crd.py and,
for the CEL cost estimate, apiserver_cel.py; this module holds the generated CRDs
(crds/mfpo.dev_mfporuns.yaml from operator/mfpo_operator/crd.py, and charts/mfpo/crds/: the
chart's copy; the chart shipped kopf's peering CRDs too until the operator went standalone) to
them, and holds the replica to the real API server: 62
deliberately broken copies of the MFPORun CRD (apiserver_cases.MUTANTS) and a CRD of 138 CEL cost
probes were sent to kube-apiserver v1.32.13 (dry run), and its answers are recorded in
apiserver_answers.json. Each test of a rule fails on a mutant breaking that rule, with the very
error text the API server gave.

Rules covered (V = pkg/apis/apiextensions/validation/validation.go, S = pkg/apiserver/schema/
validation.go and complete.go, D = pkg/apiserver/schema/defaulting/validation.go, C =
validation/cel_validation.go and pkg/apiserver/schema/cel/compilation.go, all under
staging/src/k8s.io/apiextensions-apiserver; the ids are RULES' keys, the mutants' rules):

  the CRD object (V ValidateCustomResourceDefinition, validateCustomResourceDefinitionSpec)
    crd-names                 metadata.name = <plural>.<group>; group a DNS subdomain with a dot;
                              plural, singular, shortNames, categories DNS-1035 labels, kind and
                              listKind too (lower-cased), kind != listKind (V
                              ValidateCustomResourceDefinitionNames; singular and listKind
                              defaulted first: apis/apiextensions/v1/defaults.go)
    crd-scope                 Cluster or Namespaced (V validateEnumStrings)
    crd-versions              names DNS-1035 and unique, exactly one storage version, a schema in
                              each, status.storedVersions holds the storage version (V
                              ValidateCustomResourceDefinitionStoredVersions)
    crd-columns               printer columns: name, type, format, jsonPath (V
                              ValidateCustomResourceColumnDefinition)
    crd-preserve-unknown-fields  spec.preserveUnknownFields never true (V
                              validatePreserveUnknownFields; and false with defaults)
    crd-api-approval          *.k8s.io / *.kubernetes.io groups need the approval annotation (V
                              validateAPIApproval)
  structural schemas (S ValidateStructural, validateStructuralInvariants)
    metadata-only-names       the root `metadata` states nothing but `type: object` and the
                              properties name/generateName (validateStructuralMetadataInvariants)
    metadata-object           a root or embedded resource's metadata is an object
    no-nested-metadata        no `metadata` property inside anyOf/allOf/oneOf/not
    kind-apiversion-string    kind and apiVersion are strings
    type-required             every node has a type, unless int-or-string or preserving
    items-required            an array says what its items are
    no-root-additional-properties  the root is not a map
    root-object               the root is an object
    junctors-value-only       anyOf/allOf/oneOf/not hold value validations only: no type,
                              default, title, description, nullable, additionalProperties,
                              x-kubernetes-* (validateNestedValueValidation), but the
                              int-or-string anyOf pattern
    junctors-complete         what the root's junctors constrain exists structurally (complete.go)
    int-or-string-alone       int-or-string is neither preserving nor embedded (validateExtensions)
    pattern-compiles          every pattern compiles (as RE2: see "not covered")
    embedded-resource         x-kubernetes-embedded-resource: an object, with properties or
                              preserving, never a map
    unsupported-keywords      $ref, id, $schema, definitions, dependencies, patternProperties,
                              additionalItems, items as a list (convert.go NewStructural, V
                              specStandardValidatorV3.validate)
  the root schema (V validateCustomResourceDefinitionValidation)
    status-root-fields        with the status subresource, only allowedFieldsAtRootSchema at the
                              root (no default, anyOf, additionalProperties...), type object
    root-not-nullable         nullable cannot be true at the root
  OpenAPI checks (V ValidateCustomResourceDefinitionOpenAPISchema)
    openapi-types             type is one of the six OpenAPI types (never null)
    no-defaults-in-metadata   no default in the root's metadata, kind or apiVersion
    no-unique-items           uniqueItems is forbidden
    properties-xor-additional properties and additionalProperties (even `false`) exclude each other
    preserve-true-or-absent   x-kubernetes-preserve-unknown-fields is true or absent
    list-type-rules           x-kubernetes-list-type / -list-map-keys / -map-type and
                              validateMapListKeysMapSet
  x-kubernetes-validations (V, same function, and C compileRule)
    rule-fields               rule non-empty; message non-empty, one line, required for a
                              multi-line rule; messageExpression non-empty; reason one of four;
                              fieldPath a valid path
    rule-compiles             the rule type-checks (fields exist on its node) and is a bool
    old-self-correlatable     no oldSelf under a list that is not a map-list; optionalOldSelf
                              only with oldSelf
  defaults (D ValidateDefaults)
    defaults-pruned           a default has no field its schema lacks (pruning/algorithm.go)
    defaults-valid            a default passes its schema (and names apiVersion/kind at a
                              resource root)
    defaults-pass-cel         a default passes the CEL rules of its node and of those inside it
  CEL cost (V, C)
    cel-cost                  each rule's estimated cost (cel-go's MaxCost x how often its node
                              can occur: the maxItems/maxProperties above it, or what fits in a
                              3 MiB request) <= 10,000,000; their sum <= 100,000,000

Not covered: what the API server checks only on update (ratcheting of stored non-structural or
unpruned schemas, cost suppression of unchanged schemas, the stored-expressions CEL
environment, names frozen once Established, storedVersions removal); conversion webhooks beyond
the strategy's value and the scale subresource's paths beyond their prefix (we use neither);
selectableFields and messageExpression (we use neither, and the generated CRD is asserted to
have none); CEL outside the subset apiserver_cel models (it raises NotModelled rather than guess:
a new construct fails the generated CRD's test until the replica learns it), including the
Kubernetes CEL libraries (quantity, url, ip, cidr, regex, lists, format, authz) and their costs;
the ObjectMeta part of defaults inside embedded resources; kube-openapi's `format` checks of
defaults; the exact wording of Go's regexp errors and of cel-go's compile errors (compared after
`apiserver_crd.normalized`), and Go's struct dumps of bad values (compared by type name); RE2
syntax differences beyond lookaround, backreferences and possessive quantifiers; the CEL
runtime limits (per call, per object), which apply when a run is written, not the CRD.

Calibration of the cost estimate against the real API server (kube-apiserver v1.32.13 of the
lab, dry run): each of the 140 probes (the generated CRD's 116 rules, 22 more rules exercising
string sizes, unbounded strings and lists, maps, `in`, size(), matches, contains, `+`, has(),
the conditional, exists/exists_one/all/map/filter, nested comprehensions, date-times, oldSelf,
and two of cardinality: a rule under an unbounded list, and under two nested bounded lists) sits
under a map of `maxProperties: M` with M the fewest copies that take the replica's estimate over
10,000,000, so that the API server states the product with six decimals ("exceeds budget by
factor of 1.000006x"): its cost is then known to within 5/M. All 138 agree exactly, e.g.

    spec.evaluation#0, the pairwise benchmark rule   replica 111,477   server 1.003293x at M=90
    spec.resources.cpu#0, `type(self) == string ...` replica 314,578   server 1.006650x at M=32
    spec.resources.memory#0, four quantity(self)     replica 1,572,894 server 1.101026x at M=7
    spec#0, the s3-endpoint rule                     replica 164       server 1.000006x at M=60,976
    root#0, a Succeeded run's spec frozen            replica 13        server 1.000000x at M=769,231
    unbounded-list-all                               replica 5,242,878 server 1.048576x at M=2
    rule-under-unbounded-list (3 MiB / 3 bytes)      replica 11 x 1,048,576: server 1.153434x

and the CRD total ("exceeds budget by factor of 4.6x") with its four largest contributors; a
rule costing exactly 10,000,000 is accepted (the limit is inclusive). The
generated MFPORun CRD's largest rule costs 1,572,894 (16 % of the limit): memory's and shmSize's
whole-bytes rule, whose four quantity(self) calls are each priced as the traversal of a 3 MiB
string (an int-or-string has no maxLength, and library/cost.go charges quantity() by its
argument's size even for a global call), as is `type(self) == int`; the largest rule under
lists, times the most items of the lists around it, costs 553,328 (a pod affinity term's
matchLabelKeys checked against its labelSelector's keys, 16 x 16, in each of 16 terms); the
whole CRD 12,531,520 (13 %).

Re-record after a Kubernetes upgrade with a lab running (../shared/lab):
    python tests/foundation/apiserver_cases.py $KUBECONFIG     (dry run: creates nothing)
and MFPO_LAB_KUBECONFIG=$KUBECONFIG runs test_the_replica_answers_as_a_live_api_server.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any

import apiserver_cases as cases
import apiserver_cel as cel
import pytest
from apiserver_crd import CostReport, crd_errors, normalized
from mfpo_operator import crd as crd_generator
from mfpo_operator import validation

ANSWERS: dict[str, Any] = json.loads(cases.ANSWERS.read_text())

RULES = {
    "crd-names",
    "crd-scope",
    "crd-versions",
    "crd-columns",
    "crd-preserve-unknown-fields",
    "crd-api-approval",
    "metadata-only-names",
    "metadata-object",
    "no-nested-metadata",
    "kind-apiversion-string",
    "type-required",
    "items-required",
    "no-root-additional-properties",
    "root-object",
    "junctors-value-only",
    "junctors-complete",
    "int-or-string-alone",
    "pattern-compiles",
    "embedded-resource",
    "unsupported-keywords",
    "status-root-fields",
    "root-not-nullable",
    "openapi-types",
    "no-defaults-in-metadata",
    "no-unique-items",
    "properties-xor-additional",
    "preserve-true-or-absent",
    "list-type-rules",
    "rule-fields",
    "rule-compiles",
    "old-self-correlatable",
    "defaults-pruned",
    "defaults-valid",
    "defaults-pass-cel",
    "cel-cost",
}
CONTRIBUTED = "Forbidden: contributed to estimated rule cost total exceeding cost limit"


def assert_same_answer(server: list[str], crd: dict[str, Any]) -> None:
    """The replica's errors for `crd` are the server's, after `normalized`. The CRD total's
    "contributed" lines name four of the most expensive rules; among rules of equal cost the
    server's choice follows Go's map order, so those are compared by cost."""
    costs = CostReport()
    mine = [normalized(str(e)) for e in crd_errors(crd, costs)]
    theirs = [normalized(e) for e in server]
    assert sorted(e for e in mine if CONTRIBUTED not in e) == sorted(
        e for e in theirs if CONTRIBUTED not in e
    )
    cost_at = {path: cost for path, _, cost in costs.rules}

    def contributions(errors: list[str]) -> Counter[int]:
        return Counter(cost_at[e.split(": ", 1)[0]] for e in errors if CONTRIBUTED in e)

    assert contributions(mine) == contributions(theirs)


# ------------------------------------------------------------ the generated CRDs


@pytest.mark.parametrize("crd", cases.load_crds(), ids=lambda crd: crd["metadata"]["name"])
def test_generated_crd_passes_every_rule(crd: dict[str, Any]) -> None:
    assert [str(e) for e in crd_errors(crd)] == []
    assert ANSWERS["generated"][crd["metadata"]["name"]] == []  # and the API server agreed


def test_the_crd_file_is_what_the_generator_writes() -> None:
    # so that the rules above hold for what `python -m mfpo_operator.crd --write` produces
    assert crd_generator.check(crd_generator.DEFAULT_CRD_PATH) is None
    assert (
        cases.CRD_FILES[0].read_text()
        == (cases.REPO / "charts/mfpo/crds/mfpo.dev_mfporuns.yaml").read_text()
    )


def test_every_rule_is_under_the_cost_limits() -> None:
    costs = CostReport()
    assert crd_errors(cases.mfporun_crd(), costs) == []
    assert len(costs.rules) == 116  # every rule of the CRD was estimated (none skipped)
    worst = max(costs.rules, key=lambda rule: rule[2])
    assert worst[2] <= cel.STATIC_ESTIMATED_COST_LIMIT, worst
    assert costs.total <= cel.STATIC_ESTIMATED_CRD_COST_LIMIT
    # The margins the docstring states: the largest rules are the byte quantities', then a pod
    # affinity term's.
    assert (worst[2], costs.total) == (1_572_894, 12_531_520)
    assert worst[0].endswith("properties[memory].x-kubernetes-validations[0].rule")
    affinity = max((r for r in costs.rules if "properties[podAffinity]" in r[0]), key=lambda rule: rule[2])
    assert affinity[2] == 553_328 and affinity[0].endswith("x-kubernetes-validations[2].rule")


def test_no_feature_the_replica_does_not_check() -> None:
    """What the docstring lists as not covered is absent from the generated CRDs."""
    for crd in cases.load_crds():
        text = json.dumps(crd)
        for word in (
            "messageExpression",
            "selectableFields",
            "x-kubernetes-embedded-resource",
            '"conversion"',
            '"scale"',
        ):
            assert word not in text, (crd["metadata"]["name"], word)


def test_the_root_metadata_of_the_generated_crd_is_bare() -> None:
    # issue 23's bug, stated directly: the generator's metadata schema is type and name only.
    metadata = crd_generator.resource_schema()["properties"]["metadata"]
    assert set(metadata) == {"type", "properties"} and set(metadata["properties"]) == {"name"}


# ---------------------------------------------------------------------- mutants


@pytest.mark.parametrize("name", sorted(cases.MUTANTS))
def test_a_broken_crd_is_refused_as_the_api_server_refused_it(name: str) -> None:
    server = ANSWERS["mutants"][name]
    assert server, f"the API server accepted mutant {name}: it breaks no rule"
    assert crd_errors(cases.mutant(name)), f"the replica accepts {name}"
    assert_same_answer(server, cases.mutant(name))


def test_the_unbroken_copy_passes() -> None:
    # the mutants' starting point (the CRD in the probe group) passes, so each mutant's
    # errors are its own mutation's
    assert crd_errors(cases.renamed(cases.mfporun_crd())) == []


def test_every_rule_has_a_mutant_that_breaks_it() -> None:
    broken = Counter(rule for rule, _ in cases.MUTANTS.values())
    assert set(broken) == RULES


def test_issue_23_bug_is_the_first_mutant() -> None:
    (message,) = ANSWERS["mutants"]["metadata-description"]
    assert message == (
        "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify "
        "anything other than name and generateName, but metadata is implicitly specified"
    )


# ------------------------------------------------------------------- CEL cost


def test_cost_estimates_are_the_api_servers() -> None:
    assert_same_answer(ANSWERS["cost_probes"], cases.cost_probe_crd())


def _factors(errors: list[str]) -> dict[str, str]:
    found = {}
    for error in errors:
        match = re.match(
            r"(.*)\.x-kubernetes-validations\[0\]\.rule: Forbidden: estimated rule cost exceeds budget by factor of (\S+)x",
            error,
        )
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_every_probe_was_priced_precisely_by_the_api_server() -> None:
    """Each probe's M took it over the limit on the server (so it answered) by less than 1.5x
    (so with six decimals): the probes pin each rule's cost, not just its order of magnitude."""
    factors = _factors(ANSWERS["cost_probes"])
    probes = cases.cost_probes()
    assert len(probes) + len(cases.CARDINALITY_PROBES) == 140
    assert len(factors) == 140
    assert all(1.0 <= float(f) < 1.5 and len(f.split(".")[1]) == 6 for f in factors.values()), (
        factors
    )
    base = "spec.validation.openAPIV3Schema.properties[spec].properties"
    quantity = next(i for i, (pid, _) in enumerate(probes) if pid == "spec.resources.cpu#0")
    assert factors[f"{base}[p{quantity}].additionalProperties"] == "1.006650"  # 314,578 x 32
    memory = next(i for i, (pid, _) in enumerate(probes) if pid == "spec.resources.memory#0")
    assert factors[f"{base}[p{memory}].additionalProperties"] == "1.101026"  # 1,572,894 x 7


def test_a_rule_costing_exactly_the_limit_is_accepted() -> None:
    node = cases.AT_THE_LIMIT["additionalProperties"]
    (rule,) = node["x-kubernetes-validations"]
    compiled = cel.compile_rule(rule["rule"], cel.decl_type(node))
    assert cel.expression_cost(compiled, 2_500_000) == cel.STATIC_ESTIMATED_COST_LIMIT
    assert not any("[at-the-limit]" in e for e in ANSWERS["cost_probes"])  # the server: accepted
    assert any("1.000000x" in e for e in ANSWERS["cost_probes"])  # 2,500,001 copies: refused


def test_a_cost_mutant_is_refused_for_its_cost() -> None:
    answer = ANSWERS["mutants"]["pairwise-rule-unbounded-strings"]
    assert any("estimated rule cost exceeds budget by factor of 8.1x" in e for e in answer)
    evaluation = cases.mutant("pairwise-rule-unbounded-strings")["spec"]["versions"][0]["schema"]
    rule = evaluation["openAPIV3Schema"]["properties"]["spec"]["properties"]["evaluation"]
    compiled = cel.compile_rule(rule["x-kubernetes-validations"][0]["rule"], cel.decl_type(rule))
    # 16 x 16 pairs, each comparing two URIs of up to 3 MiB: 0.1 per byte
    assert 8.0e7 < cel.expression_cost(compiled, 1) < 8.2e7


@pytest.mark.parametrize(
    ("rule", "node", "cost"),
    [
        # worked by hand from cel-go checker/cost.go: select 1 (+1 on an object), has() 0,
        # ==/!= on sized operands ceil(0.1 x the smaller max size), the rest 1 plus arguments
        (
            "self.a == 'xyz'",
            {"type": "object", "properties": {"a": {"type": "string", "maxLength": 10}}},
            2 + 1,
        ),
        ("has(self.a)", {"type": "object", "properties": {"a": {"type": "integer"}}}, 1),
        # 1 + [cost of self.a: 2, of the literal list: 10] + 2 elements
        (
            "self.a in ['b', 'c']",
            {"type": "object", "properties": {"a": {"type": "string", "maxLength": 9}}},
            2 + 10 + 2,
        ),
        # all over 4 items: range 2 + result 1 + 4 x (step: accu 1 + pred (x 1 + 1 == ...) + loop: 2)
        (
            "self.l.all(x, x == 'a')",
            {
                "type": "object",
                "properties": {
                    "l": {
                        "type": "array",
                        "maxItems": 4,
                        "items": {"type": "string", "maxLength": 5},
                    }
                },
            },
            2 + 1 + 4 * ((1 + 2) + 2),
        ),
    ],
)
def test_small_costs_worked_by_hand(rule: str, node: dict[str, Any], cost: int) -> None:
    assert cel.compile_rule(rule, cel.decl_type(node)).max_cost == cost


def test_unknown_cel_is_refused_not_guessed() -> None:
    node = {"type": "object", "properties": {"a": {"type": "string"}}}
    with pytest.raises(cel.NotModelled, match="lowerAscii"):
        cel.compile_rule("self.a.lowerAscii() == 'a'", cel.decl_type(node))


# ------------------------------------------------------------------- run names


def test_the_api_server_enforces_the_crds_metadata_name_rules() -> None:
    """What the real API server answered for examples/quickstart.yaml under each name: the
    CRD's metadata.name maxLength (40) and pattern are enforced on top of Kubernetes' own name
    rules (a 64-character name is refused for the CRD's 40, and a valid DNS subdomain with a
    dot for the pattern)."""
    answers = ANSWERS["run_names"]
    assert answers["quickstart"] == answers["a" * 40] == []
    for name in ("a" * 41, "x" * 64):
        assert "metadata.name: Too long: may not be more than 40 bytes" in answers[name]
    (dotted,) = answers["quickstart.v2"]
    assert dotted == (
        'metadata.name: Invalid value: "quickstart.v2": metadata.name in body should match '
        "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
    )


@pytest.mark.parametrize("name", cases.RUN_NAMES)
def test_mfpo_accepts_the_run_names_the_api_server_accepts(name: str) -> None:
    # `mfpo run` and the operator validate a manifest as `kubectl apply` would (validation.py)
    refused_by_server = bool(ANSWERS["run_names"][name])
    try:
        validation.validate_manifest(cases.run_named(name))
    except validation.ManifestError as err:
        assert refused_by_server, err
        assert all(p.startswith("metadata.name:") for p in err.problems), err.problems
        # kubectl's wording where validation.py does not add a hint of its own
        too_long = [p for p in ANSWERS["run_names"][name] if "Too long" in p]
        assert set(too_long) <= set(err.problems), (too_long, err.problems)
    else:
        assert not refused_by_server


# ------------------------------------------------------------ spec fields (issue 24)


@pytest.mark.parametrize("name", cases.ISSUE_24_CASES)
def test_mfpo_refuses_exactly_the_spec_fields_the_api_server_refuses(name: str) -> None:
    """Storage URIs with '?', '#', '//', '..' or a control character, benchmark splits that are
    not the data's or listed twice, the removed judgeKeyEnv, judge URLs with credentials or a
    query, two judge keys: refused by kube-apiserver v1.32.13 (strict field validation, as
    kubectl sends), and so by `mfpo validate` and `mfpo run`, on the same field; where the
    server's words carry the meaning (an unsupported or duplicate value), in its words."""
    server = ANSWERS["objects"][name].get("errors", [])
    try:
        validation.validate_manifest(cases.object_case(name))
    except validation.ManifestError as err:
        assert server, f"mfpo refuses what the API server accepts: {err.problems}"
        mine = err.problems
    else:
        assert not server, f"mfpo accepts what the API server refuses: {server}"
        return
    for line in server:
        if line.startswith("<nil>"):  # "some validation rules were not checked"
            continue
        unknown = re.search(r'unknown field "([^"]+)"', line)
        where = unknown.group(1) if unknown else line.split(": ", 1)[0]
        assert any(p.startswith(f"{where}: ") for p in mine), (line, mine)
        if "Duplicate value" in line or "Unsupported value" in line:
            assert line in mine


# ------------------------------------------------------ updates of a stored run


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, MergePatch (what `kubectl patch --type merge` sends), transcribed: the
    venv's jsonpatch is RFC 6902 only."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def updated(stored: dict[str, Any], endpoint: str, patch: dict[str, Any]) -> dict[str, Any]:
    """The object the API server validates for a patch, the status subresource enabled
    (apiextensions-apiserver pkg/registry/customresource/strategy.go PrepareForUpdate: an update
    of the object keeps the stored status; status_strategy.go PrepareForUpdate: an update of
    /status keeps everything but the status)."""
    new = merge_patch(stored, patch)
    if endpoint == "status":
        return {**stored, "status": new.get("status")}
    return {**new, "status": stored.get("status")} if "status" in stored else new


def root_rules_accept(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """The generated CRD's rules at its root, evaluated with cel-python on (self, oldSelf)."""
    import kubernetes_cel
    from celpy import json_to_cel

    rules = crd_generator.resource_schema().get("x-kubernetes-validations", [])
    activation = {"self": json_to_cel(new), "oldSelf": json_to_cel(old)}
    return all(bool(kubernetes_cel.program(r["rule"]).evaluate(activation)) for r in rules)


@pytest.mark.parametrize("name", sorted(cases.TRANSITIONS))
def test_the_crds_transition_rules_judge_updates_as_the_api_server_did(name: str) -> None:
    """Each update of a stored run the lab's kube-apiserver v1.32.13 was sent
    (apiserver_cases.TRANSITIONS): the CRD's root rules accept it exactly when the server did."""
    phase, update = cases.TRANSITIONS[name]
    stored: dict[str, Any] = {
        "apiVersion": "mfpo.dev/v1alpha1",
        "kind": "MFPORun",
        "metadata": {"name": cases.TRANSITION_RUN},
        "spec": cases.MINIMAL_SPEC,
    }
    if phase is not None:
        stored["status"] = {"phase": phase}
    endpoint, patch = cases.transition_patch(update)
    server = ANSWERS["transitions"][name]
    assert root_rules_accept(updated(stored, endpoint, patch), stored) is (server == []), server


def test_a_succeeded_runs_spec_is_frozen_and_a_failed_runs_is_not() -> None:
    """A Succeeded run's spec edit used to be accepted (observedGeneration moved, nothing re-ran,
    the run claimed a spec its results did not come from): the API server now refuses it; a Failed run stays
    editable (edit, then mfpo.dev/retry: docs/failures.md); the operator's status writes and a
    retry annotation still pass; a patch that also sets status.phase cannot get around it."""
    answers = ANSWERS["transitions"]
    frozen = [
        (
            "spec: Forbidden: spec cannot change once the run has Succeeded: its results came "
            "from this spec; apply the changed spec as a new run (another metadata.name)"
        )
    ]
    assert answers["Succeeded, spec edited"] == frozen
    assert answers["Succeeded, spec edited with status.phase Failed in the same patch"] == frozen
    for name in ("Failed", "Running", "Suspended", "Pending", "no status"):
        assert answers[f"{name}, spec edited"] == []
    for name in ("the same spec patched", "annotated mfpo.dev/retry", "status written"):
        assert answers[f"Succeeded, {name}"] == []


# --------------------------------------------------------------- the real thing


LAB = os.environ.get("MFPO_LAB_KUBECONFIG")


@pytest.mark.skipif(not LAB, reason="MFPO_LAB_KUBECONFIG names no API server (../shared/lab)")
def test_the_replica_answers_as_a_live_api_server() -> None:
    """Everything above, against a running kube-apiserver (dry run: nothing is left behind)."""
    assert LAB is not None
    for crd in cases.load_crds():
        assert cases.server_answer(cases.renamed(crd), LAB) == []
    for name in cases.MUTANTS:
        assert_same_answer(cases.server_answer(cases.mutant(name), LAB), cases.mutant(name))
    assert_same_answer(cases.server_answer(cases.cost_probe_crd(), LAB), cases.cost_probe_crd())
    for name in cases.RUN_NAMES:  # with the real CRD installed there
        refused = cases.server_answer_run(cases.run_named(name), LAB)
        assert bool(refused) == bool(ANSWERS["run_names"][name]), (name, refused)
    for name in cases.ISSUE_24_CASES:
        answer = cases.server_answer_object(cases.object_case(name), LAB)
        assert answer == ANSWERS["objects"][name], name
    for name in cases.TRANSITIONS:  # creates and deletes a run transition-case in default
        assert cases.server_answer_transition(name, LAB) == ANSWERS["transitions"][name], name
