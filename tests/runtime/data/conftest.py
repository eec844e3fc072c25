"""Fixtures of the datagen/score tests (helpers live in datagen_samples.py)."""

from pathlib import Path

import pytest
from datagen_samples import rlaif_v_rows, write_parquet


@pytest.fixture
def rlaif_parquet(tmp_path: Path) -> Path:
    return write_parquet(rlaif_v_rows(6), tmp_path / "rlaif" / "train.parquet")
