"""The local runner divides the available CPUs among the stage processes it runs side by side.

The stage program is a test double that records the thread settings it was given and stops
the run with a bad-input exit; `mfpo_core.cpus.available_cpus` is replaced by a double so the
division does not depend on this machine.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from mfpo_core import cpus
from mfpo_core.api import MFPORun
from mfpo_operator.local import LocalRunner

RECORD_THREADS = """
import os, sys
from pathlib import Path
config = sys.argv[sys.argv.index("--config") + 1]
with open(os.environ["THREADS_TRACE"], "a") as trace:
    trace.write(f"{Path(config).stem} {os.environ['MFPO_THREADS']} {os.environ['OMP_NUM_THREADS']}\\n")
sys.exit(65)
"""


def datagen_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: int) -> list[str]:
    trace = tmp_path / "threads.txt"
    for local_input in ("model", "data"):  # the runner checks its inputs exist before any stage
        (tmp_path / local_input).mkdir(exist_ok=True)
    monkeypatch.setenv("THREADS_TRACE", str(trace))
    run = MFPORun.model_validate({
        "apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "demo"},
        "spec": {"model": {"uri": f"file://{tmp_path}/model"}, "data": {"uri": f"file://{tmp_path}/data", "format": "synthetic"},
                 "storage": {"uri": f"file://{tmp_path}/artifacts"}, "imagePreference": {"shards": shards},
                 "resources": {"gpusPerNode": 0}},
    })  # fmt: skip
    command = [sys.executable, "-c", RECORD_THREADS]
    LocalRunner(run, progress=False, stage_command=command, out=io.StringIO()).run()
    return sorted(trace.read_text().splitlines())


def test_shards_side_by_side_share_the_idle_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda root=None: 6)
    monkeypatch.setattr(cpus, "idle_cpus", lambda: 6.0)  # the machine's other processes: none
    monkeypatch.delenv("MFPO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    assert datagen_threads(tmp_path, monkeypatch, shards=3) == [f"config-{i} 2 2" for i in range(3)]


def test_a_thread_override_applies_to_each_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda root=None: 6)
    monkeypatch.setenv("MFPO_THREADS", "5")

    assert datagen_threads(tmp_path, monkeypatch, shards=2) == [f"config-{i} 5 5" for i in range(2)]


def test_a_bad_thread_override_fails_before_any_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFPO_THREADS", "all")
    with pytest.raises(ValueError, match="MFPO_THREADS='all'"):
        datagen_threads(tmp_path, monkeypatch, shards=2)
    assert not (tmp_path / "threads.txt").exists()
