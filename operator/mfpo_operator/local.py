"""The local executor: runs an MFPORun's stages as subprocesses on this machine.

The same planner as the operator (`mfpo_operator.plan`) decides what to do; this module only
turns its `StartAttempt` actions into `mfpo-stage --config ...` subprocesses (one per datagen
shard) and their exit codes and termination summaries back into `Attempt` observations.
The run's status, every attempt and the run's identity (the id its storage prefix's ownership
record holds, `mfpo_core.ownership`: a prefix that is another run's is refused before anything is
written) are kept under `<storage.uri>/<run>/_local/state.json`, so a run stopped at any moment (Ctrl-C, SIGTERM, a crash, a reboot) continues where it stopped when
started again: finished stages are not redone (their result documents exist) and the stage
that was running resumes from its last checkpoint. A lock beside the state (`_local/lock.json`,
the runner's host, pid and process start time) refuses a second runner of the same run; a lock
whose process is gone (kill -9, a reboot) is taken over. `retry=True` is the operator's retry
annotation: a Failed run's failed stages get a fresh attempt budget.

Called by `mfpo run` and `mfpo demo` (mfpo_operator.cli).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from mfpo_core import cpus, ownership, storage
from mfpo_core.api import JUDGE_KEY_VARIABLE, MFPORun, MFPORunStatus, RunPhase
from mfpo_core.contract import (
    ExitCode,
    RunOwner,
    StageConfig,
    TerminationSummary,
    merge_shard_summaries,
    parse_eval_metric_key,
)
from mfpo_core.stages import kind_of

from mfpo_operator.plan import Attempt, AttemptState, Event, StartAttempt, plan, run_uri

# How long a stage gets to save its checkpoint after SIGTERM (as a pod's grace period).
GRACE_SECONDS = 60.0
STATE_FILE = "_local/state.json"
LOCK_FILE = "_local/lock.json"


class RunLocked(RuntimeError):
    """Another live runner holds the run."""


class MissingInputs(RuntimeError):
    """Local inputs the manifest names do not exist: nothing was started, no state written."""

    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__("; ".join(missing))


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one directory per GPU the NVIDIA driver sees


def visible_gpus(environ: Mapping[str, str] = os.environ, gpus_dir: Path = NVIDIA_GPUS) -> int:
    """NVIDIA GPUs a stage process started here could use: the driver's, narrowed by
    CUDA_VISIBLE_DEVICES (CUDA ignores the list from its first invalid entry, such as -1, on)."""
    present = sum(1 for _ in gpus_dir.iterdir()) if gpus_dir.is_dir() else 0
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return present
    usable = 0
    for entry in listed.split(","):
        if not entry.strip() or entry.strip().startswith("-"):
            break
        usable += 1
    return min(present, usable)


def missing_inputs(run: MFPORun, environ: Mapping[str, str] = os.environ) -> list[str]:
    """`field: uri does not exist` for each local (file://) model, data or benchmark input that
    is absent, the GPUs the spec asks for when this machine shows fewer, and the LLM judge's key
    when judgeSecretRef is set but `environ` lacks it. Object-store inputs are left to the
    stages (the first checks every input before any training)."""
    spec = run.spec
    missing = []
    gpus = spec.resources.gpus_per_node
    if gpus > 0 and visible_gpus() == 0:  # locally a stage runs on one GPU (docs/local-gpu.md)
        missing.append(
            f"spec.resources.gpusPerNode: {gpus}, but this machine shows no GPU "
            "(set resources.gpusPerNode: 0 to run on the CPU)"
        )
    inputs = [("spec.model.uri", spec.model.uri), ("spec.data.uri", spec.data.uri)]
    inputs += [
        (f"spec.evaluation.benchmarks[{i}].uri", b.uri)
        for i, b in enumerate(spec.evaluation.benchmarks)
        if b.uri
    ]
    for field, uri in inputs:
        path = storage.local_path(uri) if uri.startswith("file://") or "://" not in uri else None
        if path is not None and not path.exists():
            missing.append(f"{field}: {uri} does not exist")
    for field, ref in spec.evaluation.judge_secrets()[:1]:  # one key per run (api.py)
        if not environ.get(JUDGE_KEY_VARIABLE):
            missing.append(
                f"{field}: set (Secret {ref.name!r}, key {ref.key!r}), but {JUDGE_KEY_VARIABLE} is not in this "
                f"shell's environment: a local run reads the judge's key from there (export {JUDGE_KEY_VARIABLE}=...)"
            )
    return missing


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Recorded:
    """An attempt as persisted in the local state file."""

    stage: str
    attempt: int
    state: str
    exit_code: int | None = None
    summary: str | None = None  # the encoded termination summary
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None
    disrupted: bool = False
    processes: list[list[int]] | None = None  # [pid, start time in clock ticks] of each process

    def observation(self) -> Attempt:
        return Attempt(
            stage=self.stage,
            attempt=self.attempt,
            state=AttemptState(self.state),
            exit_code=self.exit_code,
            summary=TerminationSummary.decode(self.summary),
            started_at=datetime.fromisoformat(self.started_at) if self.started_at else None,
            finished_at=datetime.fromisoformat(self.finished_at) if self.finished_at else None,
            message=self.message,
            disrupted=self.disrupted,
        )


class LocalRunner:
    """Runs one manifest to completion (or until stopped) with the shared planner."""

    def __init__(
        self,
        manifest: MFPORun,
        *,
        progress: bool = True,
        stage_command: Sequence[str] = (sys.executable, "-m", "mfpo_runtime.stage"),
        out: TextIO = sys.stdout,
        max_parallel_shards: int | None = None,
        command: str | None = None,
    ) -> None:
        """`command` is how the user started this run (`mfpo run FILE`): the messages that say
        how to continue or retry name it."""
        self._manifest = manifest
        self.name = manifest.metadata.name
        self.namespace = manifest.metadata.namespace or "default"
        self.spec = manifest.spec
        self.run_uri = run_uri(self.spec, self.name)
        self.state_uri = storage.join(self.run_uri, STATE_FILE)
        # The manifest's endpoint, never the shell's: for the stages and for the state alike.
        self.env = storage.run_environment(self.spec.storage, os.environ)
        self.lock_uri = storage.join(self.run_uri, LOCK_FILE)
        self.command = command or "mfpo run FILE.yaml"
        self.stopped_by: signal.Signals | None = None
        self.progress = progress
        self.stage_command = list(stage_command)
        self.out = out
        self.max_parallel_shards = max_parallel_shards or cpus.available_cpus()
        cpus.threads_per_process()  # a bad MFPO_THREADS / OMP_NUM_THREADS fails here, before any stage
        self._stop = threading.Event()
        self._children: list[subprocess.Popen] = []
        self._status: MFPORunStatus | None = None
        self._recorded: list[_Recorded] = []
        self.owner: RunOwner | None = None  # this local run's identity, kept in its state (claim())
        self._ran_spec_sha256: str | None = None  # `_spec_sha256` of the latest attempt started
        self.adopt_unowned = False

    # ----------------------------------------------------------------- state

    def _load(self) -> tuple[MFPORunStatus | None, list[_Recorded]]:
        doc = self._state_doc()
        if doc is None:
            return None, []
        status = MFPORunStatus.model_validate(doc["status"]) if doc.get("status") else None
        return status, [_Recorded(**a) for a in doc.get("attempts", [])]

    def _spec_sha256(self) -> str:
        """The manifest's spec as this runner read it (URIs resolved), to tell an edited manifest."""
        wire = json.dumps(self.spec.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(wire.encode()).hexdigest()

    def _manifest_changed_since_failure(self) -> bool:
        """Whether the run Failed with a spec other than this manifest's (its latest attempt's)."""
        failed = self._status is not None and self._status.phase == RunPhase.failed
        ran = self._ran_spec_sha256
        return failed and ran is not None and ran != self._spec_sha256()

    def _state_doc(self) -> dict | None:
        with storage.using_env(self.env):
            return storage.read_json(self.state_uri) if storage.exists(self.state_uri) else None

    def _save(self) -> None:
        doc = {
            "owner": self.owner.model_dump() if self.owner else None,
            "status": self._status.to_wire() if self._status else None,
            "attempts": [asdict(a) for a in self._recorded],
            "spec_sha256": self._ran_spec_sha256,  # the spec of the latest attempt started
        }
        with storage.using_env(self.env):
            storage.write_json(doc, self.state_uri)

    # ------------------------------------------------------------- ownership

    def claim(self) -> RunOwner:
        """Make the run's storage prefix this local run's (`mfpo_core.ownership`) and return
        its identity: the id in its state, or a new one saved there first (so that a runner
        killed right after claiming finds its identity again). Raises OwnershipConflict, having
        written nothing, when the prefix is another run's or holds artifacts of a run that left
        no ownership record. `run` calls it; `mfpo demo` too, before it copies outputs in."""
        doc = self._state_doc()
        recorded = RunOwner.model_validate(doc["owner"]) if doc and doc.get("owner") else None
        # A state without an owner: a local run of an earlier version; its artifacts are its own.
        self.adopt_unowned = doc is not None and recorded is None
        owner = recorded or RunOwner(runner="local", namespace=self.namespace, name=self.name, uid=uuid.uuid4().hex)
        with storage.using_env(self.env):
            holder = ownership.owner_of(self.run_uri)
            if holder is not None and holder != owner:
                raise ownership.OwnershipConflict(ownership.conflict_message(self.run_uri, owner.describe(), holder))
            self.owner = owner
            if recorded is None:  # the identity is saved before the prefix is claimed with it
                self._status, self._recorded = self._load()
                self._save()
            try:
                ownership.claim(self.run_uri, owner, self.spec.stage_names(), adopt_unowned=self.adopt_unowned)
            except ownership.OwnershipConflict:
                if doc is None:  # leave no state in a prefix that is not ours
                    storage.delete(self.state_uri)
                raise
        return owner

    def status(self) -> MFPORunStatus | None:
        return self._load()[0]

    # ------------------------------------------------------------------ loop

    def run(self, *, retry: bool = False) -> MFPORunStatus:
        """Run until the run succeeds, fails, is suspended, or this process is asked to stop.
        Raises MissingInputs (before anything starts) when a local input is absent,
        OwnershipConflict (before anything is written) when the storage prefix is another
        run's, and RunLocked while another runner of the same run is alive."""
        missing = missing_inputs(self._manifest)
        if missing:
            raise MissingInputs(missing)
        with storage.using_env(self.env):
            holder = ownership.owner_of(self.run_uri)
        doc = self._state_doc()
        mine = RunOwner.model_validate(doc["owner"]) if doc and doc.get("owner") else None
        if holder is not None and holder != mine:
            this_run = mine.describe() if mine else f"the local run {self.name} of namespace {self.namespace} (`mfpo run`)"
            raise ownership.OwnershipConflict(ownership.conflict_message(self.run_uri, this_run, holder))
        with storage.using_env(self.env):  # the lock lives beside the state: the run's endpoint
            self._acquire_lock()
            try:
                self.claim()
                return self._run_locked(retry)
            finally:
                self._release_lock()

    def _run_locked(self, retry: bool) -> MFPORunStatus:
        self._status, self._recorded = self._load()
        self._ran_spec_sha256 = (self._state_doc() or {}).get("spec_sha256")
        edited = self._manifest_changed_since_failure()
        self._recover_interrupted(self._recorded)
        retry_token = self._retry_token(retry)
        previous_handlers = self._install_signal_handlers()
        self._say(f"run {self.name}: {len(self.spec.stage_names())} stages, artifacts in {self.run_uri}")
        if edited and not retry:
            self._say(
                f"the manifest changed since run {self.name} failed: the failure below is the earlier manifest's, "
                f"and nothing runs again without --retry, which gives the failed stages new attempts with the "
                f"edited manifest: {self.command} --retry"
            )
        try:
            while not self._stop.is_set():
                decision = plan(
                    self.spec,
                    self._status,
                    [r.observation() for r in self._recorded],
                    run=self.name,
                    now=_now(),
                    generation=1,
                    retry_token=retry_token,
                )
                self._status = status = decision.status
                self._save()
                self._say_events(decision.events, status)
                if status.phase in (RunPhase.succeeded, RunPhase.failed, RunPhase.suspended):
                    break
                # StopAttempt needs no work here: a local attempt is live only inside _execute,
                # which has already ended when the planner runs.
                starts = [a for a in decision.actions if isinstance(a, StartAttempt)]
                if starts:
                    self._execute(starts[0])
                elif decision.requeue_after:
                    self._say(f"  waiting {decision.requeue_after:.0f}s before the next attempt")
                    self._stop.wait(decision.requeue_after)
                else:
                    break
        finally:
            self._restore_signal_handlers(previous_handlers)
        self._say(self.summary(self._status))
        if self._stop.is_set():
            # The stopped attempt is recorded; the next run's planner folds it in (as a
            # disruption) and resumes the stage from its checkpoint.
            self._say(f"stopped; to continue run {self.name} where it stopped: {self.command}")
        elif self._status.phase == RunPhase.failed:
            self._say(
                f"run {self.name} failed. Fix the cause, then give the failed stages new attempts: "
                f"{self.command} --retry"
            )
        return self._status

    def _retry_token(self, retry: bool) -> str | None:
        """The operator's retry annotation, locally: a new token retries a Failed run once;
        without --retry the stored token is passed back unchanged (no retry)."""
        previous = self._status.retry_token if self._status else None
        if not retry:
            return previous
        if self._status is None or self._status.phase != RunPhase.failed:
            phase = self._status.phase if self._status else "not started"
            self._say(f"run {self.name} is {phase}, not Failed: nothing to retry, continuing it")
            return previous
        return f"local-{_now().strftime('%Y%m%dT%H%M%S.%fZ')}"

    # ------------------------------------------------------------------ lock

    def _acquire_lock(self) -> None:
        holder = self._lock_holder()
        if holder and _holder_alive(holder):
            raise RunLocked(self._locked_message(holder))
        # Left by a runner that died (kill -9, reboot) or unreadable: take it over, unless another
        # runner replaced it since we read it (two runners finding the same dead lock: the window
        # between this read and the delete is left, small against the seconds a run takes).
        if holder is not None and self._lock_holder() == holder:
            storage.delete(self.lock_uri)
        mine = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _start_ticks(os.getpid()),
            "since": _now().isoformat(timespec="seconds"),
        }
        path = storage.local_path(self.lock_uri)
        if path is None:  # object storage has no create-if-absent here: last writer wins
            storage.write_json(mine, self.lock_uri)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".lock-{os.getpid()}.json")
        draft.write_text(json.dumps(mine))
        try:
            # link() creates the name only if it is absent, with its whole content at once:
            # of two runners starting together one wins, and no reader sees a half-written lock.
            os.link(draft, path)
        except FileExistsError:
            raise RunLocked(self._locked_message(self._lock_holder() or {})) from None
        finally:
            draft.unlink()

    def _lock_holder(self) -> dict | None:
        try:
            return storage.read_json(self.lock_uri) if storage.exists(self.lock_uri) else None
        except (ValueError, storage.StorageError):
            return {}  # unreadable or half-written: treated as stale

    def _release_lock(self) -> None:
        holder = self._lock_holder()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            storage.delete(self.lock_uri)

    def _locked_message(self, holder: dict) -> str:
        return (
            f"run {self.name} is already being run by another `mfpo run` (pid {holder.get('pid')} "
            f"on {holder.get('host')}, since {holder.get('since')}); wait for it to end or stop it "
            f"(Ctrl-C in its terminal, or kill {holder.get('pid')}). Lock: {self.lock_uri}"
        )

    def _recover_interrupted(self, recorded: list[_Recorded]) -> None:
        """An attempt recorded as running belongs to a runner that died: end it as disrupted."""
        for record in recorded:
            if record.state != AttemptState.running.value:
                continue
            for pid, started in record.processes or []:
                _stop_stale(pid, started)
            record.state = AttemptState.failed.value
            record.disrupted = True
            record.finished_at = _now().isoformat()
            record.message = "the local runner stopped while this attempt ran"

    # -------------------------------------------------------------- attempts

    def _config(self, stage: str, attempt: int, shard_index: int | None) -> StageConfig:
        assert self.owner is not None  # claim() ran
        return StageConfig(
            run=self.name,
            namespace=self.namespace,
            uid=self.owner.uid,
            runner="local",
            adopt_unowned=self.adopt_unowned,
            stage=stage,
            attempt=attempt,
            run_uri=self.run_uri,
            spec=self.spec,
            shard_index=shard_index,
        )

    def _execute(self, start: StartAttempt) -> None:
        """Run one attempt to its end and record it (recorded as running first, for recovery)."""
        kind = kind_of(start.stage)
        shards = kind.shards(self.spec)
        stages = self._status.stages if self._status else []
        done = sum(1 for s in stages if s.phase == "Succeeded")
        self._say(
            f"[{done + 1}/{len(stages)}] {start.stage} attempt {start.attempt}"
            + (f" ({shards} shards)" if shards > 1 else "")
        )
        began = time.monotonic()
        self._ran_spec_sha256 = self._spec_sha256()
        record = _Recorded(start.stage, start.attempt, AttemptState.running.value, started_at=_now().isoformat())
        self._recorded.append(record)
        with tempfile.TemporaryDirectory(prefix=f"mfpo-{start.job}-") as tmp:
            configs = []
            for index in range(shards):
                config = self._config(start.stage, start.attempt, index if kind.shardable else None)
                path = Path(tmp, f"config-{index}.json")
                path.write_text(config.to_json())
                configs.append((path, Path(tmp, f"termination-{index}.log")))
            outcomes = self._run_processes(configs, record)
        self._finish(record, outcomes)
        self._save()
        self._say(_attempt_line(record, time.monotonic() - began))

    def _run_processes(
        self, configs: list[tuple[Path, Path]], record: _Recorded
    ) -> list[tuple[int, TerminationSummary | None]]:
        """Run the attempt's processes (shards in parallel up to max_parallel_shards)."""
        outcomes: list[tuple[int, TerminationSummary | None]] = []
        pending = list(configs)
        while pending and not self._stop.is_set():
            batch, pending = pending[: self.max_parallel_shards], pending[self.max_parallel_shards :]
            threads = cpus.local_threads_per_process(len(batch))
            self._children = [self._spawn(config, log, threads) for config, log in batch]
            record.processes = [[c.pid, _start_ticks(c.pid)] for c in self._children]
            self._save()
            for child, (_, log) in zip(self._children, batch):
                code = _wait(child, self._stop)
                text = log.read_text() if log.exists() else None
                outcomes.append((code, TerminationSummary.decode(text)))
            self._children = []
        if pending:  # stopped before every shard ran
            outcomes.append((ExitCode.PREEMPTED, None))
        return outcomes

    def _spawn(self, config: Path, log: Path, threads: int) -> subprocess.Popen:
        env = {
            **self.env,
            # Shards running side by side share the CPUs: more threads than CPUs makes
            # torch's OpenMP workers wait on each other (measured: tens of times slower).
            "MFPO_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads),
            "MFPO_TERMINATION_LOG": str(log),
            "MFPO_PROGRESS": "1" if self.progress else "0",
            "PYTHONUNBUFFERED": "1",
        }
        command = [*self.stage_command, "--config", str(config)]
        if not self.progress:
            command.append("--no-progress")
        # A new session: Ctrl-C reaches the runner only, which forwards SIGTERM so that the
        # stage saves its checkpoint as it would on preemption.
        return subprocess.Popen(command, env=env, start_new_session=True)

    def _finish(self, record: _Recorded, outcomes: list[tuple[int, TerminationSummary | None]]) -> None:
        record.finished_at = _now().isoformat()
        record.processes = None
        failed = [(code, summary) for code, summary in outcomes if code != ExitCode.DONE]
        if not failed:
            record.state = AttemptState.succeeded.value
            record.exit_code = 0
            summaries = [s for _, s in outcomes if s]
            record.summary = merge_shard_summaries(summaries).encode() if summaries else None
            return
        code, summary = next(((c, s) for c, s in failed if c == ExitCode.BAD_INPUT), failed[0])
        record.state = AttemptState.failed.value
        record.exit_code = code
        record.summary = summary.encode() if summary else None
        # Stopped by us (Ctrl-C / SIGTERM to the runner): a disruption, not the stage's fault.
        record.disrupted = self._stop.is_set()
        record.message = None if summary else f"exit code {code}"

    # --------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, object]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stop.is_set():
            self.stopped_by = signal.Signals(signum)
            self._say(f"\n{self.stopped_by.name}: stopping the running stage (it saves a checkpoint)")
        self.request_stop()

    def request_stop(self) -> None:
        """Stop the run: the running stage gets SIGTERM and saves its checkpoint."""
        self._stop.set()
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # ---------------------------------------------------------------- output

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _say_events(self, events: Sequence[Event], status: MFPORunStatus) -> None:
        """The planner's events, each failure message said once: the stage logged it just
        above (and the final status shows it), so events name the stage and what happens next."""
        reasons = {e.reason for e in events}
        for event in events:
            if event.reason == "RunFailed" and "StageFailed" in reasons:
                continue  # the same stage and reason, one line above
            stage = status.stage(event.stage) if event.stage else None
            text = event.message
            if stage and stage.message and event.reason in ("AttemptFailed", "StageFailed"):
                text = text.replace(f": {stage.message}", "")
            self._say(f"  {event.reason}: {text}")

    def describe(self) -> str:
        status = self.status()
        if status is None:
            return f"run {self.name}: not started (no state at {self.state_uri})"
        lines = [f"run {self.name}: {status.phase} ({status.progress or '-'}), artifacts in {self.run_uri}"]
        attempts = self._load()[1]
        for stage in status.stages:
            took = _attempts_time([a for a in attempts if a.stage == stage.name])
            lines.append(
                f"  {stage.name:<10} {stage.phase:<10} attempts={stage.attempts:<3} {took:>8}  "
                f"{_results(stage.metrics) if stage.phase == 'Succeeded' else stage.message or ''}".rstrip()
            )
        return "\n".join(lines)

    def runner_line(self) -> str | None:
        """Who runs the run now, for `mfpo status`: a live runner, or none for an unfinished run."""
        with storage.using_env(self.env):
            holder = self._lock_holder()
        if holder and _holder_alive(holder):
            return f"  being run by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
        status = self.status()
        if status is not None and status.phase not in (RunPhase.succeeded, RunPhase.failed):
            return f"  no runner is active: `{self.command}` continues it"
        return None

    def summary(self, status: MFPORunStatus) -> str:
        """The end-of-run summary: phase, hallucination scores before and after, the report."""
        lines = [self.describe()]
        eval_stage = status.stage("eval")
        if eval_stage and eval_stage.metrics:
            lines.append(format_eval_table(eval_stage.metrics))
        if eval_stage and eval_stage.outputs.get("report"):
            lines.append(f"report: {eval_stage.outputs['report']}")
        return "\n".join(lines)


def format_eval_table(metrics: dict[str, float]) -> str:
    """`eval.<policy>.<benchmark>.<metric>` metrics as a table: one row per benchmark metric."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    policies: list[str] = []
    for key, value in metrics.items():
        parsed = parse_eval_metric_key(key)
        if parsed is None:
            continue
        policy, benchmark, metric = parsed
        if policy not in policies:
            policies.append(policy)
        table.setdefault((benchmark, metric), {})[policy] = value
    if not table:
        return ""
    policies.sort(key=lambda p: (p != "base", p))
    header = f"  {'benchmark':<16}{'metric':<26}" + "".join(f"{p:>12}" for p in policies)
    rows = [header]
    for (benchmark, metric), values in sorted(table.items()):
        cells = "".join(f"{values[p]:>12.3f}" if p in values else f"{'-':>12}" for p in policies)
        rows.append(f"  {benchmark:<16}{metric:<26}{cells}")
    return "\n".join(rows)


def _attempts_time(attempts: Sequence[_Recorded]) -> str:
    """How long a stage's attempts ran, together (a running one until now). Not the span from its
    first attempt's start to its end (`status.stages[].startTime`, `completionTime`): that counts
    the wait between a failed attempt and `--retry`, e.g. while the manifest was edited."""
    spans = [(datetime.fromisoformat(a.started_at), datetime.fromisoformat(a.finished_at) if a.finished_at else None)
             for a in attempts if a.started_at]  # fmt: skip
    if not spans:
        return "-"
    return _format_seconds(sum(((end or _now()) - start).total_seconds() for start, end in spans))


def _format_seconds(total: float) -> str:
    seconds = int(total)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _results(metrics: dict[str, float], limit: int = 4) -> str:
    """A stage's first few metrics, e.g. `records=300 pairs=280`."""
    shown = ", ".join(f"{k}={v:.4g}" for k, v in list(metrics.items())[:limit])
    return shown + (f" (+{len(metrics) - limit} more)" if len(metrics) > limit else "")


def _holder_alive(holder: dict) -> bool:
    """Whether a lock's runner still runs: same host, and its pid has the same start time
    (a reused pid is another process). A lock from another host cannot be checked: alive."""
    if holder.get("host") != socket.gethostname():
        return bool(holder.get("host"))
    pid, started = holder.get("pid"), holder.get("started")
    return isinstance(pid, int) and started is not None and _start_ticks(pid) == started and _alive(pid)


def _wait(child: subprocess.Popen, stop: threading.Event) -> int:
    """Wait for a child; after a stop request give it GRACE_SECONDS, then kill it."""
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stop.is_set():
                try:
                    return child.wait(timeout=GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
                    return child.wait()


def _stop_stale(pid: int, started: int | None) -> None:
    """Stop a stage process left behind by a runner that died, and wait for it to save its
    checkpoint so that the next attempt never races it. The pid must still belong to the
    same process (same start time), never to an unrelated one that reused the number."""
    if started is None or _start_ticks(pid) != started:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + GRACE_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: start time since boot


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting for its parent counts as gone)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _attempt_line(record: _Recorded, seconds: float) -> str:
    summary = TerminationSummary.decode(record.summary)
    if record.state == AttemptState.succeeded.value:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list((summary.metrics if summary else {}).items())[:6])
        return f"  {record.stage} succeeded in {seconds:.1f}s" + (f": {shown}" if shown else "")
    # A stage that wrote a summary has logged its error itself, just above: not repeated here.
    why = "" if summary else record.message or ""
    kind = "stopped" if record.disrupted else "failed"
    return f"  {record.stage} attempt {record.attempt} {kind} after {seconds:.1f}s (exit {record.exit_code}) {why}".rstrip()


def load_state(run_uri: str) -> dict:
    """The raw local state document of a run (for tests and `mfpo status`)."""
    return json.loads(storage.read_text(storage.join(run_uri, STATE_FILE)))
