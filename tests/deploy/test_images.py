"""The Dockerfiles and the image workflow agree with the code that runs them: users, entry
points, ports, pinned bases, labels, what the final stage keeps. Where buildah is installed the
images are also built from a local Debian base and run (`make images`, images/build.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_helpers import CHART, REPO
from mfpo_core.api import MFPORunSpec
from mfpo_operator.kube import jobs

IMAGES = REPO / "images"
WORKFLOW = REPO / ".github" / "workflows" / "images.yaml"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def args_defaults(rows: list[tuple[str, str]]) -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in rows if word == "ARG" and "=" in rest)


def final_stage(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(rows) if word == "FROM")
    return rows[last_from:]


def test_bases_are_pinned():
    for dockerfile in IMAGES.glob("*/Dockerfile"):
        rows = instructions(dockerfile)
        defaults = args_defaults(rows)
        stages = {
            rest.split()[-1] for word, rest in rows if word == "FROM" and " AS " in rest.upper()
        }
        for word, rest in rows:
            if word == "FROM":
                image = rest.split()[0]
                for name, default in defaults.items():
                    image = image.replace(f"${{{name}}}", default)
                if image in stages:  # an earlier stage of the same file
                    continue
                assert re.search(r":[0-9][\w.-]*[0-9]", image) or "@sha256:" in image, (
                    f"{dockerfile}: base {image} is not pinned to a version"
                )


def test_operator_image():
    rows = instructions(IMAGES / "operator" / "Dockerfile")
    final = final_stage(rows)
    assert ("USER", "10001:10001") in final
    assert ("ENTRYPOINT", '["mfpo-operator"]') in final
    installs = " ".join(rest for word, rest in rows if word == "RUN")
    assert "requirements.py /src/pyproject.toml operator " in installs
    assert "torch" not in installs.replace("find_spec('torch')", "")
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert exposed == {values["operator"]["healthPort"], values["operator"]["metricsPort"]}
    # The chart runs it as the image's user.
    assert "runAsUser: 10001" in (CHART / "templates" / "_helpers.tpl").read_text()


def test_runtime_image():
    rows = instructions(IMAGES / "runtime" / "Dockerfile")
    final = final_stage(rows)
    # The operator's Job pods run as jobs.RUNTIME_UID: the image's user must be that uid.
    assert ("USER", f"{jobs.RUNTIME_UID}:{jobs.RUNTIME_UID}") in final
    assert ("ENTRYPOINT", '["mfpo-stage"]') in final
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    assert exposed == {jobs.METRICS_PORT, jobs.RENDEZVOUS_PORT}
    defaults = args_defaults(rows)
    assert defaults["CUDA_IMAGE"].startswith("nvidia/cuda:")
    makefile_torch = re.search(r"torch==([\w.]+)", (REPO / "Makefile").read_text()).group(1)
    assert defaults["TORCH_VERSION"] == makefile_torch
    cuda = re.search(r"cuda:(\d+)\.(\d+)", defaults["CUDA_IMAGE"]).groups()
    assert defaults["TORCH_INDEX_URL"].endswith(f"/cu{''.join(cuda)}")


def test_workflow_builds_and_pushes_both_images():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["build"]
    assert job["strategy"]["matrix"]["image"] == ["operator", "runtime"]
    steps = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
    build = steps["docker/build-push-action"]["with"]
    assert build["file"] == "images/${{ matrix.image }}/Dockerfile"
    assert "ghcr.io" in workflow["env"]["REGISTRY"]
    assert workflow["permissions"]["packages"] == "write"
    smoke = next(step for step in job["steps"] if step.get("name") == "Smoke test")
    assert "--help" in smoke["run"] and "id" in smoke["run"]
    for name in ("TORCH_VERSION", "TORCH_INDEX_URL", "CUDA_IMAGE", "CUDA_DEVEL_IMAGE"):
        assert (
            workflow["env"][name]
            == args_defaults(instructions(IMAGES / "runtime" / "Dockerfile"))[name]
        )
    assert (
        workflow["env"]["PYTHON_IMAGE"]
        == args_defaults(instructions(IMAGES / "operator" / "Dockerfile"))["PYTHON_IMAGE"]
    )


def test_image_names_match_the_chart_and_the_api():
    # The workflow pushes ghcr.io/<owner>/<image>; the defaults name the same repositories.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/mfpo/operator"
    runtime_image = MFPORunSpec.model_fields["runtime_image"].default
    assert runtime_image.rsplit(":", 1)[0] == "ghcr.io/mfpo/runtime"


def test_the_operator_entry_point_needs_nothing_outside_the_operator_extra():
    """The operator image installs only the core and `[operator]` dependencies: importing the
    entry point must not reach torch, numpy, PIL or the other runtime-only packages."""
    runtime_only = ["torch", "numpy", "PIL", "transformers", "peft", "deepspeed", "accelerate",
                    "networkx", "pyarrow", "matplotlib", "tokenizers"]  # fmt: skip
    probe = (
        "import importlib.abc, sys\n"
        f"BANNED = {runtime_only!r}\n"
        "class Ban(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BANNED:\n"
        "            raise ImportError(f'the operator image has no {name}')\n"
        "sys.meta_path.insert(0, Ban())\n"
        "import mfpo_operator.kube.main, mfpo_operator.kube.handlers\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


OCI_LABELS = ("source", "version", "licenses")


@pytest.mark.parametrize("image", ["operator", "runtime"])
def test_final_stage_keeps_no_build_tools_or_pip_cache(image):
    rows = instructions(IMAGES / image / "Dockerfile")
    final = final_stage(rows)
    # Multi-stage: the final stage takes the built virtual environment, installs nothing itself
    # with pip (so no pip cache can land in its layers) and has no compiler.
    assert sum(word == "FROM" for word, _ in rows) >= 2
    assert ("COPY", "--from=build /opt/mfpo /opt/mfpo") in final
    final_runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "pip install" not in final_runs and "g++" not in final_runs and "-dev" not in final_runs
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    for name in OCI_LABELS:
        assert f"org.opencontainers.image.{name}=" in labels, f"{image}: no {name} label"
    build_env = " ".join(rest for word, rest in rows[: rows.index(final[0])] if word == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in build_env


def test_runtime_builds_deepspeed_ops_in_the_devel_stage():
    rows = instructions(IMAGES / "runtime" / "Dockerfile")
    defaults = args_defaults(rows)
    assert (
        defaults["CUDA_DEVEL_IMAGE"].startswith("nvidia/cuda:")
        and "-devel-" in defaults["CUDA_DEVEL_IMAGE"]
    )
    assert defaults["CUDA_DEVEL_IMAGE"].replace("-devel-", "-runtime-") == defaults["CUDA_IMAGE"]
    builds = " ".join(rest for word, rest in rows if word == "RUN")
    assert 'export "DS_BUILD_${op}=1"' in builds and "--no-build-isolation" in builds
    # `make images` builds the CPU variant with the op DeepSpeed's CPU accelerator loads.
    assert "DS_BUILD_OPS_LIST=SHM_COMM" in (IMAGES / "build.sh").read_text()


LOCAL_BASE = "localhost/mfpo-debian-base:bookworm"  # made by images/build.sh


def image_build_skip_reason() -> str | None:
    """Why `make test` does not build the images here, or None when it does. A cold build (the
    Debian base, torch, the runtime requirements, DeepSpeed's ops) took 18 min on 2 cores: over
    make test's 20 min with its other 4 min of tests. With the layers cached (after one
    `make images`) a rebuild after a source change plus the smoke tests took 5 min
    (docs/images.md)."""
    if not (shutil.which("buildah") and shutil.which("mmdebstrap")):
        return "buildah or mmdebstrap is not installed (apt-get install buildah mmdebstrap)"
    if os.geteuid() != 0:
        return "buildah's chroot builds here need root"
    base = subprocess.run(
        ["buildah", "inspect", "--type", "image", LOCAL_BASE], capture_output=True, check=False
    )
    if base.returncode != 0:
        return f"no cached image build ({LOCAL_BASE} is missing): run `make images` once (~18 min)"
    return None


SKIP_IMAGE_BUILD = image_build_skip_reason()


@pytest.mark.images
@pytest.mark.skipif(SKIP_IMAGE_BUILD is not None, reason=str(SKIP_IMAGE_BUILD))
def test_images_build_and_run():
    """`make images`: both images from the local Debian base, then the smoke tests in them
    (images/smoke.sh: operator as uid 10001 on a read-only root without torch; runtime as uid
    1000 running a datagen stage and ZeRO-2 without compiling)."""
    result = subprocess.run(
        ["bash", str(IMAGES / "build.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "smoke: all passed" in result.stdout
