"""`mfpo-stage --config CONFIG`: run one stage of a run through the stage contract.

The same command runs in a Job's container and in a local subprocess. It validates the
config, checks that the run's storage prefix is this run's (`mfpo_core.ownership`: claimed by
the first stage, another run's is bad input), returns at once when the stage's result document
exists, dispatches to the stage's
implementation, writes the result document and the termination summary, and maps the
outcome to an exit code (see `contract.ExitCode`). SIGTERM sets a flag that long stages poll
(`StageContext.stop_requested`) to save a checkpoint and raise `StageInterrupted`.

Under torchrun every rank of a pod runs this command: local rank 0 alone serves the metrics
port and writes the termination summary (one container, one port, one /dev/termination-log),
except that a rank finding bad input reports it; global rank 0 alone writes the result document.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import logging
import os
import signal
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mfpo_core import cpus, ownership, storage
from mfpo_core.contract import (
    DEFAULT_TERMINATION_LOG,
    BadInput,
    ExitCode,
    StageConfig,
    StageInterrupted,
    StageResult,
    TerminationSummary,
    result_uri,
)
from mfpo_core.stages import STAGE_KINDS, kind_of
from pydantic import ValidationError

from mfpo_runtime.metrics import StageMetrics
from mfpo_runtime.tracking import MlflowTracker, TrackingTarget, flatten_params

log = logging.getLogger("mfpo.stage")

# Stage kind -> module with `run(ctx: StageContext) -> StageOutcome`.
STAGE_MODULES = {kind.name: kind.module for kind in STAGE_KINDS}


@dataclass
class StageOutcome:
    """What a stage implementation returns; the runner turns it into the result document."""

    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Everything a stage implementation needs besides its config."""

    config: StageConfig
    work_dir: Path  # local scratch space, removed after the stage unless MFPO_KEEP_WORK is set
    metrics: StageMetrics
    shard: tuple[int, int] | None = None  # (index, count) for datagen shards
    progress: bool = True  # show tqdm bars (local runs); Jobs set MFPO_PROGRESS=0
    tracker: MlflowTracker | None = None  # spec.tracking, on global rank 0 (not in datagen)
    _stop: list[bool] = field(default_factory=lambda: [False])

    @property
    def stop_requested(self) -> bool:
        """True once SIGTERM arrived: save a checkpoint and raise StageInterrupted."""
        return self._stop[0]

    def request_stop(self) -> None:
        self._stop[0] = True


def _local_rank() -> int:
    """This process's rank within its pod (torchrun's LOCAL_RANK); 0 for a plain process."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def _local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def _termination_log() -> Path | None:
    path = Path(os.environ.get("MFPO_TERMINATION_LOG", DEFAULT_TERMINATION_LOG))
    return path if path.parent.is_dir() and (path.exists() or os.access(path.parent, os.W_OK)) else None


def write_termination_summary(summary: TerminationSummary) -> None:
    """Write the summary to the termination log, one per container.

    Under torchrun local rank 0 writes it, so that it names the group's outcome rather than a
    rank's echo of another's failure. Bad input is the exception: the first rank that finds it
    writes it and no other rank replaces it, since torchrun exits 1 whatever its workers' codes
    and the summary is then the operator's only sign not to retry.
    """
    if _local_rank() != 0 and summary.status != "bad-input":
        log.info("local rank %d leaves the termination summary to local rank 0", _local_rank())
        return
    path = _termination_log()
    if path is None:
        return
    try:
        with path.open("a+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # the ranks of a pod share the file
            file.seek(0)
            earlier = TerminationSummary.decode(file.read())
            if _local_world_size() > 1 and earlier is not None and earlier.status == "bad-input":
                log.info("keeping another rank's bad-input summary: %s", earlier.message)
                return
            file.truncate(0)
            file.write(summary.encode())
    except OSError as err:  # never let the summary hide the stage's own outcome
        log.warning("could not write the termination summary to %s: %s", path, err)


def limit_threads() -> int:
    """Size torch's thread pool (and OpenMP's in child processes) to this process's share of the CPUs.

    The share: MFPO_THREADS or OMP_NUM_THREADS when set, else the CPUs available to the pod or
    process (affinity, cgroup quota) divided among the ranks torchrun runs in it.
    """
    import torch  # the runtime image has it; imported here to keep `--help` fast

    try:
        threads = cpus.threads_per_process(_local_world_size())
    except ValueError as err:
        raise BadInput(str(err)) from err
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    log.info("%d CPU threads per process", threads)
    return threads


def deterministic_on_cpu() -> bool:
    """Deterministic kernels for a CPU-only stage process, so that the same seed at the same
    thread count gives the same numbers (benchmarks/bench_ablations.py relies on it).

    Not on a GPU: there cuBLAS needs CUBLAS_WORKSPACE_CONFIG and deterministic kernels cost
    speed. `warn_only`: an op without a deterministic kernel logs a warning instead of failing
    the stage. Returns whether the mode was turned on.
    """
    import torch

    if torch.cuda.is_available():
        return False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True


def _load_config(source: str) -> StageConfig:
    try:
        text = Path(source).read_text() if "://" not in source else storage.read_text(source)
    except (OSError, storage.StorageError) as err:
        raise BadInput(f"cannot read the stage config {source}: {err}") from err
    try:
        return StageConfig.from_json(text)
    except ValidationError as err:
        raise BadInput(f"invalid stage config {source}: {_validation_message(err)}") from err


def _validation_message(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}" for e in err.errors()
    )


def _resolve_shard(config: StageConfig) -> tuple[int, int] | None:
    kind = kind_of(config.stage)
    if not kind.shardable:
        return None
    count = kind.shards(config.spec)
    index = config.shard_index
    if index is None:
        index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    if not 0 <= index < count:
        raise BadInput(f"shard index {index} is outside 0..{count - 1} (imagePreference.shards)")
    return index, count


def tracker_for(config: StageConfig, metrics: StageMetrics) -> MlflowTracker | None:
    """The stage's link to the run's MLflow run (spec.tracking.mlflow), on global rank 0 only.

    None for datagen: its shards run side by side, in many pods; the score stage, which reads
    every shard's manifest, logs the datagen summary once.
    """
    tracking = config.spec.tracking
    settings = tracking.mlflow if tracking else None
    if settings is None or config.kind == "datagen" or int(os.environ.get("RANK", "0")) != 0:
        return None
    target = TrackingTarget(
        uri=settings.uri, experiment=settings.experiment, run_name=config.run,
        namespace=config.namespace, run_uri=config.run_uri,
    )  # fmt: skip
    try:
        return MlflowTracker(
            target, stage=config.stage, attempt=config.attempt, params=flatten_params(config.spec.to_wire()),
            on_error=lambda: metrics.inc("mfpo_tracking_errors_total"),
        )  # fmt: skip
    except ImportError as err:  # a runtime installed without its tracking client
        log.warning("spec.tracking is set but the MLflow client cannot be imported (%s): not tracked", err)
        metrics.inc("mfpo_tracking_errors_total")
        return None


def _track_outcome(tracker: MlflowTracker, config: StageConfig, outcome: StageOutcome) -> None:
    """A stage's summary metrics, prefixed with its name (the eval stage logs its own)."""
    if config.kind != "eval":
        tracker.log_metrics({f"{config.stage}.{key}": value for key, value in outcome.metrics.items()})


def run_stage(config: StageConfig, *, progress: bool = True, metrics_address: str | None = None) -> StageResult:
    """Run one stage in this process (idempotent). Raises BadInput, StageInterrupted or others."""
    shard = _resolve_shard(config)
    # Before anything under the prefix is trusted: it must be this run's (another run of the
    # same name may have written there). Raises OwnershipConflict (bad input) when it is not.
    ownership.claim(config.run_uri, config.owner, config.spec.stage_names(), adopt_unowned=config.adopt_unowned)
    done_uri = result_uri(config.run_uri, config.stage, shard)
    if storage.exists(done_uri):
        log.info("%s already done (%s): nothing to do", config.stage, done_uri)
        return StageResult.model_validate(storage.read_json(done_uri))

    module = importlib.import_module(STAGE_MODULES[config.kind])
    started = datetime.now(timezone.utc)
    keep = os.environ.get("MFPO_KEEP_WORK")
    with tempfile.TemporaryDirectory(prefix=f"mfpo-{config.stage}-") as tmp:
        metrics = StageMetrics.for_config(config)
        if _local_rank() == 0:  # one metrics port per pod, however many ranks it runs
            metrics.serve(address=metrics_address)
        tracker = tracker_for(config, metrics)
        metrics.sink = tracker
        ctx = StageContext(
            config=config, work_dir=Path(tmp), metrics=metrics, shard=shard, progress=progress, tracker=tracker
        )  # fmt: skip
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: ctx.request_stop())
        status = "failed"
        try:
            if tracker is not None:
                tracker.flush()  # find or create the MLflow run now, not at the first step
            outcome: StageOutcome = module.run(ctx)
            if tracker is not None:
                _track_outcome(tracker, config, outcome)
            status = "succeeded"
        except BadInput:
            status = "bad-input"
            raise
        except StageInterrupted:
            status = "preempted"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            if tracker is not None:
                tracker.finish(status=status, terminate=status == "succeeded" and config.kind == "eval")
            metrics.stop_serving()
            metrics.push()
            if keep:
                log.info("work dir kept at %s", tmp)
    result = StageResult(
        stage=config.stage,
        attempt=config.attempt,
        started_at=started,
        metrics=outcome.metrics,
        outputs=outcome.outputs,
        details=outcome.details,
    )
    # Written last: its existence is what "this stage is done" means. Under torchrun every rank
    # ran the stage (with metrics averaged across ranks); rank 0 alone writes the document.
    if int(os.environ.get("RANK", "0")) == 0:
        storage.write_json(result.model_dump(mode="json"), done_uri)
    return result


def main(argv: list[str] | None = None, *, exit: Callable[[int], None] = sys.exit) -> None:
    parser = argparse.ArgumentParser(prog="mfpo-stage", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="stage config: a path or a storage URI")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--metrics-address",
        default=None,
        help="address the metrics server binds (default: $MFPO_METRICS_ADDRESS, else 0.0.0.0)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("MFPO_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    progress = not args.no_progress and os.environ.get("MFPO_PROGRESS", "1") != "0"
    # transformers' weight-loading bars, one per model load, would bury the stage's own bar.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # peft still reads transformers' deprecated `is_gradient_checkpointing`: not ours to fix,
    # and once per stage it buries the stage's own output.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    stage = "unknown"
    try:
        config = _load_config(args.config)
        stage = config.stage
        limit_threads()
        deterministic_on_cpu()
        result = run_stage(config, progress=progress, metrics_address=args.metrics_address)
    except (BadInput, storage.StorageConfigError) as err:
        log.error("bad input, not retried: %s", err)
        write_termination_summary(TerminationSummary(stage=stage, status="bad-input", message=str(err)))
        exit(ExitCode.BAD_INPUT)
        return
    except storage.StorageIntegrityError as err:
        # Fetched twice with the same wrong digest: the stored object is corrupt, and every
        # further attempt would read the same bytes.
        message = f"corrupt object, not retried: {err}"
        log.error("%s", message)
        write_termination_summary(TerminationSummary(stage=stage, status="bad-input", message=message))
        exit(ExitCode.BAD_INPUT)
        return
    except StageInterrupted as err:
        log.warning("stopped on request, checkpoint saved: %s", err)
        write_termination_summary(TerminationSummary(stage=stage, status="preempted", message=str(err)))
        exit(ExitCode.PREEMPTED)
        return
    except storage.StorageError as err:  # the message names the URI and endpoint: no traceback
        log.error("stage failed (retryable): %s", err)
        write_termination_summary(TerminationSummary(stage=stage, status="retryable", message=str(err)))
        exit(1)
        return
    except Exception as err:  # noqa: BLE001 - every other failure is retryable by contract
        log.error("stage failed (retryable): %s\n%s", err, traceback.format_exc())
        message = f"{type(err).__name__}: {err}"
        write_termination_summary(TerminationSummary(stage=stage, status="retryable", message=message))
        exit(1)
        return
    write_termination_summary(result.summary())
    log.info("%s done: %s", stage, result.summary().encode())
    exit(ExitCode.DONE)


if __name__ == "__main__":
    main()
