"""Storage URIs name exactly what they say, on both backends (mfpo_core.uris).

The references: RFC 3986 through `urllib.parse.urlparse`, which `storage.parse` reads a URI with
(a '?' or '#' starts a query or fragment, which it drops); minio-py's own object-name check
(`minio.helpers.check_object_name`, what the client refuses to send); MinIO's server check,
`IsValidObjectPrefix`/`hasBadPathComponent` of cmd/object-api-utils.go, transcribed below
(the server the chart targets); and `posixpath.normpath`, what a file system makes of a path.
A URI the rule accepts means the same object to each; one it refuses is refused everywhere: by
the CRD's pattern at `kubectl apply`, by pydantic, and by `storage.parse` whoever built it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mfpo_core import api, contract, storage, uris
from mfpo_core.storage import StorageConfigError
from mfpo_operator import validation
from minio.helpers import check_object_name
from pydantic import ValidationError

REPORTED = [  # the URIs of the report: each sent every run's artifacts to one key
    "s3://mfpo/runs#team-a",
    "file:///x/runs#a",
    "s3://mfpo/runs?team=a",
    "s3://mfpo/models?versionId=3",
]
REFUSED = REPORTED + [
    "s3://mfpo/a//b", "s3://mfpo//a", "file:////x", "file:///a//b",  # empty segment
    "s3://mfpo/a/../b", "s3://mfpo/a/./b", "s3://mfpo/..", "file:///a/..", "file://./a/../b",  # dot segment
    "s3://mfpo/a/ .. /b", "s3://mfpo/a/.../b",  # MinIO trims white space around '..'
    "s3://mfpo/a\nb", "s3://mfpo/a\x00b", "file:///a\tb", "s3://mfpo/a\x85b",  # control characters
    "rel/../x", "../x", "a//b",  # plain paths follow the same segment rules
]
ACCEPTED = [
    "s3://mfpo", "s3://mfpo/", "s3://mfpo/runs", "s3://mfpo/runs/", "s3://mfpo/a b/c%20d", "s3://mfpo/é/ü",
    "s3://mfpo/train=2024-01/x.parquet", "s3://mfpo/a/.hidden/b", "s3://mfpo/a/..x", "s3://mfpo/a:b",
    "file:///", "file:///runs", "file:///runs/", "file://localhost/runs", "file://./runs", "file://../../runs/x",
    "file://./../runs", "/abs/path", "rel/path", "images", "questions.jsonl",
]  # fmt: skip


def minio_server_accepts(key: str) -> bool:
    """MinIO's IsValidObjectPrefix (cmd/object-api-utils.go) and its length and leading-slash
    check (checkObjectNameForLengthAndSlash), transcribed: no '.' or '..' segment after trimming
    white space (hasBadPathComponent), valid UTF-8, no '//', at most 1024 bytes, no leading '/'."""
    for segment in key.strip().split("/"):
        if segment.strip() in (".", ".."):
            return False
    return "//" not in key and len(key.encode()) <= 1024 and not key.startswith("/") and "\x00" not in key


def minio_client_accepts(key: str) -> bool:
    try:
        check_object_name(key)
    except ValueError:
        return False
    return True


def uri_fields(manifest_uri: str) -> list[dict]:
    """A manifest's spec with `manifest_uri` in each URI field in turn."""
    base = {"model": {"uri": "file:///m"}, "data": {"uri": "file:///d", "format": "synthetic"},
            "storage": {"uri": "file:///runs"}}  # fmt: skip
    pope = lambda **o: {"evaluation": {"benchmarks": [{"name": "pope", "uri": "file:///p", "pope": o}]}}
    return [
        {**base, "model": {"uri": manifest_uri}},
        {**base, "data": {"uri": manifest_uri, "format": "synthetic"}},
        {**base, "storage": {"uri": manifest_uri}},
        {**base, **pope(imageDir=manifest_uri)},
        {**base, "evaluation": {"benchmarks": [{"name": "amber", "uri": manifest_uri}]}},
    ]


@pytest.mark.parametrize("uri", REPORTED)
def test_urlparse_drops_what_follows_a_query_or_fragment(uri: str) -> None:
    """Why: the run prefix, its stage directories and result documents all parse to one path."""
    run = f"{uri}/my-run"
    assert urlparse(f"{run}/datagen").path == urlparse(f"{run}/score/result.json").path == urlparse(uri).path


@pytest.mark.parametrize("uri", REPORTED)
def test_every_uri_field_refuses_a_query_or_fragment_in_the_crd_and_in_pydantic(uri: str) -> None:
    for spec in uri_fields(uri):
        doc = {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "r"}, "spec": spec}
        with pytest.raises(validation.ManifestError) as caught:
            validation.validate_manifest(doc)
        assert any("cannot be part of a storage URI: a URI's query and fragment start there" in p
                   for p in caught.value.problems), caught.value.problems  # fmt: skip
        with pytest.raises(ValidationError):
            api.MFPORunSpec.model_validate(spec)


@pytest.mark.parametrize("uri", REFUSED + ACCEPTED)
def test_the_crd_pattern_and_pydantic_agree(uri: str) -> None:
    pattern_accepts = re.fullmatch(api.STORAGE_URI_PATTERN, uri) is not None
    assert pattern_accepts == (uris.storage_uri_problem(uri) is None) == (uri in ACCEPTED), uri


@pytest.mark.parametrize("uri", [u for u in REFUSED + ACCEPTED if "://" in u])
def test_an_accepted_uri_means_the_same_object_to_minio_and_to_a_file_system(uri: str) -> None:
    """Where the rule accepts, urlparse keeps the whole path, MinIO (server and client) accepts
    the key and a file system reads the path as written; a refused URI is refused by parse."""
    if uris.storage_uri_problem(uri, prefix=True) is not None:
        with pytest.raises(StorageConfigError):
            storage.parse(uri)
        return
    if uri.startswith("s3://"):
        key = uri.partition("://")[2].partition("/")[2]
        assert urlparse(uri).path.lstrip("/") == key
        assert not key or (minio_server_accepts(key) and minio_client_accepts(key.rstrip("/")))
    else:
        path = uri.removeprefix("file://").removeprefix("localhost")
        rest = path[re.match(r"(\.\.?/)?(\.\./)*", path).end():]  # after file://./ or file://../../
        assert (urlparse(uri).netloc + urlparse(uri).path).endswith(rest)
        assert not rest.strip("/") or posixpath.normpath(rest) == rest.rstrip("/")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", uri)
    storage.parse(uri)


def test_a_refused_prefix_deletes_nothing(tmp_path: Path) -> None:
    """Before: deleting the run `my-run` of storage.uri file://<tmp>/runs#mine deleted the whole
    <tmp>/runs directory, every other run's artifacts with it."""
    other = tmp_path / "runs" / "other-run" / "align-1" / "policy" / "adapter.bin"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"weights")
    with pytest.raises(StorageConfigError, match="'#' cannot be part of a storage URI"):
        storage.delete(f"file://{tmp_path}/runs#mine/my-run")
    with pytest.raises(ValueError, match="spec.storage.uri"):
        contract.run_uri(f"file://{tmp_path}/runs#mine", "my-run")
    assert other.read_bytes() == b"weights"


def test_a_model_uri_with_a_version_query_is_not_read_shortened() -> None:
    with pytest.raises(StorageConfigError, match="'\\?' cannot be part of a storage URI"):
        storage.exists("s3://mfpo/models?versionId=3")


@pytest.mark.parametrize(
    ("prefix", "run", "expected"),
    [("file:///", "first", "file:///first"), ("file:///runs/", "first", "file:///runs/first"),
     ("s3://mfpo", "first", "s3://mfpo/first"), ("s3://mfpo/runs//", "first", None),
     ("file://./runs/", "first", "file://./runs/first"), ("s3://mfpo/runs", "../first", None),
     ("s3://mfpo/runs", "a/b", None)],
)  # fmt: skip
def test_a_run_prefix_is_one_segment_under_the_storage_uri(prefix: str, run: str, expected: str | None) -> None:
    """`file:///`.rstrip('/') was `file:` (the run then went to a relative path `file:/first`)."""
    if expected is None:
        with pytest.raises(ValueError):
            contract.run_uri(prefix, run)
        return
    assert contract.run_uri(prefix, run) == expected
    assert storage.parse(expected).key.endswith(run)


@pytest.mark.parametrize("part", ["../other", "a/../../b", "a//b", ".", "x?y", "x#y"])
def test_a_join_never_leaves_its_prefix_or_drops_a_part(part: str, storage_root: str) -> None:
    with pytest.raises(StorageConfigError, match="cannot join"):
        storage.join(storage_root, part)


def test_keys_the_rule_accepts_round_trip_through_both_backends(storage_root: str) -> None:
    """Written and listed back unchanged: the backends read every accepted name the same way."""
    names = ["a b.txt", "c%20d.txt", "é/ü.txt", "k=v/x.bin", ".hidden/y", "z..z", "p:q"]
    for name in names:
        storage.write_text(name, storage.join(storage_root, name))
    assert storage.list_files(storage_root) == sorted(names)
    assert [storage.read_text(storage.join(storage_root, n)) for n in names] == names
