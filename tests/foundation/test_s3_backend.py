"""The s3:// edge: configuration, multipart, verified downloads, retries and clear errors.

Against moto's S3 server with the real minio client (fixtures in conftest.py).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
from pathlib import Path

import pytest
from foundation_s3 import ACCESS_KEY, SECRET_KEY, FlakyS3Proxy, SilentServer, free_port
from mfpo_core import s3_backend, storage
from mfpo_core.s3_backend import parse_endpoint, settings_from_env
from mfpo_core.storage import Location, StorageConfigError, StorageError, StorageIntegrityError
from minio import Minio
from minio.error import S3Error
from moto.core.authorization import enable_iam_authentication

MIB = 1024 * 1024


def raw_client(endpoint: str) -> Minio:
    return Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


# --------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("raw", "secure_env", "expected"),
    [
        ("minio:9000", None, ("minio:9000", True)),
        ("http://minio.svc:9000", None, ("minio.svc:9000", False)),
        ("https://s3.example.com/", None, ("s3.example.com", True)),
        ("http://minio:9000", "true", ("minio:9000", True)),
        ("minio:9000", "false", ("minio:9000", False)),
    ],
)
def test_endpoint_and_tls(raw: str, secure_env: str | None, expected: tuple[str, bool]) -> None:
    assert parse_endpoint(raw, secure_env) == expected


@pytest.mark.parametrize(
    ("raw", "secure_env", "message"),
    [
        ("ftp://minio:9000", None, "expected host:port or http(s)://host:port"),
        ("http://minio:9000/bucket", None, "a path is not allowed"),
        ("minio:9000", "maybe", "MFPO_S3_SECURE='maybe': expected true or false"),
    ],
)
def test_bad_endpoint_settings(raw: str, secure_env: str | None, message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        parse_endpoint(raw, secure_env)


def test_settings_from_env() -> None:
    settings = settings_from_env(
        {
            "AWS_ENDPOINT_URL": "http://minio:9000",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
            "AWS_REGION": "eu-west-1",
        }
    )
    assert (settings.endpoint, settings.secure, settings.region) == (
        "minio:9000",
        False,
        "eu-west-1",
    )
    assert settings.part_size == 64 * MIB
    assert "s3cr3t" not in repr(settings)
    # MFPO_S3_ENDPOINT wins over AWS_ENDPOINT_URL.
    both = {"MFPO_S3_ENDPOINT": "a:1", "AWS_ENDPOINT_URL": "http://b:2"}
    assert settings_from_env(both).endpoint == "a:1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AWS_ACCESS_KEY_ID": "id"}, "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ({"MFPO_S3_PART_SIZE": "1024"}, "MFPO_S3_PART_SIZE=1024: S3 parts must be at least"),
        ({"MFPO_S3_PART_SIZE": "64MiB"}, "MFPO_S3_PART_SIZE='64MiB': expected a number of bytes"),
        ({"MFPO_S3_READ_TIMEOUT": "0"}, "MFPO_S3_READ_TIMEOUT='0': expected a positive number of seconds"),
        ({"MFPO_S3_CONNECT_TIMEOUT": "soon"}, "MFPO_S3_CONNECT_TIMEOUT='soon': expected a positive"),
    ],
)
def test_bad_env(env: dict[str, str], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        settings_from_env({"MFPO_S3_ENDPOINT": "minio:9000", **env})


def test_timeouts_from_env() -> None:
    env = {"MFPO_S3_ENDPOINT": "minio:9000"}
    defaults = settings_from_env(env)
    assert (defaults.connect_timeout, defaults.read_timeout) == (10.0, 60.0)
    tuned = settings_from_env({**env, "MFPO_S3_CONNECT_TIMEOUT": "2", "MFPO_S3_READ_TIMEOUT": "7.5"})
    assert (tuned.connect_timeout, tuned.read_timeout) == (2.0, 7.5)


def test_no_endpoint_is_an_error_naming_the_uri_and_the_field(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No silent AWS default: an s3:// URI needs an endpoint someone wrote down."""
    for name in ("MFPO_S3_ENDPOINT", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageConfigError) as caught:
        storage.read_bytes("s3://mfpo/runs/x.json")
    assert str(caught.value) == (
        "no S3 endpoint for s3://mfpo/runs/x.json: set spec.storage.endpoint (MFPO_S3_ENDPOINT "
        "for a stage run by hand); to use AWS S3, write s3.amazonaws.com there"
    )
    assert settings_from_env({"MFPO_S3_ENDPOINT": "s3.amazonaws.com"}).secure  # the opt-in


def test_one_client_per_configuration(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    loc = storage.parse("s3://some-bucket/key")
    first = s3_backend.backend_for(loc)
    assert s3_backend.backend_for(storage.parse("s3://other-bucket/k")) is first
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated-key")
    assert s3_backend.backend_for(loc) is not first


def test_backend_for_explicit_settings(s3_bucket: str, s3_env: str, tmp_path: Path) -> None:
    """The operator deletes a run's artifacts with that run's Secret, not its own environment."""
    storage.write_text("x", f"s3://{s3_bucket}/runs/demo/score/result.json")
    storage.write_text("y", f"s3://{s3_bucket}/runs/other/result.json")
    env = {
        "MFPO_S3_ENDPOINT": s3_env,
        "MFPO_S3_SECURE": "false",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    backend = s3_backend.backend_for_env(env)
    assert backend is s3_backend.backend_for_env(dict(env))  # cached by settings

    backend.delete_tree(storage.parse(f"s3://{s3_bucket}/runs/demo"))

    assert storage.list_files(f"s3://{s3_bucket}/runs") == ["other/result.json"]


# ------------------------------------------------------------------ transfers


def test_large_file_goes_up_in_parts(
    s3_bucket: str, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MFPO_S3_PART_SIZE", str(5 * MIB))  # S3's minimum part size
    payload = hashlib.sha256(b"seed").digest() * (6 * MIB // 32) + b"tail"  # 6 MiB + 4 bytes
    (tmp_path / "big.bin").write_bytes(payload)
    uri = f"s3://{s3_bucket}/ckpt/big.bin"

    storage.put_file(tmp_path / "big.bin", uri)

    etag = raw_client(s3_env).stat_object(s3_bucket, "ckpt/big.bin").etag
    assert etag.endswith("-2")  # a multipart ETag: 5 MiB + the rest
    assert storage.get_file(uri, tmp_path / "back.bin").read_bytes() == payload


def test_download_checks_the_stored_sha256(s3_bucket: str, s3_env: str, tmp_path: Path) -> None:
    # An object whose content no longer matches the digest its uploader recorded.
    raw_client(s3_env).put_object(
        s3_bucket, "x.bin", io.BytesIO(b"changed"), 7, metadata={"mfpo-sha256": "0" * 64}
    )
    uri = f"s3://{s3_bucket}/x.bin"
    with pytest.raises(StorageError, match=f"checksum mismatch for {uri}: expected sha256 0000"):
        storage.get_file(uri, tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()  # nothing half-verified is left behind
    with pytest.raises(StorageError, match="checksum mismatch"):
        storage.read_bytes(uri)


def test_objects_from_other_uploaders_are_checked_by_etag(s3_bucket: str, s3_env: str) -> None:
    raw_client(s3_env).put_object(s3_bucket, "plain.txt", io.BytesIO(b"hello"), 5)
    assert storage.read_bytes(f"s3://{s3_bucket}/plain.txt") == b"hello"


def test_verify_compares_md5_with_a_plain_etag() -> None:
    loc = Location("s3", "bkt", "k")
    md5, sha = hashlib.md5(b"abc"), hashlib.sha256(b"abc")
    s3_backend._verify(loc, None, '"900150983cd24fb0d6963f7d28e17f72"', md5, sha)  # md5("abc")
    s3_backend._verify(loc, None, '"d41d8cd98f00b204e9800998ecf8427e-3"', md5, sha)  # multipart
    with pytest.raises(StorageError, match=r"checksum mismatch for s3://bkt/k: expected md5 d41d8cd9.* \(ETag\)"):
        s3_backend._verify(loc, None, '"d41d8cd98f00b204e9800998ecf8427e"', md5, sha)


# ---------------------------------------------------------------------- errors


def test_missing_bucket_is_named(s3_env: str, tmp_path: Path) -> None:
    expected = "bucket 'no-such-bucket' does not exist (s3://no-such-bucket/key.txt)"
    with pytest.raises(StorageError) as read:
        storage.read_bytes("s3://no-such-bucket/key.txt")
    with pytest.raises(StorageError) as write:
        storage.write_text("x", "s3://no-such-bucket/key.txt")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError) as put:
        storage.put_file(tmp_path / "f", "s3://no-such-bucket/key.txt")
    assert str(read.value) == str(write.value) == str(put.value) == expected
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.list_files("s3://no-such-bucket/dir")


def test_bad_credentials_are_named_without_the_secret(s3_bucket: str, s3_env: str) -> None:
    uri = f"s3://{s3_bucket}/a.txt"
    with enable_iam_authentication():  # moto now checks keys: ours is unknown to its IAM
        for operation in (
            lambda: storage.write_text("x", uri),
            lambda: storage.read_text(uri),
            lambda: storage.exists(uri),
        ):
            with pytest.raises(StorageError) as caught:
                operation()
            message = str(caught.value)
            assert message.startswith(f"access to {uri} refused by http://{s3_env}")
            assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in message
            assert SECRET_KEY not in message


def test_an_object_uri_needs_a_key(s3_bucket: str, s3_env: str) -> None:
    with pytest.raises(StorageError, match=f"s3://{s3_bucket}/ names no object"):
        storage.write_text("x", f"s3://{s3_bucket}/")


# --------------------------------------------------------------------- retries


def test_slow_down_is_retried(s3_bucket: str, s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with FlakyS3Proxy(s3_env, failures=2) as proxy:
        monkeypatch.setenv("MFPO_S3_ENDPOINT", proxy.endpoint)
        storage.write_text("survived", f"s3://{s3_bucket}/flaky.txt")
        assert proxy.requests == 3  # two 503 SlowDown, then the PUT that landed
    monkeypatch.setenv("MFPO_S3_ENDPOINT", s3_env)
    assert storage.read_text(f"s3://{s3_bucket}/flaky.txt") == "survived"


def test_persistent_slow_down_gives_up_with_the_cause(
    s3_bucket: str, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3_bucket}/never.txt"
    with FlakyS3Proxy(s3_env, failures=-1) as proxy:
        monkeypatch.setenv("MFPO_S3_ENDPOINT", proxy.endpoint)
        with pytest.raises(StorageError, match=f"S3 error SlowDown on {uri}"):
            storage.write_text("x", uri)
        assert proxy.requests == 1 + s3_backend.MAX_RETRIES


def test_unreachable_endpoint_is_named(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nobody listens
    monkeypatch.setenv("MFPO_S3_ENDPOINT", endpoint)
    with pytest.raises(StorageError) as caught:
        storage.read_bytes("s3://bkt/x")
    # One line in words: no urllib3 object reprs, no secret.
    assert str(caught.value) == (
        f"cannot reach S3 endpoint http://{endpoint} for s3://bkt/x after "
        f"{s3_backend.MAX_RETRIES} retries: cannot connect: [Errno 111] Connection refused"
    )


def test_a_body_cut_halfway_is_fetched_again(
    s3_bucket: str, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = bytes(range(256)) * 64
    storage.write_bytes(payload, f"s3://{s3_bucket}/weights.bin")
    with FlakyS3Proxy(s3_env, cut_bodies=2) as proxy:
        monkeypatch.setenv("MFPO_S3_ENDPOINT", proxy.endpoint)
        got = storage.get_file(f"s3://{s3_bucket}/weights.bin", tmp_path / "w.bin")
        assert got.read_bytes() == payload
        assert proxy.requests == 3  # two broken bodies, then a whole one
        assert storage.read_bytes(f"s3://{s3_bucket}/weights.bin") == payload


def test_a_body_that_always_breaks_gives_up_naming_the_uri(
    s3_bucket: str, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3_bucket}/weights.bin"
    storage.write_bytes(b"x" * 4096, uri)
    with FlakyS3Proxy(s3_env, cut_bodies=100) as proxy:
        monkeypatch.setenv("MFPO_S3_ENDPOINT", proxy.endpoint)
        with pytest.raises(StorageError, match=f"download of {uri} from .* kept breaking off"):
            storage.get_file(uri, tmp_path / "w.bin")
        assert proxy.requests == 1 + s3_backend.MAX_RETRIES
    assert not (tmp_path / "w.bin").exists()


def test_materialize_downloads_a_published_directory_once(
    s3_bucket: str, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "weights.bin").write_bytes(b"one")
    (tmp_path / "v1" / "old-only.txt").write_text("v1")
    uri = f"s3://{s3_bucket}/models/base"
    storage.publish_dir(tmp_path / "v1", uri)
    downloads: list[str] = []
    real_get = storage.get_file
    monkeypatch.setattr(storage, "get_file", lambda u, p: downloads.append(u) or real_get(u, p))

    first = storage.materialize(uri)
    again = storage.materialize(uri)

    assert first == again and (first / "weights.bin").read_bytes() == b"one"
    assert len(downloads) == 2  # the two files, once
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "weights.bin").write_bytes(b"two")
    storage.publish_dir(tmp_path / "v2", uri)
    third = storage.materialize(uri)
    assert third == first and (third / "weights.bin").read_bytes() == b"two"
    assert not (third / "old-only.txt").exists()  # nothing of v1 lingers
    assert first.parent.name.startswith("mfpo-cache-")


# ------------------------------------------------------------- storage faults


def test_a_body_damaged_in_transit_is_fetched_again(
    s3_bucket: str, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3_bucket}/weights.bin"
    storage.write_bytes(b"weights" * 100, uri)
    with FlakyS3Proxy(s3_env, corrupt_bodies=1) as proxy:
        monkeypatch.setenv("MFPO_S3_ENDPOINT", proxy.endpoint)
        assert storage.read_bytes(uri) == b"weights" * 100
        assert proxy.gets == 2  # one damaged copy, then a good one


def test_a_corrupt_object_fails_after_one_more_fetch_naming_it(
    s3_bucket: str, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Corruption at rest: every fetch gives the same wrong bytes; retrying more is waste."""
    raw_client(s3_env).put_object(
        s3_bucket, "ckpt.bin", io.BytesIO(b"rotten"), 6, metadata={"mfpo-sha256": "0" * 64}
    )
    uri = f"s3://{s3_bucket}/ckpt.bin"
    with FlakyS3Proxy(s3_env) as proxy:
        monkeypatch.setenv("MFPO_S3_ENDPOINT", proxy.endpoint)
        with pytest.raises(StorageIntegrityError) as caught:
            storage.read_bytes(uri)
        assert proxy.gets == 2
    actual = hashlib.sha256(b"rotten").hexdigest()
    assert (caught.value.uri, caught.value.expected, caught.value.actual) == (
        uri, f"sha256 {'0' * 64}", f"sha256 {actual}"
    )  # fmt: skip
    assert str(caught.value) == f"checksum mismatch for {uri}: expected sha256 {'0' * 64}, got sha256 {actual}"


def test_an_upload_aborts_the_keys_abandoned_multipart_uploads(
    s3_bucket: str, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed multipart upload leaves its parts on the server until it is aborted."""
    monkeypatch.setenv("MFPO_S3_PART_SIZE", str(5 * MIB))
    client = raw_client(s3_env)
    key = "ckpt/step-10/model.bin"
    abandoned = client._create_multipart_upload(s3_bucket, key, {})
    client._upload_part(s3_bucket, key, b"p" * (5 * MIB), None, abandoned, 1)
    other = client._create_multipart_upload(s3_bucket, key + ".other", {})  # not ours to abort
    (tmp_path / "model.bin").write_bytes(b"m" * (6 * MIB))

    storage.put_file(tmp_path / "model.bin", f"s3://{s3_bucket}/{key}")

    left = [(u.object_name, u.upload_id) for u in client._list_multipart_uploads(s3_bucket).uploads]
    assert left == [(key + ".other", other)]
    assert storage.read_bytes(f"s3://{s3_bucket}/{key}") == b"m" * (6 * MIB)


def test_credentials_that_cannot_list_uploads_still_upload(
    s3_bucket: str, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A policy granting put/get only: the cleanup is skipped with a warning, not the upload.
    The AccessDenied is injected (a mocked ListMultipartUploads: moto grants all or nothing)."""
    monkeypatch.setenv("MFPO_S3_PART_SIZE", str(5 * MIB))
    uri = f"s3://{s3_bucket}/ckpt/model.bin"
    backend = s3_backend.backend_for(storage.parse(uri))
    denied = S3Error(None, "AccessDenied", "Access Denied.", "/ckpt/model.bin", "req", "host")

    def refuse(*args, **kwargs):
        raise denied

    monkeypatch.setattr(backend.client, "_list_multipart_uploads", refuse)
    (tmp_path / "model.bin").write_bytes(b"m" * (6 * MIB))

    storage.put_file(tmp_path / "model.bin", uri)

    assert storage.read_bytes(uri) == b"m" * (6 * MIB)
    assert f"cannot clean up unfinished multipart uploads of {uri} (AccessDenied" in caplog.text


def test_a_hung_endpoint_times_out_in_seconds(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts and never answers costs MFPO_S3_READ_TIMEOUT per try, not 300 s."""
    monkeypatch.setenv("MFPO_S3_READ_TIMEOUT", "0.2")
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            storage.read_bytes("s3://bkt/weights.bin")
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            errors.append(err)

    with SilentServer() as server:
        monkeypatch.setenv("MFPO_S3_ENDPOINT", server.endpoint)
        began = time.monotonic()
        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        worker.join(timeout=15)
        finished = not worker.is_alive()
    assert finished, "the fetch still hung after 15 s"
    assert time.monotonic() - began < 15
    assert len(errors) == 1 and isinstance(errors[0], StorageError)
    assert str(errors[0]) == (
        f"cannot reach S3 endpoint http://{server.endpoint} for s3://bkt/weights.bin after "
        f"{s3_backend.MAX_RETRIES} retries: no answer within 0.2s (MFPO_S3_READ_TIMEOUT)"
    )
