"""storage.py on both backends: file:// and s3:// (moto's server, the real minio client).

Every test taking `storage_root` runs twice, once per backend: the two must behave the same.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from mfpo_core import storage
from mfpo_core.storage import COMMIT_MARKER, StorageError, StorageIntegrityError


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)) * 4, "sub/deeper/c.json": b"{}"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_file_roundtrip(storage_root: str, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00\x01payload")
    uri = storage.join(storage_root, "x/in.bin")

    storage.put_file(source, uri)
    fetched = storage.get_file(uri, tmp_path / "out" / "copy.bin")

    assert fetched.read_bytes() == b"\x00\x01payload"
    assert storage.read_bytes(uri) == b"\x00\x01payload"


def test_json_and_text(storage_root: str) -> None:
    uri = storage.join(storage_root, "doc.json")
    storage.write_json({"b": 1, "a": [1, 2]}, uri)
    assert storage.read_json(uri) == {"a": [1, 2], "b": 1}
    storage.write_text("not json", uri)
    with pytest.raises(StorageError, match=r"doc\.json is not valid JSON"):
        storage.read_json(uri)


def test_exists_for_objects_and_directories(storage_root: str) -> None:
    storage.write_text("x", storage.join(storage_root, "dir/file.txt"))
    assert storage.exists(storage.join(storage_root, "dir/file.txt"))
    assert storage.exists(storage.join(storage_root, "dir"))
    assert not storage.exists(storage.join(storage_root, "dir/other.txt"))
    assert not storage.exists(storage.join(storage_root, "di"))  # a prefix is not a directory


def test_put_dir_list_get_dir(storage_root: str, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "tree")
    uri = storage.join(storage_root, "tree")

    uploaded = storage.put_dir(tmp_path / "tree", uri)
    out = storage.get_dir(uri, tmp_path / "back")

    assert uploaded == sorted(files)
    assert storage.list_files(uri) == sorted(files)
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_list_of_a_single_object_is_empty_relative_path(storage_root: str) -> None:
    uri = storage.join(storage_root, "single.txt")
    storage.write_text("x", uri)
    assert storage.list_files(uri) == [""]
    assert storage.list_files(storage.join(storage_root, "missing")) == []


def test_delete_file_and_directory(storage_root: str, tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    uri = storage.join(storage_root, "tree")
    storage.put_dir(tmp_path / "tree", uri)
    storage.write_text("keep", storage.join(storage_root, "tree-sibling.txt"))

    storage.delete(storage.join(uri, "a.txt"))
    assert storage.list_files(uri) == ["sub/b.bin", "sub/deeper/c.json"]
    storage.delete(uri)

    assert storage.list_files(uri) == []
    assert not storage.exists(uri)
    assert storage.read_text(storage.join(storage_root, "tree-sibling.txt")) == "keep"
    storage.delete(uri)  # deleting what is gone is not an error


def test_missing_object_is_named(storage_root: str, tmp_path: Path) -> None:
    uri = storage.join(storage_root, "nothing/here.txt")
    with pytest.raises(StorageError, match=f"no such object: {uri}"):
        storage.read_bytes(uri)
    with pytest.raises(StorageError, match=f"no such object: {uri}"):
        storage.get_file(uri, tmp_path / "x")
    with pytest.raises(StorageError, match="no such directory or it is empty"):
        storage.get_dir(storage.join(storage_root, "nothing"), tmp_path / "y")


def test_publish_then_fetch_verifies(storage_root: str, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "tree")
    uri = storage.join(storage_root, "published")
    assert not storage.is_complete(uri)

    storage.publish_dir(tmp_path / "tree", uri)

    assert storage.is_complete(uri)
    marker = storage.read_json(storage.join(uri, COMMIT_MARKER))
    assert marker["files"]["a.txt"] == (
        "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8"  # sha256(b"alpha")
    )
    out = storage.fetch_dir(uri, tmp_path / "fetched")
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_crash_before_the_marker_never_looks_complete(
    storage_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path / "tree")
    uri = storage.join(storage_root, "half")
    real_put = storage.put_file
    calls = itertools.count()  # next() is atomic: uploads run on several threads
    uploads: list[str] = []

    def dies_on_second_file(local, target, **kwargs) -> None:
        if next(calls) == 1:
            raise KeyboardInterrupt("killed mid-upload")
        real_put(local, target, **kwargs)
        uploads.append(target)

    monkeypatch.setattr(storage, "put_file", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        storage.publish_dir(tmp_path / "tree", uri)

    assert storage.exists(uploads[0])  # something was uploaded ...
    assert not storage.is_complete(uri)  # ... but it does not look whole
    with pytest.raises(StorageError, match="not a complete published directory"):
        storage.fetch_dir(uri, tmp_path / "out")


def test_republish_invalidates_before_uploading(
    storage_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path / "v1")
    uri = storage.join(storage_root, "policy")
    storage.publish_dir(tmp_path / "v1", uri)
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "a.txt").write_text("version two")

    def crash(*args, **kwargs) -> None:
        raise OSError("disk on fire")

    with monkeypatch.context() as patched:
        patched.setattr(storage, "put_file", crash)
        with pytest.raises(OSError):
            storage.publish_dir(tmp_path / "v2", uri)
    assert not storage.is_complete(uri)  # v1's marker is gone: no mix of v1 and v2

    storage.publish_dir(tmp_path / "v2", uri)
    out = storage.fetch_dir(uri, tmp_path / "fetched")
    assert (out / "a.txt").read_text() == "version two"
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["a.txt"]


def test_fetch_detects_a_changed_file(
    storage_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetched once more (it may have been damaged in transit), then called corrupt by name."""
    make_tree(tmp_path / "tree")
    uri = storage.join(storage_root, "published")
    storage.publish_dir(tmp_path / "tree", uri)
    storage.write_bytes(b"tampered", storage.join(uri, "sub/b.bin"))
    fetched: list[str] = []
    real_get = storage.get_file
    monkeypatch.setattr(storage, "get_file", lambda u, p: fetched.append(u) or real_get(u, p))

    with pytest.raises(StorageIntegrityError) as caught:
        storage.fetch_dir(uri, tmp_path / "fetched")

    assert caught.value.uri == storage.join(uri, "sub/b.bin")
    assert caught.value.actual == f"sha256 {hashlib.sha256(b'tampered').hexdigest()}"
    assert fetched.count(storage.join(uri, "sub/b.bin")) == 2


def test_materialize_file_and_directory(storage_root: str, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "tree")
    uri = storage.join(storage_root, "m")
    storage.publish_dir(tmp_path / "tree", uri)

    local_dir = storage.materialize(uri, tmp_path / "cache")
    local_file = storage.materialize(storage.join(uri, "a.txt"), tmp_path / "cache")

    assert (local_dir / "sub/b.bin").read_bytes() == files["sub/b.bin"]
    assert local_file.read_bytes() == b"alpha"
    with pytest.raises(StorageError):
        storage.materialize(storage.join(storage_root, "absent"), tmp_path / "cache")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "must be a non-empty string"),
        ("ftp://host/x", "unsupported storage URI 'ftp://host/x'"),
        ("s3:///key", "malformed s3 URI 's3:///key': expected s3://bucket/key"),
        ("s3://Bad_Bucket/key", "malformed s3 URI 's3://Bad_Bucket/key': bucket name 'Bad_Bucket'"),
        ("file://host/x", "malformed file URI 'file://host/x'"),
    ],
)
def test_malformed_uris_are_named(uri: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        storage.read_bytes(uri)
    assert message in str(caught.value)


def test_relative_file_uri_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage.write_text(json.dumps([1]), "file://./runs/x/doc.json")
    assert (tmp_path / "runs/x/doc.json").read_text() == "[1]"
    assert storage.join("file://./runs", "x") == "file://./runs/x"


@pytest.mark.parametrize("threads", ["1", "3"])
def test_transfers_on_any_number_of_threads(
    storage_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: str
) -> None:
    monkeypatch.setenv("MFPO_STORAGE_THREADS", threads)
    files = make_tree(tmp_path / "tree")
    uri = storage.join(storage_root, "t")
    storage.publish_dir(tmp_path / "tree", uri)
    out = storage.fetch_dir(uri, tmp_path / "out")
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_bad_thread_count_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path / "tree")
    monkeypatch.setenv("MFPO_STORAGE_THREADS", "0")
    with pytest.raises(StorageError, match="MFPO_STORAGE_THREADS='0': expected a positive integer"):
        storage.put_dir(tmp_path / "tree", f"file://{tmp_path}/out")


def test_published_directories_may_nest(storage_root: str, tmp_path: Path) -> None:
    """A checkpoint step publishes one directory per rank, then commits the step around them."""
    (tmp_path / "rank-0").mkdir()
    (tmp_path / "rank-0" / "model.pt").write_bytes(b"weights")
    (tmp_path / "commit").mkdir()
    (tmp_path / "commit" / "state.json").write_text("{}")
    step = storage.join(storage_root, "checkpoints/step-00000010")

    storage.publish_dir(tmp_path / "rank-0", storage.join(step, "rank-0"))
    storage.publish_dir(tmp_path / "commit", step)

    assert storage.is_complete(step) and storage.is_complete(storage.join(step, "rank-0"))
    out = storage.fetch_dir(storage.join(step, "rank-0"), tmp_path / "fetched")
    assert (out / "model.pt").read_bytes() == b"weights"
    assert sorted(storage.fetch_dir(step, tmp_path / "step").iterdir()) == [
        tmp_path / "step" / "state.json"
    ]
