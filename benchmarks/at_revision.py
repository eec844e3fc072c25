"""A module of this repository as it was at an earlier commit, for side-by-side benchmarks.

    ranker = module_at("5960f0d", "runtime/mfpo_runtime/data/keywords.py")

Reads the file with `git show REV:PATH` and imports it under a private name, so a benchmark can
time or score the old implementation beside the current one without a copy of it in the tree.
Needs a git checkout with that commit (a clone of the repository has it) and the module's own
imports installed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def module_at(revision: str, path: str) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    name = f"_{Path(path).stem}_at_{revision}"
    file = Path(tempfile.mkdtemp(prefix="at-revision-")) / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module
