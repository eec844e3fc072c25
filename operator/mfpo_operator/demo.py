"""`mfpo demo`: the quickstart on one machine, from nothing to hallucination scores.

1. writes the synthetic scenes world (train / eval / counter-prior splits),
2. bootstraps a tiny LLaVA captioner on it (a few minutes on 2 CPU cores), on the CPUs idle
   when it starts (as the local runner sizes its stages; MFPO_THREADS or OMP_NUM_THREADS
   override), so that a busy machine does not make it many times slower. The same thread
   count gives the same captioner (`mfpo_runtime.determinism`), recorded in bootstrap.json,
3. runs examples/quickstart.yaml through the local runner: datagen, score, align-1..3, eval,
4. spends the same budget on text-only DPO (the same manifest with the image and anchor
   weights at zero, on the very same datagen and score outputs) and prints both side by side,
   so a user sees whether the modality-fair objective pays off on this world.

With `--tracking-uri URL` (`make demo TRACKING_URI=URL`) both runs log to that MLflow server, in
the experiment `mfpo-demo` (spec.tracking, docs/tracking.md): MLflow's compare view then shows
MFPO and text-only DPO side by side, their params, training curves and scores.

Each step is skipped when its output is already complete, so a stopped demo continues; a
quickstart run that Failed before (e.g. `mfpo run` before the world existed) is retried.
The world and the bootstrap need torch: they run as runtime subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from mfpo_core import cpus, storage
from mfpo_core.api import MFPORun, MlflowTrackingSpec, TrackingSpec
from mfpo_core.contract import ExitCode, eval_results_uri
from mfpo_core.ownership import OwnershipConflict
from pydantic import ValidationError

from mfpo_operator.local import LocalRunner, MissingInputs, RunLocked
from mfpo_operator.plan import run_uri
from mfpo_operator.validation import load_manifest

QUICKSTART = Path("examples/quickstart.yaml")
COMPARISON_SUFFIX = "-text-dpo"
# report.md and tradeoff.png of the DPO-vs-MFPO comparison (relative to the working directory).
COMPARISON_REPORT_DIR = "runs/quickstart/comparison"
# Stages whose outputs do not depend on the objective: the comparison run reuses them.
SHARED_STAGES = ("datagen", "score")
DEMO_EXPERIMENT = "mfpo-demo"

class StepFailed(RuntimeError):
    """A step's subprocess failed; it has printed its own error."""


def run_demo(*, compare: bool = True, progress: bool = True, tracking_uri: str | None = None) -> int:
    try:
        return _demo(compare, progress, tracking_uri)
    except StepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def with_tracking(manifest: MFPORun, uri: str, experiment: str = DEMO_EXPERIMENT) -> MFPORun:
    """The manifest logging to the MLflow server at `uri` (validated as spec.tracking is)."""
    spec = manifest.spec.model_copy(
        update={"tracking": TrackingSpec(mlflow=MlflowTrackingSpec(uri=uri, experiment=experiment))}
    )
    return MFPORun.model_validate({**manifest.to_wire(), "spec": spec.to_wire()})


def _demo(compare: bool, progress: bool, tracking_uri: str | None) -> int:
    started = time.monotonic()
    if not QUICKSTART.is_file():
        print(f"error: {QUICKSTART} not found: run `make demo` from the repository root", file=sys.stderr)
        return 2
    manifest = load_manifest(QUICKSTART)
    if tracking_uri:
        try:
            manifest = with_tracking(manifest, tracking_uri)
        except ValidationError as err:
            print(f"error: --tracking-uri {tracking_uri}: {err.errors()[0]['msg']}", file=sys.stderr)
            return 2
        print(f"tracking: both runs log to {tracking_uri}, experiment {DEMO_EXPERIMENT}", flush=True)
    world_uri = world_of(manifest)
    _step("synthetic world", manifest.spec.data.uri, [sys.executable, "-m", "mfpo_runtime.data.scenes", "--out", world_uri])
    model_uri = manifest.spec.model.uri
    threads = cpus.local_threads_per_process()
    _step(
        f"tiny LLaVA captioner ({threads} thread{'s' if threads > 1 else ''})",
        model_uri,
        [sys.executable, "-m", "mfpo_runtime.bootstrap", "--world", world_uri, "--out", model_uri,
         "--threads", str(threads)]
        + ([] if progress else ["--no-progress"]),
    )
    text_only = text_only_variant(manifest)
    try:
        code = run_pair(manifest, text_only, progress=progress, compare=compare)
    except RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 75
    except OwnershipConflict as err:  # runs/quickstart/artifacts/<run> holds another run's artifacts
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except MissingInputs as err:  # e.g. gpusPerNode > 0 on a machine without a GPU
        for line in err.missing:
            print(f"error: {line}", file=sys.stderr)
        return 2
    if code:
        return code
    if compare:
        print("\n== text-only DPO against MFPO, final policies, paired over the same images ==", flush=True)
        _call(
            "the comparison",
            [
                sys.executable, "-m", "mfpo_runtime.eval.compare",
                "--baseline", f"text DPO={run_uri(text_only.spec, text_only.metadata.name)}",
                "--candidate", f"MFPO={run_uri(manifest.spec, manifest.metadata.name)}",
                "--policy", f"align-{manifest.spec.curriculum.stages}",
                "--out", COMPARISON_REPORT_DIR,
            ] + tracking_arguments(manifest),
        )  # fmt: skip
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    return 0


def tracking_arguments(manifest: MFPORun) -> list[str]:
    """The comparison's flags that log it to both runs' MLflow runs, when the manifest tracks."""
    mlflow = manifest.spec.tracking.mlflow if manifest.spec.tracking else None
    if mlflow is None:
        return []
    namespace = manifest.metadata.namespace or "default"
    return ["--tracking-uri", mlflow.uri, "--experiment", mlflow.experiment, "--namespace", namespace]


def run_pair(manifest: MFPORun, text_only: MFPORun, *, progress: bool, compare: bool = True) -> int:
    """MFPO, then (with compare) text-only DPO on the same datagen and score outputs."""
    print("\n== MFPO (text + image + anchor terms) ==", flush=True)
    code = _run(manifest, progress)
    if code == 0 and compare:
        # The copies land in the text-only run's prefix: it claims the prefix first, or its
        # stages would find artifacts no ownership record says are its own.
        LocalRunner(text_only, progress=progress, command="mfpo demo").claim()
        _reuse_shared_stages(manifest, text_only)
        print("\n== the same budget on text-only DPO (image and anchor weights 0) ==", flush=True)
        code = _run(text_only, progress)
    return code


def world_of(manifest: MFPORun) -> str:
    """The synthetic world's root: the parent of its train split (the manifest's data.uri)."""
    return manifest.spec.data.uri.rstrip("/").rsplit("/", 1)[0]


def _run(manifest: MFPORun, progress: bool) -> int:
    """Run (or continue) one of the demo's runs, its exit code as `mfpo run`'s; one that Failed
    before is retried once, so that a failure before the world existed never blocks the demo."""
    runner = LocalRunner(manifest, progress=progress, command="mfpo demo")
    previous = runner.status()
    status = runner.run(retry=previous is not None and previous.phase == "Failed")
    if runner.stopped_by is not None:
        return 128 + runner.stopped_by
    return 0 if status.phase == "Succeeded" else 1


def _step(what: str, done_uri: str, command: list[str]) -> None:
    if storage.exists(done_uri) and storage.is_complete(done_uri):
        print(f"{what}: already at {done_uri}", flush=True)
        return
    print(f"== {what} ==", flush=True)
    _call(what, command)


def _call(what: str, command: list[str]) -> None:
    """Run a step; on failure one line that points at the step's own error output above."""
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise StepFailed(f"{what} failed (exit {code}); its error is printed above")


def text_only_variant(manifest: MFPORun) -> MFPORun:
    """The same run with L_image and L_anchor switched off: plain DPO on the text pairs."""
    doc = manifest.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"]["name"] = manifest.metadata.name + COMPARISON_SUFFIX
    doc["spec"]["objective"]["weights"] = {"text": 1.0, "image": 0.0, "anchor": 0.0}
    # Only the final policies are compared: evaluating every stage again would only cost time.
    doc["spec"]["evaluation"]["everyStage"] = False
    return MFPORun.model_validate(doc)


def _reuse_shared_stages(source: MFPORun, target: MFPORun) -> None:
    """Copy datagen and score outputs (and the base model's evaluation) into the other run,
    so both objectives train on identical data and bins and the base is evaluated once."""
    source_uri = run_uri(source.spec, source.metadata.name)
    target_uri = run_uri(target.spec, target.metadata.name)
    parts = [(storage.join(source_uri, s), storage.join(target_uri, s)) for s in SHARED_STAGES]
    parts.append((eval_results_uri(source_uri, "base"), eval_results_uri(target_uri, "base")))
    for src, dst in parts:
        if storage.list_files(src) and not storage.list_files(dst):
            storage.copy_dir(src, dst)
