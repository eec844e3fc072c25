"""Fixtures of the foundation tests: a real S3-compatible server (moto) and storage roots.

The S3 server is moto's ThreadedMotoServer on 127.0.0.1 at a free port (tests/conftest.py's
`moto_endpoint`, once per session), talked to by the real `minio` client through
`mfpo_core.s3_backend`. `storage_root` parametrises a test over both backends (file:// and s3://).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from foundation_s3 import ACCESS_KEY, SECRET_KEY
from mfpo_core import s3_backend
from minio import Minio


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the s3 backend at moto with short retry backoff; yields the endpoint."""
    monkeypatch.setenv("MFPO_S3_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("MFPO_S3_SECURE", "false")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("MFPO_S3_PART_SIZE", raising=False)
    monkeypatch.setattr(s3_backend, "BACKOFF_FACTOR", 0.01)
    monkeypatch.setattr(s3_backend, "MAX_RETRIES", 3)
    s3_backend.clear_clients()
    yield moto_endpoint
    s3_backend.clear_clients()


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh bucket on the moto server; returns its name."""
    name = f"mfpo-{uuid.uuid4().hex[:12]}"
    Minio(s3_env, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False).make_bucket(name)
    return name


@pytest.fixture(params=["file", "s3"])
def storage_root(request: pytest.FixtureRequest, tmp_path) -> str:
    """A writable root URI on each backend: file:///tmp/... and s3://<fresh bucket>/root."""
    if request.param == "file":
        return f"file://{tmp_path}/root"
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/root"
