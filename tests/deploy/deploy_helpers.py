"""Shared helpers of the deployment tests: the helm and promtool binaries and chart rendering.

The binaries come from `make tools` (scripts/install-tools.sh into .tools/bin, which the
Makefile puts on PATH). A missing binary fails the test with the command that installs it:
these checks are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mfpo"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE_NAMESPACE = "mfpo-system"


def tool(name: str) -> str:
    """Path of a tool binary: on PATH or in .tools/bin; fails clearly when missing."""
    found = shutil.which(name) or (
        str(REPO / ".tools" / "bin" / name)
        if os.access(REPO / ".tools" / "bin" / name, os.X_OK)
        else None
    )
    if not found:
        pytest.fail(
            f"{name} not found on PATH or in .tools/bin: run `make tools` "
            f"(bash scripts/install-tools.sh .tools)"
        )
    return found


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def helm_template(
    *values_files: Path, set_values: tuple[str, ...] = (), check: bool = True
) -> subprocess.CompletedProcess[str]:
    args = [tool("helm"), "template", "t", str(CHART), "--namespace", RELEASE_NAMESPACE]
    for path in values_files:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    return run(*args, check=check)


def render(*values_files: Path, set_values: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The chart's manifests for these values, as parsed documents (empty ones dropped)."""
    out = helm_template(*values_files, set_values=set_values).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


@pytest.fixture(scope="session")
def default_docs() -> list[dict[str, Any]]:
    return render()
