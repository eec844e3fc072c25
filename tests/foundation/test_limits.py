"""Every URI has a scheme rule, every size a bound, and a manifest fits where the cluster keeps it.

Outside references: `storage.parse` (what the stages can read) and MinIO's client
(`minio.helpers.check_bucket_name`, S3's bucket naming rules) for URIs; kube-apiserver v1.32.13
(the lab, by hand) for the sizes: what `kubectl apply` stores, and the byte at which the API
server refuses the operator's annotation; kopf's own diff-base storage for the operator's copy.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import celpy
import jsonschema
import kopf
import pytest
import yaml
from mfpo_core import api, k8s, storage
from mfpo_core.storage_base import StorageConfigError
from mfpo_operator import crd
from mfpo_operator.validation import (
    LAST_APPLIED_ANNOTATION,
    ManifestError,
    _as_stored,
    _go_json,
    kubectl_copy,
    operator_copy,
    read_manifest,
    size_problems,
    validate_manifest,
)
from minio.helpers import check_bucket_name
from pydantic import TypeAdapter, ValidationError

# -------------------------------------------------------------------------- URIs

URIS = [
    "s3://bucket/key", "s3://my.bucket-1/runs/x", "s3://abc", "s3://" + "a" * 63 + "/k", "s3://999.1.1.1/k",
    "s3://b/key", "s3://ab/key", "s3://" + "a" * 64 + "/k", "s3:///key", "s3://", "s3://Bucket/k",
    "s3://my_bucket/k", "s3://a..b/k", "s3://a.-b/k", "s3://a-.b/k", "s3://-abc/k", "s3://abc-/k",
    "s3://192.168.1.1/k", "s3://10.0.0.255", "s3:/bucket/key", "s3:bucket",
    "file:///abs/path", "file:///", "file://localhost/abs", "file://./rel", "file://../rel/x", "file://host/abs",
    "file://", "file:relative", "file://.", "/abs/path", "rel/path", "models", "C:\\models", "http://minio/x",
    "https://huggingface.co/llava-hf/llava-1.5-7b-hf", "hf://llava-hf/llava-1.5-7b-hf", "",
]  # fmt: skip


def reader_accepts(uri: str) -> bool:
    """What the stages can read: `storage.parse`, and for a bucket MinIO's client too."""
    try:
        location = storage.parse(uri)
    except StorageConfigError:
        return False
    if location.scheme == "s3":
        try:
            check_bucket_name(location.bucket, strict=True)
        except ValueError:
            return False
    return True


def crd_accepts(schema: dict[str, Any], value: str) -> bool:
    plain = {k: v for k, v in schema.items() if k != "x-kubernetes-validations"}
    if not jsonschema.Draft4Validator(plain).is_valid(value):
        return False
    env = celpy.Environment()
    rules = [r for r in schema.get("x-kubernetes-validations", []) if "oldSelf" not in r["rule"]]
    return all(bool(env.program(env.compile(r["rule"])).evaluate({"self": celpy.json_to_cel(value)})) for r in rules)


def accepts(kind: Any, value: str) -> bool:
    try:
        TypeAdapter(kind).validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("uri", URIS)
def test_a_storage_uri_is_accepted_exactly_when_the_stages_can_read_it(uri: str) -> None:
    # Stricter than the reader in two ways: "file://." names no file, and a plain path with a
    # ':' (s3:/bucket, C:\\models) is taken for a mistyped scheme, not for a local path.
    expected = reader_accepts(uri) and uri != "file://." and not (":" in uri and "://" not in uri)
    assert accepts(api.StorageUri, uri) is expected
    assert crd_accepts(TypeAdapter(api.StorageUri).json_schema(), uri) is expected  # kubectl apply
    prefix = expected and uri.startswith(("s3://", "file://"))  # spec.storage.uri: no bare path
    assert accepts(api.StoragePrefixUri, uri) is prefix
    assert crd_accepts(TypeAdapter(api.StoragePrefixUri).json_schema(), uri) is prefix


def uri_fields(schema: dict[str, Any], path: str = "spec") -> list[tuple[str, dict[str, Any]]]:
    """Every string field of the spec that holds a URI, a path or a file name."""
    found = []
    for name, node in schema.get("properties", {}).items():
        where = f"{path}.{name}"
        if node.get("type") == "string" and re.search(
            r"(uri|Uri|Url|Dir)$|^(questions|instances|captions|queries|annotations|relation|safeWords)$", name
        ):
            found.append((where, node))
        found += uri_fields(node, where)
        if isinstance(node.get("items"), dict):
            found += uri_fields(node["items"], f"{where}[]")
    return found


def test_every_field_that_holds_a_uri_has_a_scheme_rule_in_the_crd() -> None:
    spec = crd.resource_schema()["properties"]["spec"]
    fields = uri_fields(spec)
    assert len(fields) == 18, [f for f, _ in fields]
    bucket_rule = {"rule": f"!self.matches({k8s.cel_string(api.S3_BUCKET_FORBIDDEN_PATTERN)})", "message": api.S3_BUCKET_MESSAGE}
    for where, node in fields:
        if where.endswith(("judgeUrl", "tracking.mlflow.uri")):  # http(s) servers, no userinfo
            assert node["pattern"] == api.HTTP_URL_PATTERN
            assert node["maxLength"] == api.MAX_URI_LENGTH, where
            continue
        assert node["pattern"] in (api.STORAGE_URI_PATTERN, api.STORAGE_PREFIX_PATTERN), where
        assert bucket_rule in node["x-kubernetes-validations"], where
        assert node["maxLength"] == api.MAX_URI_LENGTH, where


@pytest.mark.parametrize(
    ("url", "accepted"),
    [("http://judge:8000/v1", True), ("https://api.openai.com/v1", True), ("judge:8000", False),
     ("ftp://judge/v1", False), ("http://", False), ("http:// judge/v1", False)],
)  # fmt: skip
def test_the_judge_url_is_an_http_url(url: str, accepted: bool) -> None:
    options = {"judge": "llm", "judgeUrl": url, "judgeModel": "m"}
    try:
        api.ObjectHalBenchOptions.model_validate(options)
        assert accepted
    except ValidationError:
        assert not accepted


@pytest.mark.parametrize(
    ("endpoint", "accepted"),
    [("minio:9000", True), ("minio:65535", True), ("[::1]:9000", True), ("s3.amazonaws.com", True),
     ("minio:65536", False), ("minio:0", False), ("minio:99999", False), ("http://minio:9000", False)],
)  # fmt: skip
def test_the_endpoint_port_is_a_tcp_port(endpoint: str, accepted: bool) -> None:
    try:
        api.StorageSpec.model_validate({"uri": "s3://bucket/runs", "endpoint": endpoint})
        assert accepted
    except ValidationError:
        assert not accepted


# ------------------------------------------------------------------------ numbers

# Numbers that size nothing in memory or time, each with why it needs no upper bound.
UNBOUNDED = {
    "spec.imagePreference.keywords.phi": "an exponent of the positional influence; any positive value is a weighting",
    "spec.imagePreference.keywords.gamma": "a weight of the similarity term",
    "spec.imagePreference.keywords.decay": "the positional decay rate; exp(-decay * l) only shrinks",
    "spec.objective.eta": "the anchor margin, a real number in the loss",
    "spec.objective.weights.text": "a loss weight",
    "spec.objective.weights.image": "a loss weight",
    "spec.objective.weights.anchor": "a loss weight",
    "spec.training.weightDecay": "AdamW's decay coefficient",
    "spec.training.maxGradNorm": "a clipping norm",
    "spec.imagePreference.noise.step": "below scheduleSteps (bounded), by a CEL rule",
}


def numeric_fields(schema: dict[str, Any], path: str = "spec") -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, node in schema.get("properties", {}).items():
        where = f"{path}.{name}"
        if node.get("type") in ("integer", "number") and "enum" not in node:
            found.append((where, node))
        found += numeric_fields(node, where)
        if isinstance(node.get("items"), dict):
            found += numeric_fields(node["items"], f"{where}[]")
    return found


def test_every_number_that_sizes_memory_or_time_has_an_upper_bound() -> None:
    fields = numeric_fields(crd.resource_schema()["properties"]["spec"])
    unbounded = {where for where, node in fields if "maximum" not in node}
    assert unbounded == set(UNBOUNDED), sorted(unbounded ^ set(UNBOUNDED))
    bounds = {where: node.get("maximum") for where, node in fields}
    assert bounds["spec.imagePreference.imageSize"] == 4096
    assert bounds["spec.imagePreference.noise.scheduleSteps"] == 10_000
    assert bounds["spec.training.maxLength"] == 32_768
    assert bounds["spec.training.maxSteps"] == bounds["spec.training.checkpointEverySteps"] == 10_000_000
    assert bounds["spec.training.seed"] == bounds["spec.imagePreference.seed"] == 2**32 - 1
    assert bounds["spec.retries.backoffSeconds"] == bounds["spec.retries.maxBackoffSeconds"] == 86_400


def test_the_model_families_contexts_and_images_fit_the_bounds() -> None:
    """The bounds sit above what the supported models take: Qwen2-VL's context 32768
    (transformers' Qwen2VLConfig), its image processor's default max_pixels 28*28*1280 (the
    released checkpoints' preprocessor_config.json: 12845056 = 3584**2)."""
    transformers = pytest.importorskip("transformers")
    assert transformers.Qwen2VLConfig().text_config.max_position_embeddings <= api.MAX_SEQUENCE_LENGTH
    max_pixels = transformers.Qwen2VLImageProcessor().size["longest_edge"]  # the processor's max_pixels
    assert max_pixels == 28 * 28 * 1280 and 12_845_056 <= api.MAX_IMAGE_SIZE**2


# -------------------------------------------------------------------------- sizes

BASE = {
    "apiVersion": "mfpo.dev/v1alpha1",
    "kind": "MFPORun",
    "metadata": {"name": "nsless"},
    "spec": {
        "model": {"uri": "file:///models/tiny"},
        "data": {"uri": "file:///data/train", "format": "synthetic"},
        "storage": {"uri": "file:///runs"},
        "resources": {"gpusPerNode": 1},
    },
}
# What kube-apiserver v1.32.13 held in the annotation after `kubectl apply -f` (kubectl v1.31.9)
# of BASE: annotations {} and the namespace added, keys sorted, a newline.
LAB_LAST_APPLIED = (
    '{"apiVersion":"mfpo.dev/v1alpha1","kind":"MFPORun","metadata":{"annotations":{},"name":"nsless",'
    '"namespace":"default"},"spec":{"data":{"format":"synthetic","uri":"file:///data/train"},"model":{"uri":'
    '"file:///models/tiny"},"resources":{"gpusPerNode":1},"storage":{"uri":"file:///runs"}}}\n'
)


def test_kubectls_copy_is_computed_as_kubectl_wrote_it_on_the_lab() -> None:
    applied = {**BASE, "metadata": {**BASE["metadata"], "annotations": {}, "namespace": "default"}}
    assert _go_json(applied) + "\n" == LAB_LAST_APPLIED
    assert _go_json({"a": "<&>\u2028é"}) == '{"a":"\\u003c\\u0026\\u003e\\u2028é"}'  # Go's HTML-safe escaping


def test_the_operators_copy_is_what_kopfs_own_storage_writes() -> None:
    doc = copy.deepcopy(BASE)
    doc["metadata"].update(namespace="ml", labels={"team": "vision"}, annotations={"note": "é & <x>"})
    run = validate_manifest(doc)
    # The body as the API server returns it (its spec with the defaults the CRD states: on the
    # lab, byte for byte `_as_stored` of pydantic's), with kubectl's copy and a status.
    body = copy.deepcopy(doc)
    body["metadata"].update(uid="u", resourceVersion="1", generation=1)
    body["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = kubectl_copy(doc)
    body["spec"] = _as_stored(run.spec.to_wire())
    body["status"] = {"phase": "Pending"}
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="mfpo.dev", key="last-handled-configuration")
    assert operator_copy(body, run) == json.dumps(kopfs.build(body=kopf.Body(body)), separators=(",", ":"))


def padded(n: int) -> dict[str, Any]:
    """The lab's boundary manifests: BASE in namespace ab, named pad<n>, with an annotation of n bytes."""
    doc = copy.deepcopy(BASE)
    doc["metadata"] = {"name": f"pad{n}", "namespace": "ab", "annotations": {"team.example.com/notes": "x" * n}}
    return doc


def test_a_manifest_is_refused_at_the_byte_where_the_api_server_refuses_the_operators_copy() -> None:
    """On the lab, pad86664 was applied and the operator's copy (kopf's, patched in as kopf
    patches it) accepted; pad86665 was applied too, but the operator's patch was refused:
    "metadata.annotations: Too long: may not be more than 262144 bytes"."""
    assert size_problems(padded(86_664), validate_manifest(padded(86_664))) == []
    with pytest.raises(ManifestError) as caught:
        validate_manifest(padded(86_665))
    (problem,) = caught.value.problems
    assert problem.startswith("(document): Too long: the manifest is 86975 bytes as JSON; its annotations would be 262147 bytes")
    assert "kubectl apply's copy (kubectl.kubernetes.io/last-applied-configuration) 87024 bytes" in problem
    assert "the operator's copy (mfpo.dev/last-handled-configuration) 88436 bytes" in problem
    assert "over the API server's limit of 262144 bytes (256 KiB)" in problem
    assert "etcd takes at most 1572864 bytes" in problem and "the API server 3145728 bytes per request" in problem


def test_a_large_spec_is_refused_with_its_size(tmp_path) -> None:
    """A spec of 140 kB (a node affinity of many zones): `kubectl apply` took it on the lab, the
    operator's copy was refused; here it is refused at once."""
    doc = copy.deepcopy(BASE)
    zones = [f"zone-{i:05d}-" + "z" * 50 for i in range(128)]
    terms = [{"matchExpressions": [{"key": f"zone{j}", "operator": "In", "values": zones} for j in range(9)]}] * 2
    doc["spec"]["resources"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ManifestError, match=r"the manifest is 1\d\d\d\d\d bytes as JSON"):
        read_manifest(path)


def test_the_crd_itself_fits_kubectl_applys_copy() -> None:
    """`kubectl apply -f crds/` stores the CRD in the same annotation (applied on the lab)."""
    manifest = yaml.safe_load(crd.render_crd_yaml())
    copy_size = len(LAST_APPLIED_ANNOTATION) + len(_go_json(manifest).encode()) + 1
    assert copy_size < k8s.ANNOTATIONS_TOTAL_MAX / 2, copy_size
