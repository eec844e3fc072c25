"""Fixtures of the datagen/score tests (helpers live in datagen_samples.py)."""

from pathlib import Path

import pytest
from datagen_samples import rlaif_v_rows, write_parquet


@pytest.fixture
def rlaif_parquet(tmp_path: Path) -> Path:
    return write_parquet(rlaif_v_rows(6), tmp_path / "rlaif" / "train.parquet")


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """A fresh bucket, the storage layer pointed at moto through the real minio client."""
    import uuid

    from mfpo_core import s3_backend
    from minio import Minio

    for key, value in {
        "MFPO_S3_ENDPOINT": moto_endpoint,
        "MFPO_S3_SECURE": "false",
        "AWS_ACCESS_KEY_ID": "datagen-test",
        "AWS_SECRET_ACCESS_KEY": "datagen-test-secret",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    s3_backend.clear_clients()
    name = f"datagen-{uuid.uuid4().hex[:10]}"
    Minio(
        moto_endpoint, access_key="datagen-test", secret_key="datagen-test-secret", secure=False
    ).make_bucket(name)
    yield name
    s3_backend.clear_clients()
